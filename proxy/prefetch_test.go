package proxy_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/upstream"
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
