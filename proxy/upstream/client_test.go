package upstream_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy/upstream"
)

// TestHandshakeOncePerUpstream checks that the upstream's authentication challenge (GET /v2/)
// is asked for once, not once per repository, while bearer tokens stay scoped to each
// repository: the upstream only honours a token for the repository it was issued for; and
// that concurrent first requests for a repository fetch one token between them.
func TestHandshakeOncePerUpstream(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var pings, tokens atomic.Int64
	var guard atomic.Bool
	var base string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !guard.Load() {
			reg.ServeHTTP(w, r)
			return
		}
		switch {
		case r.URL.Path == "/v2/":
			pings.Add(1)
		case r.URL.Path == "/token":
			tokens.Add(1)
			scope := r.URL.Query().Get("scope")
			_, _ = fmt.Fprintf(w, `{"token":%q}`, "tok "+strings.TrimPrefix(scope, "repository:"))
			return
		default:
			repo, _, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/manifests/")
			if ok && r.Header.Get("Authorization") == "Bearer tok "+repo+":pull" {
				reg.ServeHTTP(w, r)
				return
			}
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+base+`/token",service="test"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(srv.Close)
	base = srv.URL
	repos := []string{"demo/a", "demo/b", "demo/c"}
	for _, r := range repos {
		img, err := random.Image(64, 1)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := name.ParseReference(strings.TrimPrefix(srv.URL, "http://")+"/"+r+":v1", name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	guard.Store(true)
	u, err := upstream.New(upstream.Config{Name: "up.invalid", URL: srv.URL, Insecure: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Each repository's first requests come in parallel, as a cold manifest's fetch and its
	// signature lookups do: they share one token.
	for _, r := range repos {
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				if _, err := u.Manifest(t.Context(), r, "v1"); err != nil {
					t.Errorf("%s: %v", r, err)
				}
			})
		}
		wg.Wait()
	}
	if pings.Load() != 1 || tokens.Load() != int64(len(repos)) {
		t.Errorf("%d pings and %d token requests for %d repositories, want 1 and %d", pings.Load(), tokens.Load(), len(repos), len(repos))
	}
}

// TestReferrersAPIAbsenceRemembered checks that an upstream seen without the referrers API
// (a 404 that is not an OCI error) is not asked for it again before the tag schema, while a
// registry that has the API and answers an OCI error is asked every time.
func TestReferrersAPIAbsenceRemembered(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answer  func(w http.ResponseWriter)
		wantAPI int64
	}{
		{"no such route", func(w http.ResponseWriter) { http.NotFound(w, nil) }, 1},
		{"OCI error from an implementation", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}`))
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var api, tagSchema atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch {
				case strings.Contains(r.URL.Path, "/referrers/"):
					api.Add(1)
					tc.answer(w)
				case strings.Contains(r.URL.Path, "/manifests/sha256-"):
					tagSchema.Add(1)
					http.NotFound(w, r)
				case r.URL.Path == "/v2/":
				default:
					http.NotFound(w, r)
				}
			}))
			t.Cleanup(srv.Close)
			u, err := upstream.New(upstream.Config{Name: "up.invalid", URL: srv.URL, Insecure: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{"one", "two"} {
				refs, err := u.Referrers(t.Context(), "demo/app", digest.FromString(s))
				if err != nil || len(refs) != 0 {
					t.Fatalf("referrers: %v, %v; want none", refs, err)
				}
			}
			if api.Load() != tc.wantAPI || tagSchema.Load() != 2 {
				t.Errorf("referrers API asked %d times, tag schema %d; want %d and 2", api.Load(), tagSchema.Load(), tc.wantAPI)
			}
		})
	}
}
