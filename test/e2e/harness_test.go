// Package e2e runs portcullis end to end: a real distribution registry as the upstream,
// portcullis built from its configuration exactly as the CLI builds it, and real pulling
// clients (crane, skopeo) configured as an operator would configure them.
package e2e

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/internal/testtool"
)

// upstreamName is the upstream's registry name: a loopback address of this package's own
// whose port 80 serves the upstream too (newUpstream; the tests' tools reach it at its
// 127.0.0.1 address, which they take for plain HTTP), so that a client that bypassed
// portcullis would reach the real registry, as it would in production, and a test shows
// whether it did.
const upstreamName = "127.0.0.2"

// upstream is an in-process distribution registry (v3.1.2: no referrers API).
type upstream struct {
	srv  *httptest.Server
	host string
	// others counts the requests not made by portcullis: the test's own pushes, and a client
	// that went to the upstream itself.
	others atomic.Int64
}

// noClientRequests fails t if run made a request of the upstream other than portcullis's:
// the client fell back past the mirror.
func (u *upstream) noClientRequests(t *testing.T, run func()) {
	t.Helper()
	n := u.others.Load()
	run()
	if d := u.others.Load() - n; d > 0 {
		t.Errorf("the client asked the upstream itself %d times, past portcullis", d)
	}
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	reg := testtool.Distribution(t)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.UserAgent(), clientsUserAgent) {
			u.others.Add(1)
		}
		reg.ServeHTTP(w, r)
	})
	u.srv = httptest.NewServer(h)
	t.Cleanup(u.srv.Close)
	u.host = strings.TrimPrefix(u.srv.URL, "http://")
	// The same registry under its name, for the clients that would name it themselves.
	byName := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ln := testtool.ListenPort80(t, upstreamName)
	go func() { _ = byName.Serve(ln) }()
	t.Cleanup(func() { _ = byName.Close() })
	return u
}

// proxyServer runs portcullis, built by internal/app as `portcullis serve` builds it.
type proxyServer struct {
	srv  *httptest.Server
	host string
}

func startProxy(t *testing.T, up *upstream, yamlExtra string) *proxyServer {
	t.Helper()
	dir := t.TempDir()
	yml := "listen: 127.0.0.1:0\nlog: {format: text, level: warn}\n" +
		"storage: {driver: filesystem, params: {rootdirectory: " + filepath.Join(dir, "store") + "}}\n" +
		"upstreams:\n  - name: " + upstreamName + "\n    url: " + up.srv.URL + "\n    insecure: true\n    default: true\n" + yamlExtra
	a := testtool.Portcullis(t, yml, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: a.Handler}}
	srv.Start()
	t.Cleanup(srv.Close)
	return &proxyServer{srv: srv, host: ln.Addr().String()}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// testImage is a small OCI image with two layers.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	return testtool.RandomImage(t, 4096, 2)
}

// testIndex is a two-platform OCI index.
func testIndex(t *testing.T) v1.ImageIndex {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, arch := range []string{"amd64", "arm64"} {
		img := testImage(t)
		cf, _ := img.ConfigFile()
		cf.OS, cf.Architecture = "linux", arch
		img, err := mutate.ConfigFile(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
}

func (u *upstream) ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(u.host+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (u *upstream) pushImage(t *testing.T, s string, img v1.Image) v1.Hash {
	t.Helper()
	if err := remote.Write(u.ref(t, s), img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d
}

func (u *upstream) pushIndex(t *testing.T, s string, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	if err := remote.WriteIndex(u.ref(t, s), idx); err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	return d
}

// blobsOf returns every blob and manifest of an image or index, by digest, as the upstream
// has them.
func blobsOf(t *testing.T, img v1.Image, idx v1.ImageIndex) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	addImage := func(img v1.Image) {
		for d, b := range fetchImage(t, img) {
			out[d] = b
		}
	}
	if img != nil {
		addImage(img)
	}
	if idx != nil {
		raw, _ := idx.RawManifest()
		d, _ := idx.Digest()
		out[d.String()] = raw
		im, _ := idx.IndexManifest()
		for _, m := range im.Manifests {
			child, err := idx.Image(m.Digest)
			if err != nil {
				t.Fatal(err)
			}
			addImage(child)
		}
	}
	return out
}

func tool(t *testing.T, name string) string { return testtool.Path(t, name) }

func run(t *testing.T, path string, args ...string) string {
	t.Helper()
	out, err := testtool.Run(t, "", path, nil, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(path), strings.Join(args, " "), err, out)
	}
	return out
}
