// Package trustroot provides the trust roots keyless verification anchors to: sigstore
// trusted_root.json documents (certificate authorities, transparency logs, CT logs, timestamp
// authorities) read from a file or fetched from a TUF repository with sigstore-go's TUF
// client.
//
// Defaults: a TUF trust root uses sigstore's public-good mirror (DefaultMirror) anchored by
// the root.json embedded in sigstore-go, caches metadata and targets under DefaultCacheDir
// and is refreshed every DefaultRefresh by Manager.Run. The name PublicGood always resolves
// (to that TUF root unless configured otherwise).
//
// Invariants:
//   - A Root is immutable; its Digest (sha256 of the trusted_root.json bytes) identifies it,
//     and the policy version hashes it, so that decisions made under one root are never
//     reused under another.
//   - When a TUF repository cannot be reached, the last good root keeps serving (from memory,
//     or from the on-disk cache at startup) and Manager.Problems reports it; a repository
//     that was never reached and has no cache yields an error, never an empty root.
//   - Every read is capped (MaxTrustedRootSize). The package reads no environment.
package trustroot
