// Package keyless tests keyless (Fulcio) signatures end to end against a real local sigstore
// stack on 127.0.0.1, started once per test binary by the first test that needs it:
//
//   - an OIDC issuer in process (RS256; "/email" for e-mail identities, "/gha" with the claims
//     GitHub Actions puts in its tokens),
//   - tesseract (a static CT log, POSIX storage), so that certificates carry an SCT,
//   - Fulcio with a file CA (a P-384 root and intermediate made in Go),
//   - timestamp-server (RFC 3161),
//   - rekor-tiles (Rekor v2, POSIX storage).
//
// Rekor v1 (trillian and a database) is not started: legacy-format keyless signatures are
// timestamped by the TSA instead. The trusted roots and signing configs are made by the real
// cosign v3 (trusted-root create, signing-config create). The binaries are hack/tools.sh's
// (bin/fulcio, bin/timestamp-server, bin/rekor-tiles, bin/tesseract, bin/cosign3): a missing
// one skips the tests, or fails them when CI=true.
//
// timestamp-server v2.1.3 always binds :2112 for its metrics, so one stack runs per host:
// a second test binary waits for the lock in $TMPDIR/portcullis-keyless-tsa-2112.lock.
// KEYLESS_KEEP=1 keeps the stack's directory (keys, logs, trust files) after the run.
package keyless
