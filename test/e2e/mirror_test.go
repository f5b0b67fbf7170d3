package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// fixture is an upstream holding one image and one two-platform index, and a proxy.
type fixture struct {
	up       *upstream
	px       *proxyServer
	img      v1.Image
	idx      v1.ImageIndex
	imgBlobs map[string][]byte
	idxBlobs map[string][]byte
}

// pull is one thing a client pulls from the fixture and the content it must get.
type pull struct {
	repo string
	want map[string][]byte
}

// pulls are the image and the two-platform index the fixture serves.
func (f *fixture) pulls() []pull {
	return []pull{{"demo/app:v1", f.imgBlobs}, {"demo/multi:v1", f.idxBlobs}}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{up: newUpstream(t), img: testImage(t), idx: testIndex(t)}
	f.up.pushImage(t, "demo/app:v1", f.img)
	f.up.pushIndex(t, "demo/multi:v1", f.idx)
	f.imgBlobs = blobsOf(t, f.img, nil)
	f.idxBlobs = blobsOf(t, nil, f.idx)
	f.px = startProxy(t, f.up, "defaultPolicy: allow\n")
	return f
}

// sameContent checks that got (digest → bytes as a client stored them) is exactly want.
func sameContent(t *testing.T, got, want map[string][]byte) {
	t.Helper()
	for d, w := range want {
		g, ok := got[d]
		if !ok {
			t.Errorf("client is missing %s", d)
			continue
		}
		if !bytes.Equal(g, w) {
			t.Errorf("client's %s differs from the upstream's (%d vs %d bytes)", d, len(g), len(w))
		}
	}
	for d := range got {
		if _, ok := want[d]; !ok {
			t.Errorf("client has %s, which the upstream does not", d)
		}
	}
}

// readOCILayout returns the blobs of an OCI layout directory by digest.
func readOCILayout(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	ents, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out["sha256:"+e.Name()] = b
	}
	return out
}

// readDirTransport returns what skopeo's dir: transport wrote, by digest: blobs are named by
// hex, manifests manifest.json (top level) and <hex>.manifest.json (instances of an index).
func readDirTransport(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		switch n := e.Name(); {
		case n == "version":
		case n == "manifest.json":
			out[v1Digest(b)] = b
		case strings.HasSuffix(n, ".manifest.json"):
			out["sha256:"+strings.TrimSuffix(n, ".manifest.json")] = b
		default:
			out["sha256:"+n] = b
		}
	}
	return out
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func v1Digest(b []byte) string {
	h, _, _ := v1.SHA256(bytes.NewReader(b))
	return h.String()
}

func TestCranePullThroughMirror(t *testing.T) {
	crane := tool(t, "crane")
	f := newFixture(t)
	for _, style := range []struct{ name, prefix string }{
		{"default upstream", f.px.host + "/"},
		{"path prefix", f.px.host + "/" + upstreamName + "/"},
	} {
		for _, tc := range f.pulls() {
			t.Run(style.name+"/"+tc.repo, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "layout")
				run(t, crane, "pull", "--insecure", "--format", "oci", style.prefix+tc.repo, dir)
				sameContent(t, readOCILayout(t, dir), tc.want)
			})
		}
	}
}

func TestSkopeoCopyThroughMirror(t *testing.T) {
	skopeo := tool(t, "skopeo")
	f := newFixture(t)
	for _, style := range []struct{ name, location string }{
		{"default upstream", f.px.host},
		{"path prefix", f.px.host + "/" + upstreamName},
	} {
		conf := filepath.Join(t.TempDir(), "registries.conf")
		err := os.WriteFile(conf, []byte(fmt.Sprintf(`unqualified-search-registries = []
short-name-mode = "disabled"
[[registry]]
prefix = %[1]q
location = %[1]q
insecure = true
[[registry.mirror]]
location = %[2]q
insecure = true
`, upstreamName, style.location)), 0o600)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range f.pulls() {
			t.Run(style.name+"/"+tc.repo, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "dir")
				src := "docker://" + upstreamName + "/" + tc.repo
				f.up.noClientRequests(t, func() {
					run(t, skopeo, "--registries-conf", conf, "copy", "--all", "--retry-times", "0", src, "dir:"+dir)
				})
				got := readDirTransport(t, dir)
				// skopeo rewrites an index it writes to dir: (it drops artifactType), so the
				// top-level manifest is compared as skopeo reads it raw through the mirror.
				raw := run(t, skopeo, "--registries-conf", conf, "inspect", "--raw", "--no-tags", "--retry-times", "0", src)
				delete(got, v1Digest(mustRead(t, filepath.Join(dir, "manifest.json"))))
				got[v1Digest([]byte(raw))] = []byte(raw)
				sameContent(t, got, tc.want)
			})
		}
	}
}

// nsTransport adds containerd's ?ns=<host> to every request, as containerd does when it
// uses a hosts.toml mirror.
type nsTransport struct{ ns string }

func (n nsTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	q := r.URL.Query()
	q.Set("ns", n.ns)
	r.URL.RawQuery = q.Encode()
	return http.DefaultTransport.RoundTrip(r)
}

func TestContainerdStyleNamespace(t *testing.T) {
	f := newFixture(t)
	opt := remote.WithTransport(nsTransport{ns: upstreamName})
	for _, tc := range f.pulls() {
		t.Run(tc.repo, func(t *testing.T) {
			ref, err := name.ParseReference(f.px.host+"/"+tc.repo, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]byte{}
			desc, err := remote.Get(ref, opt)
			if err != nil {
				t.Fatal(err)
			}
			got[desc.Digest.String()] = desc.Manifest
			var imgs []v1.Image
			if desc.MediaType.IsIndex() {
				idx, _ := desc.ImageIndex()
				im, _ := idx.IndexManifest()
				for _, m := range im.Manifests {
					img, err := idx.Image(m.Digest)
					if err != nil {
						t.Fatal(err)
					}
					imgs = append(imgs, img)
				}
			} else {
				img, _ := desc.Image()
				imgs = append(imgs, img)
			}
			for _, img := range imgs {
				for d, b := range fetchImage(t, img) {
					got[d] = b
				}
			}
			sameContent(t, got, tc.want)
		})
	}
	// The same request naming an upstream that is not configured never leaves the proxy.
	resp, err := http.Get("http://" + f.px.host + "/v2/demo/app/manifests/v1?ns=metadata.google.internal")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown ns: status %d, want 404", resp.StatusCode)
	}
}

func fetchImage(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	out[d.String()] = raw
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cd, _ := img.ConfigName()
	out[cd.String()] = cfg
	layers, _ := img.Layers()
	for _, l := range layers {
		ld, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[ld.String()] = b
	}
	return out
}

func TestPullByDigestWithUpstreamStopped(t *testing.T) {
	crane := tool(t, "crane")
	f := newFixture(t)
	d, _ := f.idx.Digest()
	ref := f.px.host + "/demo/multi@" + d.String()
	run(t, crane, "pull", "--insecure", "--format", "oci", ref, filepath.Join(t.TempDir(), "first"))
	f.up.srv.Close()
	dir := filepath.Join(t.TempDir(), "second")
	run(t, crane, "pull", "--insecure", "--format", "oci", ref, dir)
	sameContent(t, readOCILayout(t, dir), f.idxBlobs)
}
