package proxy

import (
	"context"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
)

// decidedGate is a Gate that can tell that a digest's decision is already known (or being
// made by another replica of a fleet), so that a cold manifest's fetch starts no signature
// lookup whose result the decision would not use.
type decidedGate interface {
	Decided(ctx context.Context, image string, d digest.Digest) bool
}

var _ decidedGate = (*policy.Engine)(nil)
