package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/verify/oci"
)

// FuzzChunkStart checks a client's Content-Range against the upload's offset: a chunk is
// accepted only when its range starts exactly where the upload is, whatever else the
// header says; a refused one is told the range stored so far.
func FuzzChunkStart(f *testing.F) {
	f.Add(int64(0), "0-99", "")
	f.Add(int64(100), "bytes=100-199", "x")
	f.Add(int64(100), "99-199", "")
	f.Add(int64(5), "05-", "")
	f.Add(int64(7), "-7-8", "")
	f.Add(int64(1<<40), "1099511627776-", "")
	f.Fuzz(func(t *testing.T, size int64, header, suffix string) {
		if size < 0 {
			size = -size
		}
		if size < 0 {
			return
		}
		try := func(cr string) error {
			r := httptest.NewRequest(http.MethodPatch, "/", nil)
			r.Header.Set("Content-Range", cr)
			w := httptest.NewRecorder()
			err := checkChunkStart(w, r, &upload{size: size})
			if err != nil && w.Header().Get("Range") != fmt.Sprintf("0-%d", max(size-1, 0)) {
				t.Fatalf("Content-Range %q refused with Range %q for an upload at %d", cr, w.Header().Get("Range"), size)
			}
			return err
		}
		// Any header: accepted means its start is the offset, in decimal, maybe zero-padded.
		if try(header) == nil && header != "" {
			start, _, ok := strings.Cut(strings.TrimPrefix(header, "bytes="), "-")
			n, err := strconv.ParseUint(start, 10, 63)
			if !ok || err != nil || int64(n) != size {
				t.Fatalf("Content-Range %q accepted for an upload at %d", header, size)
			}
		}
		// Built headers: the offset is accepted, any other start is not.
		end := strconv.FormatInt(size, 10) + "-" + strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, suffix)
		if err := try(end); err != nil {
			t.Fatalf("Content-Range %q refused for an upload at %d: %v", end, size, err)
		}
		if size > 0 {
			if try(strconv.FormatInt(size-1, 10)+"-"+strconv.FormatInt(size, 10)) == nil {
				t.Fatalf("a chunk starting before the offset %d was accepted", size)
			}
		}
	})
}

// FuzzSubject checks what a pushed manifest says it signs: subjectOf is empty or a valid
// digest; a valid subject field wins over the tag; the OCI-Subject header (hasSubject) is
// only sent for a manifest whose subject field holds a valid digest, which is then exactly
// what subjectOf returns; and a tag is used only when it is a cosign signature tag.
func FuzzSubject(f *testing.F) {
	d := digest.FromString("x")
	f.Add([]byte(`{"subject":{"digest":"`+d.String()+`"}}`), cosign.ReferrersTag(d))
	f.Add([]byte(`{"subject":{"digest":"sha256:nope"}}`), cosign.ReferrersTag(d)+".sig")
	f.Add([]byte(`{"subject":null}`), "v1")
	f.Add([]byte(`{"subject":{},"subject":{"digest":"`+d.String()+`"}}`), d.String())
	f.Add([]byte(`{"Subject":{"Digest":"`+d.String()+`"}}`), "")
	f.Fuzz(func(t *testing.T, body []byte, ref string) {
		m := oci.Manifest{Bytes: body, MediaType: oci.MediaTypeOCIManifest, Digest: digest.FromBytes(body)}
		got := subjectOf(ref, m)
		if got != "" && got.Validate() != nil {
			t.Fatalf("subjectOf(%q, %s) = %q, not a valid digest", ref, body, got)
		}
		var doc struct {
			Subject *struct {
				Digest string `json:"digest"`
			} `json:"subject"`
		}
		declared := ""
		if json.Unmarshal(body, &doc) == nil && doc.Subject != nil && digest.Digest(doc.Subject.Digest).Validate() == nil {
			declared = doc.Subject.Digest
		}
		switch {
		case declared != "" && string(got) != declared:
			t.Fatalf("manifest %s declares subject %s, subjectOf says %q", body, declared, got)
		case declared == "":
			tagged, ok := cosign.ParseSignatureTag(ref)
			if (ok && got != tagged) || (!ok && got != "") {
				t.Fatalf("manifest %s without a valid subject under %q: subjectOf says %q", body, ref, got)
			}
		}
		if hasSubject(m) && (declared == "" || string(got) != declared) {
			t.Fatalf("OCI-Subject would be sent for %s (subject %q, header %q)", body, declared, got)
		}
	})
}
