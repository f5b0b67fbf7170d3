package verify

import (
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Defaults of the Verifier's limits.
const (
	// DefaultMaxReferrers is how many candidate bundle referrers of one digest are inspected.
	DefaultMaxReferrers = 128
	// DefaultMaxLayers is how many layers a legacy signature manifest may have (cosign's
	// limit); a manifest with more is rejected as a whole.
	DefaultMaxLayers = 1000
	// DefaultMaxBlobSize is the largest simple signing payload or bundle read, 1 MiB. cosign
	// reads up to 128 MiB; real signatures are below 4 KiB and a proxy should not buffer more.
	DefaultMaxBlobSize = 1 << 20
	// DefaultConcurrency is how many manifests or blobs one repository's lookup fetches at
	// the same time.
	DefaultConcurrency = 4
)

// Option configures a Verifier.
type Option func(*config)

type config struct {
	logger       *slog.Logger
	maxReferrers int
	maxLayers    int
	maxBlobSize  int64
	concurrency  int
	tracer       trace.Tracer // see WithTracerProvider; nil: no spans
}

func defaultConfig() config {
	return config{
		logger:       slog.New(slog.DiscardHandler),
		maxReferrers: DefaultMaxReferrers,
		maxLayers:    DefaultMaxLayers,
		maxBlobSize:  DefaultMaxBlobSize,
		concurrency:  DefaultConcurrency,
	}
}

func (c config) validate() error {
	switch {
	case c.logger == nil:
		return fmt.Errorf("logger is nil")
	case c.maxReferrers < 1:
		return fmt.Errorf("max referrers %d is not positive", c.maxReferrers)
	case c.maxLayers < 1:
		return fmt.Errorf("max layers %d is not positive", c.maxLayers)
	case c.maxBlobSize < 1:
		return fmt.Errorf("max blob size %d is not positive", c.maxBlobSize)
	case c.concurrency < 1:
		return fmt.Errorf("concurrency %d is not positive", c.concurrency)
	}
	return nil
}

// WithLogger sets the logger for debug details of discovery (skipped referrers, lookup
// failures). Default: a logger that discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithMaxReferrers sets how many candidate bundle referrers (after filtering by artifactType)
// are inspected per digest and repository; the rest are ignored and the reason says so.
// Default: DefaultMaxReferrers.
func WithMaxReferrers(n int) Option {
	return func(c *config) { c.maxReferrers = n }
}

// WithMaxLayers sets how many layers a legacy ".sig" manifest may have. Default:
// DefaultMaxLayers.
func WithMaxLayers(n int) Option {
	return func(c *config) { c.maxLayers = n }
}

// WithMaxBlobSize sets the largest simple signing payload or sigstore bundle read, in bytes.
// Default: DefaultMaxBlobSize.
func WithMaxBlobSize(n int64) Option {
	return func(c *config) { c.maxBlobSize = n }
}

// WithConcurrency sets how many manifests or blobs one repository's lookup fetches at the
// same time. Default: DefaultConcurrency.
func WithConcurrency(n int) Option {
	return func(c *config) { c.concurrency = n }
}
