package verify

import (
	"context"

	"regexp"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
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
	// Exactly one of Key and Keyless is set; an Authority with neither is never satisfied.
	Key signature.Verifier
	// Keyless accepts signatures made with a certificate (Fulcio keyless, or your own PKI)
	// that chains to the CAs of its trusted material and names one of its identities.
	Keyless *Keyless
	// Annotations must all be present, with these exact values, in the signed payload.
	Annotations map[string]string
	// SignaturesRepository is where signatures are stored (cosign's COSIGN_REPOSITORY), a
	// repository path in the same registry; empty means the image's own repository.
	// Attestations are looked up there too.
	SignaturesRepository string
	// Attestations are the predicate types (URIs) of the attestations wanted from this
	// authority. When an authority of a repository wants some, its discovery also reads the
	// legacy ".att" tag; every attestation whose statement claims a wanted type is checked
	// against the authority and reported in AuthorityResult.Attestations when it verifies.
	// Annotations are not matched against attestations.
	Attestations []string
}

// Keyless is what a certificate signature must satisfy: the certificate chains to a CA of
// Material that was valid at the signing time, the signing time is proven as the thresholds
// demand, and the certificate names one of Identities and carries the wanted extensions.
// All of it is checked by sigstore-go; the matching of identities is portcullis's, so that a
// denial can say what did not match.
type Keyless struct {
	// TrustRoot names Material in reasons, e.g. "trust root public-good" or
	// "certificate roots of authority corp-pki".
	TrustRoot string
	// Material holds the certificate authorities, transparency logs, CT logs and timestamp
	// authorities. Required.
	Material root.TrustedMaterial
	// Identities are the accepted signers; any one will do. At least one.
	Identities []Identity
	// Extensions are Fulcio certificate extensions that must be equal when set (the GitHub
	// workflow fields).
	Extensions WorkflowExtensions
	// Tlog is how many verified transparency log entries (Rekor v1 or v2) are required.
	Tlog int
	// Timestamps is how many verified RFC 3161 timestamps are required.
	Timestamps int
	// CTLog is how many verified SCTs the certificate must embed.
	CTLog int
}

// Identity is one accepted signer. A nil regexp and an empty string leave that part
// unchecked; policy validation makes sure keyless identities check both.
type Identity struct {
	// Subject is the exact subject (the certificate's SAN: e-mail, URI, …).
	Subject string
	// SubjectRegExp matches the subject (unanchored, as cosign).
	SubjectRegExp *regexp.Regexp
	// Issuer is the exact OIDC issuer (Fulcio extension 1.3.6.1.4.1.57264.1.8 or .1.1).
	Issuer string
	// IssuerRegExp matches the OIDC issuer.
	IssuerRegExp *regexp.Regexp
}

// WorkflowExtensions are the GitHub workflow extensions of a Fulcio certificate, as cosign's
// --certificate-github-workflow-* flags match them.
type WorkflowExtensions struct {
	// Repository is the workflow repository, "owner/name" (1.3.6.1.4.1.57264.1.5).
	Repository string
	// Ref is the git ref, e.g. "refs/heads/main" (.1.6).
	Ref string
	// Trigger is the triggering event, e.g. "push" (.1.2).
	Trigger string
	// SHA is the commit (.1.3).
	SHA string
	// Name is the workflow name (.1.4).
	Name string
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
	// Attestations is the number of attestations found: the bundle attestations among the
	// referrers and, when an authority wants attestations, the layers of the ".att" tag.
	Attestations int
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
	// Attestations lists the attestations that verified for the authority, only of the
	// predicate types it wants (Authority.Attestations), legacy first.
	Attestations []Attestation
	// Examined lists every signature and attestation examined for the authority, counted or
	// not and why: attestations first (when the authority wants some), then signatures.
	Examined []Examined
}
