// Package cache remembers admission decisions by image digest, so that a manifest whose
// signatures were checked once is served again without another round of signature lookups.
//
// It owns the Key type and Memory, the in-process implementation, generic in the value it
// stores (the policy package stores its Decision, a plain JSON-serialisable value, so that a
// shared backend such as Redis can later sit behind the same methods). Every method that a networked backend would implement with I/O takes a
// context first even where Memory ignores it; a backend treats its own failures as misses, so
// a broken cache slows admission down but never changes a decision.
//
// Invariants:
//   - A decision is looked up only under the exact Key it was stored with. The key carries the
//     policy version, so a policy change (a new version) never serves a decision made under the
//     old one; old entries simply age out.
//   - Concurrent misses for one key are collapsed: Do runs one fill and every waiting caller
//     gets its result. Fill errors are returned to every waiter and never stored.
//   - A fill is not cancelled when the caller that started it goes away: it runs under
//     context.WithoutCancel of that caller's context plus a fill timeout, and stores its result
//     for the next caller. A waiting caller whose own context ends returns at once.
//   - Forget(repository, digest) drops every decision for that digest whatever the policy
//     version, and results of fills that were already running are not stored.
//
// Memory keeps its entries in one golang-lru simplelru per polarity, guarded by its own mutex,
// with the policy version and repository of keys interned and each entry's expiry in its
// value; a value that implements Splitter (the policy's Decision does) is kept as a pointer to
// one shared copy of its equals plus its own time, so that a cached decision costs under 256
// bytes (about 230; test/bench BenchmarkDecisionCache).
//
// Defaults (see the Option functions): size 10000 per polarity, TTL 10 minutes for allowed
// decisions, negative TTL 30 seconds for denials and warnings, fill timeout 1 minute.
package cache
