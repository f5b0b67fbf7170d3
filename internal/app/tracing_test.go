package app_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/internal/app"
	"github.com/portcullis/portcullis/internal/sign"
	"github.com/portcullis/portcullis/internal/testtool"
)

// headerRecorder is an upstream that keeps the traceparent header of every request.
type headerRecorder struct {
	next http.Handler
	mu   sync.Mutex
	seen []string // "METHOD path traceparent"
}

func (h *headerRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.seen = append(h.seen, r.Method+" "+r.URL.Path+" "+r.Header.Get("traceparent"))
	h.mu.Unlock()
	h.next.ServeHTTP(w, r)
}

func (h *headerRecorder) requests() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.seen...)
}

// logBuffer is a JSON log destination safe for the request and background goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the JSON log lines whose msg is msg.
func (l *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// tracedProxy is portcullis with tracing on (an in-memory exporter) before a real registry
// (distribution, in process) holding image traced/app:v1 signed as cosign v3 does.
type tracedProxy struct {
	app      *app.App
	srv      *httptest.Server
	up       *headerRecorder
	spans    *tracetest.InMemoryExporter
	logs     *logBuffer
	manifest v1.Hash
	layer    v1.Hash
}

func newTracedProxy(t *testing.T, tracing bool) *tracedProxy {
	t.Helper()
	up := &headerRecorder{next: testtool.Distribution(t)}
	usrv := httptest.NewServer(up)
	t.Cleanup(usrv.Close)
	host := strings.TrimPrefix(usrv.URL, "http://")

	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	img := testtool.RandomImage(t, 1024, 1)
	ref, err := name.ParseReference(host+"/traced/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	raw, _ := img.RawManifest()
	mt, _ := img.MediaType()
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	if _, err := sign.Bundle(context.Background(), ref.Context(), v1.Descriptor{MediaType: mt, Digest: d, Size: int64(len(raw))},
		signer, priv.Public(), nil); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cosign.pub"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	yml := fmt.Sprintf(`storage: {driver: inmemory}
log: {format: json}
upstreams:
  - name: up.invalid
    url: %s
    insecure: true
    default: true
policies:
  - name: traced
    images: ["up.invalid/**"]
    authorities:
      - name: key
        key: {path: cosign.pub}
defaultPolicy: deny
`, usrv.URL)
	path := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	up.mu.Lock()
	up.seen = nil // what the setup pushed
	up.mu.Unlock()
	p := &tracedProxy{up: up, spans: tracetest.NewInMemoryExporter(), logs: &logBuffer{}, manifest: d, layer: ld}
	opts := app.Options{Logger: slog.New(slog.NewJSONHandler(p.logs, nil))}
	if tracing {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(p.spans))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		opts.TracerProvider = tp
	}
	if p.app, err = app.New(context.Background(), cfg, opts); err != nil {
		t.Fatal(err)
	}
	p.srv = httptest.NewServer(p.app.Handler)
	t.Cleanup(func() {
		p.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.app.Close(ctx)
	})
	return p
}

// get GETs path with the headers (name, value, …) and returns the status and body.
func (p *tracedProxy) get(t *testing.T, path string, hdr ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// flush waits for the store writes done behind requests, whose spans end then.
func (p *tracedProxy) flush(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.app.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// spanTree indexes finished spans by id.
type spanTree map[trace.SpanID]tracetest.SpanStub

func treeOf(stubs tracetest.SpanStubs) spanTree {
	st := spanTree{}
	for _, s := range stubs {
		st[s.SpanContext.SpanID()] = s
	}
	return st
}

// named returns the spans called name.
func (st spanTree) named(name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range st {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// one returns the one span called name whose parent is parent.
func (st spanTree) one(t *testing.T, name string, parent tracetest.SpanStub) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range st.named(name) {
		if s.Parent.SpanID() == parent.SpanContext.SpanID() {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans %q under %q, want 1; spans: %s", len(found), name, parent.Name, st)
	}
	return found[0]
}

// under reports whether s descends from ancestor.
func (st spanTree) under(s, ancestor tracetest.SpanStub) bool {
	for {
		p, ok := st[s.Parent.SpanID()]
		if !ok {
			return false
		}
		if p.SpanContext.SpanID() == ancestor.SpanContext.SpanID() {
			return true
		}
		s = p
	}
}

func (st spanTree) String() string {
	var b strings.Builder
	for _, s := range st {
		parent := "-"
		if p, ok := st[s.Parent.SpanID()]; ok {
			parent = p.Name
		}
		fmt.Fprintf(&b, "\n  %s (parent %s) %v", s.Name, parent, s.Attributes)
	}
	return b.String()
}

func attr(s tracetest.SpanStub, key string) attribute.Value {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// TestColdPullSpanTree pulls a signed image through portcullis with a client's trace
// context: the request's span continues the client's trace, and under it are the decision,
// the decision cache lookup, the fresh decision, the signature discovery (with the
// upstream requests it made) and check, and the content store writes. The upstream gets the
// trace context on every request; the request and audit log lines carry the trace id. A
// second pull is decided from the local cache tier, without a fresh decision.
func TestColdPullSpanTree(t *testing.T) {
	p := newTracedProxy(t, true)
	const (
		traceID  = "4bf92f3577b34da6a3ce929d0e0e4736"
		clientID = "00f067aa0ba902b7"
	)
	if code, b := p.get(t, "/v2/traced/app/manifests/v1", "traceparent", "00-"+traceID+"-"+clientID+"-01"); code != http.StatusOK {
		t.Fatalf("GET manifest: %d %s", code, b)
	}
	if code, _ := p.get(t, "/v2/traced/app/blobs/"+p.layer.String(), "traceparent", "00-"+traceID+"-"+clientID+"-01"); code != http.StatusOK {
		t.Fatalf("GET blob: %d", code)
	}
	p.flush(t)
	st := treeOf(p.spans.GetSpans())

	for _, s := range st {
		if got := s.SpanContext.TraceID().String(); got != traceID {
			t.Errorf("span %q is in trace %s, want the client's %s", s.Name, got, traceID)
		}
	}
	var req tracetest.SpanStub
	for _, s := range st.named("GET /v2/{name}/manifests/{reference}") {
		req = s
	}
	if req.Name == "" {
		t.Fatalf("no request span; spans: %s", st)
	}
	if req.SpanKind != trace.SpanKindServer || req.Parent.SpanID().String() != clientID || !req.Parent.IsRemote() {
		t.Errorf("request span: kind %v, parent %s (remote %v), want a server span continuing the client's span %s",
			req.SpanKind, req.Parent.SpanID(), req.Parent.IsRemote(), clientID)
	}
	admit := st.one(t, "policy.Admit", req)
	if got := attr(admit, "portcullis.decision").AsString(); got != "allow" {
		t.Errorf("policy.Admit decision %q, want allow", got)
	}
	if got := attr(admit, "portcullis.digest").AsString(); got != p.manifest.String() {
		t.Errorf("policy.Admit digest %q, want %s", got, p.manifest)
	}
	lookup := st.one(t, "cache.decision", admit)
	if attr(lookup, "portcullis.decision.cached").AsBool() {
		t.Error("the cold decision's cache lookup says cached")
	}
	decide := st.one(t, "policy.decide", lookup)
	discover := st.one(t, "signatures.discover", decide)
	st.one(t, "signatures.check", decide)

	// The signature lookups (the ".sig" tag, the referrers tag schema) are upstream
	// requests under the request: started with the manifest's fetch from the digest its
	// answer named (the prefetch), or else by the discovery; the rest of the discovery
	// (here the bundle's blob) is under signatures.discover. The image's manifest was
	// fetched under the request.
	var sigLookups, discovered, manifestFetches int
	for _, s := range st.named("upstream GET") {
		url := attr(s, "url.full").AsString()
		if st.under(s, discover) {
			discovered++
		}
		switch {
		case strings.Contains(url, "/manifests/sha256-") && st.under(s, req):
			sigLookups++
		case strings.HasSuffix(url, "/traced/app/manifests/v1") && st.under(s, req) && !st.under(s, admit):
			manifestFetches++
		}
		if s.SpanKind != trace.SpanKindClient {
			t.Errorf("upstream span %s: kind %v, want client", url, s.SpanKind)
		}
	}
	if sigLookups == 0 || discovered == 0 || manifestFetches != 1 {
		t.Errorf("%d signature lookups under the request (want some), %d upstream requests under signatures.discover (want some), %d manifest fetches under the request (want 1); spans: %s",
			sigLookups, discovered, manifestFetches, st)
	}
	// The manifest and the blob were written to the store, under their requests.
	var writes int
	for _, s := range st {
		if (s.Name == "storage.PutContent" || s.Name == "storage.Writer") && st.under(s, req) {
			writes++
		}
	}
	if writes == 0 {
		t.Errorf("no store write under the manifest request; spans: %s", st)
	}
	var blobReq bool
	for _, s := range st.named("GET /v2/{name}/blobs/{digest}") {
		blobReq = s.Parent.SpanID().String() == clientID
	}
	if !blobReq {
		t.Errorf("no blob request span continuing the client's; spans: %s", st)
	}

	// Every request to the upstream carried the trace context.
	tp := regexp.MustCompile(`^00-` + traceID + `-[0-9a-f]{16}-01$`)
	for _, r := range p.up.requests() {
		f := strings.Fields(r)
		if len(f) != 3 || !tp.MatchString(f[2]) {
			t.Errorf("upstream request %q: no traceparent of trace %s", r, traceID)
		}
	}

	// The request and audit lines name the trace.
	for _, msg := range []string{"request", "admission"} {
		lines := p.logs.lines(t, msg)
		if len(lines) == 0 {
			t.Fatalf("no %q log line", msg)
		}
		for _, l := range lines {
			if l["trace_id"] != traceID {
				t.Errorf("%s line: trace_id %v, want %s: %v", msg, l["trace_id"], traceID, l)
			}
		}
	}

	// Warm: decided from the local tier, nothing decided afresh.
	p.spans.Reset()
	if code, _ := p.get(t, "/v2/traced/app/manifests/"+p.manifest.String()); code != http.StatusOK {
		t.Fatalf("warm GET: %d", code)
	}
	warm := treeOf(p.spans.GetSpans())
	admits := warm.named("policy.Admit")
	if len(admits) != 1 || attr(admits[0], "portcullis.decision.tier").AsString() != "local" {
		t.Errorf("warm pull: %d policy.Admit spans, want 1 from the local tier; spans: %s", len(admits), warm)
	}
	if n := len(warm.named("policy.decide")); n != 0 {
		t.Errorf("warm pull decided afresh %d times", n)
	}
	if len(admits) == 1 && admits[0].SpanContext.TraceID().String() == traceID {
		t.Error("a request without traceparent joined the client's earlier trace")
	}
}

// TestTracingOff checks that without a tracer provider nothing is traced and nothing is
// sent upstream that tracing would add, and that log lines carry no trace id — even when
// the client sends a trace context.
func TestTracingOff(t *testing.T) {
	p := newTracedProxy(t, false)
	if code, b := p.get(t, "/v2/traced/app/manifests/v1", "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"); code != http.StatusOK {
		t.Fatalf("GET manifest: %d %s", code, b)
	}
	p.flush(t)
	for _, r := range p.up.requests() {
		if f := strings.Fields(r); len(f) != 2 {
			t.Errorf("upstream request %q carries a traceparent with tracing off", r)
		}
	}
	for _, msg := range []string{"request", "admission"} {
		for _, l := range p.logs.lines(t, msg) {
			if _, ok := l["trace_id"]; ok {
				t.Errorf("%s line has a trace_id with tracing off: %v", msg, l)
			}
		}
	}
}

// TestDecisionMetrics checks that each decision is counted once, by outcome, cached, tier
// and policy: a cold pull is one fresh decision, the warm pull of the same digest one from
// the local tier, and an image no policy covers one denial by the default policy; and that
// upstream requests are measured by upstream.
func TestDecisionMetrics(t *testing.T) {
	p := newTracedProxy(t, false)
	for _, path := range []string{"/v2/traced/app/manifests/v1", "/v2/traced/app/manifests/" + p.manifest.String()} {
		if code, b := p.get(t, path); code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, b)
		}
	}
	code, b := p.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	series := parseSeries(string(b))
	for _, c := range []struct {
		name   string
		labels string
		value  string // "" any
	}{
		{"portcullis_decisions_total", `cached="false",outcome="allowed",policy="traced",tier="fresh"`, "1"},
		{"portcullis_decisions_total", `cached="true",outcome="allowed",policy="traced",tier="local"`, "1"},
		{"portcullis_decisions_total", `cached="false",outcome="denied",policy="(default)",tier="fresh"`, "0"},
		{"portcullis_upstream_errors_total", `reason="5xx",upstream="up.invalid"`, "0"},
		{"portcullis_upstream_request_duration_seconds_count", `method="GET",status="2xx",upstream="up.invalid"`, ""},
	} {
		got, ok := series[c.name+"{"+c.labels+"}"]
		if !ok || (c.value != "" && got != c.value) {
			t.Errorf("%s{%s} = %q (exported: %v), want %q", c.name, c.labels, got, ok, c.value)
		}
	}
	// Counted once: no other series of the allowed decisions moved.
	total := 0
	for k, v := range series {
		if strings.HasPrefix(k, "portcullis_decisions_total{") {
			var n int
			_, _ = fmt.Sscan(v, &n)
			total += n
		}
	}
	if total != 2 {
		t.Errorf("portcullis_decisions_total sums to %d over its series, want 2 (two decisions): %v", total, series)
	}
}

// parseSeries reads the Prometheus text format into value by `name{labels}`, the labels
// sorted and those of the OpenTelemetry scope left out.
func parseSeries(text string) map[string]string {
	line := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
	pair := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
	out := map[string]string{}
	for _, l := range strings.Split(text, "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		var labels []string
		for _, p := range pair.FindAllStringSubmatch(m[2], -1) {
			if !strings.HasPrefix(p[1], "otel_scope_") {
				labels = append(labels, p[0])
			}
		}
		slices.Sort(labels)
		out[m[1]+"{"+strings.Join(labels, ",")+"}"] = m[3]
	}
	return out
}
