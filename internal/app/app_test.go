package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/internal/app"
	"github.com/portcullis/portcullis/internal/testtool"
)

// fixture is a configuration directory: the file and the files it names.
type fixture struct {
	t    *testing.T
	dir  string
	path string
}

func newFixture(t *testing.T) *fixture {
	dir := t.TempDir()
	return &fixture{t: t, dir: dir, path: filepath.Join(dir, "portcullis.yaml")}
}

func (f *fixture) write(name, content string) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, name), []byte(content), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) load() *config.Config {
	f.t.Helper()
	cfg, err := config.Load(f.path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return cfg
}

func htpasswd(t *testing.T, users ...string) string {
	t.Helper()
	var b strings.Builder
	for _, u := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(u+"-pw"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	return b.String()
}

// startUpload asks a to open an upload session as user and returns the status.
func startUpload(t *testing.T, a *app.App, user, pass string) int {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/v2/team/app/blobs/uploads/", nil)
	r.SetBasicAuth(user, pass)
	w := httptest.NewRecorder()
	a.Handler.ServeHTTP(w, r)
	return w.Code
}

const base = `listen: 127.0.0.1:0
storage: {driver: inmemory}
defaultPolicy: allow
upstreams:
  - {name: registry.test, url: %s, insecure: true, default: true%s}
`

// TestReloadPushUsers: Reload applies a changed users list and a changed htpasswd file; a
// configuration that fails to build leaves the running one serving.
func TestReloadPushUsers(t *testing.T) {
	f := newFixture(t)
	up := httptest.NewServer(testtool.Distribution(t))
	t.Cleanup(up.Close)
	users := func(names ...string) string {
		s := "push:\n  htpasswd: htpasswd\n  users:\n"
		for _, n := range names {
			s += "    - {name: " + n + ", images: [\"registry.test/team/**\"]}\n"
		}
		return s
	}
	f.write("htpasswd", htpasswd(t, "ci", "bot"))
	f.write("portcullis.yaml", fmt.Sprintf(base, up.URL, "")+users("ci", "bot"))
	ctx := context.Background()
	a, err := app.New(ctx, f.load(), app.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	steps := []struct {
		name      string
		yml       string // the configuration file after the step ("" unchanged)
		htpasswd  string // the htpasswd file after the step ("" unchanged)
		reloadErr string // what Reload's error must mention; "" for none
		want      map[string]int
	}{
		{"start", "", "", "", map[string]int{"ci": 202, "bot": 202}},
		{"bot removed from the users", fmt.Sprintf(base, up.URL, "") + users("ci"), "", "", map[string]int{"ci": 202, "bot": 403}},
		{"ci removed from the htpasswd file", "", htpasswd(t, "bot"), "not in the htpasswd file", map[string]int{"ci": 202, "bot": 403}},
		{"ci given back, htpasswd without ci", fmt.Sprintf(base, up.URL, "") + users("bot"), "", "", map[string]int{"ci": 401, "bot": 202}},
		{"a key file that is missing", fmt.Sprintf(base, up.URL, "") + users("ci") +
			"policies:\n  - {name: p, images: [\"registry.test/**\"], authorities: [{name: k, key: {path: missing.pub}}]}\n",
			htpasswd(t, "ci"), "missing.pub", map[string]int{"ci": 401, "bot": 202}},
	}
	for _, s := range steps {
		if s.yml != "" {
			f.write("portcullis.yaml", s.yml)
		}
		if s.htpasswd != "" {
			f.write("htpasswd", s.htpasswd)
		}
		if s.name != "start" {
			began := time.Now()
			cfg, err := config.Load(f.path, nil)
			if err == nil {
				err = a.Reload(ctx, cfg)
			}
			t.Logf("%s: load and reload took %s", s.name, time.Since(began).Round(time.Microsecond))
			if s.reloadErr == "" && err != nil {
				t.Fatalf("%s: reload: %v", s.name, err)
			}
			if s.reloadErr != "" && (err == nil || !strings.Contains(err.Error(), s.reloadErr)) {
				t.Fatalf("%s: reload error %v, want one mentioning %q", s.name, err, s.reloadErr)
			}
		}
		for user, want := range s.want {
			if got := startUpload(t, a, user, user+"-pw"); got != want {
				t.Errorf("%s: %s opening an upload: status %d, want %d", s.name, user, got, want)
			}
		}
	}
}

// TestReloadUpstreamPasswordFile: the upstream's password comes from passwordFile (one
// trailing newline dropped) and a changed file applies on reload.
func TestReloadUpstreamPasswordFile(t *testing.T) {
	var lastPassword atomic.Value
	reg := testtool.Distribution(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		lastPassword.Store(p)
		if !ok || u != "mirror" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"no"}]}`, http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	f := newFixture(t)
	f.write("portcullis.yaml", fmt.Sprintf(base, up.URL, ", auth: {username: mirror, passwordFile: secret/pw}"))
	if err := os.Mkdir(filepath.Join(f.dir, "secret"), 0o700); err != nil {
		t.Fatal(err)
	}
	f.write("secret/pw", "wrong\n")
	ctx := context.Background()
	a, err := app.New(ctx, f.load(), app.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	get := func() int {
		w := httptest.NewRecorder()
		a.Handler.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v2/team/app/manifests/v1", nil))
		return w.Code
	}
	if got := get(); got != http.StatusBadGateway && got != http.StatusServiceUnavailable {
		t.Fatalf("with the wrong password: status %d, want 502 or 503", got)
	}
	if p, _ := lastPassword.Load().(string); p != "wrong" {
		t.Fatalf("upstream saw password %q, want the file's content less its newline", p)
	}
	f.write("secret/pw", "s3cret\n")
	if err := a.Reload(ctx, f.load()); err != nil {
		t.Fatal(err)
	}
	// The repository does not exist upstream: 404 means the upstream took the credentials.
	if got := get(); got != http.StatusNotFound {
		t.Fatalf("after the password file changed and a reload: status %d, want 404 from the upstream", got)
	}
}

// TestKeyLoadingTimeout: a KMS that does not answer fails the start within keys.timeout,
// and a reload to it leaves the running configuration.
func TestKeyLoadingTimeout(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "sigstore-kms-hang"), []byte("#!/bin/sh\nexec sleep 20 2>/dev/null\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	f := newFixture(t)
	hanging := "keys: {timeout: 500ms, allowKMSPlugins: true}\n" +
		"policies:\n  - {name: p, images: [\"registry.test/**\"], authorities: [{name: k, key: {kms: \"hang://key\"}}]}\n"
	f.write("portcullis.yaml", fmt.Sprintf(base, "http://127.0.0.1:1", "")+hanging)
	ctx := context.Background()
	start := time.Now()
	_, err := app.New(ctx, f.load(), app.Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "keys.timeout") || time.Since(start) > 5*time.Second {
		t.Fatalf("start with a hanging KMS: error %v after %s, want a keys.timeout error within about 500ms", err, time.Since(start))
	}

	f.write("portcullis.yaml", fmt.Sprintf(base, "http://127.0.0.1:1", ""))
	a, err := app.New(ctx, f.load(), app.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	version := a.Engine().Set().Version()
	f.write("portcullis.yaml", fmt.Sprintf(base, "http://127.0.0.1:1", "")+hanging)
	if err := a.Reload(ctx, f.load()); err == nil {
		t.Fatal("reload to a hanging KMS succeeded")
	}
	if got := a.Engine().Set().Version(); got != version {
		t.Errorf("a failed reload changed the policies: version %s, want %s", got, version)
	}
}

// TestKMSPluginsOptIn: a policy key from a KMS no linked provider serves is refused without
// running the sigstore-kms-* plugin on PATH, unless keys.allowKMSPlugins opts in.
func TestKMSPluginsOptIn(t *testing.T) {
	bin := t.TempDir()
	ran := filepath.Join(bin, "ran")
	if err := os.WriteFile(filepath.Join(bin, "sigstore-kms-corp"), []byte("#!/bin/sh\ntouch "+ran+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	for _, tc := range []struct {
		name    string
		allow   bool
		wantErr string
	}{
		{"not allowed", false, `no KMS provider for "corp://release"`},
		{"allowed", true, "policies[0].authorities[0].key.kms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_ = os.Remove(ran)
			f := newFixture(t)
			f.write("portcullis.yaml", fmt.Sprintf(base, "http://127.0.0.1:1", "")+fmt.Sprintf("keys: {allowKMSPlugins: %v}\n", tc.allow)+
				"policies:\n  - {name: p, images: [\"registry.test/**\"], authorities: [{name: k, key: {kms: \"corp://release\"}}]}\n")
			_, err := app.New(context.Background(), f.load(), app.Options{Logger: slog.New(slog.DiscardHandler)})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("start: error %v, want one mentioning %q", err, tc.wantErr)
			}
			if _, err := os.Stat(ran); (err == nil) != tc.allow {
				t.Errorf("plugin executed = %v, want %v", err == nil, tc.allow)
			}
		})
	}
}

// TestLoginMetrics: push logins are counted on /metrics, and the counts survive a reload
// that rebuilds the push users.
func TestLoginMetrics(t *testing.T) {
	f := newFixture(t)
	f.write("htpasswd", htpasswd(t, "ci"))
	push := "push:\n  htpasswd: htpasswd\n  loginThrottle: {burst: 2, every: 1h}\n  users: [{name: ci, images: [\"registry.test/team/**\"]}]\n"
	f.write("portcullis.yaml", fmt.Sprintf(base, "http://127.0.0.1:1", "")+push)
	a, err := app.New(context.Background(), f.load(), app.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	for range 3 {
		startUpload(t, a, "ci", "wrong")
	}
	metrics := func() string {
		w := httptest.NewRecorder()
		a.Handler.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		return w.Body.String()
	}
	want := []string{
		`portcullis_push_login_hashes_total{otel_scope_name="github.com/portcullis/portcullis",otel_scope_schema_url="",otel_scope_version=""} 2`,
		`portcullis_push_login_refused_total{otel_scope_name="github.com/portcullis/portcullis",otel_scope_schema_url="",otel_scope_version="",reason="credentials"} 2`,
		`portcullis_push_login_refused_total{otel_scope_name="github.com/portcullis/portcullis",otel_scope_schema_url="",otel_scope_version="",reason="throttled"} 1`,
	}
	check := func(when string) {
		t.Helper()
		m := metrics()
		for _, w := range want {
			if !strings.Contains(m, w) {
				t.Errorf("%s: /metrics lacks %s; has:\n%s", when, w, grepLines(m, "portcullis_push_login"))
			}
		}
	}
	check("after 3 bad logins with a burst of 2")
	f.write("htpasswd", htpasswd(t, "ci", "bot"))
	if err := a.Reload(context.Background(), f.load()); err != nil {
		t.Fatal(err)
	}
	check("after a reload with a new htpasswd file")
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// lockedBuffer is a strings.Builder safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func writeCert(t *testing.T, f *fixture, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	f.write("tls.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	f.write("tls.key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
}

// TestReloadCertificateAndRestartKeys: a renewed certificate serves after a reload; a
// changed listen address is logged as needing a restart.
func TestReloadCertificateAndRestartKeys(t *testing.T) {
	f := newFixture(t)
	writeCert(t, f, "first")
	f.write("portcullis.yaml", fmt.Sprintf(base, "http://127.0.0.1:1", "")+"tls: {cert: tls.crt, key: tls.key}\n")
	logs := &lockedBuffer{}
	a, err := app.New(context.Background(), f.load(), app.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	served := func() string {
		t.Helper()
		c, err := a.TLSConfig().GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName
	}
	tlsConfig := a.TLSConfig() // as serve holds it
	if got := served(); got != "first" {
		t.Fatalf("certificate %q, want first", got)
	}
	writeCert(t, f, "renewed")
	f.write("portcullis.yaml", strings.Replace(fmt.Sprintf(base, "http://127.0.0.1:1", ""), "127.0.0.1:0", "127.0.0.1:6000", 1)+"tls: {cert: tls.crt, key: tls.key}\n")
	if err := a.Reload(context.Background(), f.load()); err != nil {
		t.Fatal(err)
	}
	if c, _ := tlsConfig.GetCertificate(&tls.ClientHelloInfo{}); c == nil {
		t.Fatal("no certificate after the reload")
	}
	if got := served(); got != "renewed" {
		t.Errorf("after the reload the certificate is %q, want renewed", got)
	}
	if l := logs.String(); !strings.Contains(l, "needs a restart") || !strings.Contains(l, "key=listen") {
		t.Errorf("a changed listen address was not logged as needing a restart:\n%s", l)
	}
}
