// Package app builds a running portcullis from a configuration: storage driver, upstream
// clients, the proxy handler and its operational endpoints. The CLI and the end-to-end tests
// share it, so what is tested is what runs.
package app
