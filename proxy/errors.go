package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/distribution/distribution/v3/registry/api/errcode"

	"github.com/portcullis/portcullis/internal/oci"
	"github.com/portcullis/portcullis/policy"
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
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
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
	var ue *UpstreamError
	if errors.As(err, &ue) {
		switch ue.Status {
		case http.StatusUnauthorized, http.StatusForbidden:
			return http.StatusForbidden, errcode.ErrorCodeDenied.WithMessage(err.Error())
		case http.StatusTooManyRequests:
			return http.StatusTooManyRequests, errcode.ErrorCodeTooManyRequests.WithMessage(err.Error())
		}
		return http.StatusBadGateway, errcode.ErrorCodeUnknown.WithMessage(err.Error())
	}
	if errors.Is(err, ErrTooLarge) {
		code := errcode.ErrorCodeSizeInvalid
		if kind == kindManifests {
			code = errcode.ErrorCodeManifestInvalid
		}
		return http.StatusBadGateway, code.WithMessage(err.Error())
	}
	var un *UnavailableError
	if errors.As(err, &un) || errors.Is(err, context.DeadlineExceeded) {
		return http.StatusServiceUnavailable, errcode.ErrorCodeUnavailable.WithMessage(err.Error())
	}
	return http.StatusBadGateway, errcode.ErrorCodeUnknown.WithMessage(err.Error())
}
