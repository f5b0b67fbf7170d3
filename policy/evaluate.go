package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/portcullis/portcullis/policy/predicate"
	"github.com/portcullis/portcullis/verify"
)

// evaluation is a policy's requirement applied to a verification result.
type evaluation struct {
	satisfied   bool
	signers     []string
	unsatisfied []string
	reason      string
}

// evaluateRequest verifies the signatures and attestations of req against pol's authorities
// and applies pol's requirements. verr is the verifier's lookup failure, which the caller
// must treat as "no verdict" when the evaluation is not satisfied; err means no evaluation
// could be made. x, when not nil, is filled with the details.
func (e *Engine) evaluateRequest(ctx context.Context, pol *Policy, req Request, x *Explanation) (ev evaluation, verr, err error) {
	var res verify.Result
	if len(pol.authorities) > 0 { // static authorities alone need no lookup
		res, verr = e.verifier.Verify(ctx, req.Registry, verify.Subject{Repository: req.Repository, Digest: req.Manifest.Digest}, pol.authorities)
		if verr != nil && len(res.Authorities) != len(pol.authorities) {
			return evaluation{}, nil, fmt.Errorf("verify signatures: %w", verr)
		}
	}
	ev, err = evaluate(ctx, pol, res, x)
	return ev, verr, err
}

// evaluate applies pol's requirements to res, which has one result per verified authority,
// in order: the signature requirement (Require over the authorities, each satisfied
// statically, by its attestations or by a signature) and every policy-level attestation
// requirement. x, when not nil, is filled with the details.
func evaluate(ctx context.Context, pol *Policy, res verify.Result, x *Explanation) (evaluation, error) {
	if len(res.Authorities) != len(pol.authorities) {
		return evaluation{}, fmt.Errorf("verifier returned %d results for %d authorities", len(res.Authorities), len(pol.authorities))
	}
	for i, ar := range res.Authorities {
		if want := pol.authorities[i].Name; ar.Authority != want {
			return evaluation{}, fmt.Errorf("verifier returned result %d for authority %q, want %q", i, ar.Authority, want)
		}
	}
	if x != nil {
		x.Require, x.Signatures, x.AttestationsFound = pol.require, res.Signatures, res.Attestations
	}
	var (
		ev       evaluation
		verified []string
		failures []string
	)
	for _, r := range pol.rules {
		ax := AuthorityExplanation{Name: r.name}
		var (
			ok          bool
			signer, why string
		)
		switch {
		case r.static != "":
			ax.Kind = "static"
			ok, signer = r.static == StaticPass, "static "+r.static
			why = fmt.Sprintf("authority %q is static %q", r.name, r.static)
		case len(r.attestations) > 0:
			ar := res.Authorities[r.verify]
			ax.Kind, ax.Examined, ok = "attestations", ar.Examined, true
			var whys []string
			for _, rule := range r.attestations {
				rx, err := checkRequirement(ctx, rule, ar)
				if err != nil {
					return evaluation{}, err
				}
				ax.Attestations = append(ax.Attestations, rx)
				if !rx.Satisfied {
					ok = false
					whys = append(whys, rx.describe(false))
				} else if signer == "" {
					signer = rx.Signer
				}
			}
			why = fmt.Sprintf("authority %q not satisfied: %s", r.name, strings.Join(whys, "; "))
		default:
			ar := res.Authorities[r.verify]
			ax.Kind, ax.Examined = "signature", ar.Examined
			ok, signer = ar.Verified, ar.Signer
			reason := ar.Reason
			if reason == "" {
				reason = fmt.Sprintf("found %d signature%s", res.Signatures, plural(res.Signatures))
			}
			why = fmt.Sprintf("no signature verified by authority %q (%s)", r.name, reason)
		}
		ax.Satisfied = ok
		if ok {
			ax.Signer = signer
			verified = append(verified, fmt.Sprintf("%q", r.name))
			s := r.name
			if signer != "" {
				s = fmt.Sprintf("%s (%s)", r.name, signer)
			}
			ev.signers = append(ev.signers, s)
		} else {
			ax.Reason = why
			ev.unsatisfied = append(ev.unsatisfied, r.name)
			failures = append(failures, why)
		}
		if x != nil {
			x.Authorities = append(x.Authorities, ax)
		}
	}
	signed := len(verified) >= pol.require
	var attFailures, attHeld []string
	for _, rule := range pol.attestations {
		rx, err := checkRequirement(ctx, rule, res.Authorities[rule.verify])
		if err != nil {
			return evaluation{}, err
		}
		if x != nil {
			x.Attestations = append(x.Attestations, rx)
		}
		if rx.Satisfied {
			attHeld = append(attHeld, fmt.Sprintf("%q", rule.name))
		} else {
			attFailures = append(attFailures, rx.describe(true))
		}
	}
	ev.satisfied = signed && len(attFailures) == 0

	var sigReason string
	switch {
	case signed:
		noun := "authorities"
		if len(verified) == 1 {
			noun = "authority"
		}
		sigReason = fmt.Sprintf("verified by %s %s", noun, strings.Join(verified, ", "))
	case len(pol.rules) == 1:
		sigReason = failures[0]
	default:
		sigReason = fmt.Sprintf("%d of %d authorities verified, %d required: %s",
			len(verified), len(pol.rules), pol.require, strings.Join(failures, "; "))
	}
	switch {
	case ev.satisfied && len(attHeld) > 0:
		ev.reason = fmt.Sprintf("%s; attestation%s %s held", sigReason, plural(len(attHeld)), strings.Join(attHeld, ", "))
		ev.unsatisfied = nil
	case ev.satisfied:
		ev.reason = sigReason
		ev.unsatisfied = nil
	case signed:
		// Only attestation requirements failed: those are the reason.
		ev.reason = strings.Join(attFailures, "; ")
		ev.unsatisfied = nil
	default:
		ev.reason = strings.Join(append([]string{sigReason}, attFailures...), "; ")
	}
	return ev, nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// checkRequirement checks one attestation requirement against the result of its signing
// authority: a verified attestation of its predicate type whose statement satisfies its
// predicate policy. An error means the evaluation was cut short (ctx ended): no verdict.
func checkRequirement(ctx context.Context, rule attestationRule, ar verify.AuthorityResult) (RequirementExplanation, error) {
	rx := RequirementExplanation{Name: rule.name, PredicateType: rule.predicateType, Authority: rule.authority, Policy: rule.language}
	var found []verify.Attestation
	for _, a := range ar.Attestations {
		if a.PredicateType == rule.predicateType {
			found = append(found, a)
		}
	}
	if len(found) == 0 {
		rx.Reason = notFound(rule, ar)
		return rx, nil
	}
	for _, a := range found {
		var err error
		if rule.policy != nil {
			err = rule.policy.Eval(ctx, a.Statement)
		}
		if err == nil {
			rx.Satisfied, rx.Signer, rx.Where = true, a.Signer, a.Where
			return rx, nil
		}
		if ctx.Err() != nil {
			return rx, fmt.Errorf("evaluate attestation %q: %w", rule.name, ctx.Err())
		}
		if rx.Reason != "" {
			continue
		}
		if v, ok := errors.AsType[*predicate.Violation](err); ok {
			rx.Reason = "predicate failed: " + v.Message
		} else {
			rx.Reason = "predicate policy error: " + err.Error()
		}
		rx.Where = a.Where
	}
	if len(found) > 1 {
		rx.Reason = fmt.Sprintf("%d verified attestations, none holds; first: %s", len(found), rx.Reason)
	}
	return rx, nil
}

// notFound says why no attestation of rule's type verified for the authority: none found,
// or what was wrong with those that claim the type.
func notFound(rule attestationRule, ar verify.AuthorityResult) string {
	var reasons, others []string
	n := 0
	for _, e := range ar.Examined {
		if e.Kind != verify.KindAttestation {
			continue
		}
		if e.PredicateType != rule.predicateType {
			if e.PredicateType != "" && !slices.Contains(others, e.PredicateType) {
				others = append(others, e.PredicateType)
			}
			continue
		}
		n++
		if r := classify(e.Reason); !slices.Contains(reasons, r) {
			reasons = append(reasons, r)
		}
	}
	if n == 0 {
		if len(others) == 0 {
			return "none found"
		}
		if len(others) > 3 {
			others = append(others[:3], "…")
		}
		return "none found (found only " + strings.Join(others, ", ") + ")"
	}
	if len(reasons) > 3 {
		reasons = append(reasons[:3], "…")
	}
	return fmt.Sprintf("found %d, none verified: %s", n, strings.Join(reasons, ", "))
}

// classify words the verifier's reason for an attestation that did not verify for the
// requirement's reasons.
func classify(reason string) string {
	switch {
	case reason == "wrong key":
		return "wrong signer (not the authority's key)"
	case strings.HasPrefix(reason, "statement subject mismatch"):
		return "subject is another digest" + strings.TrimPrefix(reason, "statement subject mismatch")
	case strings.Contains(reason, "signed another artifact"):
		return "subject is another digest (" + reason + ")"
	}
	return reason
}

// describe words a requirement that does not hold for a reason; withAuthority adds its
// signing authority (policy-level requirements).
func (rx RequirementExplanation) describe(withAuthority bool) string {
	if withAuthority {
		return fmt.Sprintf("attestation %q (%s, by %s): %s", rx.Name, rx.PredicateType, rx.Authority, rx.Reason)
	}
	return fmt.Sprintf("attestation %q (%s): %s", rx.Name, rx.PredicateType, rx.Reason)
}
