// Package store is the proxy's content store: manifests and blobs by digest, on any
// distribution storage driver (filesystem by default, inmemory for tests).
//
// Content is shared between repositories, but a repository only sees what was fetched
// through it (a link per repository), so the store never reveals content to a repository
// the upstream would not have served it from. Besides those links, a repository records the
// blobs it may serve at all (grants: referenced by a manifest the proxy admitted there).
//
// Layout under the driver's root:
//
//	/blobs/<alg>/<hex[:2]>/<hex>/data, .../used
//	/manifests/<alg>/<hex>/manifest, .../used         (media type, newline, the bytes)
//	/repositories/<upstream>/<repo>/_blobs/<alg>/<hex>, /_manifests/<alg>/<hex>   (links)
//	/repositories/<upstream>/<repo>/_grants/<alg>/<hex>      (blobs the repository may serve)
//	/uploads/<random>                                         (in progress, upload sessions)
//
// Invariants: every object is written whole or not at all (a driver's PutContent is atomic:
// Unsynced writes under /uploads and renames, object stores put whole objects) and blobs
// under /uploads first, moved into place once their digest is checked, so a reader never
// sees partial or unverified content; stored manifests
// are checked against their digest on every read, and stored blobs as they are read (the
// last byte held back until the digest matches), so that content changed or cut in the
// store is never served whole: it is removed, to be fetched and checked again. On a local
// filesystem store, a blob the Store wrote or checked once is trusted while its file keeps
// the size and modification time it had then, and read as that file, unhashed: a file
// changed on disk is checked again, as is everything after a restart.
//
// One store may be shared by several processes (replicas on one s3 bucket). Each writes
// "used" (at most hourly per blob or manifest) when it serves content, so that every
// process's sweep evicts by what the whole fleet served; each protects from its own
// eviction only the reads it runs itself, and a read whose blob another process removed
// ends in an error or oci.ErrNotFound, never short.
package store
