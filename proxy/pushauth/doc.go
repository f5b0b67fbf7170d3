// Package pushauth authenticates the users who may push through portcullis (HTTP Basic
// against an htpasswd file of bcrypt hashes) and says what each may push: signatures for the
// images its grant names (policy globs), and, for images opted into plain push-through, any
// content.
//
// Invariants: only bcrypt hashes are accepted; an unknown user costs one bcrypt comparison
// like a known one (against a decoy hash made with the highest cost found in the file), so
// that names cannot be probed by timing; a request without credentials is never hashed;
// verified credentials are remembered for five minutes (by a hash of user and password) so
// that bcrypt runs once per client rather than once per request. Pulls never need
// credentials.
//
// Logins cannot burn the CPU: each client address (the connection's peer, r.RemoteAddr,
// never a header; an IPv6 address counts by its /64) may make DefaultFailedLoginBurst failed
// logins at once and then one every DefaultFailedLoginEvery; past that its attempts get a
// *ThrottledError without any hashing until it has waited. Successful logins cost nothing
// from the budget. The per-address budgets are kept in a bounded LRU, and at most half the
// CPUs run bcrypt at once whatever the number of addresses (WithHashConcurrency).
package pushauth
