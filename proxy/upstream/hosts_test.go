package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy/upstream"
)

const (
	user, pass = "mirror", "upstream-s3cret"
	goodToken  = "token-for-the-upstream"
)

// foreign is a server on another port of 127.0.0.1, named "localhost" as a hostile upstream
// would name a host of its choosing: it counts the connections made to it and records the
// Authorization headers it receives.
type foreign struct {
	srv   *httptest.Server
	conns atomic.Int64
	mu    sync.Mutex
	auths []string
}

func newForeign(t *testing.T, tls bool) *foreign {
	t.Helper()
	f := &foreign{}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" {
			f.mu.Lock()
			f.auths = append(f.auths, a)
			f.mu.Unlock()
		}
		if r.URL.Path == "/token" {
			_, _ = fmt.Fprintf(w, `{"token":%q}`, goodToken)
			return
		}
		_, _ = io.WriteString(w, "foreign content")
	}))
	f.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.conns.Add(1)
		}
	}
	if tls {
		f.srv.StartTLS()
	} else {
		f.srv.Start()
	}
	t.Cleanup(f.srv.Close)
	return f
}

// host is the server's address as "localhost:port".
func (f *foreign) host() string {
	_, port, _ := net.SplitHostPort(f.srv.Listener.Addr().String())
	return "localhost:" + port
}

func (f *foreign) url() string {
	scheme := "http"
	if f.srv.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + f.host()
}

func (f *foreign) authorizations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.auths...)
}

// hostile is an upstream registry (go-containerregistry's) with one image, demo/app:v1,
// behind a rule that may answer a request itself.
type hostile struct {
	srv   *httptest.Server
	rule  atomic.Pointer[func(w http.ResponseWriter, r *http.Request) bool]
	layer digest.Digest
}

func newHostile(t *testing.T, secure bool) *hostile {
	t.Helper()
	h := &hostile{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rule := h.rule.Load(); rule != nil && (*rule)(w, r) {
			return
		}
		reg.ServeHTTP(w, r)
	})
	if secure {
		h.srv = httptest.NewTLSServer(handler)
	} else {
		h.srv = httptest.NewServer(handler)
	}
	t.Cleanup(h.srv.Close)
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(strings.TrimPrefix(strings.TrimPrefix(h.srv.URL, "http://"), "https://")+"/demo/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(h.srv.Client().Transport)); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	h.layer = digest.Digest(ld.String())
	return h
}

func (h *hostile) set(rule func(w http.ResponseWriter, r *http.Request) bool) { h.rule.Store(&rule) }

// client is a Client for the hostile upstream with Basic credentials (which a token realm
// would receive), trusting the test servers' certificate when the upstream is secure.
func (h *hostile) client(t *testing.T, timeout time.Duration, allowed ...string) *upstream.Client {
	t.Helper()
	c := upstream.Config{Name: "hostile.invalid", URL: h.srv.URL, Auth: &upstream.BasicAuth{Username: user, Password: pass},
		Timeout: timeout, AllowedHosts: allowed}
	var base *http.Transport
	if h.srv.TLS != nil {
		base = h.srv.Client().Transport.(*http.Transport)
	} else {
		c.Insecure = true
	}
	u, err := upstream.New(c, base)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// bearerOnly makes the upstream accept only goodToken, and send clients to realm for it.
func bearerOnly(realm string) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") == "Bearer "+goodToken || r.URL.Path == "/token" {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`",service="hostile"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	}
}

func redirect(match func(*http.Request) bool, to func(*http.Request) string) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if !match(r) {
			return false
		}
		http.Redirect(w, r, to(r), http.StatusTemporaryRedirect)
		return true
	}
}

func pathHas(s string) func(*http.Request) bool {
	return func(r *http.Request) bool { return strings.Contains(r.URL.Path, s) }
}

func pullManifest(ctx context.Context, u *upstream.Client, _ *hostile) error {
	_, err := u.Manifest(ctx, "demo/app", "v1")
	return err
}

func pullBlob(ctx context.Context, u *upstream.Client, h *hostile) error {
	rc, _, err := u.OpenBlob(ctx, "demo/app", h.layer)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.ReadAll(rc)
	return err
}

func pushBlob(ctx context.Context, u *upstream.Client, _ *hostile) error {
	l, err := random.Layer(128, "application/vnd.oci.image.layer.v1.tar")
	if err != nil {
		return err
	}
	return u.PushBlob(ctx, "demo/app", l)
}

// TestNoForeignHosts has a hostile upstream send portcullis to a host it was not configured
// with — by a redirect of the /v2/ handshake, of a manifest or of a blob, by a token realm,
// by a redirect of its token realm, by an upload location, or to plain http when it is
// served over https — and checks that portcullis makes no connection there (counted by the
// foreign host's listener), sends no credential there, and fails with a *ForeignHostError
// that names the host. Allowed hosts are reached, and only an allowed token realm gets the
// credentials.
func TestNoForeignHosts(t *testing.T) {
	for _, tc := range []struct {
		name          string
		secure        bool // the upstream is https (and not insecure)
		foreignTLS    bool
		allow         bool // the foreign host is in allowedHosts
		rule          func(h *hostile, foreign string) func(http.ResponseWriter, *http.Request) bool
		op            func(context.Context, *upstream.Client, *hostile) error
		wantOK        bool
		wantForeignBA bool // the foreign host received the Basic credentials (an allowed realm)
	}{
		{
			name: "handshake redirected", foreignTLS: true,
			rule: func(_ *hostile, f string) func(http.ResponseWriter, *http.Request) bool {
				return redirect(func(r *http.Request) bool { return r.URL.Path == "/v2/" }, func(*http.Request) string { return f + "/v2/" })
			},
			op: pullManifest,
		},
		{
			name: "manifest redirected", foreignTLS: true,
			rule: func(_ *hostile, f string) func(http.ResponseWriter, *http.Request) bool {
				return redirect(pathHas("/manifests/"), func(r *http.Request) string { return f + r.URL.Path })
			},
			op: pullManifest,
		},
		{
			name: "blob redirected", foreignTLS: true,
			rule: func(_ *hostile, f string) func(http.ResponseWriter, *http.Request) bool {
				return redirect(pathHas("/blobs/"), func(r *http.Request) string { return f + r.URL.Path })
			},
			op: pullBlob,
		},
		{
			name: "token realm on a foreign host", foreignTLS: true,
			rule: func(_ *hostile, f string) func(http.ResponseWriter, *http.Request) bool {
				return bearerOnly(f + "/token")
			},
			op: pullManifest,
		},
		{
			name: "token realm redirected to a foreign host", foreignTLS: true,
			rule: func(h *hostile, f string) func(http.ResponseWriter, *http.Request) bool {
				guard := bearerOnly(h.srv.URL + "/token")
				return func(w http.ResponseWriter, r *http.Request) bool {
					if r.URL.Path == "/token" {
						http.Redirect(w, r, f+"/token?"+r.URL.RawQuery, http.StatusTemporaryRedirect)
						return true
					}
					return guard(w, r)
				}
			},
			op: pullManifest,
		},
		{
			name: "upload location on a foreign host", foreignTLS: true,
			rule: func(_ *hostile, f string) func(http.ResponseWriter, *http.Request) bool {
				return func(w http.ResponseWriter, r *http.Request) bool {
					if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/blobs/uploads/") {
						return false
					}
					w.Header().Set("Location", f+"/upload/1")
					w.WriteHeader(http.StatusAccepted)
					return true
				}
			},
			op: pushBlob,
		},
		{
			name: "blob redirected to plain http of a secure upstream", secure: true, allow: true,
			rule: func(_ *hostile, f string) func(http.ResponseWriter, *http.Request) bool {
				return redirect(pathHas("/blobs/"), func(r *http.Request) string { return f + r.URL.Path })
			},
			op: pullBlob,
		},
		{
			name: "token realm on plain http of a secure upstream", secure: true, allow: true,
			rule: func(_ *hostile, f string) func(http.ResponseWriter, *http.Request) bool {
				return bearerOnly(f + "/token")
			},
			op: pullManifest,
		},
		{
			name: "blob redirected to an allowed host", foreignTLS: true, allow: true, wantOK: true,
			rule: func(_ *hostile, f string) func(http.ResponseWriter, *http.Request) bool {
				return redirect(pathHas("/blobs/"), func(r *http.Request) string { return f + r.URL.Path })
			},
			op: pullBlob,
		},
		{
			name: "token realm on an allowed host", foreignTLS: true, allow: true, wantOK: true, wantForeignBA: true,
			rule: func(_ *hostile, f string) func(http.ResponseWriter, *http.Request) bool {
				return bearerOnly(f + "/token")
			},
			op: pullManifest,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHostile(t, tc.secure)
			f := newForeign(t, tc.foreignTLS)
			h.set(tc.rule(h, f.url()))
			var allowed []string
			if tc.allow {
				allowed = []string{f.host()}
			}
			u := h.client(t, 5*time.Second, allowed...)
			err := tc.op(t.Context(), u, h)
			conns, auths := f.conns.Load(), f.authorizations()
			if tc.wantOK {
				if err != nil {
					t.Fatalf("allowed host: %v", err)
				}
				if conns == 0 {
					t.Errorf("the allowed host was never contacted")
				}
				basic := len(auths) == 1 && strings.HasPrefix(auths[0], "Basic ")
				if tc.wantForeignBA != basic || (!tc.wantForeignBA && len(auths) > 0) {
					t.Errorf("the allowed host received Authorization %q; want the Basic credentials: %v", auths, tc.wantForeignBA)
				}
				return
			}
			var fh *upstream.ForeignHostError
			if !errors.As(err, &fh) || !strings.Contains(err.Error(), f.host()) {
				t.Errorf("got error %v, want a *ForeignHostError naming %s", err, f.host())
			}
			if conns != 0 || len(auths) != 0 {
				t.Errorf("the foreign host got %d connections and Authorization %q, want none", conns, auths)
			}
		})
	}
}

// TestEveryCallBounded stalls the upstream at each step of a request — the TLS handshake, the
// /v2/ handshake, the token fetch, the answer itself — and checks that the caller has its
// error within the upstream's timeout, whatever its own context allows (here: no deadline),
// and that concurrent callers share one handshake.
func TestEveryCallBounded(t *testing.T) {
	const timeout = 400 * time.Millisecond
	const slack = 300 * time.Millisecond
	for _, tc := range []struct {
		name  string
		stall func(h *hostile) (match func(*http.Request) bool, rule func(http.ResponseWriter, *http.Request) bool)
		op    func(context.Context, *upstream.Client, *hostile) error
	}{
		{"TLS handshake, manifest", nil, pullManifest}, // an https upstream that accepts connections and says nothing
		{"handshake, manifest", stallPath("/v2/"), pullManifest},
		{"handshake, blob", stallPath("/v2/"), pullBlob},
		{"token fetch, blob", func(h *hostile) (func(*http.Request) bool, func(http.ResponseWriter, *http.Request) bool) {
			return func(r *http.Request) bool { return r.URL.Path == "/token" }, bearerOnly(h.srv.URL + "/token")
		}, pullBlob},
		{"blob answer", func(*hostile) (func(*http.Request) bool, func(http.ResponseWriter, *http.Request) bool) {
			return pathHas("/blobs/"), nil
		}, pullBlob},
		{"tag list", func(*hostile) (func(*http.Request) bool, func(http.ResponseWriter, *http.Request) bool) {
			return pathHas("/tags/list"), nil
		}, func(ctx context.Context, u *upstream.Client, _ *hostile) error {
			_, _, err := u.Tags(ctx, "demo/app", "", "")
			return err
		}},
		{"delete", func(*hostile) (func(*http.Request) bool, func(http.ResponseWriter, *http.Request) bool) {
			return func(r *http.Request) bool { return r.Method == http.MethodDelete }, nil
		}, func(ctx context.Context, u *upstream.Client, _ *hostile) error {
			return u.Delete(ctx, "demo/app", "manifests", "v1")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			var (
				h       *hostile
				u       *upstream.Client
				stalled atomic.Int64
			)
			if tc.stall == nil {
				u = silentTLS(t, timeout, &stalled)
			} else {
				h = newHostile(t, false)
				match, next := tc.stall(h)
				h.set(func(w http.ResponseWriter, r *http.Request) bool {
					if match(r) {
						stalled.Add(1)
						select {
						case <-r.Context().Done():
						case <-release:
						}
						return true
					}
					return next != nil && next(w, r)
				})
				u = h.client(t, timeout)
			}
			const callers = 8
			var wg sync.WaitGroup
			errs := make([]error, callers)
			took := make([]time.Duration, callers)
			for i := range callers {
				wg.Go(func() {
					start := time.Now()
					errs[i] = tc.op(context.Background(), u, h)
					took[i] = time.Since(start)
				})
			}
			wg.Wait()
			for i := range callers {
				var un *upstream.UnavailableError
				if !errors.As(errs[i], &un) || !strings.Contains(un.Brief(), "did not answer in time") {
					t.Errorf("caller %d: got %v, want an *UnavailableError that says the upstream did not answer in time", i, errs[i])
				}
				if took[i] > timeout+slack {
					t.Errorf("caller %d had its error after %s, want within the %s timeout (+%s)", i, took[i], timeout, slack)
				}
			}
			t.Logf("errors after %s (timeout %s): %v", slowest(took), timeout, errs[0])
			if strings.Contains(tc.name, "handshake") && stalled.Load() != 1 {
				t.Errorf("%d handshakes for %d concurrent callers, want 1", stalled.Load(), callers)
			}
		})
	}
}

// silentTLS is a Client for an https upstream that accepts connections (counted in accepted)
// and never answers, not even the TLS handshake.
func silentTLS(t *testing.T, timeout time.Duration, accepted *atomic.Int64) *upstream.Client {
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
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
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
	u, err := upstream.New(upstream.Config{Name: "silent.invalid", URL: "https://" + ln.Addr().String(), Timeout: timeout}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func stallPath(p string) func(*hostile) (func(*http.Request) bool, func(http.ResponseWriter, *http.Request) bool) {
	return func(*hostile) (func(*http.Request) bool, func(http.ResponseWriter, *http.Request) bool) {
		return func(r *http.Request) bool { return r.URL.Path == p }, nil
	}
}

func slowest(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

func TestAllowedHostsValidation(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"auth.docker.io", true},
		{"production.cloudflare.docker.com", true},
		{"registry.example.com:5443", true},
		{"*.quay.io", true},
		{"*.s3.eu-west-1.amazonaws.com:443", true},
		{"10.0.0.7:5001", true},
		{"[fd00::1]:5000", true},
		{"[fd00::1]", true},
		{"localhost", true},
		{"Auth.Docker.IO", true},
		{"", false},
		{"https://auth.docker.io", false},
		{"auth.docker.io/token", false},
		{"user@auth.docker.io", false},
		{"auth.docker.io:", false},
		{"auth.docker.io:99999", false},
		{"auth.docker.io:http", false},
		{"fd00::1", false},
		{"*", false},
		{"*.io", false},
		{"a.*.example.com", false},
		{"exa mple.com", false},
		{"auth.docker.io?x=1", false},
	} {
		t.Run(tc.host, func(t *testing.T) {
			err := upstream.Config{Name: "docker.io", URL: "https://registry-1.docker.io", AllowedHosts: []string{tc.host}}.Validate()
			if (err == nil) != tc.ok {
				t.Errorf("Validate(allowedHosts: [%q]) = %v, want ok %v", tc.host, err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "allowedHosts[0]") {
				t.Errorf("error %q does not name the key", err)
			}
		})
	}
}

// TestAllowedHostsMatching checks which redirect targets an allowedHosts entry admits: the
// entry's port (or the scheme's default port), exact names, wildcards strictly below their
// domain.
func TestAllowedHostsMatching(t *testing.T) {
	for _, tc := range []struct {
		allowed, target string
		ok              bool
	}{
		{"cdn.example.com", "https://cdn.example.com/blob", true},
		{"cdn.example.com", "https://cdn.example.com:443/blob", true},
		{"cdn.example.com", "https://CDN.example.com./blob", true},
		{"cdn.example.com", "https://cdn.example.com:8443/blob", false},
		{"cdn.example.com:8443", "https://cdn.example.com:8443/blob", true},
		{"cdn.example.com", "https://evil-cdn.example.com/blob", false},
		{"cdn.example.com", "https://cdn.example.com.evil.net/blob", false},
		{"cdn.example.com", "http://cdn.example.com/blob", false}, // a secure upstream: https only
		{"*.example.com", "https://a.b.example.com/blob", true},
		{"*.example.com", "https://example.com/blob", false},
		{"*.example.com", "https://aexample.com/blob", false},
		{"[fd00::1]:5000", "https://[fd00:0::1]:5000/blob", true},
		{"10.0.0.7", "https://10.0.0.7/blob", true},
		{"10.0.0.7", "https://10.0.0.8/blob", false},
	} {
		t.Run(tc.allowed+" "+tc.target, func(t *testing.T) {
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.Contains(r.URL.Path, "/blobs/") {
					http.Redirect(w, r, tc.target, http.StatusTemporaryRedirect)
				}
			}))
			t.Cleanup(srv.Close)
			u, err := upstream.New(upstream.Config{Name: "up.invalid", URL: srv.URL, AllowedHosts: []string{tc.allowed}, Timeout: time.Second, Retries: new(int)},
				srv.Client().Transport.(*http.Transport))
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = u.OpenBlob(t.Context(), "demo/app", digest.FromString("x"))
			var fh *upstream.ForeignHostError
			if refused := errors.As(err, &fh); refused == tc.ok {
				t.Errorf("allowedHosts [%s], redirect to %s: got %v, want allowed %v", tc.allowed, tc.target, err, tc.ok)
			}
		})
	}
}

func TestErrorBriefs(t *testing.T) {
	e := &upstream.Error{Upstream: "up.invalid", Status: 401, Codes: []string{"UNAUTHORIZED", "<script>", "DENIED"}, Message: "token s3cret expired, see https://evil.example/"}
	if got, want := e.Brief(), "upstream up.invalid answered 401 Unauthorized (UNAUTHORIZED, DENIED)"; got != want {
		t.Errorf("Brief() = %q, want %q", got, want)
	}
	if !e.AuthFailed() || (&upstream.Error{Status: 404}).AuthFailed() {
		t.Errorf("AuthFailed: 401 is an authentication failure, 404 is not")
	}
	un := &upstream.UnavailableError{Upstream: "up.invalid", Err: fmt.Errorf(`Get "https://cdn.example/blob?X-Amz-Signature=abc": %w`, context.DeadlineExceeded)}
	if got := un.Brief(); strings.Contains(got, "Signature") || !strings.Contains(got, "did not answer in time") {
		t.Errorf("Brief() = %q", got)
	}
}

// TestSecureLocalUpstreamDown checks that an https upstream on a local address that refuses
// connections is reported unavailable: go-containerregistry's handshake also tries plain
// http there, which portcullis refuses without calling it a foreign host.
func TestSecureLocalUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	u, err := upstream.New(upstream.Config{Name: "down.invalid", URL: "https://" + addr, Timeout: time.Second, Retries: new(int)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = u.Manifest(t.Context(), "demo/app", "v1")
	var un *upstream.UnavailableError
	var fh *upstream.ForeignHostError
	if !errors.As(err, &un) || errors.As(err, &fh) || !strings.Contains(un.Brief(), "connection refused") {
		t.Errorf("got %v, want an *UnavailableError (connection refused)", err)
	}
}
