// Package bench measures portcullis against CNCF distribution's registry in proxy mode and
// against direct upstream access, and holds the load generator those measurements use.
//
// `make bench` runs TestReport (skipped unless PORTCULLIS_BENCH=1): an upstream
// distribution registry (bin/registry, filesystem storage) on 127.0.0.1, distribution in
// proxy mode in front of it, portcullis (`portcullis serve`, built as the Dockerfile builds
// it) enforcing a key-signature policy over the same images, and
// containers/image (test/bench/cimage, a module of its own so that its dependencies stay
// out of go.mod) verifying a sigstoreSigned policy itself. It writes every table to
// results.md and the README's summary table to summary.md. Upstream requests are counted
// (and their dependent chain measured) by a reverse proxy in front of the upstream, on pulls
// of their own: cold decisions are timed with each proxy talking to the upstream itself, as
// cosign does.
// Environment:
//
//	PORTCULLIS_BENCH=1        run the report
//	BENCH_DURATION=2s         time per warm-manifest cell
//	BENCH_BLOB_SIZE=64MiB     large-blob size (e.g. 1GiB)
//	BENCH_OUT=path            where the Markdown table goes (default test/bench/results.md)
//
// The load generator (Run) is bounded in requests and time and is only ever pointed at
// 127.0.0.1. The Go benchmarks (go test -bench) measure the cached-decision path through the
// HTTP handler, and TestColdDigestOneSignatureLookup, part of `make test`, checks that 500
// concurrent cold requests for one digest cause exactly one upstream signature lookup.
package bench
