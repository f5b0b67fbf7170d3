package verify

import (
	"context"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/portcullis/portcullis/verify/oci"
)

// Registry is the read access verification needs to one upstream registry. Absence (no such
// tag, manifest or blob) is reported by an error wrapping oci.ErrNotFound.
type Registry interface {
	// Manifest fetches a manifest by tag or digest, at most oci.MaxManifestSize bytes; the
	// returned digest is computed from the returned bytes.
	Manifest(ctx context.Context, repo, ref string) (oci.Manifest, error)
	// Blob fetches a blob of at most limit bytes and checks it against d.
	Blob(ctx context.Context, repo string, d digest.Digest, limit int64) ([]byte, error)
	// Referrers lists the manifests whose subject is d, from the referrers API or, when the
	// registry has none, from the referrers tag schema index "sha256-<hex>". No referrers is
	// an empty list, not an error. The listed artifactType is a hint, not a fact.
	Referrers(ctx context.Context, repo string, d digest.Digest) ([]ocispec.Descriptor, error)
}

// Authority is one party whose signature a policy accepts.
type Authority struct {
	// Name identifies the authority in results and messages.
	Name string
	// Key verifies signatures made with the authority's private key. Its hash function is the
	// one used to check legacy signatures (signature.LoadDefaultVerifier picks cosign's);
	// for an Ed25519 key both pure Ed25519 and Ed25519ph signatures are accepted.
	//
	// Keyless authorities (a certificate identity and the trusted root that anchors it) will
	// be added as further fields next to Key; until then an Authority without Key is never
	// satisfied.
	Key signature.Verifier
	// Annotations must all be present, with these exact values, in the signed payload.
	Annotations map[string]string
	// SignaturesRepository is where signatures are stored (cosign's COSIGN_REPOSITORY), a
	// repository path in the same registry; empty means the image's own repository.
	SignaturesRepository string
}

// Subject is the image whose signatures are checked.
type Subject struct {
	// Repository is the repository path in the upstream registry, e.g. "library/alpine".
	Repository string
	// Digest is the manifest digest that is about to be served.
	Digest digest.Digest
}

// Result reports what was found and, per authority, whether it is satisfied.
type Result struct {
	// Signatures is the number of cosign signatures found for the digest (both formats;
	// attestations with other predicates are not signatures and are not counted).
	// Only the repositories the authorities read are looked up.
	Signatures int
	// Authorities has one entry per requested authority, in the order given.
	Authorities []AuthorityResult
}

// AuthorityResult is the outcome for one authority.
type AuthorityResult struct {
	Authority string
	Verified  bool
	// Signer describes the verified signer (key hint or identity) when Verified.
	Signer string
	// Format is "legacy" (.sig simple signing) or "bundle" (sigstore bundle referrer): the
	// format of the first of Signatures.
	Format string
	// Signatures lists every signature that verified for the authority, legacy first, each
	// format in registry order; empty when not Verified. Signatures that did not verify are
	// not listed: they only show in Reason when none verified.
	Signatures []Signature
	// Reason says, for a person, why the authority is not satisfied, e.g.
	// "found 2 signatures: wrong key, payload digest mismatch".
	Reason string
}
