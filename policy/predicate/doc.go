// Package predicate evaluates the CUE and Rego policies that an attestation's in-toto
// statement must satisfy, with sigstore policy-controller's conventions, so that the policies
// its users already have give the same answers here.
//
// Input. A policy sees the whole statement, as policy-controller evaluates it: an object with
// _type, subject, predicateType and predicate (the predicate as the attester wrote it; for
// SLSA provenance v1, predicate.buildDefinition and predicate.runDetails; for v0.2,
// predicate.builder.id, predicate.buildType, predicate.materials). Before any policy sees it,
// a statement must be at most the input bound, valid JSON, a single object, and unambiguous
// (no member twice, as internal/strictjson defines it); otherwise Eval fails.
//
// CUE. The policy is unified with the statement and the result must validate as concrete: a
// conflict ("predicate.builder.id: conflicting values ..."), a value out of a bound, or a
// field the policy constrains to a type that the statement leaves unset, is a Violation whose
// Message is CUE's error text (at most five errors, with the policy's positions). Fields the
// policy only mentions are added, not required: write `predicate: builder: id: string` to
// require one. Standard-library imports ("list", "strings", ...) are available; nothing else
// is. The policy must be a struct.
//
// Rego. The module is `package sigstore` and defines isCompliant, evaluated as
// data.sigstore.isCompliant with the statement as input. isCompliant is either a boolean —
// true holds; false or undefined is a Violation — or, as policy-controller also accepts, a set
// (or array, or one object) of {"result": bool, "error": string, "warning": string}: the
// policy holds when one of them has result true; otherwise the Violation's Message is their
// errors (their warnings when they have none). Warnings of a policy that holds are not kept.
// Modules are parsed as Rego v0, the dialect of policy-controller's examples (`isCompliant {
// ... }`, `import future.keywords` or `import rego.v1` for the newer keywords); a module
// that does not parse as v0 is parsed as Rego v1. The built-ins http.send, net.lookup_ip_addr
// and opa.runtime are not available (a pull must not depend on the network or on the
// proxy's environment): a policy calling them does not compile.
//
// Errors. Compile reports every problem of the source, with the line and column CUE or OPA
// give (a syntax error, a Rego unsafe variable or unknown function, a CUE policy conflicting
// with itself, a wrong Rego package): a policy that compiles never fails for its own syntax at
// Eval. Eval returns nil when the policy holds, a *Violation when it does not, and another
// error when it could not decide (statement refused, timeout, a Rego evaluation error such as
// conflicting rule values, an isCompliant of the wrong shape); callers deny on any error.
//
// Bounds (options, validated by Compile). WithMaxInput (DefaultMaxInput, 4 MiB): larger
// statements are refused before parsing. WithTimeout (DefaultTimeout, 2s) bounds each Eval:
// Rego stops at the deadline through its context; CUE cannot be interrupted, so it runs in a
// goroutine that Eval stops waiting for at the deadline. Each CUE policy has a fixed number of
// evaluation slots (WithCUEConcurrency, GOMAXPROCS by default) that a goroutine holds until
// CUE returns, so that a pathological policy keeps at most that many goroutines busy; while
// all are taken, further evaluations time out waiting for one. A panic inside CUE or OPA is
// an error, not a crash.
//
// State. A Policy keeps its source (CUE) or prepared query (Rego); each CUE evaluation uses a
// cue.Context of its own, since a context is not safe for concurrent use. There is no
// package-level mutable state; a Policy is safe for concurrent use.
package predicate
