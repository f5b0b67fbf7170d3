// Package verify finds the cosign signatures of one image digest in its upstream registry and
// checks them against the authorities a policy names. It answers "which authorities are
// satisfied, and why not"; combining those answers into admit/deny is the policy package's job.
//
// # Discovery
//
// For a digest D in repository R, and for every distinct SignaturesRepository the authorities
// name (authorities are grouped by repository, each repository is read once), two lookups run
// in parallel:
//
//   - the legacy tag "<alg>-<hex>.sig" (cosign v2's default, v3 with --new-bundle-format=false):
//     an image manifest whose layers of media type cosign.MediaTypeSimpleSigning each carry a
//     base64 signature in the "dev.cosignproject.cosign/signature" annotation over the layer
//     blob, the simple signing payload;
//   - the OCI 1.1 referrers of D (the registry's referrers API or its tag-schema fallback, as
//     the Registry implementation provides): sigstore bundles, cosign v3's default. The listed
//     artifactType is only a hint: descriptors listed with the bundle type, with none, or with
//     the empty-config type (GHCR, cosign v2 --new-bundle-format) are fetched and the manifest
//     itself decides (artifactType or config media type is the bundle type, exactly one bundle
//     layer, subject digest D).
//   - only when an authority of the repository wants attestations (Authority.Attestations),
//     the legacy tag "<alg>-<hex>.att" (cosign v2's attest, v3's with
//     --new-bundle-format=false): an image manifest whose layers of media type
//     cosign.MediaTypeDSSEEnvelope each hold a DSSE envelope (the signature is in the
//     envelope; a certificate-signed one has the certificate, chain, Rekor bundle and
//     timestamp annotations of a legacy signature layer).
//
// # What counts as a signature
//
//   - Legacy: the signature verifies with the authority's key over the payload bytes, the
//     payload's critical.type is "cosign container image signature", its
//     critical.image.docker-manifest-digest is D, and each of the authority's Annotations equals
//     the string under the same key in the payload's optional object. critical.identity
//     (docker-reference) is not checked, as cosign does not: a mirror serves the image under
//     another name.
//   - Bundle: sigstore-go verifies the DSSE envelope with the authority's key and the statement
//     subject against D; the statement's predicateType must be https://sigstore.dev/cosign/sign/v1
//     (what cosign sign writes). Attestations (SBOM, provenance, any other predicate) are not
//     signatures: they are not counted and never satisfy an authority's signature requirement
//     (GHSA-w6c6-c85g-mmv6). The authority's Annotations are matched against the annotations
//     of the subject naming D.
//   - Bundles holding a messageSignature instead of a DSSE envelope are rejected with a reason:
//     a bare signature over the manifest bytes carries no statement of intent (no type, no
//     predicate) and cannot be told apart from cosign sign-blob over the same bytes, and an
//     Ed25519 one cannot even be checked from the digest alone.
//   - Keyless authorities (Authority.Keyless) accept signatures made with a certificate, in
//     both formats: a bundle's certificate, tlog entries (Rekor v1 and v2) and timestamps, or
//     a legacy layer's dev.sigstore.cosign/certificate, /chain, /bundle (Rekor SET) and
//     /rfc3161timestamp annotations, checked by sigstore-go against the Keyless's trusted
//     material and thresholds; the identities are then matched so that a reason can say what
//     did not match. Key authorities never accept certificate-signed bundles and keyless ones
//     never accept key-signed signatures.
//
// # What counts as an attestation
//
// A DSSE envelope of payload type in-toto, from a ".att" layer or a bundle referrer, whose
// statement (read strictly) claims a predicate type the authority wants, is checked with the
// same code as a bundle signature of that authority: key authorities verify the envelope with
// their key, keyless and certificate ones the certificate, logs and timestamps with
// sigstore-go; the statement's _type must be in-toto's and exactly one subject must name D.
// Those that verify are reported per authority (AuthorityResult.Attestations, with the
// statement as signed, at most the blob size limit); the others show, with their reason, in
// AuthorityResult.Examined, which lists every signature and attestation examined for the
// authority. A statement with cosign's signing predicate is never an attestation, and the
// bundle manifest's dev.sigstore.bundle.predicateType annotation is only a hint (it decides
// nothing but where a bundle that cannot be read is reported). Authority Annotations apply to
// signatures only. Evaluating the statements (CUE, Rego) is the policy package's job.
//
// # Signature artifacts
//
// CheckArtifact decides whether a manifest shaped like a signature artifact may be served
// without signatures of its own: it fetches the config and every layer (each capped, layers
// at DefaultMaxArtifactLayerSize) and parses each as exactly what its media type claims — a
// simple signing payload, a DSSE envelope with signatures, a sigstore bundle — and the config
// as the empty object or an image config without entrypoint, command or environment.
//
// # Invariants
//
//   - Every byte read from the registry is hostile until verified. Every read is capped:
//     referrers considered, layers per signature manifest, payload and bundle size (see the
//     Option constructors for defaults). A corrupt or oversized manifest, payload or bundle
//     becomes the reason of that one signature, never a panic and never an error.
//   - Signed JSON is read strictly. Go's encoding/json matches member names
//     case-insensitively and keeps the last of duplicate members, so two readers of the same
//     bytes can disagree. Payloads and statements are therefore read member by member
//     (internal/strictjson): a member name must be spelled exactly (cosign writes them in
//     lower case), and an object with two members whose names are equal or differ only in
//     case, as encoding/json folds case, is rejected. Unknown
//     members are ignored. Annotation values must be JSON strings.
//   - Absent signatures are a normal result (Signatures 0, each authority's Reason "no
//     signatures found"), not an error.
//   - A lookup failure (upstream 5xx, timeout, cancelled context) is returned as an error,
//     wrapping a *LookupError, only when some authority ended up unsatisfied, or without a
//     verified attestation of a type it wants: verification fails
//     closed, and the caller must not cache that outcome for long. When one authority is
//     satisfied the failure only shows in the other authorities' reasons.
//   - Verification is offline: transparency log entries and timestamps are checked from what
//     the signature carries (inclusion proofs, SETs, RFC 3161 responses) against the trusted
//     material; no network beyond the Registry. A Verifier holds no mutable state and is safe
//     for concurrent use.
package verify
