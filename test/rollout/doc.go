// Package rollout tests portcullis as a fleet is run: `portcullis serve` processes behind a
// load balancer that follows their /readyz like a Kubernetes Service, restarted one at a
// time under load. The tests build the binary and use 127.0.0.1 only.
package rollout
