package telemetry

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Decision outcomes as portcullis.decisions labels them: each decision has exactly one.
const (
	OutcomeAllowed = "allowed" // admitted by its signatures (or a policy that asks for none)
	OutcomeWarned  = "warned"  // admitted only because its policy is in warn mode
	OutcomeExempt  = "exempt"  // a signature artifact, admitted without signatures of its own
	OutcomeDenied  = "denied"  // refused by policy
	OutcomeFailed  = "failed"  // no decision could be made (upstream unreachable, …)
)

// Decision cache tiers as portcullis.decisions labels them.
const (
	TierFresh = "fresh" // decided now (cached="false")
	TierLocal = "local" // from the in-process decision cache
	TierRedis = "redis" // from the Redis tier shared by the replicas
)

// DefaultPolicyLabel is the policy label of decisions made by the default policy (which has
// no name).
const DefaultPolicyLabel = "(default)"

// maxDecisionSeries bounds the label combinations kept: policies come from the
// configuration, but reloads may rename them.
const maxDecisionSeries = 4096

// Decisions counts admission decisions — each Admit exactly once — as the counter
// portcullis.decisions{outcome, cached, tier, policy}, and reports the decision cache's
// size as portcullis.decision_cache.entries. Counting costs a map lookup and an atomic add:
// no allocation.
type Decisions struct {
	mu     sync.RWMutex
	counts map[decisionKey]*atomic.Int64
}

type decisionKey struct {
	outcome, tier, policy string
}

// ObserveDecisions registers the decision instruments with meter; cacheLen reports the
// number of decisions cached. Every outcome is exported from the start (at zero, fresh,
// under the default policy) so that dashboards and alerts see the series before it moves.
func ObserveDecisions(meter metric.Meter, cacheLen func() int) (*Decisions, error) {
	d := &Decisions{counts: map[decisionKey]*atomic.Int64{}}
	for _, o := range []string{OutcomeAllowed, OutcomeWarned, OutcomeExempt, OutcomeDenied, OutcomeFailed} {
		d.counter(o, TierFresh, "")
	}
	decisions, err := meter.Int64ObservableCounter("portcullis.decisions",
		metric.WithDescription("Manifest admission decisions, each counted once: by outcome (allowed, warned, exempt, denied, failed), cached (true when a decision cache held it), tier (fresh, local, redis) and policy."))
	if err != nil {
		return nil, err
	}
	entries, err := meter.Int64ObservableGauge("portcullis.decision_cache.entries",
		metric.WithDescription("Decisions held in the in-process decision cache."))
	if err != nil {
		return nil, err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		d.mu.RLock()
		defer d.mu.RUnlock()
		for k, n := range d.counts {
			o.ObserveInt64(decisions, n.Load(), metric.WithAttributes(attribute.String("outcome", k.outcome),
				attribute.String("cached", strconv.FormatBool(k.tier != TierFresh)), attribute.String("tier", k.tier),
				attribute.String("policy", k.policy)))
		}
		o.ObserveInt64(entries, int64(cacheLen()))
		return nil
	}, decisions, entries)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// Add counts one decision: outcome is one of the Outcome constants, tier one of the Tier
// constants (or the name of another cache tier; cached is tier != TierFresh), policy the
// name of the policy that applied ("" for the default policy).
func (d *Decisions) Add(outcome, tier, policy string) {
	d.counter(outcome, tier, policy).Add(1)
}

func (d *Decisions) counter(outcome, tier, policy string) *atomic.Int64 {
	if policy == "" {
		policy = DefaultPolicyLabel
	}
	k := decisionKey{outcome: outcome, tier: tier, policy: policy}
	d.mu.RLock()
	n, ok := d.counts[k]
	d.mu.RUnlock()
	if ok {
		return n
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if n, ok = d.counts[k]; ok {
		return n
	}
	if len(d.counts) >= maxDecisionSeries {
		k.policy = "(other)"
		if n, ok = d.counts[k]; ok {
			return n
		}
	}
	n = new(atomic.Int64)
	d.counts[k] = n
	return n
}
