package oci_test

import (
	"bytes"
	_ "crypto/sha512" // as the binary links it: sha512 digests are valid
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/verify/oci"
)

// FuzzNewManifest checks that a Manifest's digest is always the one computed from its
// bytes, with the algorithm asked for, and that a digest asked for is never ignored.
func FuzzNewManifest(f *testing.F) {
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`)
	f.Add(body, oci.MediaTypeOCIManifest, digest.FromBytes(body).String())
	f.Add(body, oci.MediaTypeOCIManifest, "")
	f.Add(body, oci.MediaTypeOCIIndex, digest.SHA512.FromBytes(body).String())
	f.Add([]byte{}, "", "sha256:"+string(bytes.Repeat([]byte("0"), 64)))
	f.Add(body, "", "sha256:ABC")
	f.Add(body, "", "md5:d41d8cd98f00b204e9800998ecf8427e")
	f.Fuzz(func(t *testing.T, b []byte, mediaType, want string) {
		m, err := oci.NewManifest(b, mediaType, digest.Digest(want))
		if err != nil {
			if want == "" {
				t.Fatalf("NewManifest without a digest to check failed: %v", err)
			}
			if d := digest.Digest(want); d.Validate() == nil && d.Algorithm().FromBytes(b) == d {
				t.Fatalf("NewManifest refused bytes that have digest %s: %v", want, err)
			}
			return
		}
		if !bytes.Equal(m.Bytes, b) || m.MediaType != mediaType {
			t.Fatal("NewManifest changed the bytes or the media type")
		}
		if err := m.Digest.Validate(); err != nil {
			t.Fatalf("invalid digest %q: %v", m.Digest, err)
		}
		if got := m.Digest.Algorithm().FromBytes(b); got != m.Digest {
			t.Fatalf("digest %s, bytes have %s", m.Digest, got)
		}
		if want != "" && m.Digest != digest.Digest(want) {
			t.Fatalf("asked for %s, got %s", want, m.Digest)
		}
		if want == "" && m.Digest.Algorithm() != digest.Canonical {
			t.Fatalf("default algorithm %s", m.Digest.Algorithm())
		}
	})
}

// FuzzParseDigest checks that ParseDigest, with its fast path for sha256, accepts and
// refuses exactly what digest.Parse does.
func FuzzParseDigest(f *testing.F) {
	for _, s := range []string{
		digest.FromString("x").String(),
		digest.SHA512.FromString("x").String(),
		"sha256:" + strings.Repeat("A", 64),
		"sha256:" + strings.Repeat("g", 64),
		"sha256:" + strings.Repeat("0", 63),
		"sha256:" + strings.Repeat("0", 65),
		"sha256:",
		"SHA256:" + strings.Repeat("0", 64),
		"md5:d41d8cd98f00b204e9800998ecf8427e",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := oci.ParseDigest(s)
		want, wantErr := digest.Parse(s)
		if (err == nil) != (wantErr == nil) || got != want {
			t.Fatalf("ParseDigest(%q) = %q, %v; digest.Parse: %q, %v", s, got, err, want, wantErr)
		}
	})
}
