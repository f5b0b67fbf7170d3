package bench_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testtool"
	"github.com/portcullis/portcullis/test/bench"
	"github.com/portcullis/portcullis/verify/oci"
)

// TestColdDigestOneSignatureLookup sends 500 concurrent requests for one signed digest that
// portcullis has never seen and checks, at the upstream, that its signatures were looked up
// exactly once: one GET of the legacy ".sig" tag, one referrers API request and one GET of
// the referrers tag schema index, whatever the interleaving.
func TestColdDigestOneSignatureLookup(t *testing.T) {
	up, count := inProcessUpstream(t)
	host := strings.TrimPrefix(up.URL, "http://")
	key := newSigningKey(t)
	img := pushImage(t, host, "cold/app", "v1", 256, 1)
	signBundle(t, host, key, img)

	a := inProcessPortcullis(t, portcullisYAML("127.0.0.1:0", "", up.URL, key.pubPath, ""))
	px := httptest.NewServer(a.Handler)
	t.Cleanup(px.Close)
	count.reset()

	const n = 500
	client := bench.Client(n)
	t.Cleanup(client.CloseIdleConnections)
	url := px.URL + "/v2/cold/app/manifests/" + img.digest.String()
	res := bench.Burst(context.Background(), n, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Accept", oci.MediaTypeOCIManifest)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || !bytes.Equal(b, img.manifest) {
			return fmt.Errorf("status %d, body %.200s", resp.StatusCode, b)
		}
		return nil
	})
	if res.Errors > 0 {
		t.Fatalf("%d of %d requests failed, first: %v", res.Errors, n, res.FirstErr)
	}
	for _, kind := range []string{countSigTag, countReferrersAPI, countReferrersTag} {
		if got := count.get(kind); got != 1 {
			t.Errorf("upstream saw %d × %s for %d concurrent cold requests, want exactly 1", got, kind, n)
		}
	}
	// The image's manifest once (concurrent fetches are collapsed) and the bundle referrer's.
	if got := count.get(countManifestGET); got != 2 {
		t.Errorf("upstream saw %d other manifest GETs for %d concurrent cold requests, want 2 (the image, its bundle)", got, n)
	}
	st := a.Stats()
	if st.Allowed != n || st.Denied != 0 || st.Failed != 0 {
		t.Errorf("engine stats %+v, want %d allowed and nothing else", st, n)
	}
	t.Logf("500 cold requests in %s (p50 %s, p99 %s); upstream manifest GETs %d",
		res.Elapsed, res.Percentile(0.5), res.Percentile(0.99), count.get(countManifestGET))
}

// BenchmarkWarmManifest measures the cached-decision path through portcullis's HTTP handler
// (no network between client and handler): a manifest whose signature was verified once,
// served again after the policy engine finds its decision cached. By digest the upstream is
// not contacted; by tag, with cache.tagTTL set, neither. Logs are JSON lines to io.Discard at
// the default level (info: a request line and an audit line per GET) and at warn (neither).
func BenchmarkWarmManifest(b *testing.B) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelWarn} {
		b.Run("by-digest/log="+level.String(), func(b *testing.B) { warmManifest(b, false, level) })
		b.Run("by-tag/log="+level.String(), func(b *testing.B) { warmManifest(b, true, level) })
	}
}

func warmManifest(b *testing.B, byTag bool, level slog.Level) {
	up, count := inProcessUpstream(b)
	host := strings.TrimPrefix(up.URL, "http://")
	key := newSigningKey(b)
	img := pushImage(b, host, "warm/app", "v1", 256, 1)
	signBundle(b, host, key, img)
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: level}))
	a := testtool.Portcullis(b, portcullisYAML("127.0.0.1:0", "", up.URL, key.pubPath, "cache: {tagTTL: 1h}\n"), log)
	ref := img.digest.String()
	if byTag {
		ref = img.tag
	}
	req := httptest.NewRequest(http.MethodGet, "/v2/warm/app/manifests/"+ref, nil)
	req.Header.Set("Accept", oci.MediaTypeOCIManifest)
	serve := func() {
		w := httptest.NewRecorder()
		a.Handler.ServeHTTP(w, req)
		if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), img.manifest) {
			b.Fatalf("status %d: %s", w.Code, w.Body.Bytes())
		}
	}
	serve() // verify once: the decision is cached from here on
	count.reset()
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		serve()
	}
	b.StopTimer()
	// Wall time per op suffers from whatever else runs on the machine; the process's CPU time
	// per op (user and system, GC included) much less so.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	if n := count.get(countSigTag) + count.get(countReferrersAPI) + count.get(countManifestGET) + count.get(countManifestHEAD); n != 0 {
		b.Fatalf("the warm path sent %d requests upstream", n)
	}
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDecisionCache reports the heap one cached decision takes in cache.Memory (1M
// allowed decisions shaped like the engine's) and the cost of a lookup.
func BenchmarkDecisionCache(b *testing.B) {
	for b.Loop() {
		per, get := decisionBytes(b, 1_000_000)
		b.ReportMetric(per, "B/decision")
		b.ReportMetric(float64(get.Nanoseconds()), "ns/Get")
	}
}

// TestColdDigestRoundTrips counts the dependent upstream round trips from a client's GET of a
// never-seen manifest by digest to portcullis's answer, through an upstream 20 ms away: the
// signature lookup starts with the manifest fetch, so a bundle signature (cosign v3) takes 3
// (the manifest with the .sig tag and the referrers index; the bundle manifest; its blob) and
// a legacy ".sig" 2 (the manifest with the .sig manifest; its signature blob). A tag that
// moved takes 4: the HEAD that finds it moved, then as by digest.
func TestColdDigestRoundTrips(t *testing.T) {
	c := &counter{next: testtool.Distribution(t), delay: 20 * time.Millisecond}
	up := httptest.NewServer(c)
	t.Cleanup(up.Close)
	host := strings.TrimPrefix(up.URL, "http://")
	key := newSigningKey(t)
	a := inProcessPortcullis(t, portcullisYAML("127.0.0.1:0", "", up.URL, key.pubPath, ""))
	px := httptest.NewServer(a.Handler)
	t.Cleanup(px.Close)
	for _, tc := range []struct {
		name   string
		sign   func(p pushed)
		chain  int
		format string
	}{
		{"warm-up", func(p pushed) { signBundle(t, host, key, p) }, 0, ""}, // the handshake and the referrers API probe, once per upstream
		{"bundle", func(p pushed) { signBundle(t, host, key, p) }, 3, "bundle"},
		{"legacy", func(p pushed) { signLegacy(t, host, key, p) }, 2, "legacy .sig"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pushImage(t, host, "rtt/"+tc.name, "v1", 256, 1)
			tc.sign(p)
			c.reset()
			resp, err := http.Get(px.URL + "/v2/rtt/" + tc.name + "/manifests/" + p.digest.String())
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !bytes.Equal(b, p.manifest) {
				t.Fatalf("status %d: %.200s", resp.StatusCode, b)
			}
			if tc.chain == 0 {
				return
			}
			if got := c.chain(); got > tc.chain {
				t.Errorf("a cold decision for a %s signature took %d dependent upstream round trips (%d requests), want at most %d",
					tc.format, got, c.total(), tc.chain)
			}
		})
	}
	// A tag that moved to a new signed image: the HEAD that finds it moved hints the new
	// digest, whose signature lookup starts with the GET: HEAD; GET with the .sig tag and the
	// referrers; the bundle manifest; its blob.
	p := pushImage(t, host, "rtt/moved", "v1", 256, 1)
	signBundle(t, host, key, p)
	get := func(p pushed) {
		t.Helper()
		resp, err := http.Get(px.URL + "/v2/rtt/moved/manifests/v1")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Equal(b, p.manifest) {
			t.Fatalf("status %d: %.200s", resp.StatusCode, b)
		}
	}
	get(p)
	p = pushImage(t, host, "rtt/moved", "v1", 256, 1)
	signBundle(t, host, key, p)
	c.reset()
	get(p)
	if got := c.chain(); got > 4 {
		t.Errorf("a moved tag's new image took %d dependent upstream round trips (%d requests), want at most 4", got, c.total())
	}
}
