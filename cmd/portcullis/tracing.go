package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/internal/telemetry"
)

// startTracing builds the trace pipeline the OTEL_* environment asks for (off unless
// OTEL_TRACES_EXPORTER=otlp; see telemetry.NewTracing). The provider is nil when off; stop
// exports the spans still batched, for at most 5 seconds.
func startTracing(ctx context.Context, log *slog.Logger) (tp trace.TracerProvider, stop func(), err error) {
	t, err := telemetry.NewTracing(ctx, os.LookupEnv)
	if err != nil {
		return nil, nil, err
	}
	if tp = t.Provider(); tp != nil {
		log.Info("tracing: exporting spans over OTLP (OTEL_TRACES_EXPORTER=otlp)")
	}
	return tp, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := t.Shutdown(sctx); err != nil {
			log.Warn("exporting the last spans failed", slog.String("error", err.Error()))
		}
	}, nil
}
