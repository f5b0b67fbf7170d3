package app

import (
	"context"
	"net/http"

	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/upstream"
)

// appTelemetry is the instruments an App feeds across its generations.
type appTelemetry struct {
	decisions *telemetry.Decisions
	upstreams *telemetry.Upstreams
}

// startTelemetry registers the decision and upstream instruments; the decision cache
// size is the current generation's.
func (a *App) startTelemetry() error {
	var err error
	if a.tel.decisions, err = telemetry.ObserveDecisions(a.meter, func() int { return a.cur.Load().decisions.Len() }); err != nil {
		return err
	}
	a.tel.upstreams, err = telemetry.NewUpstreams(a.meter, a.opts.TracerProvider)
	return err
}

// outcomeLabels are the decision metric's outcomes by the audit line's decision.
var outcomeLabels = map[string]string{
	"allow": telemetry.OutcomeAllowed, "warn": telemetry.OutcomeWarned, "exempt": telemetry.OutcomeExempt,
	"deny": telemetry.OutcomeDenied, "error": telemetry.OutcomeFailed,
}

// observeDecision counts one Admit (see policy.WithObserver).
func (t *appTelemetry) observeDecision(_ context.Context, o policy.Outcome) {
	outcome, ok := outcomeLabels[o.Decision]
	if !ok {
		outcome = telemetry.OutcomeFailed
	}
	tier := o.Tier
	if tier == "" {
		tier = telemetry.TierFresh
	}
	t.decisions.Add(outcome, tier, o.Policy)
}

// upstreamOption measures (and traces) the requests to the upstream named name.
func (t *appTelemetry) upstreamOption(ctx context.Context, name string) upstream.Option {
	t.upstreams.Seed(ctx, name)
	return upstream.WithTransportWrapper(t.upstreams.Transport(name))
}

// traceV2 wraps the distribution API handler in a server span when tracing.
func (a *App) traceV2(h http.Handler) http.Handler {
	return telemetry.TraceHandler(h, a.opts.TracerProvider)
}
