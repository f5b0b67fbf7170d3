package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/portcullis/portcullis/proxy/upstream"
)

// Overload control. Three limits keep portcullis from queueing without bound:
//
//   - Options.MaxInFlight caps the distribution API requests served at once. A request beyond
//     it is answered at once with 503 UNAVAILABLE and Retry-After, not queued. A GET or HEAD
//     of a manifest by digest that is in memory (manifestcache.go) is served outside the
//     limit: it needs neither the store nor the upstream, so cached answers keep their
//     latency whatever the load.
//   - Each upstream client caps its own requests in flight (upstream.Config.MaxConcurrent)
//     and lets a request wait for a slot at most upstream.Config.QueueWait; then 503 with
//     Retry-After (*upstream.OverloadError).
//   - An upstream's 429 is passed on with its Retry-After, and the upstream is asked nothing
//     more until then (*upstream.Error with RetryAfter).
//
// Requests a limit refused are counted in portcullis.requests.limited, by reason.

// DefaultMaxInFlight is Options.MaxInFlight's default.
const DefaultMaxInFlight = 1024

// overloadRetryAfter is the Retry-After of a request refused by MaxInFlight.
const overloadRetryAfter = time.Second

// Reasons of portcullis.requests.limited.
const (
	limitInFlight     = "in_flight"
	limitUpstream     = "upstream_concurrency"
	limitUpstreamRate = "upstream_rate_limit"
)

// errOverloaded is the answer to a request beyond MaxInFlight.
type overloadedError struct{ limit int }

func (e *overloadedError) Error() string {
	return fmt.Sprintf("portcullis is serving as many requests as it allows at once (%d); retry shortly", e.limit)
}

// inFlight counts the requests in flight against MaxInFlight.
type inFlight struct {
	n       atomic.Int64
	max     int64
	limited metric.Int64Counter
	reasons map[string]metric.AddOption
}

func newInFlight(max int, meter metric.Meter) (*inFlight, error) {
	f := &inFlight{max: int64(max), reasons: map[string]metric.AddOption{}}
	var err error
	if f.limited, err = meter.Int64Counter("portcullis.requests.limited",
		metric.WithDescription("Requests refused by an overload limit (503 or 429 with Retry-After), by reason: in_flight (server.maxInFlight), upstream_concurrency (upstreams[].maxConcurrent), upstream_rate_limit (the upstream's 429).")); err != nil {
		return nil, err
	}
	for _, r := range []string{limitInFlight, limitUpstream, limitUpstreamRate} {
		f.reasons[r] = metric.WithAttributes(attribute.String("reason", r))
		// At zero from the start, so that a dashboard or an alert has the series before the
		// first refusal.
		f.limited.Add(context.Background(), 0, f.reasons[r])
	}
	gauge, err := meter.Int64ObservableGauge("portcullis.requests.inflight",
		metric.WithDescription("Distribution API requests in flight that count against server.maxInFlight."))
	if err != nil {
		return nil, err
	}
	if _, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(gauge, f.n.Load())
		return nil
	}, gauge); err != nil {
		return nil, err
	}
	return f, nil
}

// acquire takes a place, or returns the error to answer when none is free.
func (f *inFlight) acquire() error {
	if f.n.Add(1) > f.max {
		f.n.Add(-1)
		return &overloadedError{limit: int(f.max)}
	}
	return nil
}

func (f *inFlight) release() { f.n.Add(-1) }

// count records a request that err says a limit refused.
func (f *inFlight) count(ctx context.Context, err error) {
	if r := limitReason(err); r != "" {
		f.limited.Add(ctx, 1, f.reasons[r])
	}
}

// limitReason is the limit that refused a request failing with err, or "".
func limitReason(err error) string {
	var (
		oe *overloadedError
		ov *upstream.OverloadError
		ue *upstream.Error
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &oe):
		return limitInFlight
	case errors.As(err, &ov):
		return limitUpstream
	case errors.As(err, &ue) && ue.RetryAfter > 0:
		return limitUpstreamRate
	}
	return ""
}

// retryAfter is the Retry-After of an answer to err, 0 for none: the time a limit or the
// upstream asked for, or staleRetryAfter when the upstream fails.
func retryAfter(err error) time.Duration {
	var (
		oe *overloadedError
		ov *upstream.OverloadError
		ue *upstream.Error
		se *staleError
	)
	switch {
	case errors.As(err, &oe):
		return overloadRetryAfter
	case errors.As(err, &ov):
		return ov.RetryAfter
	case errors.As(err, &ue) && ue.RetryAfter > 0:
		return ue.RetryAfter
	case errors.As(err, &se), upstreamFailing(err):
		return staleRetryAfter
	}
	return 0
}
