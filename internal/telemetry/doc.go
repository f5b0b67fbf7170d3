// Package telemetry is portcullis's OpenTelemetry: metrics exported for Prometheus on a
// registry of their own (never the process-global one), and traces exported over OTLP when
// the standard OTEL_* environment asks for them (off by default).
//
// Metrics: the instruments that report admission decisions (Decisions: each decision
// counted once, by outcome, cached, tier and policy), upstream requests (Upstreams: latency
// and errors by upstream), the content store and push logins. It knows nothing of the
// policy engine, the proxy or the login throttle: it is handed counters and callbacks.
//
// Traces: NewTracing builds the tracer provider from the environment; nothing here sets
// the process-global provider or propagator. The provider is passed explicitly to what
// makes spans: TraceHandler (a server span per request, continuing the client's
// traceparent), Upstreams.Transport (a client span per upstream request, sending
// traceparent on), TraceDriver (content store reads and writes), and the policy engine and
// verifier (decision, signature discovery and verification). LogHandler adds the trace id
// to log lines logged within a sampled span. With tracing off (a nil provider) nothing is
// wrapped: the request path is what it is without this package.
package telemetry
