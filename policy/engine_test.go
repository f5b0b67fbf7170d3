package policy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
)

const appImage = "docker.io/myorg/app"

// harness is an Engine over a fake verifier and a fake registry.
type harness struct {
	engine   *policy.Engine
	verifier *fakeVerifier
	registry *fakeRegistry
	cache    *cache.Memory[policy.Decision]
	logs     *syncBuffer
}

func newHarness(t *testing.T, cfg policy.Config) *harness {
	t.Helper()
	h := &harness{registry: &fakeRegistry{name: "upstream"}, cache: newCache(t), logs: &syncBuffer{}}
	h.verifier = newFakeVerifier(h.registry)
	logger := slog.New(slog.NewJSONHandler(h.logs, nil))
	h.engine = policy.NewEngine(compile(t, cfg), h.verifier, h.cache, policy.WithLogger(logger),
		policy.WithClock(func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }))
	return h
}

func (h *harness) admit(t *testing.T, m oci.Manifest) (policy.Decision, error) {
	t.Helper()
	return h.engine.Admit(t.Context(), policy.Request{Image: appImage, Repository: "myorg/app", Manifest: m, Registry: h.registry})
}

// oneAppPolicy covers appImage with the given authorities.
func oneAppPolicy(t *testing.T, mutate func(*policy.PolicyConfig), names ...string) policy.Config {
	t.Helper()
	p := policy.PolicyConfig{Name: "prod", Images: []string{"docker.io/myorg/**"}, Authorities: authorities(t, names...)}
	if mutate != nil {
		mutate(&p)
	}
	return policy.Config{Policies: []policy.PolicyConfig{p}}
}

func denyError(t *testing.T, err error) *policy.DenyError {
	t.Helper()
	de, ok := errors.AsType[*policy.DenyError](err)
	if !ok {
		t.Fatalf("got error %v, want a *policy.DenyError", err)
	}
	return de
}

func TestAdmitRequire(t *testing.T) {
	tests := []struct {
		name        string
		require     string
		authorities []string
		signed      []string
		wantAllowed bool
		wantReason  string
		wantSigners []string
	}{
		{name: "single verified", authorities: []string{"release-key"}, signed: []string{"release-key"}, wantAllowed: true,
			wantReason: `verified by authority "release-key"`, wantSigners: []string{"release-key (key release-key)"}},
		{name: "single unverified", authorities: []string{"release-key"}, signed: nil,
			wantReason: `no signature verified by authority "release-key" (found 1 signature: wrong key)`},
		{name: "any of three", authorities: []string{"a", "b", "c"}, signed: []string{"b"}, wantAllowed: true,
			wantReason: `verified by authority "b"`, wantSigners: []string{"b (key b)"}},
		{name: "any of three, none", authorities: []string{"a", "b", "c"},
			wantReason: `0 of 3 authorities verified, 1 required: no signature verified by authority "a" (found 1 signature: wrong key); ` +
				`no signature verified by authority "b" (found 1 signature: wrong key); no signature verified by authority "c" (found 1 signature: wrong key)`},
		{name: "all, one missing", require: "all", authorities: []string{"a", "b", "c"}, signed: []string{"a", "c"},
			wantReason:  `2 of 3 authorities verified, 3 required: no signature verified by authority "b" (found 1 signature: wrong key)`,
			wantSigners: []string{"a (key a)", "c (key c)"}},
		{name: "all", require: "all", authorities: []string{"a", "b"}, signed: []string{"a", "b"}, wantAllowed: true,
			wantReason: `verified by authorities "a", "b"`, wantSigners: []string{"a (key a)", "b (key b)"}},
		{name: "two of three", require: "2", authorities: []string{"a", "b", "c"}, signed: []string{"a", "c"}, wantAllowed: true,
			wantReason: `verified by authorities "a", "c"`, wantSigners: []string{"a (key a)", "c (key c)"}},
		{name: "two of three, one", require: "2", authorities: []string{"a", "b", "c"}, signed: []string{"c"},
			wantReason:  `1 of 3 authorities verified, 2 required: no signature verified by authority "a" (found 1 signature: wrong key); no signature verified by authority "b" (found 1 signature: wrong key)`,
			wantSigners: []string{"c (key c)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, oneAppPolicy(t, func(p *policy.PolicyConfig) { p.Require = tt.require }, tt.authorities...))
			img := imageManifest(t, "app")
			h.verifier.sign(img.Digest, tt.signed...)
			d, err := h.admit(t, img)
			if d.Allowed != tt.wantAllowed || d.Reason != tt.wantReason || !slices.Equal(d.Signers, tt.wantSigners) {
				t.Fatalf("decision = allowed %v, reason %q, signers %q; want %v, %q, %q", d.Allowed, d.Reason, d.Signers, tt.wantAllowed, tt.wantReason, tt.wantSigners)
			}
			if tt.wantAllowed {
				if err != nil || !d.Verified {
					t.Fatalf("Admit: error %v, verified %v; want no error, verified", err, d.Verified)
				}
				return
			}
			de := denyError(t, err)
			want := `image docker.io/myorg/app@` + string(img.Digest) + ` denied by policy "prod": ` + tt.wantReason
			if de.Error() != want {
				t.Fatalf("DenyError = %q, want %q", de.Error(), want)
			}
			var wantUnsatisfied []string
			for _, a := range tt.authorities {
				if !slices.Contains(tt.signed, a) {
					wantUnsatisfied = append(wantUnsatisfied, a)
				}
			}
			if de.Policy != "prod" || de.Image != appImage || de.Digest != img.Digest || !slices.Equal(de.Authorities, wantUnsatisfied) {
				t.Fatalf("DenyError = %+v, want policy prod, image %s, digest %s, authorities %q", de, appImage, img.Digest, wantUnsatisfied)
			}
		})
	}
}

func TestAdmitModes(t *testing.T) {
	tests := []struct {
		mode        policy.Mode
		wantAllowed bool
		wantWarning bool
		wantVerify  int
		wantStats   policy.Stats
	}{
		{mode: policy.ModeEnforce, wantVerify: 1, wantStats: policy.Stats{Denied: 1}},
		{mode: policy.ModeWarn, wantAllowed: true, wantWarning: true, wantVerify: 1, wantStats: policy.Stats{Allowed: 1, Warned: 1}},
		{mode: policy.ModeOff, wantAllowed: true, wantVerify: 0, wantStats: policy.Stats{Allowed: 1}},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			h := newHarness(t, oneAppPolicy(t, func(p *policy.PolicyConfig) { p.Mode = tt.mode }, "release-key"))
			d, err := h.admit(t, imageManifest(t, "unsigned"))
			if d.Allowed != tt.wantAllowed || d.Warning != tt.wantWarning || d.Mode != string(tt.mode) {
				t.Fatalf("decision = %+v, want allowed %v, warning %v, mode %s", d, tt.wantAllowed, tt.wantWarning, tt.mode)
			}
			if tt.wantAllowed && err != nil {
				t.Fatalf("Admit: got error %v, want none", err)
			}
			if !tt.wantAllowed {
				denyError(t, err)
			}
			if got := h.verifier.Calls(); got != tt.wantVerify {
				t.Fatalf("Verify calls = %d, want %d", got, tt.wantVerify)
			}
			if got := h.engine.Stats(); got != tt.wantStats {
				t.Fatalf("Stats() = %+v, want %+v", got, tt.wantStats)
			}
			if tt.wantWarning {
				line := h.logs.lines(t)[0]
				if line["level"] != "WARN" || line["decision"] != "warn" || !strings.Contains(line["reason"].(string), "no signature verified") {
					t.Fatalf("audit line = %v, want a WARN warn decision with the failure", line)
				}
			}
		})
	}
}

func TestAdmitDefaultPolicy(t *testing.T) {
	for _, def := range []policy.DefaultPolicy{"", policy.DefaultDeny, policy.DefaultAllow} {
		t.Run(string(def), func(t *testing.T) {
			cfg := oneAppPolicy(t, func(p *policy.PolicyConfig) { p.Images = []string{"ghcr.io/**"} }, "a")
			cfg.DefaultPolicy = def
			h := newHarness(t, cfg)
			img := imageManifest(t, "app")
			d, err := h.admit(t, img)
			if h.verifier.Calls() != 0 {
				t.Fatalf("Verify called %d times for an image no policy covers", h.verifier.Calls())
			}
			if def == policy.DefaultAllow {
				if err != nil || !d.Allowed || d.Mode != "default" {
					t.Fatalf("Admit = %+v, %v; want allowed by the default policy", d, err)
				}
				return
			}
			de := denyError(t, err)
			want := `image docker.io/myorg/app@` + string(img.Digest) + ` denied: no policy covers image docker.io/myorg/app and defaultPolicy is "deny"`
			if de.Error() != want || de.Policy != "" {
				t.Fatalf("DenyError = %q (policy %q), want %q", de, de.Policy, want)
			}
		})
	}
}

func TestAdmitSignatureArtifacts(t *testing.T) {
	image := imageManifest(t, "app")
	disguised := legacySig(t, cosign.MediaTypeSimpleSigning)
	tests := []struct {
		name        string
		m           oci.Manifest
		checkErr    error // CheckArtifact's answer
		wantExempt  bool
		wantChecks  int
		wantFailure bool // no verdict
	}{
		{name: "legacy signature", m: legacySig(t, cosign.MediaTypeSimpleSigning), wantExempt: true, wantChecks: 1},
		{name: "legacy attestation", m: legacySig(t, cosign.MediaTypeDSSEEnvelope), wantExempt: true, wantChecks: 1},
		{name: "bundle referrer", m: bundleReferrer(t, image), wantExempt: true, wantChecks: 1},
		{name: "runnable image with a subject", m: manifestWithSubject(t, image), wantChecks: 0},
		{name: "signature-shaped, runnable content", m: disguised, wantChecks: 1,
			checkErr: &verify.ArtifactError{Reason: "layer 0 is not a simple signing payload"}},
		{name: "signature-shaped, content unreadable", m: disguised, wantChecks: 1, wantFailure: true,
			checkErr: &verify.LookupError{Repository: "app", What: "layer 0", Err: errors.New("upstream 503")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, oneAppPolicy(t, nil, "release-key"))
			if tt.checkErr != nil {
				h.verifier.artifacts[tt.m.Digest] = tt.checkErr
			}
			d, err := h.admit(t, tt.m)
			if h.verifier.checks != tt.wantChecks {
				t.Errorf("CheckArtifact calls = %d, want %d", h.verifier.checks, tt.wantChecks)
			}
			switch {
			case tt.wantExempt:
				if err != nil || !d.Allowed || !d.Exempt || h.verifier.Calls() != 0 {
					t.Fatalf("Admit = %+v, %v with %d Verify calls; want exempt without verification", d, err, h.verifier.Calls())
				}
				if s := h.engine.Stats(); s.Exempt != 1 || s.Allowed != 1 {
					t.Errorf("stats %+v, want 1 exempt, 1 allowed", s)
				}
			case tt.wantFailure:
				if _, denied := errors.AsType[*policy.DenyError](err); err == nil || denied || d.Allowed {
					t.Fatalf("Admit = %+v, %v; want a failure to decide, neither allowed nor denied", d, err)
				}
				if h.verifier.Calls() != 0 {
					t.Errorf("Verify calls = %d, want 0", h.verifier.Calls())
				}
			default:
				de := denyError(t, err)
				if h.verifier.Calls() != 1 {
					t.Fatalf("Verify calls = %d, want 1: a runnable image is never exempt", h.verifier.Calls())
				}
				if tt.checkErr != nil && !strings.Contains(de.Reason, "not a signature artifact: layer 0 is not a simple signing payload") {
					t.Errorf("reason %q does not say why the manifest is not exempt", de.Reason)
				}
			}
		})
	}
}

// manifestWithSubject is a runnable image that claims to refer to subject.
func manifestWithSubject(t *testing.T, subject oci.Manifest) oci.Manifest {
	t.Helper()
	return rawManifest(t, oci.MediaTypeOCIManifest, `{"schemaVersion":2,"mediaType":"`+oci.MediaTypeOCIManifest+`",`+
		`"artifactType":"`+cosign.MediaTypeSigstoreBundle+`",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"`+string(digest.FromString("c"))+`","size":1},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"`+string(digest.FromString("l"))+`","size":1}],`+
		`"subject":{"mediaType":"`+subject.MediaType+`","digest":"`+string(subject.Digest)+`","size":1}}`)
}

func TestAdmitIndexAdmitsChildren(t *testing.T) {
	h := newHarness(t, oneAppPolicy(t, nil, "release-key"))
	amd, arm, other := imageManifest(t, "amd64"), imageManifest(t, "arm64"), imageManifest(t, "other")
	idx := index(t, amd, arm)
	h.verifier.sign(idx.Digest, "release-key")

	// A child fetched before its index is judged on its own.
	if _, err := h.admit(t, arm); err == nil {
		t.Fatal("unsigned child before its index: got no error, want a denial")
	}
	d, err := h.admit(t, idx)
	if err != nil || !d.Verified {
		t.Fatalf("signed index: Admit = %+v, %v; want verified", d, err)
	}
	calls := h.verifier.Calls()
	for _, child := range []oci.Manifest{amd, arm} {
		d, err := h.admit(t, child)
		if err != nil || !d.Allowed || !d.Verified || d.AdmittedBy != idx.Digest || d.Policy != "prod" {
			t.Fatalf("child %s: Admit = %+v, %v; want allowed, admitted by %s", child.Digest, d, err, idx.Digest)
		}
	}
	if got := h.verifier.Calls(); got != calls {
		t.Fatalf("children caused %d more Verify calls, want 0", got-calls)
	}
	if _, err := h.admit(t, other); err == nil {
		t.Fatal("manifest not listed by the index: got no error, want a denial")
	}

	// When a child's decision is gone (evicted, forgotten), serving the cached index records
	// it again.
	h.cache.Forget(t.Context(), appImage, amd.Digest)
	if _, err := h.admit(t, idx); err != nil {
		t.Fatalf("cached index: %v", err)
	}
	if d, err := h.admit(t, amd); err != nil || d.AdmittedBy != idx.Digest {
		t.Fatalf("child after its index was served again: Admit = %+v, %v; want admitted by the index", d, err)
	}
}

// gatedCache holds every Get of a child key until want of them are waiting at once (or a
// deadline passes, which the test reports): with a shared tier each Get is a Redis round trip.
type gatedCache struct {
	*cache.Memory[policy.Decision]
	children map[digest.Digest]bool
	want     int
	mu       sync.Mutex
	waiting  int
	open     chan struct{}
	timedOut atomic.Bool
}

func (g *gatedCache) Get(ctx context.Context, k cache.Key) (policy.Decision, bool) {
	if g.children[k.Digest] {
		g.mu.Lock()
		if g.waiting++; g.waiting == g.want {
			close(g.open)
		}
		g.mu.Unlock()
		select {
		case <-g.open:
		case <-time.After(5 * time.Second):
			g.timedOut.Store(true)
		}
	}
	return g.Memory.Get(ctx, k)
}

// TestAdmitIndexRecordsChildrenConcurrently: the children of a verified index are recorded
// at once, not one cache round trip after another.
func TestAdmitIndexRecordsChildrenConcurrently(t *testing.T) {
	var children []oci.Manifest
	for _, name := range []string{"amd64", "arm64", "s390x", "ppc64le", "riscv64", "386"} {
		children = append(children, imageManifest(t, name))
	}
	idx := index(t, children...)
	g := &gatedCache{Memory: newCache(t), children: map[digest.Digest]bool{}, want: len(children), open: make(chan struct{})}
	for _, c := range children {
		g.children[c.Digest] = true
	}
	registry := &fakeRegistry{name: "upstream"}
	v := newFakeVerifier(registry)
	v.sign(idx.Digest, "release-key")
	e := policy.NewEngine(compile(t, oneAppPolicy(t, nil, "release-key")), v, g)
	req := policy.Request{Image: appImage, Repository: "myorg/app", Manifest: idx, Registry: registry}
	if d, err := e.Admit(t.Context(), req); err != nil || !d.Verified {
		t.Fatalf("signed index: Admit = %+v, %v; want verified", d, err)
	}
	if g.timedOut.Load() {
		t.Fatalf("the %d children were looked up one after another (the gate waited for all of them at once and timed out)", len(children))
	}
	for _, c := range children {
		if d, ok := g.Memory.Get(t.Context(), cache.Key{PolicyVersion: e.Set().Version(), Repository: appImage, Digest: c.Digest}); !ok || d.AdmittedBy != idx.Digest {
			t.Errorf("child %s: recorded %+v, %v; want admitted by the index", c.Digest, d, ok)
		}
	}
}

func TestAdmitIndexes(t *testing.T) {
	amd, arm := imageManifest(t, "amd64"), imageManifest(t, "arm64")
	tests := []struct {
		name        string
		indexes     policy.IndexMode
		signIndex   bool
		signChild   []oci.Manifest
		wantIndex   bool
		wantChildOK map[digest.Digest]bool
	}{
		{name: "signed mode, unsigned index", indexes: policy.IndexesSigned, signChild: []oci.Manifest{amd, arm},
			wantIndex: false, wantChildOK: map[digest.Digest]bool{amd.Digest: true, arm.Digest: true}},
		{name: "perPlatform, unsigned index", indexes: policy.IndexesPerPlatform, signChild: []oci.Manifest{amd},
			wantIndex: true, wantChildOK: map[digest.Digest]bool{amd.Digest: true, arm.Digest: false}},
		{name: "perPlatform, signed index", indexes: policy.IndexesPerPlatform, signIndex: true,
			wantIndex: true, wantChildOK: map[digest.Digest]bool{amd.Digest: true, arm.Digest: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, oneAppPolicy(t, func(p *policy.PolicyConfig) { p.Indexes = tt.indexes }, "release-key"))
			idx := index(t, amd, arm)
			if tt.signIndex {
				h.verifier.sign(idx.Digest, "release-key")
			}
			for _, c := range tt.signChild {
				h.verifier.sign(c.Digest, "release-key")
			}
			d, err := h.admit(t, idx)
			if d.Allowed != tt.wantIndex || (err == nil) != tt.wantIndex {
				t.Fatalf("index: Admit = %+v, %v; want allowed %v", d, err, tt.wantIndex)
			}
			if tt.wantIndex && !tt.signIndex && (d.Verified || !strings.Contains(d.Reason, `because indexes is "perPlatform"`)) {
				t.Fatalf("unsigned index under perPlatform: decision %+v, want unverified and saying why it is served", d)
			}
			for _, c := range []oci.Manifest{amd, arm} {
				d, err := h.admit(t, c)
				if want := tt.wantChildOK[c.Digest]; d.Allowed != want || (err == nil) != want {
					t.Errorf("child %s: Admit = %+v, %v; want allowed %v", c.Digest, d, err, want)
				}
			}
		})
	}
}

func TestAdmitPerPlatformNeedsIndexContent(t *testing.T) {
	h := newHarness(t, oneAppPolicy(t, func(p *policy.PolicyConfig) { p.Indexes = policy.IndexesPerPlatform }, "release-key"))
	// An image manifest whose upstream claims it is an index.
	disguised := rawManifest(t, oci.MediaTypeOCIIndex, string(imageManifest(t, "app").Bytes))
	if _, err := h.admit(t, disguised); err == nil {
		t.Fatal("image labelled as an index: got no error, want a denial")
	}
}

func TestSwapNeverServesOldDecision(t *testing.T) {
	h := newHarness(t, oneAppPolicy(t, nil, "old-key"))
	img := imageManifest(t, "app")
	h.verifier.sign(img.Digest, "old-key")
	for range 2 {
		if d, err := h.admit(t, img); err != nil || !d.Allowed {
			t.Fatalf("under the old policy: Admit = %+v, %v; want allowed", d, err)
		}
	}
	if got := h.verifier.Calls(); got != 1 {
		t.Fatalf("Verify calls = %d, want 1 (second Admit cached)", got)
	}
	h.engine.Swap(compile(t, oneAppPolicy(t, nil, "new-key")))
	if _, err := h.admit(t, img); err == nil {
		t.Fatal("after Swap to a policy the image does not satisfy: got no error, want a denial")
	}
	if got := h.verifier.Calls(); got != 2 {
		t.Fatalf("Verify calls = %d, want 2 (no decision reused across policy versions)", got)
	}
}

func TestAdmitConcurrentColdDigest(t *testing.T) {
	const callers = 500
	h := newHarness(t, oneAppPolicy(t, nil, "release-key"))
	img := imageManifest(t, "app")
	h.verifier.sign(img.Digest, "release-key")
	gate := make(chan struct{})
	h.verifier.gate = gate

	var started, done sync.WaitGroup
	started.Add(callers)
	done.Add(callers)
	errs := make(chan error, callers)
	for range callers {
		go func() {
			defer done.Done()
			started.Done()
			if d, err := h.admit(t, img); err != nil || !d.Allowed {
				errs <- errors.Join(err, errors.New("not allowed"))
			}
		}()
	}
	started.Wait()
	// Every caller waits on the one verification in the decision cache before it returns:
	// counted in the goroutines' stacks rather than hoped for after a sleep.
	for deadline, buf := time.Now().Add(10*time.Second), make([]byte, 64<<20); ; time.Sleep(time.Millisecond) {
		waiting := 0
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, " [select") && strings.Contains(g, "cache.(*Memory[...]).Do(") {
				waiting++
			}
		}
		if waiting >= callers {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d callers waiting on the verification after 10s", waiting, callers)
		}
	}
	close(gate)
	done.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := h.verifier.Calls(); got != 1 {
		t.Fatalf("Verify calls = %d for %d concurrent Admits of one cold digest, want 1", got, callers)
	}
	if got := h.engine.Stats().Allowed; got != callers {
		t.Fatalf("Stats().Allowed = %d, want %d", got, callers)
	}
}

func TestAdmitVerifyErrorIsNotADenialAndNotCached(t *testing.T) {
	h := newHarness(t, oneAppPolicy(t, nil, "release-key"))
	img := imageManifest(t, "app")
	upstreamDown := errors.New("referrers: 503 service unavailable")
	h.verifier.fail(upstreamDown)
	_, err := h.admit(t, img)
	if !errors.Is(err, upstreamDown) {
		t.Fatalf("got error %v, want it to wrap %v", err, upstreamDown)
	}
	if _, ok := errors.AsType[*policy.DenyError](err); ok {
		t.Fatalf("a lookup failure was reported as a denial: %v", err)
	}
	h.verifier.fail(nil)
	h.verifier.sign(img.Digest, "release-key")
	if d, err := h.admit(t, img); err != nil || !d.Allowed {
		t.Fatalf("after the upstream recovered: Admit = %+v, %v; want allowed (errors are not cached)", d, err)
	}
	if got := h.engine.Stats(); got.Failed != 1 || got.Allowed != 1 {
		t.Fatalf("Stats() = %+v, want 1 failed, 1 allowed", got)
	}
}

// A lookup failure decides nothing only when the policy is met without it.
func TestAdmitLookupFailureWithPartialResult(t *testing.T) {
	for _, tc := range []struct {
		require     string
		wantAllowed bool
	}{
		{"any", true},
		{"all", false},
	} {
		t.Run(tc.require, func(t *testing.T) {
			h := newHarness(t, oneAppPolicy(t, func(p *policy.PolicyConfig) { p.Require = tc.require }, "a", "b"))
			img := imageManifest(t, "app")
			h.verifier.sign(img.Digest, "a")
			h.verifier.fail(errors.New("referrers: 503 service unavailable"))
			d, err := h.admit(t, img)
			if tc.wantAllowed {
				if err != nil || !d.Allowed {
					t.Fatalf("Admit = %+v, %v; want allowed", d, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Admit = %+v; want the lookup error", d)
			}
			if _, ok := errors.AsType[*policy.DenyError](err); ok {
				t.Fatalf("a lookup failure was reported as a denial: %v", err)
			}
		})
	}
}

func TestAdmitCachedDenial(t *testing.T) {
	h := newHarness(t, oneAppPolicy(t, nil, "release-key"))
	img := imageManifest(t, "app")
	for i := range 2 {
		if _, err := h.admit(t, img); err == nil {
			t.Fatalf("Admit #%d: got no error, want a denial", i)
		}
	}
	if got := h.verifier.Calls(); got != 1 {
		t.Fatalf("Verify calls = %d, want 1 (the denial is cached)", got)
	}
	lines := h.logs.lines(t)
	if len(lines) != 2 || lines[0]["cached"] != false || lines[1]["cached"] != true {
		t.Fatalf("audit lines = %v, want a fresh then a cached denial", lines)
	}
}

func TestAdmitRejectsBadRequests(t *testing.T) {
	h := newHarness(t, oneAppPolicy(t, nil, "release-key"))
	img := imageManifest(t, "app")
	tampered := img
	tampered.Bytes = append(bytes.Clone(img.Bytes), ' ')
	tests := []struct {
		name string
		req  policy.Request
		want string
	}{
		{"digest does not match bytes", policy.Request{Image: appImage, Repository: "myorg/app", Manifest: tampered, Registry: h.registry}, "manifest bytes have digest"},
		{"no digest", policy.Request{Image: appImage, Repository: "myorg/app", Manifest: oci.Manifest{Bytes: img.Bytes}, Registry: h.registry}, "manifest digest"},
		{"no image", policy.Request{Repository: "myorg/app", Manifest: img, Registry: h.registry}, "is empty"},
		{"no registry", policy.Request{Image: appImage, Repository: "myorg/app", Manifest: img}, "no upstream registry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.engine.Admit(t.Context(), tt.req)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
			if _, ok := errors.AsType[*policy.DenyError](err); ok {
				t.Fatalf("a bad request was reported as a denial: %v", err)
			}
		})
	}
}

func TestAuditLine(t *testing.T) {
	h := newHarness(t, oneAppPolicy(t, nil, "release-key"))
	img := imageManifest(t, "app")
	h.verifier.sign(img.Digest, "release-key")
	if _, err := h.admit(t, img); err != nil {
		t.Fatal(err)
	}
	line := h.logs.lines(t)[0]
	want := map[string]any{
		"level": "INFO", "msg": "admission", "image": appImage, "digest": string(img.Digest), "decision": "allow",
		"policy": "prod", "mode": "enforce", "reason": `verified by authority "release-key"`,
		"signers": []any{"release-key (key release-key)"}, "cached": false,
	}
	for k, v := range want {
		got, _ := json.Marshal(line[k])
		exp, _ := json.Marshal(v)
		if !bytes.Equal(got, exp) {
			t.Errorf("audit %s = %s, want %s", k, got, exp)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes, holding JSON log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for l := range strings.Lines(b.buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}
