package proxy

import (
	"context"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
)

// prefetch is the Registry a cold manifest's decision reads signatures through. When a
// client asks for a manifest by a digest portcullis has not stored, the first step of
// signature discovery — the legacy ".sig" tag and the referrers of that digest — is asked of
// the upstream at once, in parallel with the manifest itself, rather than after it: one
// dependent round trip fewer before the decision. By tag, the digest the upstream names in
// the headers of its HEAD (a tag that moved) or GET answer starts it, before the body is
// read. The verifier's calls for exactly those are
// answered by the requests already in flight; every other call goes to the upstream. The
// decision is still about the digest computed from the manifest's bytes: the prefetched
// lookups are used only when that is the digest they were made for.
//
// When the decision may already be known to other replicas (decidedGate's ask), the lookups
// start only once they answered that it is not: ready is closed then, and skipped is set when
// they answered that it is, in which case every call goes to the upstream.
type prefetch struct {
	verify.Registry
	repo string
	d    digest.Digest
	// ready is closed once the fields below are set (at once when nobody is asked).
	ready   chan struct{}
	skipped bool
	sig     *call[oci.Manifest]
	refs    *call[[]ocispec.Descriptor]
	// att is the legacy ".att" lookup, started only when the policy wants attestations.
	att *call[oci.Manifest]
}

// attestationGate is a Gate that can tell whether deciding on an image looks up its
// attestations too. *policy.Engine implements it.
type attestationGate interface {
	WantsAttestations(image string) bool
}

var _ attestationGate = (*policy.Engine)(nil)

// wantsAttestations reports whether g says that deciding on image reads attestations; a Gate
// that cannot tell is assumed not to (the ".att" lookup then happens with the others, in
// the decision).
func wantsAttestations(g Gate, image string) bool {
	ag, ok := g.(attestationGate)
	return ok && ag.WantsAttestations(image)
}

// call is one upstream request started ahead of its caller.
type call[T any] struct {
	done chan struct{}
	v    T
	err  error
}

func startCall[T any](fn func() (T, error)) *call[T] {
	c := &call[T]{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.v, c.err = fn()
	}()
	return c
}

func (c *call[T]) wait(ctx context.Context) (T, error) {
	select {
	case <-c.done:
		return c.v, c.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// startPrefetch starts the first signature lookups of d in rt's repository, and the legacy
// attestation lookup when attestations is set, detached from ctx's cancellation and bounded by
// the upstream's timeout. With ask (see decidedGate), it returns at once and the lookups start
// once ask has answered false, or never when it answers true. The lookups end on their own;
// wait for them with their results.
func startPrefetch(ctx context.Context, rt route, d digest.Digest, attestations bool, ask func(context.Context) bool) *prefetch {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*rt.upstream.Timeout())
	p := &prefetch{Registry: rt.upstream, repo: rt.repo, d: d, ready: make(chan struct{})}
	if ask == nil {
		p.start(pctx, cancel, rt, attestations)
		return p
	}
	go func() {
		if ask(pctx) {
			p.skipped = true
			close(p.ready)
			cancel()
			return
		}
		p.start(pctx, cancel, rt, attestations)
	}()
	return p
}

// start sends the lookups, then closes ready; cancel is called when they have all ended.
func (p *prefetch) start(ctx context.Context, cancel context.CancelFunc, rt route, attestations bool) {
	var wg sync.WaitGroup
	wg.Add(2)
	p.sig = startCall(func() (oci.Manifest, error) {
		defer wg.Done()
		return rt.upstream.Manifest(ctx, p.repo, cosign.SignatureTag(p.d))
	})
	p.refs = startCall(func() ([]ocispec.Descriptor, error) {
		defer wg.Done()
		return rt.upstream.Referrers(ctx, p.repo, p.d)
	})
	if attestations {
		wg.Add(1)
		p.att = startCall(func() (oci.Manifest, error) {
			defer wg.Done()
			return rt.upstream.Manifest(ctx, p.repo, cosign.AttachmentTag(p.d, cosign.SuffixAttestation))
		})
	}
	close(p.ready)
	go func() { wg.Wait(); cancel() }()
}

// started waits until the lookups were started or skipped, and reports whether they were
// started; false also when ctx ended first (the caller's own call then fails on ctx).
func (p *prefetch) started(ctx context.Context) bool {
	select {
	case <-p.ready:
		return !p.skipped
	case <-ctx.Done():
		return false
	}
}

// Manifest answers the legacy signature (and attestation) tag of the prefetched digest from
// the lookup in flight.
func (p *prefetch) Manifest(ctx context.Context, repo, ref string) (oci.Manifest, error) {
	if repo == p.repo && (ref == cosign.SignatureTag(p.d) || ref == cosign.AttachmentTag(p.d, cosign.SuffixAttestation)) && p.started(ctx) {
		if ref == cosign.SignatureTag(p.d) {
			return p.sig.wait(ctx)
		}
		if p.att != nil {
			return p.att.wait(ctx)
		}
	}
	return p.Registry.Manifest(ctx, repo, ref)
}

// Referrers answers the referrers of the prefetched digest from the lookup in flight.
func (p *prefetch) Referrers(ctx context.Context, repo string, d digest.Digest) ([]ocispec.Descriptor, error) {
	if repo == p.repo && d == p.d && p.started(ctx) {
		return p.refs.wait(ctx)
	}
	return p.Registry.Referrers(ctx, repo, d)
}

var _ verify.Registry = (*prefetch)(nil)
