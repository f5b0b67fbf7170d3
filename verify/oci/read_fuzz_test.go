package oci_test

import (
	"encoding/json"
	"mime"
	"testing"

	"github.com/portcullis/portcullis/verify/oci"
)

// FuzzManifestMediaType checks that the media type portcullis records for a manifest is the
// one its content declares when it declares one (so the served Content-Type cannot disagree
// with what the digest covers), else the header's, else the OCI manifest type; never empty.
func FuzzManifestMediaType(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}`), oci.MediaTypeOCIManifest)
	f.Add([]byte(`{"schemaVersion":2}`), oci.MediaTypeDockerManifest+"; charset=utf-8")
	f.Add([]byte(`{"mediaType":""}`), "")
	f.Add([]byte(`{"MediaType":"x","mediaType":"y"}`), "text/plain")
	f.Add([]byte(`not json`), "garbage;;")
	f.Fuzz(func(t *testing.T, b []byte, contentType string) {
		got := oci.ManifestMediaType(b, contentType)
		if got == "" {
			t.Fatal("empty media type")
		}
		var probe struct {
			MediaType string `json:"mediaType"`
		}
		if json.Unmarshal(b, &probe) == nil && probe.MediaType != "" {
			if got != probe.MediaType {
				t.Fatalf("content declares %q, recorded %q", probe.MediaType, got)
			}
			return
		}
		if mt, _, err := mime.ParseMediaType(contentType); err == nil && mt != "" {
			if got != mt {
				t.Fatalf("header says %q, recorded %q", mt, got)
			}
			return
		}
		if got != oci.MediaTypeOCIManifest {
			t.Fatalf("no declared type, recorded %q", got)
		}
	})
}
