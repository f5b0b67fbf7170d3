package proxy_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/verify/oci"
)

// attestationsGate admits everything and says that it wants attestations.
type attestationsGate struct{ admitAll }

func (attestationsGate) WantsSignatures(string) bool   { return true }
func (attestationsGate) WantsAttestations(string) bool { return true }

// TestPrefetchAttestations GETs a cold manifest by digest: the legacy ".att" tag is looked up
// ahead of the decision only when the gate says that the decision reads attestations.
func TestPrefetchAttestations(t *testing.T) {
	for _, tc := range []struct {
		name string
		gate proxy.Gate
		want bool
	}{
		{"gate that cannot tell", admitAll{}, false},
		{"gate that wants attestations", attestationsGate{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(_ *upstream.Config, o *proxy.Options) { o.Gate = tc.gate })
			d := e.push(t, "demo/app:v1", randomImage(t))
			var sig, att atomic.Int64
			e.faults.set(func(w http.ResponseWriter, r *http.Request) bool {
				switch {
				case strings.HasSuffix(r.URL.Path, "/sha256-"+d.Hex+".att"):
					att.Add(1)
				case strings.HasSuffix(r.URL.Path, "/sha256-"+d.Hex+".sig"):
					sig.Add(1)
				}
				return false
			})
			resp, b := e.get(t, http.MethodGet, "/v2/demo/app/manifests/"+d.String())
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET: %d %s", resp.StatusCode, b)
			}
			if err := e.h.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second) // the lookups run detached
			for (sig.Load() == 0 || tc.want && att.Load() == 0) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if sig.Load() == 0 {
				t.Errorf("no .sig lookup for a cold GET by digest")
			}
			if got := att.Load() > 0; got != tc.want {
				t.Errorf("%d .att lookups, want some: %v", att.Load(), tc.want)
			}
		})
	}
}

// decidedGate admits everything; it says that the decision is known here (known), or leaves
// the question to ask (the replicas' shared tier). With lookup set, Admit reads the digest's
// signatures through the request's Registry, as a decision that is not known does.
type decidedGate struct {
	admitAll
	known  bool
	ask    func(context.Context) bool
	lookup bool
}

func (g decidedGate) WantsSignatures(string) bool { return true }

func (g decidedGate) Decided(context.Context, string, digest.Digest) (bool, func(context.Context) bool) {
	return g.known, g.ask
}

func (g decidedGate) Admit(ctx context.Context, req policy.Request) (policy.Decision, error) {
	if g.lookup {
		if _, err := req.Registry.Manifest(ctx, req.Repository, cosign.SignatureTag(req.Manifest.Digest)); err != nil && !errors.Is(err, oci.ErrNotFound) {
			return policy.Decision{}, err
		}
		if _, err := req.Registry.Referrers(ctx, req.Repository, req.Manifest.Digest); err != nil {
			return policy.Decision{}, err
		}
	}
	return g.admitAll.Admit(ctx, req)
}

// TestPrefetchDecided GETs a cold manifest by digest whose decision is known in the process,
// known to the other replicas, or unknown. Known here, nothing is looked up ahead of it; for
// the replicas, the question is put while the manifest is fetched (it answers only once the
// upstream has received the manifest GET: a fetch that waited for it would never be sent),
// and the signature lookup starts only when the answer is "not known", once, used by the
// decision.
func TestPrefetchDecided(t *testing.T) {
	for _, tc := range []struct {
		name     string
		known    bool
		ask      *bool // nil: nobody to ask
		lookup   bool  // the decision reads signatures
		wantSigs int64 // .sig GETs the upstream sees
	}{
		{name: "known here", known: true, wantSigs: 0},
		{name: "unknown, nobody to ask", lookup: true, wantSigs: 1},
		{name: "known to the replicas", ask: ptr(true), wantSigs: 0},
		{name: "unknown to the replicas", ask: ptr(false), lookup: true, wantSigs: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			manifestAsked := make(chan struct{})
			var once sync.Once
			var asked atomic.Bool
			g := decidedGate{known: tc.known, lookup: tc.lookup}
			if tc.ask != nil {
				g.ask = func(ctx context.Context) bool {
					asked.Store(true)
					select {
					case <-manifestAsked:
					case <-time.After(5 * time.Second):
						t.Error("the manifest was not fetched while the replicas were asked")
					}
					return *tc.ask
				}
			}
			e := newEnv(t, func(_ *upstream.Config, o *proxy.Options) { o.Gate = g })
			d := e.push(t, "demo/app:v1", randomImage(t))
			var sigs atomic.Int64
			e.faults.set(func(w http.ResponseWriter, r *http.Request) bool {
				switch {
				case strings.HasSuffix(r.URL.Path, "/manifests/"+d.String()):
					once.Do(func() { close(manifestAsked) })
				case strings.HasSuffix(r.URL.Path, "/sha256-"+d.Hex+".sig"):
					sigs.Add(1)
				}
				return false
			})
			resp, b := e.get(t, http.MethodGet, "/v2/demo/app/manifests/"+d.String())
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET: %d %s", resp.StatusCode, b)
			}
			if err := e.h.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // lookups started ahead run detached
			if got := sigs.Load(); got != tc.wantSigs {
				t.Errorf("upstream saw %d .sig GETs, want %d", got, tc.wantSigs)
			}
			if got := asked.Load(); got != (tc.ask != nil) {
				t.Errorf("replicas asked: %v, want %v", got, tc.ask != nil)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestPrefetchTagHint GETs a cold manifest by tag from an upstream that sends the answer's
// headers (with Docker-Content-Digest) at once but its body only once the signature lookup
// of that digest has arrived: the lookup starts from the header, before the body is read.
// The decision still reads the signatures once. With a header naming another digest, the
// manifest is served all the same (the hint is not the digest of the bytes: its lookup is
// not used).
func TestPrefetchTagHint(t *testing.T) {
	for _, tc := range []struct {
		name     string
		wrong    bool // the header names another digest
		wantSigs int64
	}{
		{name: "header names the digest", wantSigs: 1},
		{name: "header names another digest", wrong: true, wantSigs: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(_ *upstream.Config, o *proxy.Options) { o.Gate = decidedGate{lookup: true} })
			d := e.push(t, "demo/app:v1", randomImage(t))
			hinted := d.String()
			if tc.wrong {
				hinted = digest.FromString("another manifest").String()
			}
			hintedHex := strings.TrimPrefix(hinted, "sha256:")
			sigAsked := make(chan struct{})
			var once sync.Once
			var sigs atomic.Int64
			e.faults.set(func(w http.ResponseWriter, r *http.Request) bool {
				if strings.HasSuffix(r.URL.Path, "/sha256-"+d.Hex+".sig") {
					sigs.Add(1)
				}
				switch {
				case strings.HasSuffix(r.URL.Path, "/sha256-"+hintedHex+".sig"):
					once.Do(func() { close(sigAsked) })
				case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/manifests/v1"):
					rec := httptest.NewRecorder()
					e.faults.next.ServeHTTP(rec, r)
					for k, v := range rec.Header() {
						w.Header()[k] = v
					}
					w.Header().Set("Docker-Content-Digest", hinted)
					w.WriteHeader(rec.Code)
					w.(http.Flusher).Flush()
					select {
					case <-sigAsked:
					case <-time.After(5 * time.Second):
						t.Error("the signature lookup did not start before the manifest's body was read")
					}
					_, _ = w.Write(rec.Body.Bytes())
					return true
				}
				return false
			})
			resp, b := e.get(t, http.MethodGet, "/v2/demo/app/manifests/v1")
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != d.String() {
				t.Fatalf("GET: %d, digest %q, %s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), b)
			}
			if err := e.h.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // lookups started ahead run detached
			if got := sigs.Load(); got != tc.wantSigs {
				t.Errorf("upstream saw %d .sig GETs of the manifest's digest, want %d", got, tc.wantSigs)
			}
		})
	}
}
