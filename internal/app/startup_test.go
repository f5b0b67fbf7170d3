package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"runtime"
	"testing"

	"github.com/portcullis/portcullis/internal/app"
)

// startupHeapBudget bounds the heap that one App keeps after New for the configuration of
// the idle-RSS benchmark (test/bench: a filesystem store, one upstream, one policy requiring a
// key signature). New keeps about 70 KiB today; the rest of a fresh process's heap (~4.4 MiB
// live after startup) is package state of linked dependencies, which New cannot change. The
// budget leaves room for proportionate growth and fails on a cache, buffer or pool sized up
// front (a decision map pre-sized for the default cache.size of 10000 alone keeps ~430 KiB):
// the caches of decisions, tags and content must grow with use, not at start.
const startupHeapBudget = 256 << 10

// TestStartupHeap: the heap an App retains after New, for the benchmark's configuration, is
// within startupHeapBudget (HeapAlloc after a GC, with the App alive, minus the same before
// New). A first App built and closed beforehand takes the one-time lazy state of
// dependencies (type caches, registries filled on first use) out of the figure.
func TestStartupHeap(t *testing.T) {
	f := newFixture(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	f.write("cosign.pub", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	f.write("portcullis.yaml", fmt.Sprintf(`listen: 127.0.0.1:0
storage: {driver: filesystem, params: {rootdirectory: %s/store}}
upstreams:
  - {name: registry.test, url: "http://127.0.0.1:1", insecure: true, default: true}
policies:
  - name: signed
    images: ["registry.test/**"]
    authorities:
      - {name: key, key: {path: cosign.pub}}
defaultPolicy: deny
log: {format: json}
`, f.dir))
	cfg := f.load()
	ctx := context.Background()
	build := func() *app.App {
		a, err := app.New(ctx, cfg, app.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	if err := build().Close(ctx); err != nil {
		t.Fatal(err)
	}
	before := liveHeap()
	a := build()
	after := liveHeap()
	t.Cleanup(func() { _ = a.Close(ctx) })
	runtime.KeepAlive(a)
	retained := int64(after) - int64(before)
	t.Logf("heap retained by one App after New: %d KiB (budget %d KiB)", retained>>10, startupHeapBudget>>10)
	if retained > startupHeapBudget {
		t.Errorf("New retains %d KiB of heap for a minimal configuration, want at most %d KiB: is a cache, buffer or pool sized up front?",
			retained>>10, startupHeapBudget>>10)
	}
}

// liveHeap returns the bytes of heap objects reachable after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC() // the second frees what finalizers of the first released
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
