// Package telemetry sets up portcullis's OpenTelemetry metrics, exported for Prometheus on
// a registry of their own (never the process-global one), and the instruments that report
// admission decisions. It knows nothing of the policy engine: it is handed counters.
package telemetry
