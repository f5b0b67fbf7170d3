package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/internal/telemetry"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// TestNewTracingFromEnv checks which environments turn tracing on: only
// OTEL_TRACES_EXPORTER=otlp, with a protocol the exporters speak, and not when the SDK is
// disabled; anything it cannot honour is an error naming the variable.
func TestNewTracingFromEnv(t *testing.T) {
	for _, c := range []struct {
		name    string
		env     map[string]string
		on      bool
		wantErr string
	}{
		{name: "unset: off", env: map[string]string{}},
		{name: "none: off", env: map[string]string{"OTEL_TRACES_EXPORTER": "none"}},
		{name: "empty: off", env: map[string]string{"OTEL_TRACES_EXPORTER": " "}},
		{name: "otlp: on (http/protobuf)", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, on: true},
		{name: "otlp over grpc", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, on: true},
		{name: "traces protocol wins", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, on: true},
		{name: "sdk disabled", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}},
		{name: "unknown exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: "OTEL_TRACES_EXPORTER"},
		{name: "unknown protocol", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, wantErr: "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{name: "bad disabled", env: map[string]string{"OTEL_SDK_DISABLED": "maybe"}, wantErr: "OTEL_SDK_DISABLED"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr, err := telemetry.NewTracing(context.Background(), env(c.env))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one naming %s", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tr.Provider() != nil; got != c.on {
				t.Errorf("tracing on: %v, want %v", got, c.on)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tr.Shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		})
	}
}

// TestOTLPExport sends a span to an OTLP/HTTP receiver (in process) named by the standard
// variables, with the service name OTEL_SERVICE_NAME gives; with tracing off nothing is
// sent.
func TestOTLPExport(t *testing.T) {
	var (
		mu    sync.Mutex
		posts []string
		body  []byte
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts = append(posts, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
		body = append(body, b...)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL) // read by the exporter itself
	t.Setenv("OTEL_SERVICE_NAME", "mirror-eu-1")

	for _, on := range []bool{false, true} {
		e := map[string]string{}
		if on {
			e["OTEL_TRACES_EXPORTER"] = "otlp"
		}
		tr, err := telemetry.NewTracing(context.Background(), env(e))
		if err != nil {
			t.Fatal(err)
		}
		if tp := tr.Provider(); tp != nil {
			_, span := tp.Tracer("test").Start(context.Background(), "exported-span")
			span.End()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := tr.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		mu.Lock()
		n := len(posts)
		mu.Unlock()
		if !on && n != 0 {
			t.Fatalf("tracing off sent %d requests: %v", n, posts)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 1 || posts[0] != "POST /v1/traces application/x-protobuf" {
		t.Fatalf("receiver got %v, want one POST /v1/traces of protobuf", posts)
	}
	for _, want := range []string{"exported-span", "mirror-eu-1"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("the export lacks %q", want)
		}
	}
}

// TestLogHandler checks that lines logged within a sampled span carry its ids, and others
// none.
func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "test")
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	for _, c := range []struct {
		name  string
		flags trace.TraceFlags
		valid bool
		want  string
	}{
		{name: "sampled", flags: trace.FlagsSampled, valid: true, want: "4bf92f3577b34da6a3ce929d0e0e4736"},
		{name: "not sampled", valid: true},
		{name: "no span"},
	} {
		t.Run(c.name, func(t *testing.T) {
			buf.Reset()
			ctx := context.Background()
			if c.valid {
				ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: c.flags}))
			}
			log.InfoContext(ctx, "request", "status", 200)
			var line map[string]any
			if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
				t.Fatal(err)
			}
			got, _ := line["trace_id"].(string)
			if got != c.want {
				t.Errorf("trace_id %q, want %q: %s", got, c.want, buf.Bytes())
			}
			if c.want != "" && line["span_id"] != "00f067aa0ba902b7" {
				t.Errorf("span_id %v: %s", line["span_id"], buf.Bytes())
			}
			if line["component"] != "test" || line["status"] != float64(200) {
				t.Errorf("the line's own attributes are lost: %s", buf.Bytes())
			}
		})
	}
}

func TestRoute(t *testing.T) {
	for path, want := range map[string]string{
		"/v2":                                   "/v2/",
		"/v2/":                                  "/v2/",
		"/v2/library/alpine/manifests/3.20":     "/v2/{name}/manifests/{reference}",
		"/v2/a/b/c/manifests/sha256:abc":        "/v2/{name}/manifests/{reference}",
		"/v2/app/blobs/sha256:abc":              "/v2/{name}/blobs/{digest}",
		"/v2/app/blobs/uploads/":                "/v2/{name}/blobs/uploads/",
		"/v2/app/blobs/uploads/8f1e":            "/v2/{name}/blobs/uploads/",
		"/v2/app/tags/list":                     "/v2/{name}/tags/list",
		"/v2/app/referrers/sha256:abc":          "/v2/{name}/referrers/{digest}",
		"/v2/app/something":                     "/v2/{other}",
		"/metrics":                              "other",
		"/v2/manifests/blobs/manifests/x":       "/v2/{name}/manifests/{reference}",
		"/v2/blobs/app/manifests/sha256:abcdef": "/v2/{name}/manifests/{reference}",
	} {
		if got := telemetry.Route(path); got != want {
			t.Errorf("Route(%q) = %q, want %q", path, got, want)
		}
	}
}
