// Package cosign is the one place that spells cosign's names: the tags it stores signatures
// and attestations under, the media types and artifact type of what it writes, the
// annotations it reads and writes, and the payload and predicate types that make a signed
// document a cosign image signature. Everything else in portcullis uses these identifiers;
// no other package writes these strings.
//
// Tags. For an image digest "<alg>:<hex>" cosign v2 (and v3 with --new-bundle-format=false)
// stores a legacy signature manifest under the tag "<alg>-<hex>.sig", attestations under
// "<alg>-<hex>.att" and SBOMs under "<alg>-<hex>.sbom"; registries without the OCI 1.1
// referrers API keep the referrers of the digest in an index tagged "<alg>-<hex>" (the
// referrers tag schema), which cosign v3's bundles land in. SignatureTag, AttachmentTag and
// ReferrersTag build these tags; ParseSignatureTag recognises the ones a signature push may
// use (.sig, .att and the referrers tag) and returns the digest they name.
//
// Formats. A legacy signature is a simple-signing payload (MediaTypeSimpleSigning) whose
// critical.type is SimpleSigningType, signed over its bytes, the base64 signature in the
// layer annotation AnnotationSignature (with AnnotationCertificate and AnnotationChain for a
// certificate). A bundle signature is a sigstore bundle (MediaTypeSigstoreBundle) holding a
// DSSE envelope of PayloadTypeInToto over an in-toto statement whose predicateType is
// PredicateTypeSign; any other predicate makes it an attestation. Legacy attestations are
// DSSE envelopes (MediaTypeDSSEEnvelope).
//
// Generic OCI names (image manifest and index, the empty JSON config) are package oci's.
// The package has no I/O and no state.
package cosign
