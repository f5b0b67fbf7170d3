package proxy

import (
	"context"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
)

// decidedGate is a Gate that can tell that a digest's decision is already known (or being
// made by another replica of a fleet), so that a cold manifest's fetch starts no signature
// lookup whose result the decision would not use. known is this process's answer, given
// without I/O; ask, when not nil, asks the replicas' shared tier (a round trip), and the
// proxy puts it concurrently with the manifest's fetch: the lookup starts when it answers
// false, and not at all when it answers true.
type decidedGate interface {
	Decided(ctx context.Context, image string, d digest.Digest) (known bool, ask func(context.Context) bool)
}

var _ decidedGate = (*policy.Engine)(nil)
