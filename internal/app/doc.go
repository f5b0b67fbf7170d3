// Package app builds a running portcullis from a configuration: storage driver, upstream
// clients, the policy engine and decision cache, push users, the proxy handler and its
// operational endpoints. The CLI and the end-to-end tests share it, so what is tested is
// what runs.
//
// A configuration is built whole into a generation that every request uses from start to
// end; Reload builds the next one from a new configuration (re-reading the files it names)
// and swaps it in with one atomic store, or leaves the running one if any part fails. The
// content store, the verifier and the metrics live across generations; unchanged upstream
// clients, push users and decision caches are carried over. Key loading is bounded by
// keys.timeout.
package app
