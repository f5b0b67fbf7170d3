package telemetry

import (
	"context"
	"fmt"
	"net/http"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Metrics is a meter provider with its Prometheus endpoint.
type Metrics struct {
	provider *sdkmetric.MeterProvider
	handler  http.Handler
}

// New returns a meter provider exporting to a private Prometheus registry.
func New() (*Metrics, error) {
	reg := promclient.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	return &Metrics{
		provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)),
		handler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	}, nil
}

// Meter returns the named meter.
func (m *Metrics) Meter(name string) metric.Meter { return m.provider.Meter(name) }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Shutdown flushes and stops the provider.
func (m *Metrics) Shutdown(ctx context.Context) error { return m.provider.Shutdown(ctx) }

// ObserveStore reports the content store's size (as its last sweep found it) and how many
// blobs and manifests sweeps evicted.
func ObserveStore(meter metric.Meter, bytes, evictions func() int64) error {
	size, err := meter.Int64ObservableGauge("portcullis.store.bytes", metric.WithUnit("By"),
		metric.WithDescription("Bytes of content in the store, as of its last sweep."))
	if err != nil {
		return err
	}
	evicted, err := meter.Int64ObservableCounter("portcullis.store.evictions",
		metric.WithDescription("Blobs and manifests evicted from the store."))
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(size, bytes())
		o.ObserveInt64(evicted, evictions())
		return nil
	}, size, evicted)
	return err
}

// LoginCounts are the push login counters (see pushauth.Stats), since the start.
type LoginCounts struct {
	Hashes, Failures, Throttled uint64
}

// ObserveLogins reports push logins: bcrypt comparisons made, and refused logins by reason
// ("credentials": wrong user or password; "throttled": refused by the login throttle
// without hashing).
func ObserveLogins(meter metric.Meter, counts func() LoginCounts) error {
	hashes, err := meter.Int64ObservableCounter("portcullis.push.login.hashes",
		metric.WithDescription("bcrypt comparisons made for push logins (for known and unknown users alike)."))
	if err != nil {
		return err
	}
	refused, err := meter.Int64ObservableCounter("portcullis.push.login.refused",
		metric.WithDescription("Push logins refused, by reason: credentials (wrong user or password) or throttled (too many failures from the address; nothing hashed)."))
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		c := counts()
		o.ObserveInt64(hashes, int64(c.Hashes))
		o.ObserveInt64(refused, int64(c.Failures), metric.WithAttributes(attribute.String("reason", "credentials")))
		o.ObserveInt64(refused, int64(c.Throttled), metric.WithAttributes(attribute.String("reason", "throttled")))
		return nil
	}, hashes, refused)
	return err
}
