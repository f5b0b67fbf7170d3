// Package upstream is portcullis's one registry client: the edge's upstream requests, the
// verifier's reads (it implements verify.Registry) and the CLI's pushes all go through it.
//
// A Client talks to one configured registry and to no other host: redirects are followed
// only to the registry itself or to https URLs (blob storage), and credentials are sent only
// through go-containerregistry's authenticated transports scoped to one repository.
//
// Invariants:
//   - The authentication challenge (GET /v2/) is asked once per registry per 10 minutes;
//     bearer tokens are scoped per repository and cached.
//   - Every body read is capped: manifests and referrers indexes at oci.MaxManifestSize, tag
//     lists at 32 MiB, small blobs at the caller's limit; a blob body that stalls for the
//     timeout fails.
//   - Manifest digests are computed from the bytes read, never taken from a header; HEAD
//     answers are hints only.
//   - Referrers come from the referrers API, following its Link pagination within the same
//     endpoint for at most 16 pages (more is an error, never a truncated list), or, when the
//     registry has no such API (remembered for 10 minutes), from the referrers tag schema
//     index "sha256-<hex>".
//   - Non-success answers are *Error (with the registry's OCI error codes); transport
//     failures and timeouts are *UnavailableError.
//
// Defaults: 30s timeout per request, 3 retries with backoff for idempotent requests.
package upstream
