package policy

import (
	"context"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/verify"
)

// Explanation is how a decision was made, in full: which policy matched, each authority's
// and each attestation requirement's result, every signature and attestation examined and
// why it counted or not, and the decision. It is a plain JSON-serialisable value; the JSON
// field names below are a documented schema (portcullis policy test -o json,
// /debug/decision).
type Explanation struct {
	// Image is the normalised image name.
	Image string `json:"image"`
	// Digest is the manifest's digest.
	Digest digest.Digest `json:"digest"`
	// PolicyVersion is the version of the policy set that decided (Set.Version).
	PolicyVersion string `json:"policyVersion"`
	// Policy is the name of the policy that matched; empty when the default policy applied.
	Policy string `json:"policy,omitempty"`
	// Mode is the policy's mode, or "default" for the default policy.
	Mode string `json:"mode"`
	// Require is how many authorities must be satisfied (0 when none were consulted: the
	// default policy, mode off, an exempt signature artifact).
	Require int `json:"require,omitempty"`
	// Signatures is the number of signatures found; AttestationsFound the number of
	// attestations found.
	Signatures        int `json:"signatures"`
	AttestationsFound int `json:"attestationsFound"`
	// Authorities are the policy's authorities, in configuration order.
	Authorities []AuthorityExplanation `json:"authorities,omitempty"`
	// Attestations are the policy-level attestation requirements.
	Attestations []RequirementExplanation `json:"attestations,omitempty"`
	// Decision is what Admit would decide (without the cache: never AdmittedBy an index).
	Decision Decision `json:"decision"`
}

// AuthorityExplanation is one authority's result.
type AuthorityExplanation struct {
	// Name is the authority's name.
	Name string `json:"name"`
	// Kind is how it is satisfied: "signature", "attestations" (all of its own attestation
	// requirements) or "static".
	Kind string `json:"kind"`
	// Satisfied reports whether it is.
	Satisfied bool `json:"satisfied"`
	// Signer describes who signed what satisfied it (key hint, certificate identity, "static
	// pass").
	Signer string `json:"signer,omitempty"`
	// Reason says why it is not satisfied.
	Reason string `json:"reason,omitempty"`
	// Attestations are the authority's own attestation requirements (Kind "attestations").
	Attestations []RequirementExplanation `json:"attestations,omitempty"`
	// Examined lists every signature and attestation examined for the authority.
	Examined []verify.Examined `json:"examined,omitempty"`
}

// RequirementExplanation is one attestation requirement's result.
type RequirementExplanation struct {
	// Name is the requirement's name.
	Name string `json:"name"`
	// PredicateType is the predicate type URI required.
	PredicateType string `json:"predicateType"`
	// Authority is the authority that must have signed the attestation.
	Authority string `json:"authority"`
	// Policy is the predicate policy's language, "cue" or "rego"; empty when none.
	Policy string `json:"policy,omitempty"`
	// Satisfied reports whether a verified attestation satisfied it.
	Satisfied bool `json:"satisfied"`
	// Signer and Where name the attestation that satisfied it (Where also the one whose
	// predicate failed first).
	Signer string `json:"signer,omitempty"`
	Where  string `json:"where,omitempty"`
	// Reason says why it is not satisfied: "none found", "found 1, none verified: wrong
	// signer (…)", "predicate failed: <the CUE or Rego message>", ….
	Reason string `json:"reason,omitempty"`
}

// Explain decides whether req.Manifest may be served with the same code as Admit, without the
// decision cache (nothing is read from it or stored in it), without an audit line and
// without counting, and returns the full explanation. A denial is an Explanation whose
// Decision is not Allowed, not an error; an error means no decision could be made (lookup
// failures, invalid requests), as for Admit.
func (e *Engine) Explain(ctx context.Context, req Request) (Explanation, error) {
	if err := checkRequest(req); err != nil {
		return Explanation{}, err
	}
	set := e.set.Load()
	x := Explanation{Image: req.Image, Digest: req.Manifest.Digest, PolicyVersion: set.Version()}
	d, err := e.decideInto(ctx, set, set.Match(req.Image), req, &x)
	if err != nil {
		return x, fmt.Errorf("explain %s@%s: %w", req.Image, req.Manifest.Digest, err)
	}
	x.Policy, x.Mode, x.Decision = d.Policy, d.Mode, d
	return x, nil
}
