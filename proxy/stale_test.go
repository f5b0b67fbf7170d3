package proxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/opencontainers/go-digest"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/proxy/upstream"
)

// clock is a test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// upstreamGate admits every manifest but those in deny, as a policy engine would, and cannot
// decide (its signatures are upstream) while the upstream fails, as a policy engine whose
// cached decision expired.
type upstreamGate struct {
	clock    *clock
	failing  atomic.Bool
	mu       sync.Mutex
	deny     map[digest.Digest]bool
	admitted atomic.Int64
}

func (g *upstreamGate) Admit(_ context.Context, req policy.Request) (policy.Decision, error) {
	g.mu.Lock()
	denied := g.deny[req.Manifest.Digest]
	g.mu.Unlock()
	switch {
	case denied:
		return policy.Decision{}, &policy.DenyError{Image: req.Image, Digest: req.Manifest.Digest, Policy: "test", Reason: "not signed"}
	case g.failing.Load():
		return policy.Decision{}, fmt.Errorf("admit %s: verify signatures: %w", req.Image,
			&upstream.UnavailableError{Upstream: upName, Err: syscall.ECONNREFUSED})
	}
	g.admitted.Add(1)
	return policy.Decision{Allowed: true, DecidedAt: g.clock.Now()}, nil
}

func (g *upstreamGate) denyDigest(d digest.Digest) {
	g.mu.Lock()
	g.deny[d] = true
	g.mu.Unlock()
}

// staleCounts returns portcullis.stale by "kind/outcome".
func staleCounts(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "portcullis.stale" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				k, _ := dp.Attributes.Value(attribute.Key("kind"))
				o, _ := dp.Attributes.Value(attribute.Key("outcome"))
				out[k.AsString()+"/"+o.AsString()] = dp.Value
			}
		}
	}
	return out
}

// TestStaleIfError: with the upstream failing in each of the ways stale-if-error covers, a tag
// pulled before keeps resolving to its digest and pulling (manifest and blobs) within
// maxStale, and not after; what was never verified gets 503 UNAVAILABLE with Retry-After and
// a message saying why; a denied digest stays denied; a second handler sharing the store
// (another replica, or a restart) knows the tag too; the metrics count all of it.
func TestStaleIfError(t *testing.T) {
	const maxStale = time.Hour
	for _, tc := range []struct {
		name string
		// fail makes the upstream fail; stop stops it altogether.
		fail func(w http.ResponseWriter, r *http.Request) bool
		stop bool
	}{
		{name: "stopped", stop: true},
		{name: "500", fail: func(w http.ResponseWriter, _ *http.Request) bool {
			w.WriteHeader(http.StatusInternalServerError)
			return true
		}},
		{name: "503", fail: func(w http.ResponseWriter, _ *http.Request) bool {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}},
		{name: "429", fail: func(w http.ResponseWriter, _ *http.Request) bool {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			gate := &upstreamGate{clock: clk, deny: map[digest.Digest]bool{}}
			reader := sdkmetric.NewManualReader()
			st := store.New(inmemory.New())
			e := newEnv(t, func(_ *upstream.Config, po *proxy.Options) {
				po.Store, po.Gate, po.MaxStale, po.Now = st, gate, maxStale, clk.Now
				po.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
			})
			img, err := random.Image(512, 2)
			if err != nil {
				t.Fatal(err)
			}
			d := e.push(t, "demo/app:v1", img)
			denied, _ := random.Image(512, 1)
			dd := e.push(t, "demo/denied:v1", denied)
			gate.denyDigest(digest.Digest(dd.String()))
			cfg, _ := img.ConfigName()
			layers, _ := img.Layers()
			ld, _ := layers[0].Digest()
			for _, p := range []string{"/v2/demo/app/manifests/v1", "/v2/demo/app/blobs/" + cfg.String(), "/v2/demo/app/blobs/" + ld.String()} {
				if resp, b := e.get(t, http.MethodGet, p); resp.StatusCode != http.StatusOK {
					t.Fatalf("healthy GET %s: %d %s", p, resp.StatusCode, b)
				}
			}
			if resp, _ := e.get(t, http.MethodGet, "/v2/demo/denied/manifests/v1"); resp.StatusCode != http.StatusForbidden {
				t.Fatalf("healthy GET of the denied image: %d, want 403", resp.StatusCode)
			}
			if err := e.h.Close(context.Background()); err != nil { // the records are written behind
				t.Fatal(err)
			}

			if tc.stop {
				e.up.Close()
			} else {
				e.faults.set(tc.fail)
			}
			gate.failing.Store(true)
			clk.advance(maxStale / 2)
			// A second handler on the same store: another replica, or this one restarted.
			u2, err := upstream.New(upstream.Config{Name: upName, URL: e.up.URL, Insecure: true, Default: true, Timeout: 2 * time.Second, Retries: new(int)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ups2, _ := proxy.NewUpstreams(u2)
			h2, err := proxy.New(proxy.Options{Store: st, Upstreams: ups2, Gate: gate, MaxStale: maxStale, Now: clk.Now, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			replica := httptest.NewServer(h2)
			t.Cleanup(replica.Close)

			for _, base := range []string{e.proxy.URL, replica.URL} {
				for _, p := range []string{"/v2/demo/app/manifests/v1", "/v2/demo/app/manifests/" + d.String(),
					"/v2/demo/app/blobs/" + cfg.String(), "/v2/demo/app/blobs/" + ld.String()} {
					resp, b := getURL(t, base+p)
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("GET %s%s with the upstream failing, within maxStale: %d %s", base, p, resp.StatusCode, b)
					}
					if strings.Contains(p, "/manifests/") && resp.Header.Get("Docker-Content-Digest") != d.String() {
						t.Errorf("GET %s: digest %s, want %s", p, resp.Header.Get("Docker-Content-Digest"), d)
					}
				}
			}
			// Never verified, and denied.
			for _, c := range []struct {
				path, want string
				status     int
			}{
				{"/v2/demo/other/manifests/v1", "never verified tag v1", http.StatusServiceUnavailable},
				{"/v2/demo/app/manifests/v2", "never verified tag v2", http.StatusServiceUnavailable},
				{"/v2/demo/app/manifests/sha256:" + strings.Repeat("a", 64), "does not have manifest", http.StatusServiceUnavailable},
				{"/v2/demo/denied/manifests/v1", "denied", http.StatusForbidden},
				{"/v2/demo/denied/manifests/" + dd.String(), "denied", http.StatusForbidden},
			} {
				resp, b := getURL(t, e.proxy.URL+c.path)
				if resp.StatusCode != c.status || !strings.Contains(string(b), c.want) {
					t.Errorf("GET %s: %d %s, want %d with %q", c.path, resp.StatusCode, b, c.status, c.want)
				}
				if c.status == http.StatusServiceUnavailable {
					if code := errCode(t, b); code != "UNAVAILABLE" {
						t.Errorf("GET %s: error code %s, want UNAVAILABLE", c.path, code)
					}
					if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
						t.Errorf("GET %s: Retry-After %q, want a number of seconds", c.path, resp.Header.Get("Retry-After"))
					}
				}
			}

			// Past maxStale: nothing stale any more.
			clk.advance(maxStale)
			for _, p := range []string{"/v2/demo/app/manifests/v1", "/v2/demo/app/manifests/" + d.String()} {
				resp, b := getURL(t, replica.URL+p)
				if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "cache.maxStale") {
					t.Errorf("GET %s past maxStale: %d %s, want 503 naming cache.maxStale", p, resp.StatusCode, b)
				}
			}
			got := staleCounts(t, reader)
			// First handler: the tag and the digest served (the tag's manifest decided stale
			// twice: by tag and by digest); refused: two tags and a digest never seen.
			want := map[string]int64{"tag/served": 1, "decision/served": 2, "tag/refused": 2, "manifest/refused": 1}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("portcullis.stale{%s} = %d, want %d (all: %v)", k, got[k], v, got)
				}
			}
			if err := h2.Close(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestStaleOff: without maxStale, an upstream failure is the answer, and nothing stale is
// served.
func TestStaleOff(t *testing.T) {
	e := newEnv(t)
	img, _ := random.Image(256, 1)
	e.push(t, "demo/app:v1", img)
	if resp, b := e.get(t, http.MethodGet, "/v2/demo/app/manifests/v1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %d %s", resp.StatusCode, b)
	}
	e.faults.set(func(w http.ResponseWriter, _ *http.Request) bool {
		w.WriteHeader(http.StatusInternalServerError)
		return true
	})
	if resp, b := e.get(t, http.MethodGet, "/v2/demo/app/manifests/v1"); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("GET with the upstream failing and maxStale 0: %d %s, want 502", resp.StatusCode, b)
	}
}

func getURL(t *testing.T, u string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp, []byte(b.String())
}
