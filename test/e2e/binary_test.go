package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/internal/testtool"
)

// buildBinary builds cmd/portcullis.
func buildBinary(t *testing.T) string { return testtool.BuildPortcullis(t) }

// TestServeBinaryGracefulShutdown runs `portcullis serve --config` as an operator would, pulls
// through it, and checks that SIGTERM lets an in-flight download finish before exiting.
func TestServeBinaryGracefulShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	up := newUpstream(t)
	img := testImage(t)
	up.pushImage(t, "demo/app:v1", img)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	want, _ := io.ReadAll(rc)

	// A slow front for the upstream: blobs trickle out over about a second.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/blobs/") || r.Method != http.MethodGet {
			up.srv.Config.Handler.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		up.srv.Config.Handler.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(rec.Code)
		for i := 0; i < len(body); i += len(body)/10 + 1 {
			end := min(i+len(body)/10+1, len(body))
			_, _ = w.Write(body[i:end])
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}))
	t.Cleanup(slow.Close)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "portcullis.yaml")
	yml := fmt.Sprintf("listen: 127.0.0.1:0\nlog: {format: json}\nstorage: {driver: filesystem, params: {rootdirectory: %s}}\n"+
		"defaultPolicy: allow\nupstreams:\n  - name: %s\n    url: %s\n    insecure: true\n    default: true\n", filepath.Join(dir, "store"), upstreamName, slow.URL)
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := testtool.Serve(t, bin, cfg)
	host := srv.Host
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + host + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, err, resp)
		}
		resp.Body.Close()
	}

	// The manifest first, as a runtime pulls: it grants the blob.
	resp, err := http.Get("http://" + host + "/v2/demo/app/manifests/v1")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("manifest: %v %v", err, resp)
	}
	resp.Body.Close()

	type result struct {
		body []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + host + "/v2/demo/app/blobs/" + ld.String())
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{b, err}
	}()
	time.Sleep(300 * time.Millisecond) // the download is under way
	if err := srv.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || !bytes.Equal(r.body, want) {
		t.Fatalf("in-flight download during shutdown: err %v, %d of %d bytes", r.err, len(r.body), len(want))
	}
	if err := srv.Exit(20 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, srv.Logs())
	}
	if logs := srv.Logs(); !strings.Contains(logs, `"msg":"request"`) || !strings.Contains(logs, `"repo":"demo/app"`) {
		t.Errorf("no structured request log line:\n%s", logs)
	}
}

// TestHotReload changes a running `portcullis serve` by rewriting its configuration file:
// its default policy, then its push users; an invalid file is rejected and the running
// configuration keeps serving.
func TestHotReload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	up := newUpstream(t)
	up.pushImage(t, "demo/app:v1", testImage(t))
	dir := t.TempDir()
	cfg := filepath.Join(dir, "portcullis.yaml")
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte("ci:"+string(hash)+"\nbot:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(defaultPolicy string, pushers []string, extra string) {
		t.Helper()
		yml := fmt.Sprintf("listen: 127.0.0.1:0\nlog: {format: json}\nstorage: {driver: inmemory}\n"+
			"upstreams:\n  - name: %s\n    url: %s\n    insecure: true\n    default: true\ndefaultPolicy: %s\n%s",
			upstreamName, up.srv.URL, defaultPolicy, extra)
		yml += "push:\n  htpasswd: htpasswd\n  users:\n"
		for _, u := range pushers {
			yml += fmt.Sprintf("    - {name: %s, images: [\"%s/demo/**\"]}\n", u, upstreamName)
		}
		replaceFile(t, cfg, yml)
	}
	write("deny", []string{"ci", "bot"}, "")
	p := testtool.Serve(t, bin, cfg)
	manifest := func() int { return get(t, p.Host, "/v2/demo/app/manifests/v1").status }
	upload := func(user string) func() int {
		return func() int { return startUpload(t, p.Host, user, "pw") }
	}
	eventually(t, p, manifest, http.StatusForbidden, "start with defaultPolicy deny")
	eventually(t, p, upload("bot"), http.StatusAccepted, "start: bot may push")

	write("allow", []string{"ci", "bot"}, "")
	eventually(t, p, manifest, http.StatusOK, "after the file changed to defaultPolicy allow")

	write("allow", []string{"ci"}, "")
	eventually(t, p, upload("bot"), http.StatusForbidden, "after bot was removed from push.users")
	if got := upload("ci")(); got != http.StatusAccepted {
		t.Fatalf("ci, still listed, opening an upload: status %d, want 202", got)
	}

	write("deny", []string{"ci", "bot"}, "policies:\n  - name: broken\n    images: [\"NOT A GLOB\"]\n")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Logs(), "configuration rejected") {
		if time.Now().After(deadline) {
			t.Fatalf("invalid configuration not reported:\n%s", p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, gotBot := manifest(), upload("bot")(); got != http.StatusOK || gotBot != http.StatusForbidden {
		t.Fatalf("after an invalid configuration the old one must keep serving: manifest %d (want 200), bot's upload %d (want 403)", got, gotBot)
	}
}

// TestReloadKeyFile replaces the public key file a policy names — the configuration file
// is never touched — so that an image signed with another key is admitted: with file
// watching, on the change alone; with --watch=false, only on SIGHUP (and not before it,
// which a watcher would have done within a fraction of a second).
func TestReloadKeyFile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	cosign := tool(t, "cosign3")
	up := newUpstream(t)
	oldKey, newKey := cosignKeys(t, cosign), cosignKeys(t, cosign)
	for _, tc := range []struct {
		name  string
		watch bool
	}{
		{"watched", true},
		{"SIGHUP", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := "demo/" + strings.ToLower(tc.name)
			d := up.pushImage(t, repo+":v1", testImage(t))
			cosignSign(t, cosign, newKey, up.host+"/"+repo+"@"+d.String())
			dir := t.TempDir()
			keyFile := filepath.Join(dir, "release.pub")
			copyFile(t, oldKey.pub, keyFile)
			cfg := filepath.Join(dir, "portcullis.yaml")
			replaceFile(t, cfg, fmt.Sprintf("listen: 127.0.0.1:0\nlog: {format: json}\nstorage: {driver: inmemory}\n"+
				"upstreams:\n  - name: %s\n    url: %s\n    insecure: true\n    default: true\n"+
				"policies:\n  - name: release\n    images: [\"%s/**\"]\n    authorities: [{name: release, key: {path: release.pub}}]\n",
				upstreamName, up.srv.URL, upstreamName))
			p := testtool.Serve(t, bin, cfg, fmt.Sprintf("--watch=%v", tc.watch))
			manifest := func() int { return get(t, p.Host, "/v2/"+repo+"/manifests/v1").status }
			eventually(t, p, manifest, http.StatusForbidden, "signed with a key the policy does not name")

			tmp := keyFile + ".new"
			copyFile(t, newKey.pub, tmp)
			if err := os.Rename(tmp, keyFile); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if !tc.watch {
				time.Sleep(1500 * time.Millisecond)
				if got := manifest(); got != http.StatusForbidden {
					t.Fatalf("without file watching and before SIGHUP: status %d, want the old key's 403", got)
				}
				start = time.Now()
				if err := p.Signal(syscall.SIGHUP); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, p, manifest, http.StatusOK, "after the key file was replaced")
			t.Logf("%s: the new key applied %s after the change", tc.name, time.Since(start).Round(time.Millisecond))
		})
	}
}

// eventually waits up to 10s for f to return want.
func eventually(t *testing.T, p *testtool.Served, f func() int, want int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for got := f(); got != want; got = f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: status %d, want %d\n%s", what, got, want, p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// replaceFile writes content to path as editors and ConfigMaps do: a new file renamed over.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startUpload opens an upload session as user and returns the status: 202 when the user may
// push to demo/app.
func startUpload(t *testing.T, host, user, pass string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+host+"/v2/demo/app/blobs/uploads/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestServeTLS serves HTTPS with the configured certificate.
func TestServeTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	up := newUpstream(t)
	d := up.pushImage(t, "demo/app:v1", testImage(t))
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "portcullis"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	_ = os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cfg := filepath.Join(dir, "portcullis.yaml")
	yml := fmt.Sprintf("listen: 127.0.0.1:0\ntls: {cert: %s, key: %s}\nstorage: {driver: inmemory}\ndefaultPolicy: allow\n"+
		"upstreams:\n  - name: %s\n    url: %s\n    insecure: true\n    default: true\n", certPath, keyPath, upstreamName, up.srv.URL)
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	host := testtool.Serve(t, bin, cfg).Host
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + host + "/v2/demo/app/manifests/v1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("HTTPS manifest: %d %s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
	}
	if resp, err := http.Get("http://" + host + "/v2/"); err == nil && resp.StatusCode == http.StatusOK {
		t.Errorf("plain HTTP answered on the TLS port")
	}
}

// TestDemo runs the README's first command: offline, no configuration.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	out, err := testtool.Run(t, "", buildBinary(t), nil, "demo")
	if err != nil {
		t.Fatalf("portcullis demo: %v\n%s", err, out)
	}
	for _, want := range []string{"ADMITTED   demo.invalid/demo/signed:v1", "DENIED     demo.invalid/demo/unsigned:v1", `denied by policy "demo"`} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
