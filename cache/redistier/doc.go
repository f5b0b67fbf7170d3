// Package redistier shares admission decisions between the replicas of a portcullis fleet
// through Redis (github.com/redis/go-redis/v9): a Tier is a second tier behind the
// in-process cache.Memory, and satisfies the policy engine's DecisionCache and the proxy's
// Forgetter.
//
// How a decision is found, for a key (policy version, image, digest):
//   - the local tier (cache.Memory), else
//   - Redis, read through on a local miss (one MGET of the decision and of its digest's
//     invalidation count), else
//   - a verification, written to Redis afterwards with the local tier's TTL for its polarity
//     (allowed decisions: cache.ttl; denials and warnings: cache.negativeTTL).
//
// Concurrent misses for one key in a process share one fill (cache.Memory's singleflight).
// Across replicas, the first to miss takes a short lock (SET NX PX, LockTTL) and verifies;
// the others poll Redis for its result for at most LockWait, then verify on their own.
// Decided (asked by the proxy while a cold manifest is fetched, after DecidedLocally, which
// asks nothing of Redis) takes that lock ahead of the fill. Put (the platform manifests of
// an admitted index) is one round trip: a script storing the envelope under the digest's
// invalidation count as Redis holds it.
//
// Invariants:
//   - Redis never decides what portcullis would not: a value read back is used only if it is
//     at most MaxValueSize bytes, is exactly the JSON envelope this package writes (unknown
//     fields and trailing data refused), names the very key it was read under and carries
//     its digest's current invalidation count. Anything else is a miss and the image is
//     verified again. Whoever can write to Redis can plant decisions, though: give
//     portcullis its own ACL user and TLS, as for any store of security decisions.
//   - Forget (a signature pushed or deleted through any replica) bumps the digest's
//     invalidation count — every decision about it in Redis, whatever its policy version or
//     repository, is stale from then on, and so is any verification that was running — and
//     publishes the forget; every replica's subscriber drops the digest from its local tier.
//   - Redis down or slow never fails a pull and never admits anything: every call is bounded
//     by Timeout (default 100ms) and is not retried; a failed call is a miss, counted
//     (Stats.Errors), logged at most every 10s, and Redis is left alone for Backoff (1s)
//     before it is tried again; go-redis reconnects by itself. Decisions are then made and
//     cached locally only.
//   - While the subscription is lost (Redis unreachable from this replica), invalidations
//     published by others are missed: this replica may serve a decision about a re-signed
//     digest until its local TTL ends (negativeTTL for a denial, ttl for an allowed image
//     whose signature was deleted). When the subscription comes back, the whole local tier
//     is dropped and refills from Redis.
//   - A decision read from Redis is kept locally for the full local TTL from then on, so one
//     can be served for up to twice its TTL in all, unless invalidated.
//
// Keys, under KeyPrefix (default "portcullis:"), have the digest as Redis Cluster hash tag so
// that a decision, its lock and its invalidation count share a slot:
// d:{digest}:<len>:<version>:<image> (decisions), l:{digest}:... (locks), i:{digest}
// (invalidation counts) and the channel "forget".
package redistier
