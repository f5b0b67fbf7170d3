// Package deploy holds the tests of what deploy/ ships: the Kubernetes manifests
// (deploy/kubernetes), the Helm chart (deploy/helm/portcullis, rendered with the real
// `helm template`), the node configuration they install, the Grafana dashboard and the CI
// examples (deploy/ci).
//
// It is a module of its own so that the Kubernetes API types (k8s.io/api), against which
// every manifest and every rendered object is decoded strictly (an unknown or misspelled
// field, or a value of the wrong type, fails), stay out of portcullis's go.mod. It imports
// nothing of portcullis: it builds cmd/portcullis and runs it as the pod would, on the
// configuration, keys and credentials the manifests mount, then checks the probes'
// endpoints, the metrics the dashboard queries and the flags the CI examples pass.
//
// Run it with `make test`, or `cd test/deploy && go test ./...`; helm comes from
// hack/tools.sh (bin/helm). With CI=true a missing helm fails instead of skipping.
package deploy
