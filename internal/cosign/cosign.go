package cosign

import (
	"strings"

	"github.com/opencontainers/go-digest"
)

// Media types and the artifact type of what cosign writes.
const (
	// MediaTypeSimpleSigning is a legacy signature's payload layer.
	MediaTypeSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	// MediaTypeDSSEEnvelope is a legacy attestation's layer (cosign attest, ".att").
	MediaTypeDSSEEnvelope = "application/vnd.dsse.envelope.v1+json"
	// MediaTypeSigstoreBundle is a sigstore bundle v0.3: the layer, and the artifactType, of a
	// bundle referrer (cosign v3's default).
	MediaTypeSigstoreBundle = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// ArtifactTypeSignature is the artifactType of a legacy simple-signing manifest pushed as
	// an OCI 1.1 referrer (cosign --registry-referrers-mode=oci-1-1).
	ArtifactTypeSignature = "application/vnd.dev.cosign.artifact.sig.v1+json"
)

// Annotations cosign reads and writes.
const (
	// AnnotationSignature holds the base64 signature of a legacy signature layer.
	AnnotationSignature = "dev.cosignproject.cosign/signature"
	// AnnotationCertificate holds the PEM leaf certificate of a legacy signature layer.
	AnnotationCertificate = "dev.sigstore.cosign/certificate"
	// AnnotationChain holds the PEM certificate chain of a legacy signature layer.
	AnnotationChain = "dev.sigstore.cosign/chain"
	// AnnotationRekorBundle holds the Rekor v1 bundle of a legacy signature layer:
	// {"SignedEntryTimestamp": b64, "Payload": {"body": b64, "integratedTime": n, "logIndex": n,
	// "logID": hex}}.
	AnnotationRekorBundle = "dev.sigstore.cosign/bundle"
	// AnnotationRFC3161Timestamp holds the RFC 3161 timestamp of a legacy signature layer:
	// {"SignedRFC3161Timestamp": b64 DER}.
	AnnotationRFC3161Timestamp = "dev.sigstore.cosign/rfc3161timestamp"
	// AnnotationBundleContent says what a bundle referrer's bundle holds, BundleContentDSSE.
	AnnotationBundleContent = "dev.sigstore.bundle.content"
	// AnnotationBundlePredicateType repeats the predicate type of a bundle referrer's
	// statement on its manifest.
	AnnotationBundlePredicateType = "dev.sigstore.bundle.predicateType"
	// AnnotationPredicateType repeats the predicate type of a legacy attestation (".att")
	// layer's statement on the layer.
	AnnotationPredicateType = "predicateType"
	// BundleContentDSSE is the AnnotationBundleContent of a bundle holding a DSSE envelope.
	BundleContentDSSE = "dsse-envelope"
)

// Payload, statement and predicate types.
const (
	// SimpleSigningType is critical.type of a cosign image signature payload.
	SimpleSigningType = "cosign container image signature"
	// PayloadTypeInToto is the DSSE payload type of an in-toto statement.
	PayloadTypeInToto = "application/vnd.in-toto+json"
	// PredicateTypeSign is the predicate type of the statement cosign sign (v3) signs. A
	// statement with any other predicate is an attestation, not a signature.
	PredicateTypeSign = "https://sigstore.dev/cosign/sign/v1"
	// StatementTypeInToto is the in-toto statement _type cosign writes; StatementTypeInTotoV01
	// is the older one it still reads.
	StatementTypeInToto    = "https://in-toto.io/Statement/v1"
	StatementTypeInTotoV01 = "https://in-toto.io/Statement/v0.1"
)

// Suffixes of cosign's legacy attachment tags.
const (
	SuffixSignature   = "sig"
	SuffixAttestation = "att"
	SuffixSBOM        = "sbom"
)

// ReferrersTag is the referrers tag schema tag of d: "<alg>-<hex>", the index in which
// registries without the referrers API keep d's referrers.
func ReferrersTag(d digest.Digest) string {
	return d.Algorithm().String() + "-" + d.Encoded()
}

// AttachmentTag is the tag of d's legacy attachment with the given suffix
// ("<alg>-<hex>.<suffix>"): SuffixSignature, SuffixAttestation or SuffixSBOM.
func AttachmentTag(d digest.Digest, suffix string) string {
	return ReferrersTag(d) + "." + suffix
}

// SignatureTag is the tag of d's legacy signature manifest: "<alg>-<hex>.sig".
func SignatureTag(d digest.Digest) string { return AttachmentTag(d, SuffixSignature) }

// ParseSignatureTag reports whether tag is one a signature push may use — a legacy signature
// "<alg>-<hex>.sig" or attestation "<alg>-<hex>.att" tag, or the referrers tag schema tag
// "<alg>-<hex>" — and returns the digest it names. The digest must be valid: sha256, sha384
// or sha512, its encoded part in lower-case hex of the algorithm's length.
func ParseSignatureTag(tag string) (digest.Digest, bool) {
	rest := tag
	if base, ext, ok := strings.Cut(tag, "."); ok {
		if ext != SuffixSignature && ext != SuffixAttestation {
			return "", false
		}
		rest = base
	}
	alg, enc, ok := strings.Cut(rest, "-")
	if !ok {
		return "", false
	}
	if digest.Algorithm(alg).Validate(enc) != nil {
		return "", false
	}
	return digest.NewDigestFromEncoded(digest.Algorithm(alg), enc), true
}
