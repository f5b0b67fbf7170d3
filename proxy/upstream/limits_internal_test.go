package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRetriesOnlyIdempotent: a GET or HEAD that meets a 503 is retried (Retries times), a
// POST, PATCH, PUT or DELETE is sent once — an upload's POST or PATCH sent twice is not the
// same request (its body is consumed, its session may be opened twice).
func TestRetriesOnlyIdempotent(t *testing.T) {
	var mu sync.Mutex
	count := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		count[r.Method]++
		mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	retries := 2
	u, err := New(Config{Name: "upstream.test", URL: srv.URL, Insecure: true, Retries: &retries}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method string
		want   int
	}{
		{http.MethodGet, retries + 1},
		{http.MethodHead, retries + 1},
		{http.MethodPost, 1},
		{http.MethodPatch, 1},
		{http.MethodPut, 1},
		{http.MethodDelete, 1},
	} {
		t.Run(tc.method, func(t *testing.T) {
			var body io.Reader
			if tc.method == http.MethodPatch || tc.method == http.MethodPut || tc.method == http.MethodPost {
				body = strings.NewReader("chunk")
			}
			req, _ := http.NewRequest(tc.method, srv.URL+"/v2/demo/blobs/uploads/", body)
			resp, err := u.inner.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			mu.Lock()
			got := count[tc.method]
			mu.Unlock()
			if got != tc.want {
				t.Errorf("%s answered 503 was sent %d times, want %d", tc.method, got, tc.want)
			}
		})
	}
}

// TestConcurrencyLimit: with MaxConcurrent requests in flight (a body not yet read counts),
// another waits QueueWait and fails with *OverloadError without being sent; once a body is
// closed, its slot is free again.
func TestConcurrencyLimit(t *testing.T) {
	release := make(chan struct{})
	var sent atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent.Add(1)
		if r.URL.Path == "/hold" {
			<-release
		}
		_, _ = io.WriteString(w, "body")
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	zero := 0
	u, err := New(Config{Name: "upstream.test", URL: srv.URL, Insecure: true, Retries: &zero, MaxConcurrent: 2, QueueWait: 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	send := func(ctx context.Context, path string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		return u.inner.RoundTrip(req)
	}
	// One slot held by a body not read yet, one by a request the upstream holds.
	open, err := send(context.Background(), "/open")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan error, 1)
	go func() {
		resp, err := send(context.Background(), "/hold")
		if err == nil {
			resp.Body.Close()
		}
		held <- err
	}()
	for sent.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	_, err = send(context.Background(), "/more")
	var oe *OverloadError
	if !errors.As(err, &oe) || oe.RetryAfter <= 0 {
		t.Fatalf("third request with 2 in flight: %v, want *OverloadError with RetryAfter", err)
	}
	if took := time.Since(start); took < 100*time.Millisecond || took > 2*time.Second {
		t.Errorf("the refused request waited %s, want the queue wait (100ms)", took)
	}
	if n := sent.Load(); n != 2 {
		t.Errorf("the upstream got %d requests, want 2 (the refused one is not sent)", n)
	}
	if l := u.Load(); l.InFlight != 2 {
		t.Errorf("Load().InFlight = %d, want 2", l.InFlight)
	}
	open.Body.Close()
	resp, err := send(context.Background(), "/more")
	if err != nil {
		t.Fatalf("request after a body was closed: %v", err)
	}
	_, _ = io.ReadAll(resp.Body) // read to the end: the slot is free without Close
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if l := u.Load(); l.InFlight != 0 {
		t.Errorf("Load().InFlight = %d after every body was read, want 0", l.InFlight)
	}
	resp.Body.Close()
}

// TestParseRetryAfter reads both forms of Retry-After and bounds them.
func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"junk", 0},
		{"0", 0},
		{"7", 7 * time.Second},
		{"99999999", maxRetryAfter},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	} {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
