// Package cli is portcullis's cosign-compatible command line: generate-key-pair, sign,
// verify, generate, attach signature, triangulate, clean, and the offline demo. It owns the
// commands' options (cosign's flags, as structs), their behaviour and their output; cobra
// wiring, flag definitions, the process environment and the KMS provider registrations stay
// in cmd/portcullis.
//
// Every command is a function of its options and an Env (standard streams, environment
// lookup, terminal), so that it runs in tests without a process or a terminal. Registries are
// read through Registries (a verify.Registry routing "host/path" repository names to one
// proxy/upstream.Client per host, the proxy's own client) and written through internal/sign.
//
// Defaults follow cosign: registry credentials from the docker config.json keychain unless
// --registry-username is given; plain HTTP for loopback and private registries after https
// fails, for any registry with --allow-http-registry. Verification checks transparency log
// entries, timestamps and certificates from what the signatures carry against a trusted root
// (--trusted-root, your own CA, or the public-good root fetched over TUF), with the verifier
// the proxy enforces; keyless signing reaches only the Fulcio, Rekor and timestamp
// authority it is given.
package cli
