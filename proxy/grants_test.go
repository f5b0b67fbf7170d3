package proxy_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/proxy/upstream"
)

// blobsOf returns the config and layers of img by digest.
func blobsOf(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	cd, _ := img.ConfigName()
	cfg, _ := img.RawConfigFile()
	out[cd.String()] = cfg
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		rc, _ := l.Compressed()
		b, _ := io.ReadAll(rc)
		rc.Close()
		out[d.String()] = b
	}
	return out
}

// countBlobs counts the blob requests that reach the upstream.
func countBlobs(e *env) *atomic.Int64 {
	var n atomic.Int64
	e.faults.set(func(_ http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/blobs/") && !strings.Contains(r.URL.Path, "/uploads/") && r.Method != http.MethodPost {
			n.Add(1)
		}
		return false
	})
	return &n
}

func TestBlobsOnlyOfAdmittedManifests(t *testing.T) {
	gate := &denyGate{allowed: map[digest.Digest]bool{}}
	e := pushEnv(t, gate, &forgetter{})
	admitted, denied := randomImage(t), randomImage(t)
	ad := e.push(t, "signed/app:admitted", admitted)
	e.push(t, "signed/app:denied", denied)
	e.push(t, "signed/other:v1", admitted) // the same blobs in another repository
	gate.allowed[digest.Digest(ad.String())] = true
	upstreamBlobs := countBlobs(e)

	refused := func(t *testing.T, path string, auth bool) {
		t.Helper()
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			resp, b := e.do(t, method, path, nil, auth)
			if resp.StatusCode != http.StatusNotFound || (method == http.MethodGet && errCode(t, b) != "BLOB_UNKNOWN") {
				t.Errorf("%s %s: %d %s, want 404 BLOB_UNKNOWN", method, path, resp.StatusCode, b)
			}
		}
	}
	// Before any manifest was admitted, nothing is served, and the upstream is not asked.
	for d := range blobsOf(t, admitted) {
		refused(t, "/v2/signed/app/blobs/"+d, false)
	}
	if resp, _ := e.do(t, http.MethodGet, "/v2/signed/app/manifests/admitted", nil, false); resp.StatusCode != http.StatusOK {
		t.Fatalf("admitted manifest: status %d", resp.StatusCode)
	}
	for d, want := range blobsOf(t, admitted) {
		resp, b := e.do(t, http.MethodGet, "/v2/signed/app/blobs/"+d, nil, false)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(b, want) {
			t.Errorf("admitted blob %s: status %d, equal %v", d, resp.StatusCode, bytes.Equal(b, want))
		}
		// Granted to the repository whose manifest was admitted, not to another that has it.
		refused(t, "/v2/signed/other/blobs/"+d, false)
	}
	served := upstreamBlobs.Load()
	if resp, _ := e.do(t, http.MethodGet, "/v2/signed/app/manifests/denied", nil, false); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("denied manifest: status %d", resp.StatusCode)
	}
	// The push user resolves the denied manifest (to sign it), but gets none of its blobs
	// either: they were not pushed through portcullis.
	if resp, _ := e.do(t, http.MethodGet, "/v2/signed/app/manifests/denied", nil, true); resp.StatusCode != http.StatusOK {
		t.Fatalf("denied manifest for the push user: status %d", resp.StatusCode)
	}
	for d := range blobsOf(t, denied) {
		refused(t, "/v2/signed/app/blobs/"+d, false)
		refused(t, "/v2/signed/app/blobs/"+d, true)
	}
	refused(t, "/v2/signed/app/blobs/"+digest.FromString("never referenced").String(), false)
	if n := upstreamBlobs.Load() - served; n != 0 {
		t.Errorf("%d blob requests reached the upstream for refused blobs", n)
	}

	// A push user reads back what it pushed through portcullis; nobody else does.
	pushed := []byte("a pushed signature layer")
	pd := digest.FromBytes(pushed)
	if resp, b := e.do(t, http.MethodPost, "/v2/signed/app/blobs/uploads/?digest="+pd.String(), pushed, true); resp.StatusCode != http.StatusCreated {
		t.Fatalf("push: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.do(t, http.MethodGet, "/v2/signed/app/blobs/"+pd.String(), nil, true); resp.StatusCode != http.StatusOK || !bytes.Equal(b, pushed) {
		t.Errorf("push user reading back its blob: %d", resp.StatusCode)
	}
	// Anonymous clients are challenged (clients send credentials only then), and get nothing.
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		resp, b := e.do(t, method, "/v2/signed/app/blobs/"+pd.String(), nil, false)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" || bytes.Contains(b, pushed) {
			t.Errorf("%s of a pushed blob, anonymously: %d %s, want 401 with a challenge", method, resp.StatusCode, b)
		}
	}
}

func TestBlobGrantsSurviveRestart(t *testing.T) {
	root := t.TempDir()
	withStore := func(_ *upstream.Config, o *proxy.Options) {
		o.Store = store.New(filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}))
	}
	first := newEnv(t, withStore)
	img := randomImage(t)
	first.push(t, "demo/app:v1", img)
	if resp, _ := first.get(t, http.MethodGet, "/v2/demo/app/manifests/v1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("manifest: status %d", resp.StatusCode)
	}
	blobs := blobsOf(t, img)
	for d := range blobs {
		if resp, _ := first.get(t, http.MethodGet, "/v2/demo/app/blobs/"+d); resp.StatusCode != http.StatusOK {
			t.Fatalf("blob %s: status %d", d, resp.StatusCode)
		}
	}
	first.proxy.Close() // every request finished
	if err := first.h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	// A new portcullis on the same store, in front of an upstream that has nothing: the
	// grants and the blobs are read back from the store.
	second := newEnv(t, withStore)
	for d, want := range blobs {
		resp, b := second.get(t, http.MethodGet, "/v2/demo/app/blobs/"+d)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(b, want) {
			t.Errorf("after a restart, blob %s: status %d %s", d, resp.StatusCode, b)
		}
	}
	if resp, _ := second.get(t, http.MethodGet, "/v2/demo/other/blobs/"+firstKey(blobs)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("after a restart, another repository: status %d, want 404", resp.StatusCode)
	}
}

func firstKey(m map[string][]byte) string {
	for k := range m {
		return k
	}
	return ""
}
