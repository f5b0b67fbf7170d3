package faults

import (
	"bytes"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/internal/app"
	"github.com/portcullis/portcullis/internal/testtool"
)

// storeBytes sums the content (blobs and manifests) under a filesystem store's root.
func storeBytes(t *testing.T, root string) int64 {
	t.Helper()
	var n int64
	for _, dir := range []string{"blobs", "manifests"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !e.IsDir() && e.Name() == "data" {
				fi, err := e.Info()
				if err != nil {
					return err
				}
				n += fi.Size()
			}
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	return n
}

// TestStoreStaysUnderItsCap pulls three times storage.maxSize of distinct images through
// portcullis: the store is swept back under the cap, an evicted image pulls again (fetched
// and checked again), and the partial write a crash leaves is gone after a restart.
func TestStoreStaysUnderItsCap(t *testing.T) {
	up := httptest.NewServer(testtool.Distribution(t))
	t.Cleanup(up.Close)
	host := strings.TrimPrefix(up.URL, "http://")
	root := filepath.Join(t.TempDir(), "store")
	const maxSize = 256 << 10
	yml := "listen: 127.0.0.1:0\nlog: {level: error}\ndefaultPolicy: allow\n" +
		"storage: {driver: filesystem, params: {rootdirectory: " + root + "}, maxSize: 256KiB, sweepInterval: 50ms}\n" +
		"upstreams:\n  - {name: " + upstreamName + ", url: " + up.URL + ", insecure: true, default: true}\n"
	start := func() *httptest.Server {
		px := httptest.NewServer(testtool.Portcullis(t, yml, nil).Handler)
		t.Cleanup(px.Close)
		return px
	}
	px := start()
	pull := func(t *testing.T, px *httptest.Server, repo string, want map[string][]byte) {
		t.Helper()
		keys := slices.Sorted(maps.Keys(want)) // "manifest:…" first: it grants the blobs
		for _, d := range keys {
			b := want[d]
			kind := "blobs"
			if strings.HasPrefix(d, "manifest:") {
				kind, d = "manifests", strings.TrimPrefix(d, "manifest:")
			}
			resp, err := http.Get(px.URL + "/v2/" + repo + "/" + kind + "/" + d)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !bytes.Equal(got, b) {
				t.Fatalf("%s %s: status %d, %d of %d bytes", repo, d, resp.StatusCode, len(got), len(b))
			}
		}
	}
	images := map[string]map[string][]byte{}
	var total int64
	for i := 0; total < 3*maxSize; i++ {
		img := testtool.RandomImage(t, 32<<10, 2)
		repo := "cap/app" + string(rune('a'+i))
		ref, _ := name.ParseReference(host+"/"+repo+":v1", name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		raw, _ := img.RawManifest()
		want := map[string][]byte{"manifest:" + d.String(): raw}
		layers, _ := img.Layers()
		for _, l := range layers {
			ld, _ := l.Digest()
			rc, _ := l.Compressed()
			b, _ := io.ReadAll(rc)
			rc.Close()
			want[ld.String()] = b
			total += int64(len(b))
		}
		images[repo] = want
		pull(t, px, repo, want) // the manifest first, so that its blobs are granted
	}
	deadline := time.Now().Add(10 * time.Second)
	for storeBytes(t, root) > maxSize {
		if time.Now().After(deadline) {
			t.Fatalf("after pulling %d bytes the store holds %d, over its %d byte cap", total, storeBytes(t, root), maxSize)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The first image, the least recently served, was evicted; it pulls again, whole.
	evicted := 0
	for d := range images["cap/appa"] {
		if hex, ok := strings.CutPrefix(d, "sha256:"); ok {
			if _, err := os.Stat(filepath.Join(root, "blobs", "sha256", hex[:2], hex, "data")); os.IsNotExist(err) {
				evicted++
			}
		}
	}
	if evicted == 0 {
		t.Fatal("none of the first image's layers was evicted")
	}
	pull(t, px, "cap/appa", images["cap/appa"])

	// A crash mid-download leaves a partial write; the next start removes it.
	partial := filepath.Join(root, "uploads", "0123456789abcdef0123456789abcdef")
	if err := os.MkdirAll(filepath.Dir(partial), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(partial, []byte("half a blob"), 0o600); err != nil {
		t.Fatal(err)
	}
	start()
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Errorf("partial write after a restart: %v", err)
	}
}

// TestOneOffSweep is `portcullis gc`: one sweep of the configured store, over its cap.
func TestOneOffSweep(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "blobs", "sha256", "ab", "ab01", "data")
	if err := os.MkdirAll(filepath.Dir(data), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, bytes.Repeat([]byte("x"), 3000), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "portcullis.yaml")
	yml := "upstreams: [{name: up.test, url: \"http://127.0.0.1:9\", insecure: true}]\n" +
		"storage: {driver: filesystem, params: {rootdirectory: " + root + "}, maxSize: 1KiB}\n"
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := app.Sweep(t.Context(), cfg)
	if err != nil || r.Evicted != 1 || r.EvictedBytes != 3000 {
		t.Fatalf("Sweep = %+v, %v; want the 3000-byte blob evicted", r, err)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("blob still stored: %v", err)
	}
}
