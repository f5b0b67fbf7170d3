package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the overload controls (Config.MaxConcurrent, Config.QueueWait).
const (
	DefaultMaxConcurrent = 64
	DefaultQueueWait     = time.Second
	// maxRetryAfter bounds how long an upstream's Retry-After keeps requests from it: an
	// absurd value (or a date far ahead) must not silence an upstream for days.
	maxRetryAfter = 10 * time.Minute
	// minRetryAfter is the shortest wait a Retry-After sets (it counts in seconds).
	minRetryAfter = time.Second
)

// OverloadError means the upstream's concurrency limit (Config.MaxConcurrent) was full for
// longer than Config.QueueWait: the request was not sent.
type OverloadError struct {
	Upstream string
	Limit    int
	// RetryAfter is a hint for the client.
	RetryAfter time.Duration
}

func (e *OverloadError) Error() string {
	return fmt.Sprintf("upstream %s: all %d concurrent requests portcullis allows to it are busy", e.Upstream, e.Limit)
}

// limiter caps the requests in flight to one upstream, the token realm and blob CDN
// included. A request holds its slot from sending until its body is closed or read to the
// end; one that finds every slot busy waits at most the queue wait (and its context), then
// fails with an *OverloadError without being sent. It sits below the retries: a request
// waiting between two attempts holds no slot.
type limiter struct {
	name  string
	slots chan struct{}
	wait  time.Duration
	next  http.RoundTripper
	// waiting counts requests waiting for a slot, for tests and metrics.
	waiting atomic.Int64
}

func newLimiter(name string, n int, wait time.Duration, next http.RoundTripper) *limiter {
	return &limiter{name: name, slots: make(chan struct{}, n), wait: wait, next: next}
}

func (l *limiter) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := l.acquire(req.Context()); err != nil {
		return nil, err
	}
	resp, err := l.next.RoundTrip(req)
	if err != nil || resp.Body == nil || resp.Body == http.NoBody {
		l.release()
		return resp, err
	}
	resp.Body = &slotBody{ReadCloser: resp.Body, release: l.release}
	return resp, nil
}

func (l *limiter) acquire(ctx context.Context) error {
	select {
	case l.slots <- struct{}{}:
		return nil
	default:
	}
	l.waiting.Add(1)
	defer l.waiting.Add(-1)
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return nil
	case <-t.C:
		return &OverloadError{Upstream: l.name, Limit: cap(l.slots), RetryAfter: time.Second}
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *limiter) release() { <-l.slots }

// inFlight is the number of slots taken.
func (l *limiter) inFlight() int { return len(l.slots) }

// slotBody releases its request's slot once, when closed or read to its end.
type slotBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *slotBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.release)
	}
	return n, err
}

func (b *slotBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}

// rateGuard honours an upstream's 429 Too Many Requests: after one, requests to the
// upstream fail at once, without being sent, until its Retry-After (at most maxRetryAfter)
// has passed (a 429 without one holds nothing back: the next request asks again), so that a rate-limited upstream (Docker Hub) is not hammered by
// every client and every retry. It sits above the limiter, so refused requests take no slot.
type rateGuard struct {
	name  string
	next  http.RoundTripper
	now   func() time.Time
	until atomic.Int64 // Unix nanoseconds; 0: not rate limited
}

func (g *rateGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if wait := g.remaining(); wait > 0 {
		return nil, &Error{Upstream: g.name, Status: http.StatusTooManyRequests, Codes: []string{"TOOMANYREQUESTS"},
			Message: "rate limited, not asked again until its Retry-After has passed", RetryAfter: wait}
	}
	resp, err := g.next.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		if wait := parseRetryAfter(resp.Header.Get("Retry-After"), g.now()); wait > 0 {
			g.until.Store(g.now().Add(wait).UnixNano())
		}
	}
	return resp, err
}

// remaining is how long the upstream is still to be left alone.
func (g *rateGuard) remaining() time.Duration {
	u := g.until.Load()
	if u == 0 {
		return 0
	}
	return max(0, time.Unix(0, u).Sub(g.now()))
}

// parseRetryAfter reads a Retry-After value (RFC 9110: delay-seconds or an HTTP-date),
// bounded to [minRetryAfter, maxRetryAfter]; absent, unreadable, 0 or past is 0 (no wait).
func parseRetryAfter(v string, now time.Time) time.Duration {
	var d time.Duration
	if s, err := strconv.ParseUint(v, 10, 32); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	if d <= 0 {
		return 0
	}
	return min(max(d, minRetryAfter), maxRetryAfter)
}

// idempotentOnly sends requests that are not GET or HEAD around the retries: a POST that
// starts an upload, a PATCH or PUT whose body was consumed by the first attempt, a DELETE,
// are sent once and their failure is the caller's to handle (go-containerregistry's
// remote.Write restarts a failed upload from the beginning).
type idempotentOnly struct {
	retry, once http.RoundTripper
}

func (t idempotentOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet || req.Method == http.MethodHead {
		return t.retry.RoundTrip(req)
	}
	return t.once.RoundTrip(req)
}

// Load is what a Client is doing now, for metrics.
type Load struct {
	// InFlight is the number of requests to the upstream in flight, Waiting how many wait
	// for a slot.
	InFlight, Waiting int
	// RateLimited is how long the upstream is still left alone after its 429; 0 when it is
	// not.
	RateLimited time.Duration
}

// Load returns what the client is doing now.
func (u *Client) Load() Load {
	return Load{InFlight: u.limit.inFlight(), Waiting: int(u.limit.waiting.Load()), RateLimited: u.rate.remaining()}
}
