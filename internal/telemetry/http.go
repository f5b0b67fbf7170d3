package telemetry

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
)

// TraceHandler returns h making a server span for each request, named by the method and
// the distribution API route ("GET /v2/{name}/manifests/{reference}"), continuing the trace
// of the client's traceparent header. tp nil (tracing off) returns h itself.
func TraceHandler(h http.Handler, tp trace.TracerProvider) http.Handler {
	if tp == nil {
		return h
	}
	return otelhttp.NewHandler(h, "portcullis",
		otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(Propagator()),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()), // portcullis.requests counts requests
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + Route(r.URL.Path) }))
}

// Route returns the distribution API route of path, with the repository name and the
// reference as placeholders, for span names that do not grow with the images pulled.
func Route(path string) string {
	if path == "/v2" || path == "/v2/" {
		return "/v2/"
	}
	if !strings.HasPrefix(path, "/v2/") {
		return "other"
	}
	for _, r := range []struct{ sep, route string }{
		{"/manifests/", "/v2/{name}/manifests/{reference}"},
		{"/blobs/uploads", "/v2/{name}/blobs/uploads/"},
		{"/blobs/", "/v2/{name}/blobs/{digest}"},
		{"/tags/list", "/v2/{name}/tags/list"},
		{"/referrers/", "/v2/{name}/referrers/{digest}"},
	} {
		if strings.Contains(path, r.sep) {
			return r.route
		}
	}
	return "/v2/{other}"
}

// Upstreams measures the requests made to upstream registries and, with a tracer provider,
// makes a client span for each and sends the trace context along (traceparent).
//
// Metrics: portcullis.upstream.request.duration (seconds until the response headers, by
// upstream, method and status class: 2xx…5xx, or "error" when no response came) and
// portcullis.upstream.errors (by upstream and reason: "transport" when no response came,
// "429" and "5xx" answers; a request portcullis cancelled is not an error). Each attempt of
// a retried request counts, and so does go-containerregistry's https-first probe of an
// insecure upstream that speaks only http.
type Upstreams struct {
	tp       trace.TracerProvider
	duration metric.Float64Histogram
	errors   metric.Int64Counter

	mu   sync.RWMutex
	opts map[upstreamKey]metric.RecordOption // by attribute combination, built once
	errs map[upstreamKey]metric.AddOption
}

type upstreamKey struct{ upstream, method, status string }

// upstreamErrorReasons are the reasons portcullis.upstream.errors counts.
var upstreamErrorReasons = []string{"transport", "429", "5xx"}

// NewUpstreams returns the upstream instruments of meter; tp nil makes no spans.
func NewUpstreams(meter metric.Meter, tp trace.TracerProvider) (*Upstreams, error) {
	u := &Upstreams{tp: tp, opts: map[upstreamKey]metric.RecordOption{}, errs: map[upstreamKey]metric.AddOption{}}
	var err error
	if u.duration, err = meter.Float64Histogram("portcullis.upstream.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Time until an upstream registry's response headers, by upstream, method and status class (error: no response)."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)); err != nil {
		return nil, err
	}
	if u.errors, err = meter.Int64Counter("portcullis.upstream.errors",
		metric.WithDescription("Failed upstream requests, by upstream and reason: transport (no response: refused, reset, timed out), 429, 5xx.")); err != nil {
		return nil, err
	}
	return u, nil
}

// Seed makes the error counters of upstream exist at zero, so that a dashboard shows the
// upstream before its first error.
func (u *Upstreams) Seed(ctx context.Context, upstream string) {
	for _, reason := range upstreamErrorReasons {
		u.errors.Add(ctx, 0, u.errOption(upstream, reason))
	}
}

// Transport returns the wrapper of upstream's transport (see upstream.WithTransportWrapper).
func (u *Upstreams) Transport(upstream string) func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		var rt http.RoundTripper = &measured{u: u, upstream: upstream, next: next}
		if u.tp != nil {
			rt = otelhttp.NewTransport(rt,
				otelhttp.WithTracerProvider(u.tp), otelhttp.WithPropagators(Propagator()),
				otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
				otelhttp.WithSpanOptions(trace.WithAttributes(attribute.String("portcullis.upstream", upstream))),
				otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "upstream " + r.Method }))
		}
		return rt
	}
}

func (u *Upstreams) recordOption(upstream, method, status string) metric.RecordOption {
	k := upstreamKey{upstream, method, status}
	u.mu.RLock()
	o, ok := u.opts[k]
	u.mu.RUnlock()
	if ok {
		return o
	}
	o = metric.WithAttributeSet(attribute.NewSet(attribute.String("upstream", upstream), attribute.String("method", method), attribute.String("status", status)))
	u.mu.Lock()
	u.opts[k] = o
	u.mu.Unlock()
	return o
}

func (u *Upstreams) errOption(upstream, reason string) metric.AddOption {
	k := upstreamKey{upstream: upstream, status: reason}
	u.mu.RLock()
	o, ok := u.errs[k]
	u.mu.RUnlock()
	if ok {
		return o
	}
	o = metric.WithAttributeSet(attribute.NewSet(attribute.String("upstream", upstream), attribute.String("reason", reason)))
	u.mu.Lock()
	u.errs[k] = o
	u.mu.Unlock()
	return o
}

// measured records each round trip of one upstream.
type measured struct {
	u        *Upstreams
	upstream string
	next     http.RoundTripper
}

func (m *measured) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := m.next.RoundTrip(r)
	elapsed := time.Since(start).Seconds()
	method := r.Method
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete:
	default:
		method = "other"
	}
	status, reason := "error", "transport"
	if err == nil {
		status, reason = statusClass(resp.StatusCode), ""
		switch {
		case resp.StatusCode == http.StatusTooManyRequests:
			reason = "429"
		case resp.StatusCode >= 500:
			reason = "5xx"
		}
	}
	ctx := r.Context()
	m.u.duration.Record(ctx, elapsed, m.u.recordOption(m.upstream, method, status))
	if reason != "" && ctx.Err() == nil { // portcullis cancelling its own request is no upstream error
		m.u.errors.Add(ctx, 1, m.u.errOption(m.upstream, reason))
	}
	return resp, err
}

func statusClass(code int) string {
	switch {
	case code >= 500:
		return "5xx"
	case code >= 400:
		return "4xx"
	case code >= 300:
		return "3xx"
	case code >= 200:
		return "2xx"
	}
	return "1xx"
}
