package oci

import (
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Media types of OCI and Docker manifests and the empty config. Cosign's own are package
// cosign's.
const (
	MediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeEmptyJSON      = "application/vnd.oci.empty.v1+json"
)

// MaxManifestSize is the largest manifest portcullis reads, as distribution's registry.
const MaxManifestSize = 4 << 20

// ErrNotFound is wrapped by every error that means "the registry does not have it"
// (a 404 for a manifest, blob, tag or repository). Callers test it with errors.Is.
var ErrNotFound = errors.New("not found")

// Manifest is a manifest as fetched: the exact bytes, the media type they declare, and the
// digest computed locally from those bytes (never taken from a registry header).
type Manifest struct {
	Digest    digest.Digest
	MediaType string
	Bytes     []byte
}

// NewManifest computes the digest of b and returns the Manifest. If want is not empty the
// computed digest must equal it.
func NewManifest(b []byte, mediaType string, want digest.Digest) (Manifest, error) {
	alg := digest.Canonical
	if want != "" {
		if err := want.Validate(); err != nil {
			return Manifest{}, fmt.Errorf("invalid digest %q: %w", want, err)
		}
		alg = want.Algorithm()
	}
	got := alg.FromBytes(b)
	if want != "" && got != want {
		return Manifest{}, fmt.Errorf("manifest digest mismatch: asked for %s, content is %s", want, got)
	}
	return Manifest{Digest: got, MediaType: mediaType, Bytes: b}, nil
}

// IsIndex reports whether mediaType names a multi-platform index or manifest list.
func IsIndex(mediaType string) bool {
	return mediaType == MediaTypeOCIIndex || mediaType == MediaTypeDockerList
}

// ParseDigest is digest.Parse with a fast path: a sha256 digest (lowercase hex, which
// go-digest requires too) is checked without go-digest's regular expression, which is a
// noticeable part of serving a cached manifest.
func ParseDigest(s string) (digest.Digest, error) {
	if hex, ok := strings.CutPrefix(s, "sha256:"); ok && len(hex) == 64 && !strings.ContainsFunc(hex, func(c rune) bool {
		return (c < '0' || c > '9') && (c < 'a' || c > 'f')
	}) {
		return digest.Digest(s), nil
	}
	return digest.Parse(s)
}
