package telemetry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ServiceName is the service.name of portcullis's spans unless OTEL_SERVICE_NAME (or
// service.name in OTEL_RESOURCE_ATTRIBUTES) says otherwise.
const ServiceName = "portcullis"

// Tracing is the process's trace pipeline: spans batched to an OTLP exporter, or nothing at
// all. Its zero value and nil are off.
type Tracing struct {
	provider *sdktrace.TracerProvider // nil when off
}

// NewTracing builds the trace pipeline the standard OpenTelemetry environment asks for,
// read through lookupEnv:
//
//   - OTEL_TRACES_EXPORTER: "otlp" turns tracing on; unset, empty or "none" leaves it off
//     (unlike the specification's default of otlp: a mirror exports nothing unless told
//     to); anything else is an error. OTEL_SDK_DISABLED=true turns it off whatever else
//     is set.
//   - OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf"
//     (the default) or "grpc".
//
// The rest of the standard variables are read by the OpenTelemetry SDK and exporters
// themselves, from the process environment: OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS,
// _TIMEOUT, _COMPRESSION, _CERTIFICATE and _INSECURE; OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES; OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (default:
// parentbased_always_on); OTEL_BSP_* for the batching. Off, it returns a Tracing whose
// Provider is nil: nothing is wrapped and no span is made.
func NewTracing(ctx context.Context, lookupEnv func(string) (string, bool)) (*Tracing, error) {
	get := func(k string) string {
		v, _ := lookupEnv(k)
		return strings.TrimSpace(v)
	}
	if disabled, err := strconv.ParseBool(cmp.Or(get("OTEL_SDK_DISABLED"), "false")); err != nil {
		return nil, fmt.Errorf("OTEL_SDK_DISABLED: %q is not true or false", get("OTEL_SDK_DISABLED"))
	} else if disabled {
		return &Tracing{}, nil
	}
	switch exp := strings.ToLower(get("OTEL_TRACES_EXPORTER")); exp {
	case "", "none":
		return &Tracing{}, nil
	case "otlp":
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER: %q is not otlp or none", exp)
	}
	protocol := cmp.Or(get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), get("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf")
	var (
		exporter sdktrace.SpanExporter
		err      error
	)
	switch protocol {
	case "http/protobuf":
		exporter, err = otlptracehttp.New(ctx)
	case "grpc":
		exporter, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL: %q is not http/protobuf or grpc", protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter (%s): %w", protocol, err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", ServiceName)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES: after, so they win
		resource.WithTelemetrySDK())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	return &Tracing{provider: sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))}, nil
}

// Provider returns the tracer provider, or nil when tracing is off.
func (t *Tracing) Provider() trace.TracerProvider {
	if t == nil || t.provider == nil {
		return nil
	}
	return t.provider
}

// Shutdown exports the spans still batched and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.provider == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// Propagator is the W3C trace context (traceparent, tracestate) and baggage, read from
// clients' requests and written into upstream requests.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// Tracer returns the named tracer of tp, or nil when tp is nil (tracing off): callers make
// spans only when they have a tracer, so that off costs nothing.
func Tracer(tp trace.TracerProvider, name string) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(name)
}
