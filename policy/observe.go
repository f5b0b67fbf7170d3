package policy

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/cache"
)

// Outcome is what one Admit came to, as its audit line tells it.
type Outcome struct {
	// Decision is the audit line's decision: "allow", "exempt", "warn", "deny" or "error".
	Decision string
	// Policy is the name of the policy that applied; empty for the default policy, and when
	// no decision was made.
	Policy string
	// Tier is the decision cache tier the decision came from: "local" for a DecisionCache
	// that is not a TieredCache, whatever a TieredCache names; empty when it was decided now
	// (or not at all).
	Tier string
}

// WithObserver has observe called with the outcome of every Admit, after its audit line,
// on the caller's goroutine: it must be quick (metrics count there). Default: none.
func WithObserver(observe func(ctx context.Context, o Outcome)) EngineOption {
	return func(o *engineOptions) { o.observe = observe }
}

// WithTracerProvider makes the Engine trace its work with tp: a span for each Admit
// ("policy.Admit": image, digest, decision, policy, tier), one for the decision cache
// lookup ("cache.decision") and, on a miss, one for the fresh decision ("policy.decide"),
// under which the verifier's spans go. Default (or nil): no spans, at no cost.
func WithTracerProvider(tp trace.TracerProvider) EngineOption {
	return func(o *engineOptions) {
		if tp != nil {
			o.tracer = tp.Tracer("github.com/portcullis/portcullis/policy")
		}
	}
}

// TieredCache is a DecisionCache of more than one tier that tells which tier a decision
// came from; the Engine uses DoTier instead of Do when its cache has it, to label its
// metrics and spans. A DecisionCache without it is one tier, "local".
type TieredCache interface {
	// DoTier is Do, returning the name of the tier that held the decision ("" when fill
	// made it) instead of cached.
	DoTier(ctx context.Context, key cache.Key, fill func(ctx context.Context) (Decision, error)) (d Decision, tier string, err error)
}

// TierLocal is the tier of a decision from a DecisionCache that is not a TieredCache.
const TierLocal = "local"

// cacheDo runs the decision cache's Do (DoTier for a TieredCache) in a span when tracing.
func (e *Engine) cacheDo(ctx context.Context, key cache.Key, fill func(ctx context.Context) (Decision, error)) (Decision, string, error) {
	var span trace.Span
	if e.tracer != nil {
		ctx, span = e.tracer.Start(ctx, "cache.decision")
		inner := fill
		fill = func(ctx context.Context) (Decision, error) {
			ctx, span := e.tracer.Start(ctx, "policy.decide")
			defer span.End()
			d, err := inner(ctx)
			failSpan(span, err)
			return d, err
		}
	}
	var (
		d    Decision
		tier string
		err  error
	)
	if tc, ok := e.cache.(TieredCache); ok {
		d, tier, err = tc.DoTier(ctx, key, fill)
	} else {
		var cached bool
		d, cached, err = e.cache.Do(ctx, key, fill)
		if cached {
			tier = TierLocal
		}
	}
	if span != nil {
		span.SetAttributes(attribute.Bool("portcullis.decision.cached", tier != ""), attribute.String("portcullis.decision.tier", tier))
		failSpan(span, err)
		span.End()
	}
	return d, tier, err
}

// startAdmit starts the span of an Admit when tracing.
func (e *Engine) startAdmit(ctx context.Context, req Request) (context.Context, trace.Span) {
	if e.tracer == nil {
		return ctx, nil
	}
	return e.tracer.Start(ctx, "policy.Admit", trace.WithAttributes(
		attribute.String("portcullis.image", req.Image), attribute.String("portcullis.digest", string(req.Manifest.Digest))))
}

// observe reports an Admit's outcome to the observer and its span.
func (e *Engine) observeAdmit(ctx context.Context, span trace.Span, o Outcome, err error) {
	if e.observe != nil {
		e.observe(ctx, o)
	}
	if span != nil {
		span.SetAttributes(attribute.String("portcullis.decision", o.Decision), attribute.String("portcullis.policy", o.Policy),
			attribute.Bool("portcullis.decision.cached", o.Tier != ""), attribute.String("portcullis.decision.tier", o.Tier))
		if o.Decision == "error" {
			failSpan(span, err)
		}
		span.End()
	}
}

// failSpan marks span failed when err is not nil (a denial is a decision, not a failure).
func failSpan(span trace.Span, err error) {
	if err != nil {
		if _, denied := errors.AsType[*DenyError](err); !denied {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
	}
}
