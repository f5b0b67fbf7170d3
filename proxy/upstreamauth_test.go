package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/portcullis/portcullis/internal/testtool"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/upstream"
)

// upstreamAuthFailed is the start of the message of an upstream's refusal of portcullis's
// credentials, answered 502: never DENIED, which is the policy's word.
const upstreamAuthFailed = "upstream authentication failed"

// TestUpstreamAuthentication pulls through upstreams that demand credentials, and checks
// that nothing the proxy uses upstream ever reaches the client, and that an upstream that
// refuses portcullis's credentials is a 502 that says so, not a DENIED.
func TestUpstreamAuthentication(t *testing.T) {
	const user, pass, token = "mirror", "upstream-s3cret", "upstream-token-0123"
	bearer := func(tokenStatus int) func(string, *atomic.Int64) func(http.ResponseWriter, *http.Request) bool {
		return func(base string, tokens *atomic.Int64) func(w http.ResponseWriter, r *http.Request) bool {
			return func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path == "/token" {
					tokens.Add(1)
					if tokenStatus != http.StatusOK {
						w.WriteHeader(tokenStatus)
						_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"` + pass + ` is wrong, see <script>"}]}`))
						return true
					}
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
		}
	}
	for _, tc := range []struct {
		name    string
		auth    *upstream.BasicAuth
		guard   func(base string, tokens *atomic.Int64) func(w http.ResponseWriter, r *http.Request) bool
		wantOK  bool
		wantErr string // OCI code; for UNKNOWN, a 502 with upstreamAuthFailed
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
			wantErr: "UNKNOWN",
		},
		{
			name: "credentials accepted, access forbidden (403)",
			auth: &upstream.BasicAuth{Username: user, Password: pass},
			guard: func(string, *atomic.Int64) func(http.ResponseWriter, *http.Request) bool {
				return func(w http.ResponseWriter, r *http.Request) bool {
					if r.URL.Path == "/v2/" {
						return false
					}
					w.WriteHeader(http.StatusForbidden)
					return true
				}
			},
			wantErr: "UNKNOWN",
		},
		{
			name:    "token realm refuses the credentials",
			auth:    &upstream.BasicAuth{Username: user, Password: "expired"},
			guard:   bearer(http.StatusUnauthorized),
			wantErr: "UNKNOWN",
		},
		{
			name:   "anonymous bearer token flow",
			guard:  bearer(http.StatusOK),
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
				for _, secret := range []string{pass, token, "Bearer", "Basic ", "<script>"} {
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
				if want == "UNKNOWN" && (resp.StatusCode != http.StatusBadGateway || !strings.Contains(errMessage(t, b), upstreamAuthFailed)) {
					t.Errorf("%s: got %d %s, want 502 with %q", path, resp.StatusCode, b, upstreamAuthFailed)
				}
				if path == "/v2/demo/app/manifests/v1" && tc.wantOK && !bytes.Equal(b, raw) {
					t.Errorf("manifest differs")
				}
			}
			if strings.Contains(tc.name, "token") && tokens.Load() == 0 {
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

func errMessage(t *testing.T, b []byte) string {
	t.Helper()
	var body struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.Unmarshal(b, &body); err != nil || len(body.Errors) == 0 {
		t.Fatalf("not an OCI error body: %q", b)
	}
	return body.Errors[0].Message
}

// policyDenies refuses every manifest as a policy does.
type policyDenies struct{}

func (policyDenies) Admit(_ context.Context, req policy.Request) (policy.Decision, error) {
	return policy.Decision{}, &policy.DenyError{Image: req.Image, Digest: req.Manifest.Digest, Policy: "prod", Reason: "no signature verified by authority \"release-key\""}
}

// TestErrorClasses checks whose fault each failed request is said to be: in the answer (the
// policy's refusal stays 403 DENIED with its reason; an upstream's refusal of portcullis's
// credentials is 502 with upstreamAuthFailed) and in the "error" attribute of the request
// metric.
func TestErrorClasses(t *testing.T) {
	const user, pass = "mirror", "upstream-s3cret"
	for _, tc := range []struct {
		name       string
		gate       proxy.Gate
		auth       *upstream.BasicAuth
		path       string
		wantStatus int
		wantCode   string
		wantMsg    string
		wantClass  string
	}{
		{"admitted", admitAll{}, &upstream.BasicAuth{Username: user, Password: pass}, "/v2/demo/app/manifests/v1", 200, "", "", "none"},
		{"policy refusal", policyDenies{}, &upstream.BasicAuth{Username: user, Password: pass}, "/v2/demo/app/manifests/v1", 403, "DENIED",
			`denied by policy "prod": no signature verified by authority "release-key"`, "denied"},
		{"upstream refuses the credentials", policyDenies{}, &upstream.BasicAuth{Username: user, Password: "wrong"}, "/v2/demo/app/manifests/v1", 502, "UNKNOWN",
			upstreamAuthFailed, "upstream_auth"},
		{"unknown manifest", admitAll{}, &upstream.BasicAuth{Username: user, Password: pass}, "/v2/demo/app/manifests/v2", 404, "MANIFEST_UNKNOWN", "", "client"},
		{"not the distribution API", admitAll{}, nil, "/v3/", 405, "UNSUPPORTED", "", "client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reader := sdkmetric.NewManualReader()
			e := newEnv(t, func(uc *upstream.Config, po *proxy.Options) {
				uc.Auth = tc.auth
				po.Gate = tc.gate
				po.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
			})
			e.push(t, "demo/app:v1", randomImage(t))
			e.faults.set(basicGuard(user, pass))
			resp, b := e.get(t, http.MethodGet, tc.path)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, b, tc.wantStatus)
			}
			if tc.wantCode != "" && errCode(t, b) != tc.wantCode {
				t.Errorf("got %s, want %s", b, tc.wantCode)
			}
			if tc.wantMsg != "" && !strings.Contains(errMessage(t, b), tc.wantMsg) {
				t.Errorf("got %s, want a message with %q", b, tc.wantMsg)
			}
			// The request is counted when its handler returns, which may be after the client
			// has the whole answer (an admitted manifest is sent before the store's records of
			// it are written).
			var got []string
			testtool.Eventually(t, 10*time.Second, func() error {
				if got = requestErrorClasses(t, reader); len(got) == 0 {
					return fmt.Errorf("request metric error classes %q, want [%q]", got, tc.wantClass)
				}
				return nil
			})
			if len(got) != 1 || got[0] != tc.wantClass {
				t.Errorf("request metric error classes %q, want [%q]", got, tc.wantClass)
			}
		})
	}
}

// requestErrorClasses returns the "error" attribute of each portcullis.requests data point.
func requestErrorClasses(t *testing.T, reader *sdkmetric.ManualReader) []string {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "portcullis.requests" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				v, _ := dp.Attributes.Value(attribute.Key("error"))
				out = append(out, v.AsString())
			}
		}
	}
	return out
}
