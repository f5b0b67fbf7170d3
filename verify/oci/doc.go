// Package oci holds the small vocabulary every layer shares: media types, size limits, the
// manifest value as fetched (its exact bytes plus a digest computed from them, never taken
// from a header) and the sentinel for "not there". It has no I/O and no state.
//
// It is public, like the packages whose exported signatures use it (verify.Registry,
// policy.Request, the proxy's store and upstream client), so that those packages can be
// used from outside; it lives under verify because what makes a manifest value trustworthy
// — the digest of the exact bytes — is verification's concern, and every layer above
// depends on it downwards.
package oci
