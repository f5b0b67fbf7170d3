package policy

import (
	"context"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
)

// sharedDecisions is a DecisionCache shared by the replicas of a fleet (redistier.Tier): it
// can tell what this process knows without I/O, and ask the shared tier the rest.
type sharedDecisions interface {
	// DecidedLocally reports whether key's decision is in this process's memory.
	DecidedLocally(ctx context.Context, key cache.Key) bool
	// Decided reports whether key's decision is known here or in the shared tier, or is
	// being made by another replica; when nobody makes it, it claims it for this one.
	Decided(ctx context.Context, key cache.Key) bool
}

// Decided tells the proxy, before a cold manifest's fetch, whether the decision about digest
// d of image under the policy set in use now is already known, so that it need not look up
// signatures ahead of it. It answers from this process's memory at once (known). When that
// does not know and the decision cache is shared with other replicas, ask is the question
// for the shared tier — one round trip to it, to be put concurrently with the manifest's
// fetch rather than before it: true when the decision is known there or another replica is
// making it (and, when none is, the verification is claimed for this one). ask is nil when
// there is nobody else to ask.
func (e *Engine) Decided(ctx context.Context, image string, d digest.Digest) (known bool, ask func(context.Context) bool) {
	key := cache.Key{PolicyVersion: e.set.Load().Version(), Repository: image, Digest: d}
	if sc, ok := e.cache.(sharedDecisions); ok {
		if sc.DecidedLocally(ctx, key) {
			return true, nil
		}
		return false, func(ctx context.Context) bool { return sc.Decided(ctx, key) }
	}
	_, known = e.cache.Get(ctx, key)
	return known, nil
}
