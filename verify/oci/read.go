package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
)

// ErrTooLarge is wrapped by errors for bodies over their size limit.
var ErrTooLarge = errors.New("too large")

// ReadCapped reads all of r, failing with ErrTooLarge past limit bytes.
func ReadCapped(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("body over the %d byte limit: %w", limit, ErrTooLarge)
	}
	return b, nil
}

// ManifestMediaType returns the media type of manifest bytes b: the mediaType the content
// declares (the caller checks the bytes against their digest), else the Content-Type header
// contentType, else the OCI image manifest type.
func ManifestMediaType(b []byte, contentType string) string {
	var probe struct {
		MediaType string `json:"mediaType"`
	}
	if json.Unmarshal(b, &probe) == nil && probe.MediaType != "" {
		return probe.MediaType
	}
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && mt != "" {
		return mt
	}
	return MediaTypeOCIManifest
}
