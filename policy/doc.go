// Package policy decides, for every manifest portcullis is about to serve, whether it may be
// served: which policy applies to the image, which signatures it requires, and the decision.
// Finding and checking signatures is the verify package's job; remembering decisions is the
// cache package's.
//
// It owns the policy configuration types (Config, PolicyConfig, AuthorityConfig, KeyConfig,
// KeylessConfig, IdentityConfig, CertificateConfig, ThresholdConfig, AttestationConfig,
// PredicatePolicyConfig; trust roots are
// verify/trustroot.Config), mapped from the configuration file by the config package through
// their mapstructure tags, their validation, the compiled and immutable Set, and the Engine
// that admits manifests.
//
// Matching. Policy images are globs over the normalised image name "upstream/repository",
// e.g. "docker.io/library/alpine", without tag or digest: "*" matches any run of characters
// within one path segment, "**" (a whole segment) matches any number of segments including
// none, so "docker.io/myorg/**" matches "docker.io/myorg/app", "docker.io/myorg/a/b" and
// "docker.io/myorg". Everything else is literal. Globs that can match no normalised name are
// refused. The first policy in configuration order with a matching glob applies; when none
// matches, the default policy does.
//
// Defaults: defaultPolicy "deny"; a policy's mode "enforce", require "any", indexes "signed".
//
// Invariants of the Engine:
//   - Nothing is served without a decision, and a decision made under one Set is never used
//     under another: decisions are cached under (Set.Version, image name, digest), and the
//     version hashes the normalised configuration, the public keys themselves, the digest of
//     every trusted_root.json in use and the certificates of certificate authorities.
//   - Refusals are *DenyError (HTTP 403); every other error means no decision could be made
//     (HTTP 502/503) and is never cached.
//   - Signature artifacts are recognised by content, never by tag: the manifest's shape
//     (IsSignatureArtifact), then what it references, fetched and parsed by the Verifier's
//     CheckArtifact. Nothing a runtime could unpack and run is ever exempt; exempt admissions
//     are their own outcome (Decision.Exempt, audit decision "exempt").
//   - A manifest is admitted through a parent index only when that index's own signatures
//     were verified (or it was itself admitted that way) under the same Set and image.
//   - The cache key's Repository is the full image name, so whoever learns that a signature
//     was pushed for image X calls the cache's Forget with X and the signed digest.
//   - Packages read no environment: key env sources go through WithLookupEnv. Keys are
//     loaded by internal/keys, the CLI's loader too; KMS keys go through sigstore's kms.Get,
//     whose providers are linked by main, never imported here.
//
// Attestations. A policy may require in-toto attestations (AttestationConfig): each names a
// predicate type (a URI or a cosign short name, resolved by internal/cosign), the authority of
// the policy that must have signed it, and an optional CUE or Rego policy over the statement,
// compiled at Compile by policy/predicate (from inline text or cueFile/regoFile; the text is part
// of the version). An authority with attestations of its own is satisfied by all of them instead
// of a signature; a static authority ("pass" or "fail") by nothing at all. An image is admitted
// when Require authorities are satisfied and every policy-level attestation requirement holds:
// a verified attestation of the type (verify reports those) whose statement the policy accepts
// (predicate.Policy.Eval, bounded in time and size; an error denies; a cancelled context is no
// verdict). Denials name the requirement, what was found and the CUE or Rego message. Explain
// runs the same decision without the cache and returns every detail (Explanation, whose JSON
// field names are a documented schema).
//
// Keyless and certificate authorities. An authority is exactly one of key, keyless (a Fulcio
// certificate of a trust root naming one of its identities) or certificate (your own PKI's
// roots and a subject). Trust roots are named (trustRoots; "public-good" always exists) and
// resolved at Compile through WithTrustRoots; the digest of each trusted_root.json is part of
// the version, so a new root gives new decisions. Thresholds default to tlog 1, ctlog 1,
// timestamps 0 for keyless, and 0, 0, 0 for certificate authorities (as policy-controller,
// which needs no transparency log unless one is configured for a custom CA).
package policy
