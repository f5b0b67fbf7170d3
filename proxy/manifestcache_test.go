package proxy_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/proxy/upstream"
)

// switchGate admits until deny is set, and counts its decisions.
type switchGate struct {
	deny      atomic.Bool
	decisions atomic.Int64
}

func (g *switchGate) Admit(_ context.Context, req policy.Request) (policy.Decision, error) {
	g.decisions.Add(1)
	if g.deny.Load() {
		return policy.Decision{}, &policy.DenyError{Image: req.Image, Digest: req.Manifest.Digest, Reason: "test says no"}
	}
	return policy.Decision{Allowed: true}, nil
}

// TestManifestMemory checks the in-memory manifests: once admitted, a manifest by digest is
// served with the upstream down and the store emptied (from memory, so not with the memory
// off), only to the repository that fetched it, and never without a decision.
func TestManifestMemory(t *testing.T) {
	for _, tc := range []struct {
		name     string
		memory   int64
		repo     string // asked the second time
		deny     bool   // the gate denies the second time
		status   int
		fromBody bool // the second answer carries the manifest
	}{
		{"served from memory", 0, "demo/app", false, http.StatusOK, true},
		{"memory off", -1, "demo/app", false, http.StatusBadGateway, false},
		{"another repository", 0, "demo/other", false, http.StatusBadGateway, false},
		{"still decided", 0, "demo/app", true, http.StatusForbidden, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gate := &switchGate{}
			drv := inmemory.New()
			e := newEnv(t, func(_ *upstream.Config, o *proxy.Options) {
				o.Store, o.Gate, o.ManifestMemory = store.New(drv), gate, tc.memory
			})
			d := e.push(t, "demo/app:v1", randomImage(t))
			e.push(t, "demo/other:v1", randomImage(t))
			resp, want := e.get(t, http.MethodGet, "/v2/demo/app/manifests/"+d.String())
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("first GET: %d %s", resp.StatusCode, want)
			}
			if err := e.h.Close(context.Background()); err != nil { // the store writes are done
				t.Fatal(err)
			}
			for _, dir := range []string{"/manifests", "/repositories"} {
				if err := drv.Delete(context.Background(), dir); err != nil {
					t.Fatal(err)
				}
			}
			e.faults.set(func(w http.ResponseWriter, r *http.Request) bool {
				http.Error(w, "down", http.StatusInternalServerError)
				return true
			})
			gate.deny.Store(tc.deny)
			before := gate.decisions.Load()
			resp, got := e.get(t, http.MethodGet, "/v2/"+tc.repo+"/manifests/"+d.String())
			if resp.StatusCode != tc.status {
				t.Fatalf("second GET: status %d %s, want %d", resp.StatusCode, got, tc.status)
			}
			if tc.fromBody && (!bytes.Equal(got, want) || resp.Header.Get("Docker-Content-Digest") != d.String() ||
				resp.Header.Get("Content-Length") == "" || resp.Header.Get("Etag") != `"`+d.String()+`"`) {
				t.Errorf("second GET: body %.100q, headers %v; want the manifest with its headers", got, resp.Header)
			}
			if tc.status != http.StatusBadGateway && gate.decisions.Load() != before+1 {
				t.Errorf("the gate decided %d times for the second GET, want once", gate.decisions.Load()-before)
			}
		})
	}
}

// noSignaturesGate admits everything and says that it never looks up signatures.
type noSignaturesGate struct{ admitAll }

func (noSignaturesGate) WantsSignatures(string) bool { return false }

// TestPrefetchOnlyWhenWanted GETs a cold manifest by digest: its signatures are looked up
// ahead of the decision when the gate may want them (a gate that cannot tell may), and not
// when the gate says it will not.
func TestPrefetchOnlyWhenWanted(t *testing.T) {
	for _, tc := range []struct {
		name string
		gate proxy.Gate
		want bool
	}{
		{"gate that cannot tell", admitAll{}, true},
		{"gate that wants none", noSignaturesGate{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(_ *upstream.Config, o *proxy.Options) { o.Gate = tc.gate })
			d := e.push(t, "demo/app:v1", randomImage(t))
			var lookups atomic.Int64
			e.faults.set(func(w http.ResponseWriter, r *http.Request) bool {
				if strings.HasSuffix(r.URL.Path, ".sig") || strings.Contains(r.URL.Path, "/referrers/") || strings.Contains(r.URL.Path, "/sha256-") {
					lookups.Add(1)
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
			deadline := time.Now().Add(5 * time.Second) // the lookups run detached; wait for them to arrive
			for tc.want && lookups.Load() < 2 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := lookups.Load() > 0; got != tc.want {
				t.Errorf("%d signature lookups for a cold GET by digest, want some: %v", lookups.Load(), tc.want)
			}
		})
	}
}
