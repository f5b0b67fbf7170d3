// Package pushauth authenticates the users who may push through portcullis (HTTP Basic
// against an htpasswd file of bcrypt hashes) and says what each may push: signatures for the
// images its grant names (policy globs), and, for images opted into plain push-through, any
// content.
//
// Invariants: only bcrypt hashes are accepted; an unknown user costs one bcrypt comparison
// like a known one, so that names cannot be probed by timing; verified credentials are
// remembered for five minutes (by a hash of user and password) so that bcrypt runs once per
// client rather than once per request. Pulls never need credentials.
package pushauth
