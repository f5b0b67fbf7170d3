// Package upstream is portcullis's one registry client: the edge's upstream requests, the
// verifier's reads (it implements verify.Registry) and the CLI's pushes all go through it.
//
// A Client talks to one configured registry and to the hosts its configuration allows
// (Config.AllowedHosts: a token realm, a blob CDN), and to no other host: its only
// *http.Transport is wrapped in a guard that refuses, before connecting, any request — the
// /v2/ handshake, a token fetch, a redirect, an upload location — to another host, or over
// plain http unless the upstream is insecure (*ForeignHostError). Credentials are sent only
// through go-containerregistry's authenticated transports scoped to one repository, which
// add them only for the registry's own host, and to a token realm that the guard allows.
//
// Invariants:
//   - The authentication challenge (GET /v2/) is asked once per registry per 10 minutes;
//     bearer tokens are scoped per repository and cached, and concurrent first requests for
//     one repository (a cold manifest and its signature lookups) share one token fetch.
//   - Every body read is capped: manifests and referrers indexes at oci.MaxManifestSize, tag
//     lists at 32 MiB, small blobs at the caller's limit; a blob body that stalls for the
//     timeout fails.
//   - Manifest digests are computed from the bytes read, never taken from a header; HEAD
//     answers are hints only.
//   - Referrers come from the referrers API, following its Link pagination within the same
//     endpoint for at most 16 pages (more is an error, never a truncated list), or, when the
//     registry has no such API (remembered for 10 minutes), from the referrers tag schema
//     index "sha256-<hex>".
//   - Every call is bounded by the timeout, retries included: the /v2/ handshake (shared by
//     concurrent callers, each waiting only as long as its own context allows), the token
//     fetch, a manifest, tag list, referrers page, HEAD, DELETE or manifest PUT; a blob's
//     first byte, then each stall of its body. A blob upload's body is not bounded.
//   - Non-success answers are *Error (with the registry's OCI error codes; 401 and 403 are
//     AuthFailed); transport failures and timeouts are *UnavailableError; hosts refused by
//     the guard are *ForeignHostError. Brief() spells the first two without the upstream's
//     free text or URLs, for clients.
//   - Overload: at most MaxConcurrent requests are in flight to the upstream (a blob until
//     its body is read or closed); another waits at most QueueWait, then fails unsent with
//     *OverloadError. After a 429 with a Retry-After the upstream is sent nothing until it
//     (bounded to 10 minutes) has passed: requests fail at once with the 429 *Error, whose
//     RetryAfter says how long remains. A 429 is never retried.
//   - Only GET and HEAD are retried; POST, PATCH, PUT and DELETE (uploads, pushes) are sent
//     once.
//
// Defaults: 30s timeout per request, 3 retries with backoff for GET and HEAD, 64 concurrent
// requests with a 1s queue wait, no allowed hosts.
package upstream
