package policy

import (
	"context"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
)

// Decided reports whether a decision about digest d of image, under the policy set in use
// now, is cached — or, with a cache shared by replicas, is being made by another one — so
// that the proxy need not look up signatures ahead of it. A DecisionCache that can tell
// (redistier.Tier: its local tier, Redis, or another replica's lock) implements
// Decided(ctx, key); for any other, Get answers.
func (e *Engine) Decided(ctx context.Context, image string, d digest.Digest) bool {
	key := cache.Key{PolicyVersion: e.set.Load().Version(), Repository: image, Digest: d}
	if dc, ok := e.cache.(interface {
		Decided(ctx context.Context, key cache.Key) bool
	}); ok {
		return dc.Decided(ctx, key)
	}
	_, ok := e.cache.Get(ctx, key)
	return ok
}
