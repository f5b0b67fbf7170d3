package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/upstream"
)

// limitedCounts returns portcullis.requests.limited by reason.
func limitedCounts(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "portcullis.requests.limited" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				r, _ := dp.Attributes.Value(attribute.Key("reason"))
				out[r.AsString()] = dp.Value
			}
		}
	}
	return out
}

// TestOverload: a burst of cold requests beyond the limits (server.maxInFlight, the
// upstream's maxConcurrent with its queue wait) against an upstream that holds every request
// is answered at once with 503 and Retry-After rather than queued; the goroutines do not pile
// up (they are back to where they were once the burst is over); and a manifest answered from
// memory keeps its latency throughout (it is outside the in-flight limit): every such GET
// during the burst takes a small part of the time the upstream holds the cold ones.
func TestOverload(t *testing.T) {
	const (
		maxInFlight   = 8
		maxConcurrent = 2
		burst         = 40
		hold          = 3 * time.Second
	)
	reader := sdkmetric.NewManualReader()
	e := newEnv(t, func(uc *upstream.Config, po *proxy.Options) {
		uc.MaxConcurrent, uc.QueueWait = maxConcurrent, 50*time.Millisecond
		po.MaxInFlight = maxInFlight
		po.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
	})
	img, _ := random.Image(256, 1)
	d := e.push(t, "fast/app:v1", img)
	for i := range burst {
		small, _ := random.Image(64, 1)
		e.push(t, fmt.Sprintf("slow/app:t%d", i), small)
	}
	cached := "/v2/fast/app/manifests/" + d.String()
	if resp, b := e.get(t, http.MethodGet, cached); resp.StatusCode != http.StatusOK {
		t.Fatalf("warm GET: %d %s", resp.StatusCode, b)
	}
	release := make(chan struct{})
	var held atomic.Int64
	e.faults.set(func(_ http.ResponseWriter, r *http.Request) bool {
		if strings.HasPrefix(r.URL.Path, "/v2/slow/") {
			held.Add(1)
			<-release
		}
		return false
	})

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: burst * 2}}
	defer client.CloseIdleConnections()
	get := func(p string) (int, string, time.Duration, error) {
		start := time.Now()
		resp, err := client.Get(e.proxy.URL + p)
		if err != nil {
			return 0, "", 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After"), time.Since(start), nil
	}
	// Latency of the cached manifest before the burst.
	var before []time.Duration
	for range 20 {
		_, _, took, err := get(cached)
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, took)
	}
	client.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)
	goroutinesBefore := runtime.NumGoroutine()

	type answer struct {
		status     int
		retryAfter string
		took       time.Duration
	}
	answers := make(chan answer, burst)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range burst {
		wg.Go(func() {
			status, ra, took, err := get(fmt.Sprintf("/v2/slow/app/manifests/t%d", i))
			if err != nil {
				t.Error(err)
			}
			answers <- answer{status, ra, took}
		})
	}
	// Every refused request is answered while the admitted ones are still held.
	var refused []answer
	for len(refused) < burst-maxConcurrent && time.Since(start) < hold {
		select {
		case a := <-answers:
			refused = append(refused, a)
		case <-time.After(hold):
		}
	}
	var during []time.Duration
	for range 20 {
		status, _, took, err := get(cached)
		if err != nil || status != http.StatusOK {
			t.Fatalf("cached GET during the burst: %d %v", status, err)
		}
		during = append(during, took)
	}
	client.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)
	goroutinesDuring := runtime.NumGoroutine()
	if got := held.Load(); got != maxConcurrent {
		t.Errorf("the upstream holds %d requests, want maxConcurrent = %d", got, maxConcurrent)
	}
	close(release)
	wg.Wait()
	close(answers)
	for a := range answers {
		if a.status != http.StatusOK {
			t.Errorf("a request admitted to the upstream got %d, want 200", a.status)
		}
	}

	if len(refused) != burst-maxConcurrent {
		t.Fatalf("%d requests refused before the upstream answered, want %d", len(refused), burst-maxConcurrent)
	}
	for _, a := range refused {
		if a.status != http.StatusServiceUnavailable {
			t.Errorf("refused request: %d, want 503", a.status)
		}
		if n, err := strconv.Atoi(a.retryAfter); err != nil || n < 1 {
			t.Errorf("refused request: Retry-After %q, want seconds", a.retryAfter)
		}
		if a.took > hold/2 {
			t.Errorf("a refused request took %s: queued, not refused (the upstream holds requests for %s)", a.took, hold)
		}
	}
	slices.Sort(during)
	if worst := during[len(during)-1]; worst > hold/10 {
		t.Errorf("cached GETs during the burst took up to %s (before: %v): they waited behind the burst (held %s)", worst, before, hold)
	}
	// While the admitted requests are held, the refused ones have left no goroutine behind:
	// only those of the held requests remain (a server connection, the client's, the
	// upstream request and its server side: a handful each).
	if extra := goroutinesDuring - goroutinesBefore; extra > 8*maxInFlight {
		t.Errorf("%d more goroutines during the burst than before: refused requests piled up", extra)
	}
	deadline := time.Now().Add(5 * time.Second)
	// The upstream connections the held requests opened stay idle (a few goroutines each).
	slack := 3*maxConcurrent + 4
	for runtime.NumGoroutine() > goroutinesBefore+slack && time.Now().Before(deadline) {
		client.CloseIdleConnections()
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutinesBefore+slack {
		t.Errorf("%d goroutines after the burst, %d before", n, goroutinesBefore)
	}
	got := limitedCounts(t, reader)
	if total := got["in_flight"] + got["upstream_concurrency"]; total != burst-maxConcurrent || got["in_flight"] == 0 || got["upstream_concurrency"] == 0 {
		t.Errorf("portcullis.requests.limited = %v, want %d in all, by both in_flight and upstream_concurrency", got, burst-maxConcurrent)
	}
}

// TestUpstreamRateLimit: an upstream's 429 reaches the client as 429 TOOMANYREQUESTS with the
// upstream's Retry-After, after one upstream request (no retries); until it has passed the
// upstream is not asked again; then it is.
func TestUpstreamRateLimit(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	three := 3
	e := newEnv(t, func(uc *upstream.Config, po *proxy.Options) {
		uc.Retries = &three
		po.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
	})
	img, _ := random.Image(64, 1)
	e.push(t, "demo/app:v1", img)
	var limited atomic.Bool
	limited.Store(true)
	e.faults.set(func(w http.ResponseWriter, _ *http.Request) bool {
		if limited.Load() {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}
		return false
	})
	before := e.faults.requests.Load()
	for i := range 3 {
		resp, b := e.get(t, http.MethodGet, "/v2/demo/app/manifests/v1")
		if resp.StatusCode != http.StatusTooManyRequests || errCode(t, b) != "TOOMANYREQUESTS" {
			t.Fatalf("GET %d while rate limited: %d %s, want 429 TOOMANYREQUESTS", i, resp.StatusCode, b)
		}
		if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); ra < 1 || ra > 2 {
			t.Errorf("GET %d: Retry-After %q, want 1 or 2", i, resp.Header.Get("Retry-After"))
		}
	}
	if n := e.faults.requests.Load() - before; n != 1 {
		t.Errorf("the upstream got %d requests for 3 client requests while it asked for 2s of quiet, want 1", n)
	}
	limited.Store(false)
	time.Sleep(2100 * time.Millisecond)
	if resp, b := e.get(t, http.MethodGet, "/v2/demo/app/manifests/v1"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET after Retry-After: %d %s", resp.StatusCode, b)
	}
	if got := limitedCounts(t, reader); got["upstream_rate_limit"] != 3 {
		t.Errorf("portcullis.requests.limited = %v, want upstream_rate_limit 3", got)
	}
}
