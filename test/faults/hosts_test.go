package faults

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/portcullis/portcullis/internal/testtool"
)

// Credentials portcullis has for the hostile upstream in these tests.
const (
	upUser, upPass = "mirror", "upstream-s3cret"
	upToken        = "upstream-token"
)

// hostsOpts configures newHostsEnv.
type hostsOpts struct {
	url      string        // the upstream's URL; "" for the faulty upstream (plain http, insecure)
	timeout  time.Duration // the upstream's timeout; default 2s
	password string        // the password portcullis has for the upstream; default upPass
	allowed  []string      // allowedHosts
}

// newHostsEnv is newEnv with an upstream that portcullis reaches with Basic credentials
// (upUser and o.password) and o.allowed as its allowedHosts. The caller calls
// checkGoroutines first, before it starts servers of its own (whose cleanups must run
// before the check).
func newHostsEnv(t *testing.T, o hostsOpts) *env {
	t.Helper()
	if o.timeout == 0 {
		o.timeout = 2 * time.Second
	}
	if o.password == "" {
		o.password = upPass
	}
	e := &env{t: t, f: &faulty{next: testtool.Distribution(t)}}
	e.up = httptest.NewServer(e.f)
	e.host = strings.TrimPrefix(e.up.URL, "http://")
	insecure := o.url == ""
	if insecure {
		o.url = e.up.URL
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e.key, _ = signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	e.pub = priv.Public()
	pem, _ := cryptoutils.MarshalPublicKeyToPEM(e.pub)
	pubPath := filepath.Join(t.TempDir(), "cosign.pub")
	if err := os.WriteFile(pubPath, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	allowed, _ := json.Marshal(o.allowed)
	if o.allowed == nil {
		allowed = []byte("[]")
	}
	yml := fmt.Sprintf(`listen: 127.0.0.1:0
log: {format: text, level: error}
storage: {driver: inmemory}
upstreams:
  - name: %[1]s
    url: %[2]s
    insecure: %[3]t
    default: true
    timeout: %[4]s
    retries: 0
    auth: {username: %[5]s, password: %[6]s}
    allowedHosts: %[7]s
policies:
  - name: signed
    images: ["%[1]s/**"]
    authorities:
      - name: key
        key: {path: %[8]s}
defaultPolicy: deny
`, upstreamName, o.url, insecure, o.timeout, upUser, o.password, allowed, pubPath)
	e.app = testtool.Portcullis(t, yml, nil)
	e.px = httptest.NewServer(e.app.Handler)
	e.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	t.Cleanup(func() {
		e.client.CloseIdleConnections()
		e.px.Close()
		e.up.CloseClientConnections()
		e.up.Close()
	})
	return e
}

// basicOnly is the upstream demanding portcullis's Basic credentials.
func basicOnly(w http.ResponseWriter, r *http.Request) bool {
	if u, p, ok := r.BasicAuth(); ok && u == upUser && p == upPass {
		return false
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="faulty"`)
	w.WriteHeader(http.StatusUnauthorized)
	return true
}

// foreignHost is an https server on another port of 127.0.0.1, named "localhost" as a
// hostile upstream would name a host of its choosing. It counts the connections made to it
// and the Authorization headers it receives, and would hand out a token and content.
type foreignHost struct {
	srv   *httptest.Server
	conns atomic.Int64
	mu    sync.Mutex
	auths []string
}

func newForeignHost(t *testing.T) *foreignHost {
	t.Helper()
	f := &foreignHost{}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" {
			f.mu.Lock()
			f.auths = append(f.auths, a)
			f.mu.Unlock()
		}
		if r.URL.Path == "/token" {
			_, _ = fmt.Fprintf(w, `{"token":%q}`, upToken)
			return
		}
		_, _ = io.WriteString(w, "foreign content")
	}))
	f.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.conns.Add(1)
		}
	}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *foreignHost) host() string {
	_, port, _ := net.SplitHostPort(f.srv.Listener.Addr().String())
	return "localhost:" + port
}

func (f *foreignHost) url() string { return "https://" + f.host() }

// TestNoForeignHosts has the upstream, which portcullis reaches with Basic credentials, send
// portcullis to a host the configuration never named — a redirect of its /v2/ handshake, of a
// blob of an admitted image, a token realm — and checks that the client gets a 502 that
// names the refused host, that the foreign host's listener saw no connection (so no
// credential), and that the same host, once in allowedHosts, is reached.
func TestNoForeignHosts(t *testing.T) {
	toForeign := func(match func(*http.Request) bool, to func(*http.Request) string) rule {
		return func(w http.ResponseWriter, r *http.Request) bool {
			if !match(r) {
				return false
			}
			http.Redirect(w, r, to(r), http.StatusTemporaryRedirect)
			return true
		}
	}
	for _, tc := range []struct {
		name  string
		rules func(f *foreignHost) []rule
		path  func(im image, layer string) string
	}{
		{
			name: "handshake redirected",
			rules: func(f *foreignHost) []rule {
				return []rule{toForeign(func(r *http.Request) bool { return r.URL.Path == "/v2/" },
					func(*http.Request) string { return f.url() + "/v2/" }), basicOnly}
			},
			path: func(image, string) string { return "/v2/hosts/app/manifests/v1" },
		},
		{
			name: "blob of an admitted image redirected",
			rules: func(f *foreignHost) []rule {
				return []rule{basicOnly, toForeign(pathHas("/blobs/"), func(r *http.Request) string { return f.url() + r.URL.Path })}
			},
			path: func(_ image, layer string) string { return "/v2/hosts/app/blobs/" + layer },
		},
		{
			name: "token realm on a foreign host",
			rules: func(f *foreignHost) []rule {
				return []rule{func(w http.ResponseWriter, r *http.Request) bool {
					if r.Header.Get("Authorization") == "Bearer "+upToken {
						return false
					}
					w.Header().Set("WWW-Authenticate", `Bearer realm="`+f.url()+`/token",service="faulty"`)
					w.WriteHeader(http.StatusUnauthorized)
					return true
				}}
			},
			path: func(image, string) string { return "/v2/hosts/app/manifests/v1" },
		},
	} {
		for _, allow := range []bool{false, true} {
			name := tc.name
			if allow {
				name += " and allowed"
			}
			t.Run(name, func(t *testing.T) {
				checkGoroutines(t)
				f := newForeignHost(t)
				o := hostsOpts{}
				if allow {
					o.allowed = []string{f.host()}
				}
				e := newHostsEnv(t, o)
				im := e.push("hosts/app:v1")
				e.signBundle(im)
				layers, _ := im.img.Layers()
				ld, _ := layers[0].Digest()
				if strings.Contains(tc.name, "blob") {
					// Admit the image first, so that its blobs may be served at all.
					e.f.set(basicOnly)
					e.mustServe("/v2/hosts/app/manifests/"+im.digest.String(), im.manifest)
				}
				e.f.set(tc.rules(f)...)
				r := e.get(tc.path(im, ld.String()))
				f.mu.Lock()
				auths := f.auths
				f.mu.Unlock()
				if allow {
					// Reached: what it answers is not an image, so no 200 is expected.
					if f.conns.Load() == 0 {
						t.Errorf("the allowed host was never contacted; client got %d %.300s", r.status, r.body)
					}
					for _, a := range auths {
						if !strings.Contains(tc.name, "token realm") || !strings.HasPrefix(a, "Basic ") {
							t.Errorf("the allowed host received Authorization %q", a)
						}
					}
					return
				}
				if r.err != nil || r.status != http.StatusBadGateway || ociError(r.body) == "" ||
					!strings.Contains(string(r.body), "refusing") || !strings.Contains(string(r.body), f.host()) {
					t.Errorf("got %d %v %.400s, want 502 naming the refused host %s", r.status, r.err, r.body, f.host())
				}
				if n := f.conns.Load(); n != 0 || len(auths) != 0 {
					t.Errorf("the foreign host got %d connections and Authorization %q, want none", n, auths)
				}
				if strings.Contains(string(r.body), upPass) || strings.Contains(string(r.body), "Basic ") {
					t.Errorf("the client saw the credentials: %s", r.body)
				}
				t.Logf("client got %d %s", r.status, r.body)
			})
		}
	}
}

// TestStalledHandshake stalls the upstream's handshake — GET /v2/ never answered, or an https
// upstream that accepts the connection and never completes TLS — and checks that the client
// has its error (503) within the upstream's configured timeout.
func TestStalledHandshake(t *testing.T) {
	const timeout = time.Second
	const slack = 500 * time.Millisecond
	for _, tc := range []struct {
		name   string
		silent bool // an https upstream that accepts and says nothing
	}{{"GET /v2/ never answered", false}, {"TLS handshake never completed", true}} {
		t.Run(tc.name, func(t *testing.T) {
			checkGoroutines(t)
			o := hostsOpts{timeout: timeout}
			var accepted atomic.Int64
			if tc.silent {
				o.url = "https://" + silentListener(t, &accepted)
			}
			e := newHostsEnv(t, o)
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			e.f.set(func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != "/v2/" {
					return false
				}
				accepted.Add(1)
				select {
				case <-r.Context().Done():
				case <-release:
				}
				return true
			})
			start := time.Now()
			r := e.get("/v2/stalled/app/manifests/v1")
			took := time.Since(start)
			if r.err != nil || r.status != http.StatusServiceUnavailable || ociError(r.body) != "UNAVAILABLE" {
				t.Errorf("got %d %v %.300s, want 503 UNAVAILABLE", r.status, r.err, r.body)
			}
			if took > timeout+slack {
				t.Errorf("the client had its error after %s, want within the %s timeout (+%s)", took, timeout, slack)
			}
			if accepted.Load() == 0 {
				t.Errorf("the stalled handshake was never asked for")
			}
			t.Logf("client had %d after %s (timeout %s): %s", r.status, took, timeout, r.body)
		})
	}
}

// silentListener accepts connections on 127.0.0.1 (counted in accepted) and never writes;
// it returns its address.
func silentListener(t *testing.T, accepted *atomic.Int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// TestUpstreamAuthenticationFailed checks whose fault a refusal is said to be: the policy's
// refusal of an unsigned image stays 403 DENIED with its reason, while an upstream that
// stops accepting portcullis's credentials (or never did) is a 502 "upstream
// authentication failed" that quotes neither the credentials nor the upstream's words.
func TestUpstreamAuthenticationFailed(t *testing.T) {
	t.Run("credentials revoked", func(t *testing.T) {
		checkGoroutines(t)
		e := newHostsEnv(t, hostsOpts{})
		signed := e.push("auth/signed:v1")
		e.signBundle(signed)
		e.push("auth/unsigned:v1")
		e.f.set(basicOnly)
		e.mustServe("/v2/auth/signed/manifests/v1", signed.manifest)
		r := e.mustRefuse("/v2/auth/unsigned/manifests/v1", http.StatusForbidden)
		if ociError(r.body) != "DENIED" || !strings.Contains(string(r.body), `denied by policy \"signed\"`) {
			t.Errorf("policy refusal: got %d %s, want 403 DENIED with the policy's reason", r.status, r.body)
		}
		// The upstream no longer accepts the credentials.
		e.f.set(func(w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("WWW-Authenticate", `Basic realm="faulty"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"password for mirror expired <a href=https://evil.example/>renew</a>"}]}`)
			return true
		})
		for _, path := range []string{"/v2/auth/signed/manifests/v1", "/v2/auth/unsigned/manifests/v1", "/v2/auth/signed/tags/list"} {
			r := e.mustRefuse(path, http.StatusBadGateway)
			checkUpstreamAuthFailed(t, path, r)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		checkGoroutines(t)
		e := newHostsEnv(t, hostsOpts{password: "wrong"})
		im := e.push("auth/signed:v1")
		e.signBundle(im)
		e.f.set(basicOnly)
		r := e.mustRefuse("/v2/auth/signed/manifests/v1", http.StatusBadGateway)
		checkUpstreamAuthFailed(t, "/v2/auth/signed/manifests/v1", r)
	})
}

func checkUpstreamAuthFailed(t *testing.T, path string, r response) {
	t.Helper()
	body := string(r.body)
	if ociError(r.body) == "DENIED" || !strings.Contains(body, "upstream authentication failed") {
		t.Errorf("%s: got %d %s, want 502 with \"upstream authentication failed\"", path, r.status, body)
	}
	for _, leak := range []string{upPass, "wrong", "expired", "evil.example", "Basic "} {
		if strings.Contains(body, leak) {
			t.Errorf("%s: the client saw %q: %s", path, leak, body)
		}
	}
}
