package proxy_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/proxy/upstream"
)

// generated is a blob made on the fly from a seed, so that many large blobs cost no memory.
type generated struct {
	seed uint64
	size int64
}

func (g generated) reader() io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{byte(g.seed), byte(g.seed >> 8)}), g.size)
}

func (g generated) digest() digest.Digest {
	h := sha256.New()
	_, _ = io.Copy(h, g.reader())
	return digest.NewDigest(digest.SHA256, h)
}

// generatedProxy starts an upstream serving blobs (one image manifest per blob, tagged
// "b<i>", so that fetching it grants the blob) and a proxy in front of it.
func generatedProxy(t *testing.T, blobs []generated, stall time.Duration) (*httptest.Server, *store.Store, []digest.Digest) {
	t.Helper()
	ds := make([]digest.Digest, len(blobs))
	byDigest := map[digest.Digest]generated{}
	for i, b := range blobs {
		ds[i] = b.digest()
		byDigest[ds[i]] = b
	}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(r.URL.Path, "/manifests/b"):
			i, _ := strconv.Atoi(r.URL.Path[strings.LastIndex(r.URL.Path, "/b")+2:])
			m := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
				`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},`+
				`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`, digest.FromString("{}"), ds[i], blobs[i].size)
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Header().Set("Content-Length", strconv.Itoa(len(m)))
			_, _ = w.Write(m)
		case strings.Contains(r.URL.Path, "/blobs/"):
			g, ok := byDigest[digest.Digest(r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:])]
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Length", strconv.FormatInt(g.size, 10))
			_, _ = io.Copy(w, g.reader())
		}
	}))
	// The upstream client keeps up to 32 idle connections per host for 90s; the upstream
	// closes them after a second, so their goroutines do not count against the proxy's.
	up.Config.IdleTimeout = time.Second
	up.Start()
	t.Cleanup(up.Close)
	zero := 0
	u, err := upstream.New(upstream.Config{Name: upName, URL: up.URL, Insecure: true, Default: true, Timeout: 10 * time.Second, Retries: &zero}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ups, _ := proxy.NewUpstreams(u)
	st := store.New(filesystem.New(filesystem.DriverParameters{RootDirectory: t.TempDir(), MaxThreads: 100}))
	h, err := proxy.New(proxy.Options{Store: st, Upstreams: ups, Gate: admitAll{}, Logger: slog.New(slog.DiscardHandler), ClientStall: stall})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	px := httptest.NewUnstartedServer(h)
	// As serve does (with 2m): a connection whose response the kernel's buffers took whole
	// sits idle in keep-alive until this, not forever.
	px.Config.IdleTimeout = time.Second
	px.Start()
	t.Cleanup(px.Close)
	return px, st, ds
}

// storedAll waits until every blob is committed in the store.
func storedAll(t *testing.T, st *store.Store, ds []digest.Digest, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, d := range ds {
		for {
			if _, linked, err := st.BlobSize(context.Background(), upName, "slow/app", d); err == nil && linked {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("blob %s not stored within %s: the download waited for its client", d, within)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestIdleClientsHoldLittle opens 64 connections that ask for cold 4 MiB blobs and never
// read: every download still completes into the store at the upstream's pace, the proxy's
// heap grows by less than 2 MiB per connection (a download uses 6 MiB of buffers while it
// runs), and once the stall timeout has cut the responses still being written (and the idle
// timeout the connections whose responses the kernel's buffers took whole), the goroutines
// are back to the baseline.
func TestIdleClientsHoldLittle(t *testing.T) {
	const conns, size = 64, 4 << 20
	var blobs []generated
	for i := range conns {
		blobs = append(blobs, generated{seed: uint64(i + 1), size: size})
	}
	px, st, ds := generatedProxy(t, blobs, time.Second)
	for i := range conns { // the manifests grant the blobs
		getManifest(t, fmt.Sprintf("%s/v2/slow/app/manifests/b%d", px.URL, i))
	}
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)
	baseGoroutines, baseHeap := runtime.NumGoroutine(), heapInUse()

	var idle []net.Conn
	for _, d := range ds {
		c, err := net.Dial("tcp", strings.TrimPrefix(px.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
		fmt.Fprintf(c, "GET /v2/slow/app/blobs/%s HTTP/1.1\r\nHost: portcullis\r\n\r\n", d)
		// Read the status line only, as a client that then stops reading.
		status, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.Contains(status, "200") {
			t.Fatalf("status %q, %v", status, err)
		}
	}
	storedAll(t, st, ds, 60*time.Second)
	grown := int64(heapInUse()) - int64(baseHeap)
	t.Logf("%d idle connections: heap grew by %.1f MiB (%.2f MiB per connection)", conns, float64(grown)/(1<<20), float64(grown)/(1<<20)/conns)
	if grown > conns*2<<20 {
		t.Errorf("heap grew by %d MiB for %d idle connections, want under %d MiB", grown>>20, conns, conns*2)
	}
	deadline := time.Now().Add(20 * time.Second)
	for runtime.NumGoroutine() > baseGoroutines+4 {
		if time.Now().After(deadline) {
			var stacks strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
			t.Fatalf("%d goroutines %s after the stall timeout, baseline %d:\n%s", runtime.NumGoroutine(), "20s", baseGoroutines, stacks.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range idle {
		c.Close()
	}
}

// TestSlowClientCompletes reads a cold 4 MiB blob at 20 KiB/s (over three minutes): the
// upstream download completes into the store at once, and the client, served the rest from
// the store, gets every byte.
func TestSlowClientCompletes(t *testing.T) {
	if testing.Short() {
		t.Skip("reads for over three minutes")
	}
	t.Parallel()
	const size, rate = 4 << 20, 20 << 10
	blob := generated{seed: 1000, size: size}
	px, st, ds := generatedProxy(t, []generated{blob}, 0)
	getManifest(t, px.URL+"/v2/slow/app/manifests/b0")
	resp, err := http.Get(px.URL + "/v2/slow/app/blobs/" + ds[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	storedAll(t, st, ds, 30*time.Second)
	h := sha256.New()
	var n int64
	buf := make([]byte, rate/10)
	for start := time.Now(); ; {
		k, err := io.ReadFull(resp.Body, buf)
		h.Write(buf[:k])
		n += int64(k)
		if err != nil {
			break
		}
		// Keep to the rate: n bytes take n/rate seconds.
		if ahead := time.Duration(float64(n)/rate*float64(time.Second)) - time.Since(start); ahead > 0 {
			time.Sleep(ahead)
		}
	}
	if got := digest.NewDigest(digest.SHA256, h); n != size || got != ds[0] {
		t.Fatalf("slow client got %d bytes with digest %s, want %d bytes %s", n, got, size, ds[0])
	}
}
