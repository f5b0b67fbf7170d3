package bench

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Load bounds one load run: it stops after Requests requests or after Duration, whichever
// comes first. At least one bound must be set.
type Load struct {
	// Concurrency is the number of clients sending requests back to back. Default 1.
	Concurrency int
	// Requests caps the total number of requests (0: no cap).
	Requests int
	// Duration caps the run's wall time (0: no cap).
	Duration time.Duration
}

// Result is what one load run measured.
type Result struct {
	Requests int
	Errors   int
	// FirstErr is the first error seen, if any.
	FirstErr error
	Elapsed  time.Duration
	// Latencies of the successful requests, sorted.
	Latencies []time.Duration
}

// Throughput is successful requests per second.
func (r Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(len(r.Latencies)) / r.Elapsed.Seconds()
}

// Percentile returns the q-quantile (0 < q ≤ 1) of the successful requests' latencies.
func (r Result) Percentile(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(q*float64(len(r.Latencies))+0.5) - 1
	return r.Latencies[min(max(i, 0), len(r.Latencies)-1)]
}

// ErrNotLoopback is returned by CheckLoopback for a URL whose host is not 127.0.0.1 or ::1.
var ErrNotLoopback = errors.New("load generator only targets loopback addresses")

// CheckLoopback refuses any target that is not a loopback IP address.
func CheckLoopback(target string) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !ip.IsLoopback() {
		return ErrNotLoopback
	}
	return nil
}

// Run sends requests with do from l.Concurrency goroutines until a bound of l is reached or
// ctx ends, and returns the latencies. do must consume and close the response itself.
func Run(ctx context.Context, l Load, do func(ctx context.Context) error) Result {
	if l.Concurrency < 1 {
		l.Concurrency = 1
	}
	if l.Requests == 0 && l.Duration == 0 {
		l.Requests = 1
	}
	if l.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.Duration)
		defer cancel()
	}
	var (
		issued atomic.Int64
		mu     sync.Mutex
		res    Result
		wg     sync.WaitGroup
	)
	start := time.Now()
	for range l.Concurrency {
		wg.Go(func() {
			var lat []time.Duration
			var errs int
			var first error
			for ctx.Err() == nil {
				if l.Requests > 0 && issued.Add(1) > int64(l.Requests) {
					break
				}
				t0 := time.Now()
				err := do(ctx)
				if err != nil {
					if ctx.Err() != nil {
						break // the deadline cut this request short: not an error
					}
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.Latencies = append(res.Latencies, lat...)
			res.Errors += errs
			if res.FirstErr == nil {
				res.FirstErr = first
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Requests = len(res.Latencies) + res.Errors
	slices.Sort(res.Latencies)
	return res
}

// Burst starts n requests at the same instant (each in its own goroutine, released together)
// and waits for all of them.
func Burst(ctx context.Context, n int, do func(ctx context.Context) error) Result {
	var (
		mu    sync.Mutex
		res   Result
		wg    sync.WaitGroup
		ready sync.WaitGroup
	)
	release := make(chan struct{})
	ready.Add(n)
	for range n {
		wg.Go(func() {
			ready.Done()
			<-release
			t0 := time.Now()
			err := do(ctx)
			d := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Errors++
				if res.FirstErr == nil {
					res.FirstErr = err
				}
				return
			}
			res.Latencies = append(res.Latencies, d)
		})
	}
	ready.Wait()
	start := time.Now()
	close(release)
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Requests = n
	slices.Sort(res.Latencies)
	return res
}

// Client returns an HTTP client for load against loopback servers: enough idle connections
// per host for concurrency clients, no proxy, no compression.
func Client(concurrency int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        concurrency + 16,
		MaxIdleConnsPerHost: concurrency + 16,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}, Timeout: 5 * time.Minute}
}
