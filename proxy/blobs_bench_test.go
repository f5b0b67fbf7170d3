package proxy_test

import (
	"crypto/rand"
	"encoding/binary"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// BenchmarkColdBlob measures 64 MiB blob GETs over loopback, in one run: "direct" from an
// in-process upstream, "cold" through the handler (streamed from that upstream while stored
// on a filesystem store under $TMPDIR and digest-checked) and "warm" (the same blob again,
// from the store). Each iteration fetches a blob not seen before. It reports each one's
// throughput (MiB/s, wall), its cost (CPU ns/MiB: the whole test process's user+system time,
// upstream and client included, per MiB) and the ratios to direct.
func BenchmarkColdBlob(b *testing.B) {
	const size = 64 << 20
	var mu sync.Mutex // guards blob and its digest, changed between iterations
	blob := make([]byte, size)
	_, _ = rand.Read(blob)
	var d digest.Digest
	root := b.TempDir()
	up, px := blobProxy(b, root, func() []byte { mu.Lock(); defer mu.Unlock(); return blob },
		func() digest.Digest { mu.Lock(); defer mu.Unlock(); return d })
	get := func(method, url string) {
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			b.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || (method == http.MethodGet && n != size) {
			b.Fatalf("%s %s: %d, %d bytes, %v", method, url, resp.StatusCode, n, err)
		}
	}
	type phase struct {
		name      string
		wall, cpu time.Duration
	}
	phases := []*phase{{name: "direct"}, {name: "cold"}, {name: "warm"}}
	timed := func(p *phase, url string) {
		w0, c0 := time.Now(), cpuTime()
		get(http.MethodGet, url)
		p.wall += time.Since(w0)
		p.cpu += cpuTime() - c0
	}
	for b.Loop() {
		mu.Lock()
		binary.BigEndian.PutUint64(blob, uint64(time.Now().UnixNano()))
		d = digest.FromBytes(blob)
		path := "/v2/bench/blob/blobs/" + d.String()
		mu.Unlock()
		getManifest(b, px+"/v2/bench/blob/manifests/v1") // a runtime reads the manifest that grants the blob first
		timed(phases[0], up+path)
		timed(phases[1], px+path)
		get(http.MethodHead, px+path) // until the store's copy is committed
		timed(phases[2], px+path)
		// Drop the store's copy to keep disk use flat (retried: the store may be writing the
		// blob's used marker behind the last GET).
		var err error
		for range 5 {
			if err = os.RemoveAll(filepath.Join(root, "blobs")); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	mib := float64(size) / (1 << 20) * float64(b.N)
	rate := func(p *phase) float64 { return mib / p.wall.Seconds() }
	for _, p := range phases {
		b.ReportMetric(rate(p), p.name+"-MiB/s")
		b.ReportMetric(float64(p.cpu.Nanoseconds())/mib, p.name+"-CPU-ns/MiB")
	}
	b.ReportMetric(rate(phases[1])/rate(phases[0]), "cold/direct")
	b.ReportMetric(rate(phases[2])/rate(phases[0]), "warm/direct")
}

// cpuTime is the user and system CPU time of the whole test process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
