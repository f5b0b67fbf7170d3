package policy_test

import (
	"context"
	"sync"
	"testing"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verify/oci"
)

// sharedCache is a process's decision cache in front of a tier shared with other replicas:
// shared holds the keys the other replicas know; asked records the keys Decided asked about.
type sharedCache struct {
	*cache.Memory[policy.Decision]
	mu     sync.Mutex
	shared map[cache.Key]bool
	asked  []cache.Key
}

func (s *sharedCache) DecidedLocally(ctx context.Context, key cache.Key) bool {
	_, ok := s.Get(ctx, key)
	return ok
}

func (s *sharedCache) Decided(ctx context.Context, key cache.Key) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = append(s.asked, key)
	return s.DecidedLocally(ctx, key) || s.shared[key]
}

// TestDecided: a decision known in the process is answered at once, with nothing to ask;
// with a cache shared by replicas, one that is not is left to the question ask puts to the
// shared tier, for the key of the policy set in use when Decided was called; with a cache of
// the process only, there is nobody to ask.
func TestDecided(t *testing.T) {
	decided, unknown, elsewhere := imageManifest(t, "decided"), imageManifest(t, "unknown"), imageManifest(t, "elsewhere")
	for _, shared := range []bool{false, true} {
		h := newHarness(t, oneAppPolicy(t, nil, "release-key"))
		sc := &sharedCache{Memory: h.cache}
		if shared {
			h.engine = policy.NewEngine(h.engine.Set(), h.verifier, sc)
		}
		h.verifier.sign(decided.Digest, "release-key")
		if _, err := h.admit(t, decided); err != nil {
			t.Fatal(err)
		}
		version := h.engine.Set().Version()
		sc.shared = map[cache.Key]bool{{PolicyVersion: version, Repository: appImage, Digest: elsewhere.Digest}: true}
		for _, tc := range []struct {
			name       string
			m          oci.Manifest
			wantKnown  bool
			wantAsk    bool // only with a shared cache
			wantAnswer bool
		}{
			{"decided here", decided, true, false, false},
			{"unknown", unknown, false, true, false},
			{"decided by another replica", elsewhere, false, true, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				d := tc.m.Digest
				known, ask := h.engine.Decided(t.Context(), appImage, d)
				if known != tc.wantKnown {
					t.Errorf("shared %v: known %v, want %v", shared, known, tc.wantKnown)
				}
				if got, want := ask != nil, tc.wantAsk && shared; got != want {
					t.Fatalf("shared %v: something to ask %v, want %v", shared, got, want)
				}
				if ask == nil {
					return
				}
				// The policy set changes between the question and its answer: the question
				// is still about the version Decided was asked under.
				defer h.engine.Swap(h.engine.Set())
				h.engine.Swap(compile(t, oneAppPolicy(t, nil, "release-key")))
				if got := ask(t.Context()); got != tc.wantAnswer {
					t.Errorf("ask answered %v, want %v", got, tc.wantAnswer)
				}
				want := cache.Key{PolicyVersion: version, Repository: appImage, Digest: d}
				if last := sc.asked[len(sc.asked)-1]; last != want {
					t.Errorf("asked about %+v, want %+v", last, want)
				}
			})
		}
	}
}
