package proxy_test

import (
	"bytes"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/upstream"
)

// TestUpstreamAuthentication pulls through upstreams that demand credentials, and checks
// that nothing the proxy uses upstream ever reaches the client.
func TestUpstreamAuthentication(t *testing.T) {
	const user, pass, token = "mirror", "upstream-s3cret", "upstream-token-0123"
	for _, tc := range []struct {
		name    string
		auth    *upstream.BasicAuth
		guard   func(base string, tokens *atomic.Int64) func(w http.ResponseWriter, r *http.Request) bool
		wantOK  bool
		wantErr string
	}{
		{
			name: "static basic credentials",
			auth: &upstream.BasicAuth{Username: user, Password: pass},
			guard: func(string, *atomic.Int64) func(http.ResponseWriter, *http.Request) bool {
				return basicGuard(user, pass)
			},
			wantOK: true,
		},
		{
			name: "wrong basic credentials",
			auth: &upstream.BasicAuth{Username: user, Password: "wrong"},
			guard: func(string, *atomic.Int64) func(http.ResponseWriter, *http.Request) bool {
				return basicGuard(user, pass)
			},
			wantErr: "DENIED",
		},
		{
			name: "anonymous bearer token flow",
			guard: func(base string, tokens *atomic.Int64) func(http.ResponseWriter, *http.Request) bool {
				return func(w http.ResponseWriter, r *http.Request) bool {
					if r.URL.Path == "/token" {
						tokens.Add(1)
						if !strings.Contains(r.URL.RawQuery, "scope=repository") {
							http.Error(w, "no scope", http.StatusBadRequest)
							return true
						}
						_, _ = w.Write([]byte(`{"token":"` + token + `"}`))
						return true
					}
					if r.Header.Get("Authorization") != "Bearer "+token {
						w.Header().Set("WWW-Authenticate", `Bearer realm="`+base+`/token",service="test"`)
						w.WriteHeader(http.StatusUnauthorized)
						return true
					}
					return false
				}
			},
			wantOK: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tokens atomic.Int64
			e := newEnv(t, func(uc *upstream.Config, _ *proxy.Options) { uc.Auth = tc.auth })
			img := randomImage(t)
			e.push(t, "demo/app:v1", img) // before the guard: pushes are not what is tested
			e.faults.set(tc.guard(e.up.URL, &tokens))
			raw, _ := img.RawManifest()
			layers, _ := img.Layers()
			ld, _ := layers[0].Digest()
			for _, path := range []string{"/v2/demo/app/manifests/v1", "/v2/demo/app/blobs/" + ld.String(), "/v2/demo/app/tags/list"} {
				resp, b := e.get(t, http.MethodGet, path)
				for _, secret := range []string{pass, token, "Bearer", "Basic "} {
					if bytes.Contains(b, []byte(secret)) || strings.Contains(headerText(resp.Header), secret) {
						t.Errorf("%s: the client saw %q", path, secret)
					}
				}
				if tc.wantOK && resp.StatusCode != http.StatusOK {
					t.Errorf("%s: status %d %s", path, resp.StatusCode, b)
				}
				want := tc.wantErr
				if want != "" && strings.Contains(path, "/blobs/") {
					// No manifest was admitted, so no blob may leave: refused without asking.
					want = "BLOB_UNKNOWN"
				}
				if want != "" && (resp.StatusCode == http.StatusOK || errCode(t, b) != want) {
					t.Errorf("%s: got %d %s, want %s", path, resp.StatusCode, b, want)
				}
				if path == "/v2/demo/app/manifests/v1" && tc.wantOK && !bytes.Equal(b, raw) {
					t.Errorf("manifest differs")
				}
			}
			if tc.name == "anonymous bearer token flow" && tokens.Load() == 0 {
				t.Errorf("no token was fetched")
			}
		})
	}
}

func basicGuard(user, pass string) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if u, p, ok := r.BasicAuth(); ok && u == user && p == pass {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="upstream"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	}
}

func headerText(h http.Header) string {
	var sb strings.Builder
	for k, v := range h {
		sb.WriteString(k + ": " + strings.Join(v, ",") + "\n")
	}
	return sb.String()
}
