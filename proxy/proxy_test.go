package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/internal/testtool"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/proxy/upstream"
)

const upName = "upstream.test"

// faults wraps an upstream registry and misbehaves on request.
type faults struct {
	next     http.Handler
	mu       sync.Mutex
	fn       func(w http.ResponseWriter, r *http.Request) bool // true: handled
	requests atomic.Int64
}

func (f *faults) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	f.mu.Lock()
	fn := f.fn
	f.mu.Unlock()
	if fn != nil && fn(w, r) {
		return
	}
	f.next.ServeHTTP(w, r)
}

func (f *faults) set(fn func(w http.ResponseWriter, r *http.Request) bool) {
	f.mu.Lock()
	f.fn = fn
	f.mu.Unlock()
}

// admitAll is the gate of tests that are about mirroring, not policy.
type admitAll struct{}

func (admitAll) Admit(context.Context, policy.Request) (policy.Decision, error) {
	return policy.Decision{Allowed: true}, nil
}

type env struct {
	h      *proxy.Handler
	up     *httptest.Server
	faults *faults
	proxy  *httptest.Server
	host   string // upstream host:port for pushes
}

type envOpt func(*upstream.Config, *proxy.Options)

func newEnv(t *testing.T, opts ...envOpt) *env {
	t.Helper()
	f := &faults{next: registry.New(registry.Logger(nopLog()))}
	up := httptest.NewServer(f)
	t.Cleanup(up.Close)
	uc := upstream.Config{Name: upName, URL: up.URL, Insecure: true, Default: true, Timeout: 2 * time.Second}
	zero := 0
	uc.Retries = &zero
	po := proxy.Options{Store: store.New(inmemory.New()), Gate: admitAll{}, Logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&uc, &po)
	}
	u, err := upstream.New(uc, nil)
	if err != nil {
		t.Fatal(err)
	}
	po.Upstreams, err = proxy.NewUpstreams(u)
	if err != nil {
		t.Fatal(err)
	}
	h, err := proxy.New(po)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	p := httptest.NewServer(h) // closed before h: cleanups run last-in first-out
	t.Cleanup(p.Close)
	return &env{h: h, up: up, faults: f, proxy: p, host: strings.TrimPrefix(up.URL, "http://")}
}

func nopLog() *log.Logger { return log.New(io.Discard, "", 0) }

func (e *env) push(t *testing.T, repoTag string, img v1.Image) v1.Hash {
	t.Helper()
	ref, err := name.ParseReference(e.host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d
}

func (e *env) get(t *testing.T, method, path string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, e.proxy.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func errCode(t *testing.T, b []byte) string {
	t.Helper()
	var body struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.Unmarshal(b, &body); err != nil || len(body.Errors) == 0 {
		t.Fatalf("not an OCI error body: %q", b)
	}
	return body.Errors[0].Code
}

func randomImage(t *testing.T) v1.Image {
	t.Helper()
	return testtool.RandomImage(t, 2048, 2)
}

func TestRoutingStyles(t *testing.T) {
	e := newEnv(t)
	img := randomImage(t)
	d := e.push(t, "demo/app:v1", img)
	raw, _ := img.RawManifest()
	for _, tc := range []struct{ style, path string }{
		{"default upstream", "/v2/demo/app/manifests/v1"},
		{"path prefix", "/v2/" + upName + "/demo/app/manifests/v1"},
		{"containerd ns", "/v2/demo/app/manifests/v1?ns=" + upName},
		{"by digest", "/v2/demo/app/manifests/" + d.String()},
	} {
		t.Run(tc.style, func(t *testing.T) {
			resp, b := e.get(t, http.MethodGet, tc.path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			if !bytes.Equal(b, raw) {
				t.Errorf("served bytes differ from the upstream's manifest")
			}
			if got := resp.Header.Get("Docker-Content-Digest"); got != d.String() {
				t.Errorf("Docker-Content-Digest = %s, want %s", got, d)
			}
			if got := resp.Header.Get("Content-Type"); got != string(types.DockerManifestSchema2) {
				t.Errorf("Content-Type = %s", got)
			}
			head, hb := e.get(t, http.MethodHead, tc.path)
			if head.StatusCode != http.StatusOK || len(hb) != 0 || head.Header.Get("Docker-Content-Digest") != d.String() {
				t.Errorf("HEAD: status %d, %d body bytes, digest %s", head.StatusCode, len(hb), head.Header.Get("Docker-Content-Digest"))
			}
		})
	}
}

func TestIndexAndBlobs(t *testing.T) {
	e := newEnv(t)
	idx, err := random.Index(2048, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(e.host + "/multi/arch:latest")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	raw, _ := idx.RawManifest()
	resp, b := e.get(t, http.MethodGet, "/v2/multi/arch/manifests/latest")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(b, raw) {
		t.Fatalf("index: status %d, equal %v", resp.StatusCode, bytes.Equal(b, raw))
	}
	if ct := resp.Header.Get("Content-Type"); ct != string(types.OCIImageIndex) {
		t.Errorf("Content-Type = %s", ct)
	}
	im, _ := idx.IndexManifest()
	child, _ := idx.Image(im.Manifests[0].Digest)
	layers, _ := child.Layers()
	ld, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	want, _ := io.ReadAll(rc)
	blobPath := "/v2/multi/arch/blobs/" + ld.String()
	if resp, _ := e.get(t, http.MethodGet, "/v2/multi/arch/manifests/"+im.Manifests[0].Digest.String()); resp.StatusCode != http.StatusOK {
		t.Fatalf("child manifest: status %d", resp.StatusCode)
	}

	for _, tc := range []struct {
		name, rng  string
		status     int
		start, end int // of want
	}{
		{"cold full", "", 200, 0, len(want)},
		{"warm full", "", 200, 0, len(want)},
		{"range", "bytes=10-19", 206, 10, 20},
		{"open range", "bytes=1000-", 206, 1000, len(want)},
		{"suffix range", "bytes=-5", 206, len(want) - 5, len(want)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.rng != "" {
				hdr = []string{"Range", tc.rng}
			}
			resp, b := e.get(t, http.MethodGet, blobPath, hdr...)
			if resp.StatusCode != tc.status || !bytes.Equal(b, want[tc.start:tc.end]) {
				t.Fatalf("status %d (want %d), %d bytes (want %d)", resp.StatusCode, tc.status, len(b), tc.end-tc.start)
			}
		})
	}
	resp, _ = e.get(t, http.MethodGet, blobPath, "Range", fmt.Sprintf("bytes=%d-", len(want)+5))
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("unsatisfiable range: status %d", resp.StatusCode)
	}
	// A range on a blob that is not cached yet is fetched whole, verified, then cut.
	ld2, _ := layers[1].Digest()
	rc2, _ := layers[1].Compressed()
	want2, _ := io.ReadAll(rc2)
	resp, b = e.get(t, http.MethodGet, "/v2/multi/arch/blobs/"+ld2.String(), "Range", "bytes=3-7")
	if resp.StatusCode != 206 || !bytes.Equal(b, want2[3:8]) {
		t.Errorf("cold range: status %d", resp.StatusCode)
	}
	head, _ := e.get(t, http.MethodHead, blobPath)
	if head.StatusCode != 200 || head.ContentLength != int64(len(want)) {
		t.Errorf("HEAD blob: status %d, length %d", head.StatusCode, head.ContentLength)
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	e.push(t, "demo/app:v1", randomImage(t))
	before := e.faults.requests.Load()
	for _, tc := range []struct {
		name, method, path string
		status             int
		code               string
	}{
		{"uppercase repository", "GET", "/v2/Demo/App/manifests/v1", 400, "NAME_INVALID"},
		{"bad repository characters", "GET", "/v2/demo/a..pp/manifests/v1", 400, "NAME_INVALID"},
		{"invalid manifest digest", "GET", "/v2/demo/app/manifests/sha256:zz", 400, "DIGEST_INVALID"},
		{"invalid blob digest", "GET", "/v2/demo/app/blobs/sha256:1234", 400, "DIGEST_INVALID"},
		{"invalid tag", "GET", "/v2/demo/app/manifests/-bad", 400, "TAG_INVALID"},
		{"unknown ns", "GET", "/v2/demo/app/manifests/v1?ns=169.254.169.254", 404, "NAME_UNKNOWN"},
		{"unknown host prefix", "GET", "/v2/evil.example.com/demo/app/manifests/v1", 404, "NAME_UNKNOWN"},
		{"not an endpoint", "GET", "/v2/demo/app/nothing", 405, "UNSUPPORTED"},
		{"push refused", "PUT", "/v2/demo/app/manifests/v2", 405, "UNSUPPORTED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := e.get(t, tc.method, tc.path)
			if resp.StatusCode != tc.status || errCode(t, b) != tc.code {
				t.Errorf("got %d %s, want %d %s (%s)", resp.StatusCode, errCode(t, b), tc.status, tc.code, b)
			}
		})
	}
	if n := e.faults.requests.Load() - before; n != 0 {
		t.Errorf("bad requests caused %d upstream requests, want 0", n)
	}
	for _, tc := range []struct{ name, path, code string }{
		{"missing tag", "/v2/demo/app/manifests/nope", "MANIFEST_UNKNOWN"},
		{"missing digest", "/v2/demo/app/manifests/sha256:" + strings.Repeat("a", 64), "MANIFEST_UNKNOWN"},
		{"missing blob", "/v2/demo/app/blobs/sha256:" + strings.Repeat("b", 64), "BLOB_UNKNOWN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := e.get(t, "GET", tc.path)
			if resp.StatusCode != 404 || errCode(t, b) != tc.code {
				t.Errorf("got %d %s, want 404 %s", resp.StatusCode, b, tc.code)
			}
		})
	}
}

func TestUpstreamFaults(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fault  func(w http.ResponseWriter, r *http.Request) bool
		status int
		code   string
	}{
		{"oversize manifest", func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.Contains(r.URL.Path, "/manifests/") {
				return false
			}
			w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
			_, _ = w.Write(bytes.Repeat([]byte(" "), 4<<20+1))
			return true
		}, 502, "MANIFEST_INVALID"},
		{"upstream 500", func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path == "/v2/" {
				return false
			}
			http.Error(w, "boom", 500)
			return true
		}, 502, "UNKNOWN"},
		{"upstream too slow", func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path == "/v2/" {
				return false
			}
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return true
		}, 503, "UNAVAILABLE"},
		{"upstream refuses access", func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path == "/v2/" {
				return false
			}
			w.WriteHeader(http.StatusForbidden)
			return true
		}, 502, "UNKNOWN"}, // DENIED is the policy's word: this is "upstream authentication failed"
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Only the stalled upstream needs a short timeout; the others must not meet it,
			// however loaded the machine (reading 4 MiB under -race can take a while).
			timeout := 30 * time.Second
			if tc.code == "UNAVAILABLE" {
				timeout = 300 * time.Millisecond
			}
			e := newEnv(t, func(uc *upstream.Config, _ *proxy.Options) { uc.Timeout = timeout })
			e.push(t, "demo/app:v1", randomImage(t))
			e.faults.set(tc.fault)
			resp, b := e.get(t, "GET", "/v2/demo/app/manifests/v1")
			if resp.StatusCode != tc.status || errCode(t, b) != tc.code {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode, b, tc.status, tc.code)
			}
		})
	}
}

func TestBlobWithWrongDigestIsNeverServed(t *testing.T) {
	e := newEnv(t)
	img := randomImage(t)
	e.push(t, "demo/app:v1", img)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	want, _ := io.ReadAll(rc)
	corrupt := func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, ld.String()) || r.Method != http.MethodGet {
			return false
		}
		bad := bytes.Clone(want)
		bad[len(bad)-1] ^= 0xff
		w.Header().Set("Content-Length", fmt.Sprint(len(bad)))
		_, _ = w.Write(bad)
		return true
	}
	if resp, _ := e.get(t, http.MethodGet, "/v2/demo/app/manifests/v1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("manifest: status %d", resp.StatusCode)
	}
	e.faults.set(corrupt)
	path := "/v2/demo/app/blobs/" + ld.String()
	for i := range 2 { // the second try must not be served from a poisoned cache
		resp, err := http.Get(e.proxy.URL + path)
		if err != nil {
			continue // connection cut: the right outcome
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode == 200 && bytes.Equal(b, want[:len(b)]) && len(b) == len(want) {
			t.Fatalf("try %d: a complete blob was served", i)
		}
		if err == nil && resp.StatusCode == 200 {
			t.Fatalf("try %d: wrong content served without error (%d bytes)", i, len(b))
		}
	}
	e.faults.set(nil)
	resp, b := e.get(t, "GET", path)
	if resp.StatusCode != 200 || !bytes.Equal(b, want) {
		t.Fatalf("after the upstream healed: status %d, equal %v", resp.StatusCode, bytes.Equal(b, want))
	}
}

func TestServedFromCacheWhenUpstreamIsDown(t *testing.T) {
	e := newEnv(t)
	img := randomImage(t)
	d := e.push(t, "demo/app:v1", img)
	mpath := "/v2/demo/app/manifests/" + d.String()
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	bpath := "/v2/demo/app/blobs/" + ld.String()
	_, m1 := e.get(t, "GET", mpath)
	_, b1 := e.get(t, "GET", bpath)
	e.up.Close()
	r2, m2 := e.get(t, "GET", mpath)
	r3, b2 := e.get(t, "GET", bpath)
	if r2.StatusCode != 200 || !bytes.Equal(m1, m2) || r3.StatusCode != 200 || !bytes.Equal(b1, b2) {
		t.Fatalf("upstream down: manifest %d, blob %d", r2.StatusCode, r3.StatusCode)
	}
	// Not cached for another repository: that would leak content across repositories.
	r4, b4 := e.get(t, "GET", "/v2/other/repo/manifests/"+d.String())
	if r4.StatusCode == 200 {
		t.Fatalf("content served to a repository that never fetched it: %s", b4)
	}
}

func TestMovedTag(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ttl      time.Duration
		wantMove bool
	}{
		{"ttl 0 asks upstream", 0, true},
		{"ttl 1h keeps digest", time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(_ *upstream.Config, o *proxy.Options) { o.TagTTL = tc.ttl })
			a := e.push(t, "demo/app:v1", randomImage(t))
			resp, _ := e.get(t, "GET", "/v2/demo/app/manifests/v1")
			if resp.Header.Get("Docker-Content-Digest") != a.String() {
				t.Fatal("first pull")
			}
			b := e.push(t, "demo/app:v1", randomImage(t))
			resp, _ = e.get(t, "GET", "/v2/demo/app/manifests/v1")
			want := a
			if tc.wantMove {
				want = b
			}
			if got := resp.Header.Get("Docker-Content-Digest"); got != want.String() {
				t.Errorf("after move: %s, want %s", got, want)
			}
		})
	}
}

func TestTagsPagination(t *testing.T) {
	e := newEnv(t)
	img := randomImage(t)
	for _, tag := range []string{"a", "b", "c", "d", "e"} {
		e.push(t, "demo/app:"+tag, img)
	}
	var all []string
	path := "/v2/" + upName + "/demo/app/tags/list?n=2"
	for range 5 {
		resp, b := e.get(t, "GET", path)
		var tl upstream.TagList
		if err := json.Unmarshal(b, &tl); err != nil || resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		if tl.Name != upName+"/demo/app" {
			t.Errorf("name = %q", tl.Name)
		}
		all = append(all, tl.Tags...)
		if len(tl.Tags) < 2 {
			break
		}
		path = "/v2/" + upName + "/demo/app/tags/list?n=2&last=" + tl.Tags[len(tl.Tags)-1]
	}
	if strings.Join(all, ",") != "a,b,c,d,e" {
		t.Errorf("tags = %v", all)
	}
	// The upstream's Link is rewritten to the name and routing the client used.
	e.faults.set(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/tags/list") {
			w.Header().Set("Link", `</v2/demo/app/tags/list?last=b&n=2>; rel="next"`)
		}
		return false
	})
	resp, _ := e.get(t, "GET", "/v2/demo/app/tags/list?n=2&ns="+upName)
	if got, want := resp.Header.Get("Link"), `</v2/demo/app/tags/list?last=b&n=2&ns=`+upName+`>; rel="next"`; got != want {
		t.Errorf("Link = %s, want %s", got, want)
	}
	resp, _ = e.get(t, "GET", "/v2/"+upName+"/demo/app/tags/list?n=2")
	if got, want := resp.Header.Get("Link"), `</v2/`+upName+`/demo/app/tags/list?last=b&n=2>; rel="next"`; got != want {
		t.Errorf("Link = %s, want %s", got, want)
	}
	e.faults.set(nil)
	resp, b := e.get(t, "GET", "/v2/demo/app/tags/list?n=x")
	if resp.StatusCode != 400 || errCode(t, b) != "PAGINATION_NUMBER_INVALID" {
		t.Errorf("bad n: %d %s", resp.StatusCode, b)
	}
}

func TestReferrers(t *testing.T) {
	e := newEnv(t)
	img := randomImage(t)
	d := e.push(t, "demo/app:v1", img)
	desc, _ := remote.Get(mustRef(t, e.host+"/demo/app@"+d.String()))
	art := mutate.Subject(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), "application/vnd.example.sbom"), desc.Descriptor).(v1.Image)
	ad := e.push(t, "demo/app:art", art)

	for _, tc := range []struct {
		name, query string
		want        int
	}{
		{"all", "", 1},
		{"matching filter", "?artifactType=application/vnd.example.sbom", 1},
		{"other filter", "?artifactType=application/vnd.other", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := e.get(t, "GET", "/v2/demo/app/referrers/"+d.String()+tc.query)
			var idx v1.IndexManifest
			if err := json.Unmarshal(b, &idx); err != nil || resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			if len(idx.Manifests) != tc.want {
				t.Fatalf("%d referrers, want %d", len(idx.Manifests), tc.want)
			}
			if tc.want == 1 && idx.Manifests[0].Digest != ad {
				t.Errorf("referrer %s, want %s", idx.Manifests[0].Digest, ad)
			}
		})
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestUpstreamConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    upstream.Config
		want string
	}{
		{"ok", upstream.Config{Name: "docker.io", URL: "https://registry-1.docker.io"}, ""},
		{"no name", upstream.Config{URL: "https://x.io"}, "name: must be set"},
		{"name not a host", upstream.Config{Name: "library", URL: "https://x.io"}, "name:"},
		{"plain http without insecure", upstream.Config{Name: "x.io", URL: "http://x.io"}, "insecure"},
		{"url with path", upstream.Config{Name: "x.io", URL: "https://x.io/v2/foo"}, "url:"},
		{"auth and keychain", upstream.Config{Name: "x.io", URL: "https://x.io", Keychain: true, Auth: &upstream.BasicAuth{Username: "u"}}, "auth:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestDockerHubNormalization(t *testing.T) {
	u, err := upstream.New(upstream.Config{Name: "docker.io", URL: "https://registry-1.docker.io"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{"alpine": "library/alpine", "myorg/app": "myorg/app"} {
		if got := u.Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}
