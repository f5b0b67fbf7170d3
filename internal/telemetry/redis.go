package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// RedisCounts are the shared decision tier's failure counters (see redistier.Stats), since
// the start.
type RedisCounts struct {
	// Errors counts Redis calls that failed or timed out, and lost subscriptions.
	Errors uint64
	// Invalid counts values read from Redis that were not a valid decision for their key.
	Invalid uint64
}

// ObserveRedis reports the shared decision tier's failures as
// portcullis.cache.redis.errors{reason="unavailable"|"invalid"}: each one was a miss and
// the decision was made locally.
func ObserveRedis(meter metric.Meter, counts func() RedisCounts) error {
	errs, err := meter.Int64ObservableCounter("portcullis.cache.redis.errors",
		metric.WithDescription("Failures of the Redis decision tier, by reason: unavailable (a call failed or timed out, or the invalidation subscription was lost) or invalid (a value that is not a valid decision). Each is a miss: the decision is made locally."))
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		c := counts()
		o.ObserveInt64(errs, int64(c.Errors), metric.WithAttributes(attribute.String("reason", "unavailable")))
		o.ObserveInt64(errs, int64(c.Invalid), metric.WithAttributes(attribute.String("reason", "invalid")))
		return nil
	}, errs)
	return err
}
