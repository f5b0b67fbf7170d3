// Package telemetry sets up portcullis's OpenTelemetry metrics, exported for Prometheus on
// a registry of their own (never the process-global one), and the instruments that report
// admission decisions, the content store and push logins. It knows nothing of the policy
// engine or the login throttle: it is handed counters.
package telemetry
