package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/distribution/distribution/v3/registry/api/errcode"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/verify/oci"
)

// writeError is the one place where errors become OCI error responses.
func writeError(w http.ResponseWriter, r *http.Request, kind string, err error) {
	status, e := classify(kind, err)
	b, _ := json.Marshal(errcode.Errors{e})
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Content-Length", strconv.Itoa(len(b)))
	hd.Del("Docker-Content-Digest")
	hd.Del("Etag")
	if r.Method == http.MethodHead && e.Code == errcode.ErrorCodeDenied && writeStatusReason(w, r, status, e.Message) {
		return
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

// maxReasonPhrase bounds the reason phrase writeStatusReason sends.
const maxReasonPhrase = 1024

// writeStatusReason answers r with status and msg as the status line's reason phrase
// ("HTTP/1.1 403 image … denied by policy …"), for an HTTP/1 HEAD request. A HEAD response has
// no body, and containerd resolves a tag with HEAD and reports only the status line (its
// resp.Status) when that fails: this is the only way its users (ctr, the kubelet's events)
// see why portcullis refused an image. RFC 9112 lets the reason phrase be any text; clients
// must not act on it. The net/http server always writes the standard phrase, so the
// connection is taken over and closed after the response. It reports whether it answered.
func writeStatusReason(w http.ResponseWriter, r *http.Request, status int, msg string) bool {
	if r.ProtoMajor != 1 {
		return false
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	defer conn.Close()
	if rec, ok := w.(*recorder); ok {
		rec.status, rec.wroteHeader = status, true
	}
	reason := []byte(http.StatusText(status) + ": " + strings.ReplaceAll(msg, "…", "..."))
	if len(reason) > maxReasonPhrase {
		reason = append(reason[:maxReasonPhrase-3], "..."...)
	}
	for i, c := range reason { // visible ASCII and spaces only: no line breaks, no header injection
		if c < 0x20 || c > 0x7e {
			reason[i] = '?'
		}
	}
	_, _ = fmt.Fprintf(rw, "HTTP/1.1 %d %s\r\n", status, reason)
	h := w.Header().Clone()
	h.Set("Connection", "close")
	_ = h.Write(rw)
	_, _ = rw.WriteString("\r\n")
	_ = rw.Flush()
	return true
}

func classify(kind string, err error) (int, errcode.Error) {
	var ec errcode.Error
	if errors.As(err, &ec) {
		return ec.Code.Descriptor().HTTPStatusCode, ec
	}
	var den *policy.DenyError
	if errors.As(err, &den) {
		return http.StatusForbidden, errcode.ErrorCodeDenied.WithMessage(err.Error())
	}
	if errors.Is(err, errRangeNotSatisfiable) {
		return http.StatusRequestedRangeNotSatisfiable, errcode.ErrorCodeRangeInvalid.WithMessage(err.Error())
	}
	if errors.Is(err, oci.ErrNotFound) {
		switch kind {
		case kindManifests:
			return http.StatusNotFound, errcode.ErrorCodeManifestUnknown.WithMessage(err.Error())
		case kindBlobs:
			return http.StatusNotFound, errcode.ErrorCodeBlobUnknown.WithMessage(err.Error())
		default:
			return http.StatusNotFound, errcode.ErrorCodeNameUnknown.WithMessage(err.Error())
		}
	}
	var ue *upstream.Error
	if errors.As(err, &ue) {
		switch ue.Status {
		case http.StatusUnauthorized, http.StatusForbidden:
			return http.StatusForbidden, errcode.ErrorCodeDenied.WithMessage(err.Error())
		case http.StatusTooManyRequests:
			return http.StatusTooManyRequests, errcode.ErrorCodeTooManyRequests.WithMessage(err.Error())
		}
		return http.StatusBadGateway, errcode.ErrorCodeUnknown.WithMessage(err.Error())
	}
	if errors.Is(err, oci.ErrTooLarge) {
		code := errcode.ErrorCodeSizeInvalid
		if kind == kindManifests {
			code = errcode.ErrorCodeManifestInvalid
		}
		return http.StatusBadGateway, code.WithMessage(err.Error())
	}
	var un *upstream.UnavailableError
	if errors.As(err, &un) || errors.Is(err, context.DeadlineExceeded) {
		return http.StatusServiceUnavailable, errcode.ErrorCodeUnavailable.WithMessage(err.Error())
	}
	return http.StatusBadGateway, errcode.ErrorCodeUnknown.WithMessage(err.Error())
}
