package oci_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/portcullis/portcullis/verify/oci"
)

// FuzzManifestMediaType checks that the media type portcullis records for a manifest is the
// one its content declares when it declares one (so the served Content-Type cannot disagree
// with what the digest covers), else the header's, else the OCI manifest type; never empty.
// The expected type comes from how the input was built, not from parsing it again: the
// document is marshalled from a map that does or does not hold mediaType, the header is a
// known type with a parameter. Arbitrary bytes are checked for what needs no parser: a
// body that is not JSON declares nothing, so it gets the header's type.
func FuzzManifestMediaType(f *testing.F) {
	types := []string{oci.MediaTypeOCIManifest, oci.MediaTypeOCIIndex, oci.MediaTypeDockerManifest,
		"application/vnd.docker.distribution.manifest.list.v2+json", "text/plain"}
	f.Add("application/vnd.oci.image.index.v1+json", true, "x", uint8(0), "utf8", []byte(`{"mediaType":"a"}`))
	f.Add("", true, "", uint8(2), "", []byte(`not json`))
	f.Add("evil", false, `","mediaType":"evil`, uint8(9), "x", []byte(`{"MediaType":"x","mediaType":"y"}`))
	f.Add("a\"b", true, "\x00", uint8(1), "Q", []byte("garbage;;"))
	f.Fuzz(func(t *testing.T, declared string, declare bool, noise string, header uint8, param string, raw []byte) {
		if !utf8.ValidString(declared) || !utf8.ValidString(noise) {
			return // json.Marshal would change them
		}
		doc := map[string]any{"schemaVersion": 2, "annotations": map[string]string{"noise": noise, "mediatype": noise}}
		if declare {
			doc["mediaType"] = declared
		}
		b, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		contentType, headerType := "", ""
		if int(header) < len(types) {
			headerType = types[header]
			contentType = strings.ToUpper(headerType[:1]) + headerType[1:] + "; charset=" + strings.Map(func(r rune) rune {
				if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
					return r
				}
				return -1
			}, param+"x")
		}
		want := oci.MediaTypeOCIManifest
		switch {
		case declare && declared != "":
			want = declared
		case headerType != "":
			want = headerType
		}
		if got := oci.ManifestMediaType(b, contentType); got != want {
			t.Fatalf("ManifestMediaType(%s, %q) = %q, want %q", b, contentType, got, want)
		}

		got := oci.ManifestMediaType(raw, contentType)
		if got == "" {
			t.Fatalf("ManifestMediaType(%q, %q) is empty", raw, contentType)
		}
		if !json.Valid(raw) && got != oci.ManifestMediaType(nil, contentType) {
			t.Fatalf("a body that is not JSON declares nothing, yet ManifestMediaType(%q, %q) = %q, not the header's %q",
				raw, contentType, got, oci.ManifestMediaType(nil, contentType))
		}
	})
}
