// Package proxy is portcullis's HTTP edge: the OCI distribution API served as a pull-through
// mirror of several upstream registries — routing, the manifest, blob, tag and referrers
// handlers, the upload protocol for signature pushes, and the one place errors become OCI
// error responses. Its helpers live in packages of their own: the registry client
// (proxy/upstream), the content store (proxy/store) and push authentication
// (proxy/pushauth). Decisions come from a Gate (the policy engine).
//
// A request picks its upstream the three ways real clients ask: containerd's ?ns=<host>, a
// path prefix /v2/<host>/<repo>/... (Podman/CRI-O registries.conf mirrors with a location
// path), or the upstream marked default (Docker's registry-mirrors). Nothing a client sends
// can make the proxy contact a host the configuration does not name.
//
// Invariants:
//   - A manifest is served only as the exact bytes whose digest portcullis computed itself,
//     after the Gate admitted that digest; upstream digest headers are never trusted.
//   - Manifests are capped at 4 MiB (oci.MaxManifestSize), as distribution's registry.
//   - A blob is cached only when its content matches its digest; a streamed blob whose digest
//     turns out wrong is discarded and the client's connection is cut before the last chunk.
//   - Admitted manifests up to 64 KiB are kept in memory (manifestcache.go, bounded in bytes)
//     for GETs by digest; such a GET is decided all the same.
//   - A cold manifest by digest has its signatures looked up in parallel with its fetch
//     (prefetch.go), used only for the digest computed from its bytes; by tag, from the
//     digest the upstream names in its HEAD or GET answer's headers (a hint, used only when
//     it is that digest). No lookup starts for a decision known in the process; whether the
//     replicas' shared tier knows it is asked while the manifest is fetched, never before.
//   - Concurrent requests for one cold blob of one upstream share one upstream download
//     (blobs.go), each receiving its chunks as they are stored; a slow client never slows
//     the download or the others, and a corrupt blob is cut for all of them.
//   - Content in the Store is visible to a repository only if it was fetched through it.
//   - A blob is served (or fetched) for a repository only when a manifest the Gate admitted in
//     that repository references it (grants.go), or to a push user who pushed it there;
//     nothing of a denied image leaves as loose blobs.
//   - A pushed manifest shaped like a signature artifact is forwarded only if what it
//     references is nothing but signatures (ArtifactChecker).
//   - A denied HEAD over HTTP/1 carries the reason in its status line (containerd shows only
//     that).
//   - Errors become OCI error responses (distribution's errcode) in one place, writeError; a
//     503 or 429 carries Retry-After.
//   - Stale-if-error (stale.go, with MaxStale): while an upstream fails, a tag resolves to
//     the digest it last had and a stored manifest whose decision cannot be made again is
//     served on its last admission under the same policies, for MaxStale; a denial is never
//     overridden, and what was never verified is refused with 503 UNAVAILABLE. The records
//     live in the Store, so replicas sharing it share them.
//   - Overload (limits.go): at most MaxInFlight requests are served at once (a manifest
//     answered from memory does not count), each upstream client caps its own requests;
//     beyond a limit the answer is 503 with Retry-After at once, never an unbounded queue.
//     An upstream's 429 is passed on with its Retry-After, and the upstream is left alone
//     until then.
//
// Defaults: tag answers are re-checked with the upstream on every request (TagTTL 0, a HEAD
// and, only when the digest moved, a GET); upstream requests time out after 30s and GETs and
// HEADs are retried 3 times with backoff; MaxStale 0 (off; the configuration's default is
// 24h); MaxInFlight 1024.
package proxy
