package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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
	status, e, _ := classify(kind, err)
	b, _ := json.Marshal(errcode.Errors{e})
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Content-Length", strconv.Itoa(len(b)))
	hd.Del("Docker-Content-Digest")
	hd.Del("Etag")
	if ra := retryAfter(err); ra > 0 && (status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests) {
		hd.Set("Retry-After", strconv.Itoa(int(max(1, math.Ceil(ra.Seconds())))))
	}
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

// Error classes, the "error" attribute of the request metrics: whose fault a failed request
// was. classNone is a request that did not fail.
const (
	classNone                = "none"
	classDenied              = "denied"               // the policy (or the push rules) refused
	classClient              = "client"               // the request was wrong or names nothing that exists
	classUpstreamAuth        = "upstream_auth"        // the upstream refused portcullis's credentials
	classUpstreamUnavailable = "upstream_unavailable" // unreachable, timed out, or rate limiting
	classUpstreamError       = "upstream_error"       // an upstream error answer or invalid content
	classInternal            = "internal"             // portcullis itself
	classOverloaded          = "overloaded"           // refused by portcullis's own overload limits
)

// errorClass is the class of err for the request metrics.
func errorClass(kind string, err error) string {
	if err == nil {
		return classNone
	}
	_, _, class := classify(kind, err)
	return class
}

// maxMessage bounds the message of an error answer; messages of 502 and 503 answers never
// carry an upstream's free text (see briefly).
const maxMessage = 1024

// classify turns err into the status, OCI error and error class of the answer. DENIED is the
// policy's word alone: an upstream that refuses portcullis's credentials is a 502 "upstream
// authentication failed", whatever status it used.
func classify(kind string, err error) (int, errcode.Error, string) {
	var ec errcode.Error
	if errors.As(err, &ec) {
		status := ec.Code.Descriptor().HTTPStatusCode
		switch {
		case ec.Code == errcode.ErrorCodeDenied:
			return status, ec, classDenied
		case status >= 500:
			return status, ec, classInternal
		}
		return status, ec, classClient
	}
	var den *policy.DenyError
	if errors.As(err, &den) {
		return http.StatusForbidden, errcode.ErrorCodeDenied.WithMessage(err.Error()), classDenied
	}
	var se *staleError
	if errors.As(err, &se) {
		// The upstream fails and nothing verified may stand in: whatever the upstream's
		// failure (a 500, a 429, a timeout), 503 with the reason.
		_, inner, _ := classify(kind, se.err)
		return http.StatusServiceUnavailable, errcode.ErrorCodeUnavailable.WithMessage(capped(inner.Message + "; " + se.reason)), classUpstreamUnavailable
	}
	var oe *overloadedError
	if errors.As(err, &oe) {
		return http.StatusServiceUnavailable, errcode.ErrorCodeUnavailable.WithMessage(err.Error()), classOverloaded
	}
	var ov *upstream.OverloadError
	if errors.As(err, &ov) {
		return http.StatusServiceUnavailable, errcode.ErrorCodeUnavailable.WithMessage(capped(err.Error() + "; retry shortly")), classOverloaded
	}
	if errors.Is(err, errRangeNotSatisfiable) {
		return http.StatusRequestedRangeNotSatisfiable, errcode.ErrorCodeRangeInvalid.WithMessage(capped(err.Error())), classClient
	}
	if errors.Is(err, oci.ErrNotFound) {
		var code errcode.ErrorCode
		switch kind {
		case kindManifests:
			code = errcode.ErrorCodeManifestUnknown
		case kindBlobs:
			code = errcode.ErrorCodeBlobUnknown
		default:
			code = errcode.ErrorCodeNameUnknown
		}
		msg := err.Error()
		var ue *upstream.Error
		if errors.As(err, &ue) {
			msg = briefly(err, ue, ue.Brief())
		}
		return http.StatusNotFound, code.WithMessage(capped(msg)), classClient
	}
	var fh *upstream.ForeignHostError
	if errors.As(err, &fh) {
		return http.StatusBadGateway, errcode.ErrorCodeUnknown.WithMessage(capped(err.Error())), classUpstreamError
	}
	var ue *upstream.Error
	if errors.As(err, &ue) {
		switch {
		case ue.AuthFailed():
			return http.StatusBadGateway, errcode.ErrorCodeUnknown.WithMessage(capped(briefly(err, ue,
				"upstream authentication failed: "+ue.Brief()+"; check the credentials portcullis has for it"))), classUpstreamAuth
		case ue.Status == http.StatusTooManyRequests:
			return http.StatusTooManyRequests, errcode.ErrorCodeTooManyRequests.WithMessage(capped(briefly(err, ue, ue.Brief()))), classUpstreamUnavailable
		}
		return http.StatusBadGateway, errcode.ErrorCodeUnknown.WithMessage(capped(briefly(err, ue, ue.Brief()))), classUpstreamError
	}
	if errors.Is(err, oci.ErrTooLarge) {
		code := errcode.ErrorCodeSizeInvalid
		if kind == kindManifests {
			code = errcode.ErrorCodeManifestInvalid
		}
		return http.StatusBadGateway, code.WithMessage(capped(err.Error())), classUpstreamError
	}
	var un *upstream.UnavailableError
	if errors.As(err, &un) {
		return http.StatusServiceUnavailable, errcode.ErrorCodeUnavailable.WithMessage(capped(briefly(err, un, un.Brief()))), classUpstreamUnavailable
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusServiceUnavailable, errcode.ErrorCodeUnavailable.WithMessage(capped(err.Error())), classUpstreamUnavailable
	}
	return http.StatusBadGateway, errcode.ErrorCodeUnknown.WithMessage(capped(err.Error())), classUpstreamError
}

// briefly is err's message with the text of inner, an upstream error in err's chain, replaced
// by short: the context portcullis added ("manifest demo/app:v1: ") is kept, the upstream's
// own words (and the URLs of the transport's errors) are not. Without a recognisable
// context, it is short alone.
func briefly(err, inner error, short string) string {
	if prefix, ok := strings.CutSuffix(err.Error(), inner.Error()); ok {
		return prefix + short
	}
	return short
}

// capped bounds msg at maxMessage bytes of printable ASCII (a message may quote names a
// client or an upstream chose).
func capped(msg string) string {
	if len(msg) > maxMessage {
		msg = msg[:maxMessage-3] + "..."
	}
	b := []byte(msg)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = ' '
		}
	}
	return string(b)
}
