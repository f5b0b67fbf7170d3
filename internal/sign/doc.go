// Package sign writes cosign signatures in the two formats package verify reads, so that
// `cosign verify` accepts them:
//
//   - Legacy: a simple-signing payload as a layer of the manifest tagged
//     "sha256-<hex>.sig", its signature in the layer annotation
//     "dev.cosignproject.cosign/signature" (cosign v2's default). Signing again appends a layer;
//     existing signatures stay.
//   - Bundle: a sigstore bundle v0.3 holding a DSSE-signed in-toto statement with cosign's
//     signing predicate, pushed as an OCI 1.1 referrer of the image (cosign v3's default).
//     go-containerregistry maintains the referrers tag schema index "sha256-<hex>" for
//     registries without the referrers API.
//
// With a key (Legacy, Bundle) signing is offline: nothing is uploaded to a transparency log.
// Keyless (NewKeyless) signs with a fresh key per signature, certified by Fulcio for an OIDC
// identity token (IdentityToken finds one: flag, SIGSTORE_ID_TOKEN, GitHub Actions), and
// timestamped by RFC 3161 authorities and/or logged in Rekor (v1 or v2) as Services (or a
// cosign v3 signing config) name them; sigstore-go's sign package speaks every protocol. A
// keyless signature needs a proof of its signing time (a timestamp or a log entry), or it
// would stop verifying when its 10-minute certificate expires. In the legacy layout it is
// timestamped only (the layout's Rekor record is a v1 signed entry timestamp, not written).
//
// Besides signing (Legacy, Bundle), the package holds what the CLI's cosign workflow needs
// around it: AttachLegacy and PushBundle store signatures made elsewhere or earlier (cosign
// attach, sign --upload=false), with certificate material; Resolve turns a tag into the digests
// to sign (one, or an index and all its children for --recursive); LegacyTag names where
// legacy signatures live (cosign triangulate); Clean deletes them (cosign clean). Key
// loading is package keys' job; cosign's names (tags, media types, annotations, predicate
// types) are package cosign's.
package sign
