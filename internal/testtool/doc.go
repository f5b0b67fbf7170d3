// Package testtool finds and runs the real tools (cosign v2 and v3, crane, registry, skopeo)
// that portcullis's interop and end-to-end tests drive. It is for tests only.
//
// A tool is found through the environment variable named after it in upper case (COSIGN3,
// COSIGN2, CRANE, …), else in the module's bin/ directory (hack/tools.sh links them there),
// else on PATH. A test that needs a missing tool is skipped, except when CI=true: then it
// fails, so that a CI run cannot pass by silently testing nothing.
//
// Tools run offline: HTTPS_PROXY points at a closed port (so any attempt to reach the
// internet fails at once instead of hanging), NO_PROXY lets loopback through, and HOME is a
// fresh temporary directory so that no user configuration or cache leaks in or out.
//
// It also starts what those tests run against: in process, distribution's registry app
// (Distribution) and portcullis built as `portcullis serve` builds it (Portcullis); as
// processes, the portcullis binary (BuildPortcullis, Serve), distribution's registry binary
// (Registry), MinIO (StartMinIO) and redis-server (StartRedis). Each is stopped when the
// test ends.
package testtool
