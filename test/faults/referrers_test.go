package faults

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestReferrersSecondPage serves the referrers API in pages (Link: rel="next"), with the
// image's signature only on the second page: portcullis follows the pagination and admits
// the image; when the pages never end, it decides nothing rather than deny or admit on a
// partial list.
func TestReferrersSecondPage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		endless bool
	}{{"signature on page 2", false}, {"pages without end", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, opts{})
			im := e.push("paged/app:v1")
			e.signBundle(im) // the upstream keeps it in the referrers tag schema index
			tagIndex := "/v2/" + im.repo + "/manifests/sha256-" + im.digest.Hex
			api := "/v2/" + im.repo + "/referrers/" + im.digest.String()
			var (
				mu    sync.Mutex
				pages []string
			)
			e.f.set(func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != api {
					return false
				}
				mu.Lock()
				pages = append(pages, r.URL.RawQuery)
				n := len(pages)
				mu.Unlock()
				w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
				if r.URL.Query().Get("page") == "" || tc.endless {
					w.Header().Set("Link", fmt.Sprintf(`<%s?page=%d>; rel="next"`, api, n+1))
					_, _ = fmt.Fprint(w, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
					return true
				}
				rec := httptest.NewRecorder()
				e.f.next.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tagIndex, nil))
				_, _ = w.Write(rec.Body.Bytes())
				return true
			}, func(w http.ResponseWriter, r *http.Request) bool {
				// The tag schema fallback is not what this test reads.
				if r.URL.Path == tagIndex {
					http.NotFound(w, r)
					return true
				}
				return false
			})
			got := e.get("/v2/paged/app/manifests/" + im.digest.String())
			mu.Lock()
			defer mu.Unlock()
			if tc.endless {
				if got.status == http.StatusOK || got.status == http.StatusForbidden {
					t.Fatalf("endless pages: %d %s, want no decision (5xx)", got.status, got.body)
				}
				if len(pages) != 16 {
					t.Errorf("followed %d pages, want the limit of 16", len(pages))
				}
				return
			}
			if got.status != http.StatusOK {
				t.Fatalf("signature on page 2: %d %s", got.status, got.body)
			}
			if len(pages) != 2 || !strings.Contains(pages[1], "page=2") {
				t.Errorf("pages asked: %q", pages)
			}
		})
	}
}
