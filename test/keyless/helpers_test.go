package keyless

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/portcullis/portcullis/internal/testtool"
)

// upstream is an in-process distribution registry (v3.1.2: no referrers API, so cosign v3
// bundles land on the referrers tag schema) on 127.0.0.1, reachable by every client.
type upstream struct {
	srv  *httptest.Server
	host string
	// name is the registry name portcullis knows the upstream by: its own reachable address,
	// so that a client bypassing portcullis would get the content and a test shows it.
	name string
	// runtimeRequests counts the requests that came from containerd itself: a runtime that
	// fell back past portcullis.
	runtimeRequests atomic.Int64
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	h := testtool.Distribution(t)
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.UserAgent(), "containerd") {
			u.runtimeRequests.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	u.host = strings.TrimPrefix(u.srv.URL, "http://")
	u.name = u.host
	return u
}

// push puts a fresh image at repo:v1 and returns its upstream reference by digest.
func (u *upstream) push(t *testing.T, repo string) string {
	t.Helper()
	ref, err := name.ParseReference(u.host+"/"+repo+":v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img := testtool.RandomImage(t, 1024, 1)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return u.host + "/" + repo + "@" + d.String()
}

// proxy is portcullis, built by internal/app as `portcullis serve` builds it, in front of an
// upstream, with the policy yaml.
type proxy struct {
	host string
}

func startProxy(t *testing.T, up *upstream, policy string) *proxy {
	t.Helper()
	dir := t.TempDir()
	yml := "listen: 127.0.0.1:0\nlog: {format: text, level: warn}\n" +
		"storage: {driver: filesystem, params: {rootdirectory: " + filepath.Join(dir, "store") + "}}\n" +
		"upstreams:\n  - name: " + up.name + "\n    url: " + up.srv.URL + "\n    insecure: true\n    default: true\n" + policy
	a := testtool.Portcullis(t, yml, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: a.Handler}}
	srv.Start()
	t.Cleanup(srv.Close)
	return &proxy{host: ln.Addr().String()}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// run runs a tool with the stack's offline environment and returns its output and error.
func (s *stack) run(t *testing.T, path string, args ...string) (string, error) {
	t.Helper()
	return testtool.Run(t, "", path, []string{"TUF_ROOT=" + filepath.Join(t.TempDir(), "tuf")}, args...)
}

// must runs a tool and fails the test when it fails.
func (s *stack) must(t *testing.T, path string, args ...string) string {
	t.Helper()
	out, err := s.run(t, path, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(path), strings.Join(args, " "), err, out)
	}
	return out
}

// cosignSignKeyless signs image with the real cosign v3, keylessly, with token: a sigstore
// bundle logged in Rekor v2 and timestamped (bundle), or the legacy .sig layout timestamped
// by the TSA (no Rekor v1 in this stack).
func (s *stack) cosignSignKeyless(t *testing.T, token, image string, bundle bool) {
	t.Helper()
	args := []string{"sign", "--yes", "--allow-http-registry", "--identity-token", token, "--trusted-root", s.trustedRoot}
	if bundle {
		args = append(args, "--signing-config", s.signingConfig)
	} else {
		args = append(args, "--new-bundle-format=false", "--use-signing-config=false", "--fulcio-url", s.fulcio,
			"--timestamp-server-url", s.tsa, "--tlog-upload=false")
	}
	s.must(t, s.cosign3, append(args, image)...)
}

// cosignVerifyArgs are the arguments of a real `cosign verify` of a keyless signature made
// on this stack by identity of issuer.
func (s *stack) cosignVerifyArgs(identity, issuer string, bundle bool) []string {
	args := []string{"verify", "--allow-http-registry", "--trusted-root", s.trustedRoot,
		"--certificate-identity", identity, "--certificate-oidc-issuer", issuer}
	if !bundle {
		args = append(args, "--new-bundle-format=false", "--insecure-ignore-tlog", "--use-signed-timestamps")
	}
	return args
}
