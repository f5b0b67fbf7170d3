package cosign_test

import (
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/cosign"
)

func TestTags(t *testing.T) {
	d := digest.FromString("image")
	hex := d.Encoded()
	for _, tc := range []struct{ got, want string }{
		{cosign.SignatureTag(d), "sha256-" + hex + ".sig"},
		{cosign.AttachmentTag(d, cosign.SuffixAttestation), "sha256-" + hex + ".att"},
		{cosign.AttachmentTag(d, cosign.SuffixSBOM), "sha256-" + hex + ".sbom"},
		{cosign.ReferrersTag(d), "sha256-" + hex},
	} {
		if tc.got != tc.want {
			t.Errorf("got tag %q, want %q", tc.got, tc.want)
		}
	}
}

func TestParseSignatureTag(t *testing.T) {
	d := digest.FromString("image")
	d512 := digest.NewDigestFromEncoded(digest.SHA512, strings.Repeat("ab", 64))
	hex := d.Encoded()
	for _, tc := range []struct {
		tag  string
		want digest.Digest // "" when not a signature tag
	}{
		{cosign.SignatureTag(d), d},
		{cosign.AttachmentTag(d, cosign.SuffixAttestation), d},
		{cosign.ReferrersTag(d), d},
		{cosign.SignatureTag(d512), d512},
		{cosign.AttachmentTag(d, cosign.SuffixSBOM), ""},
		{"sha256-" + hex + ".sig.sig", ""},
		{"sha256-" + strings.ToUpper(hex) + ".sig", ""},
		{"sha256-" + hex[:63] + ".sig", ""},
		{"sha256:" + hex, ""},
		{"md5-" + hex + ".sig", ""},
		{"latest", ""},
		{"v1.sig", ""},
		{"", ""},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			got, ok := cosign.ParseSignatureTag(tc.tag)
			if ok != (tc.want != "") || got != tc.want {
				t.Errorf("ParseSignatureTag(%q) = %q, %v; want %q, %v", tc.tag, got, ok, tc.want, tc.want != "")
			}
		})
	}
}

func FuzzParseSignatureTag(f *testing.F) {
	d := digest.FromString("image")
	for _, s := range []string{cosign.SignatureTag(d), cosign.ReferrersTag(d), "latest", "sha256-.att", "sha512-x.sig"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tag string) {
		d, ok := cosign.ParseSignatureTag(tag)
		if !ok {
			return
		}
		if err := d.Algorithm().Validate(d.Encoded()); err != nil {
			t.Fatalf("ParseSignatureTag(%q) = %q, an invalid digest: %v", tag, d, err)
		}
		if tag != cosign.SignatureTag(d) && tag != cosign.AttachmentTag(d, cosign.SuffixAttestation) && tag != cosign.ReferrersTag(d) {
			t.Fatalf("ParseSignatureTag(%q) = %q, whose tags are not %q", tag, d, tag)
		}
	})
}
