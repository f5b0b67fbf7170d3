package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/portcullis/portcullis/internal/testtool"
)

// reachableName is the registry the client tests pull from: an upstream every runtime can
// reach directly, so that a runtime falling back past portcullis is seen, not hidden by a
// name that does not resolve. It is portless (port 80) so that it can also be a path
// segment of a registries.conf location, which cannot carry a port.
const reachableName = "127.0.0.1"

// clientsUserAgent is what portcullis's own upstream requests carry in their User-Agent
// (proxy/upstream.go); any other request at the upstream comes from a runtime itself.
const clientsUserAgent = "portcullis"

// request is one request the reachable upstream received.
type request struct {
	method, path, userAgent string
}

func (r request) String() string { return r.method + " " + r.path + " (" + r.userAgent + ")" }

// reachable is an in-process distribution registry on 127.0.0.1:80 that records every
// request it receives.
type reachable struct {
	h    http.Handler
	mu   sync.Mutex
	reqs []request
}

func newReachable(t *testing.T) *reachable {
	t.Helper()
	r := &reachable{h: testtool.Distribution(t)}
	ln := testtool.ListenPort80(t, reachableName)
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

func (r *reachable) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, request{req.Method, req.URL.RequestURI(), req.UserAgent()})
	r.mu.Unlock()
	r.h.ServeHTTP(w, req)
}

// mark returns a position in the request log, for since.
func (r *reachable) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

// since returns the requests received after mark m: all of them, and those not made by
// portcullis (by a runtime itself).
func (r *reachable) since(m int) (all, runtime []request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	all = append(all, r.reqs[m:]...)
	for _, q := range all {
		if !strings.Contains(q.userAgent, clientsUserAgent) {
			runtime = append(runtime, q)
		}
	}
	return all, runtime
}

// push puts img at 127.0.0.1/repo:v1 and returns its reference by digest.
func (r *reachable) push(t *testing.T, repo string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(reachableName+"/"+repo+":v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return reachableName + "/" + repo + "@" + d.String()
}

// tlsProxy is portcullis serving HTTPS with a certificate for 127.0.0.1 issued by a test CA,
// in front of the reachable upstream.
type tlsProxy struct {
	host   string // 127.0.0.1:port
	caPath string // the CA's certificate (PEM)
	caDir  string // a certs.d-style directory holding only ca.crt
	// stop shuts portcullis down as SIGTERM does: requests finish, store writes complete.
	stop func()
}

// startTLSProxy runs portcullis with one upstream named 127.0.0.1 and the policy yamlExtra,
// serving HTTPS as `portcullis serve` does with tls: {cert, key}.
func startTLSProxy(t *testing.T, yamlExtra string) *tlsProxy {
	t.Helper()
	return startTLSProxyStore(t, filepath.Join(t.TempDir(), "store"), yamlExtra)
}

// startTLSProxyStore is startTLSProxy with its filesystem store at store.
func startTLSProxyStore(t *testing.T, store, yamlExtra string) *tlsProxy {
	t.Helper()
	dir := t.TempDir()
	caDir := filepath.Join(dir, "certs")
	if err := os.Mkdir(caDir, 0o755); err != nil {
		t.Fatal(err)
	}
	px := &tlsProxy{caPath: filepath.Join(caDir, "ca.crt"), caDir: caDir}
	certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeTestPKI(t, px.caPath, certPath, keyPath)
	yml := fmt.Sprintf(`listen: 127.0.0.1:0
tls: {cert: %s, key: %s}
log: {format: text, level: warn}
storage: {driver: filesystem, params: {rootdirectory: %s}}
upstreams:
  - name: %q
    url: http://%s:80
    insecure: true
`, certPath, keyPath, store, reachableName, reachableName) + yamlExtra
	a := testtool.Portcullis(t, yml, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: a.Handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ServeTLS(ln, certPath, keyPath); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve TLS: %v", err)
		}
	}()
	px.stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := a.Close(ctx); err != nil {
			t.Error(err)
		}
	}
	// Registered after testtool.Portcullis's cleanup, so it runs first.
	t.Cleanup(px.stop)
	px.host = ln.Addr().String()
	return px
}

// writeTestPKI writes a CA certificate and a server certificate for IP 127.0.0.1 it issued,
// with the server's key.
func writeTestPKI(t *testing.T, caPath, certPath, keyPath string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "portcullis test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "portcullis"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for p, b := range map[string]*pem.Block{
		caPath:   {Type: "CERTIFICATE", Bytes: caDER},
		certPath: {Type: "CERTIFICATE", Bytes: der},
		keyPath:  {Type: "EC PRIVATE KEY", Bytes: kder},
	} {
		if err := os.WriteFile(p, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// clientsFixture is the reachable upstream holding a cosign-signed and an unsigned image,
// and portcullis over HTTPS enforcing a policy that requires the signature.
type clientsFixture struct {
	up *reachable
	px *tlsProxy
	// cosign3 and keys sign what the policy requires.
	cosign3 string
	keys    signer
	// signed and unsigned are 127.0.0.1/<repo>:v1.
	signed, unsigned string
	// signedDigest is the signed image's manifest digest.
	signedDigest string
	// signedBlobs is the signed image as the upstream has it, by digest.
	signedBlobs map[string][]byte
	// unsignedDigest is the unsigned image's manifest digest, unsignedBlobs the image.
	unsignedDigest string
	unsignedBlobs  map[string][]byte
}

func newClientsFixture(t *testing.T) *clientsFixture {
	t.Helper()
	cosign3 := tool(t, "cosign3")
	keys := cosignKeys(t, cosign3)
	f := &clientsFixture{up: newReachable(t), cosign3: cosign3, keys: keys}
	f.px = startTLSProxy(t, fmt.Sprintf(`policies:
  - name: prod
    images: ["%s/**"]
    authorities:
      - name: release-key
        key: {path: %s}
defaultPolicy: deny
`, reachableName, keys.pub))
	img := testImage(t)
	signedRef := f.up.push(t, "clients/signed", img)
	cosignSign(t, cosign3, keys, signedRef)
	f.signed = reachableName + "/clients/signed:v1"
	d, _ := img.Digest()
	f.signedDigest = d.String()
	f.signedBlobs = fetchImage(t, img)
	unsignedImg := testImage(t)
	f.up.push(t, "clients/unsigned", unsignedImg)
	ud, _ := unsignedImg.Digest()
	f.unsigned, f.unsignedDigest = reachableName+"/clients/unsigned:v1", ud.String()
	f.unsignedBlobs = fetchImage(t, unsignedImg)
	return f
}

// clientFile returns the client configuration file deploy/clients/<rel>, as the README shows
// it, with only its addresses changed for the test:
//   - portcullis.example:5000 (portcullis's address) becomes the test portcullis's 127.0.0.1:<port>;
//   - /etc/portcullis/ca.crt (containerd's ca line) becomes the test CA's path;
//   - docker.io (the registry the file is written for) becomes 127.0.0.1, the reachable upstream.
//
// Each placeholder present in the file must be replaced; a missing one fails the test only
// when want lists it.
func (f *clientsFixture) clientFile(t *testing.T, rel string, want ...string) string {
	t.Helper()
	root, err := testtool.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "clients", rel))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Fatalf("deploy/clients/%s no longer contains %q: update the test's substitutions", rel, w)
		}
	}
	return strings.NewReplacer(
		"portcullis.example:5000", f.px.host,
		"/etc/portcullis/ca.crt", f.px.caPath,
		"docker.io", reachableName,
	).Replace(s)
}

// writeFile writes content to a new file name in a temporary directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// noRuntimeRequests fails t if anything but portcullis asked the upstream since mark m.
func noRuntimeRequests(t *testing.T, up *reachable, m int) {
	t.Helper()
	all, runtime := up.since(m)
	if len(runtime) > 0 {
		t.Errorf("the runtime reached the upstream itself, past portcullis: %v", runtime)
	}
	if len(all) == 0 {
		t.Errorf("portcullis did not ask the upstream either: is the test pulling from the fixture?")
	}
}

// someRuntimeRequests fails t unless the runtime itself asked the upstream since mark m; it
// returns those requests.
func someRuntimeRequests(t *testing.T, up *reachable, m int) []request {
	t.Helper()
	_, runtime := up.since(m)
	if len(runtime) == 0 {
		t.Errorf("no request from the runtime at the upstream: the fail-open fallback was not seen")
	}
	return runtime
}
