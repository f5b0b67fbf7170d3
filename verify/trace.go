package verify

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// WithTracerProvider makes the Verifier trace its work with tp: a span for each signature
// discovery in a repository ("signatures.discover", under which the registry requests go)
// and for each authority's check ("signatures.check"). Default (or nil): no spans, at no
// cost.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) {
		if tp != nil {
			c.tracer = tp.Tracer("github.com/portcullis/portcullis/verify")
		}
	}
}

// startSpan starts span name when tracing; end ends it.
func (v *Verifier) startSpan(ctx context.Context, name string, attrs ...attribute.KeyValue) (_ context.Context, end func()) {
	if v.cfg.tracer == nil {
		return ctx, func() {}
	}
	ctx, span := v.cfg.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
	return ctx, func() { span.End() }
}

// discoverSpan starts the span of a signature discovery in repo.
func (v *Verifier) discoverSpan(ctx context.Context, repo string) (context.Context, func()) {
	return v.startSpan(ctx, "signatures.discover", attribute.String("portcullis.repository", repo))
}

// checkSpan starts the span of checking the signatures found for authority.
func (v *Verifier) checkSpan(ctx context.Context, authority string) (context.Context, func()) {
	return v.startSpan(ctx, "signatures.check", attribute.String("portcullis.authority", authority))
}
