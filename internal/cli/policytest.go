package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verify"
)

// Exit codes of portcullis policy test: the worst of its images decides.
const (
	PolicyTestAdmitted = 0 // every image admitted
	PolicyTestDenied   = 1 // at least one image denied, none in error
	PolicyTestError    = 2 // at least one image could not be decided, or bad options
)

// PolicyTestOptions are portcullis policy test's options.
type PolicyTestOptions struct {
	// Output is "text" (default) or "json".
	Output string
}

// Explainer decides for an image as the proxy would, without its decision cache (internal/app's
// App.Explain).
type Explainer interface {
	Explain(ctx context.Context, image string) (policy.Explanation, error)
}

// PolicyTestResult is one image's result in the JSON output (-o json), a JSON array of them
// in the order of the arguments.
type PolicyTestResult struct {
	// Image is the image as given.
	Image string `json:"image"`
	// Outcome is "admitted", "denied" or "error".
	Outcome string `json:"outcome"`
	// Error says why no decision could be made (Outcome "error").
	Error string `json:"error,omitempty"`
	// Explanation is how the decision was made (policy.Explanation), absent on an error.
	Explanation *policy.Explanation `json:"explanation,omitempty"`
}

// PolicyTest decides for each image with x and writes what was decided and why to
// env.Stdout; it returns the exit code (PolicyTestAdmitted, PolicyTestDenied,
// PolicyTestError).
func PolicyTest(ctx context.Context, env Env, o PolicyTestOptions, x Explainer, images []string) int {
	if o.Output == "" {
		o.Output = "text"
	}
	if o.Output != "text" && o.Output != "json" {
		fmt.Fprintf(env.Stderr, "portcullis policy test: -o %q: want text or json\n", o.Output)
		return PolicyTestError
	}
	if len(images) == 0 {
		fmt.Fprintln(env.Stderr, "portcullis policy test: no image given")
		return PolicyTestError
	}
	code := PolicyTestAdmitted
	results := make([]PolicyTestResult, 0, len(images))
	for _, image := range images {
		r := PolicyTestResult{Image: image}
		exp, err := x.Explain(ctx, image)
		switch {
		case err != nil:
			r.Outcome, r.Error = "error", err.Error()
			code = max(code, PolicyTestError)
		case exp.Decision.Allowed:
			r.Outcome, r.Explanation = "admitted", &exp
		default:
			r.Outcome, r.Explanation = "denied", &exp
			code = max(code, PolicyTestDenied)
		}
		results = append(results, r)
	}
	if o.Output == "json" {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			fmt.Fprintf(env.Stderr, "portcullis policy test: %v\n", err)
			return PolicyTestError
		}
		return code
	}
	for i, r := range results {
		if i > 0 {
			fmt.Fprintln(env.Stdout)
		}
		writePolicyTestText(env.Stdout, r)
	}
	return code
}

// writePolicyTestText writes one result for a person: the outcome line, then the policy,
// each authority and attestation requirement with what was examined for it.
func writePolicyTestText(w io.Writer, r PolicyTestResult) {
	if r.Explanation == nil {
		fmt.Fprintf(w, "%s: ERROR: %s\n", r.Image, r.Error)
		return
	}
	x := r.Explanation
	fmt.Fprintf(w, "%s: %s\n", r.Image, strings.ToUpper(r.Outcome))
	fmt.Fprintf(w, "  image:    %s@%s\n", x.Image, x.Digest)
	policyName := x.Policy
	if policyName == "" {
		policyName = "(default policy)"
	}
	fmt.Fprintf(w, "  policy:   %s (mode %s, policies version %s)\n", policyName, x.Mode, x.PolicyVersion)
	if x.Decision.Reason != "" {
		fmt.Fprintf(w, "  reason:   %s\n", x.Decision.Reason)
	}
	if x.Require > 0 {
		fmt.Fprintf(w, "  requires: %d of %d authorities\n", x.Require, len(x.Authorities))
	}
	fmt.Fprintf(w, "  found:    %d signatures, %d attestations\n", x.Signatures, x.AttestationsFound)
	for _, a := range x.Authorities {
		fmt.Fprintf(w, "  authority %s (%s): %s\n", a.Name, a.Kind, satisfied(a.Satisfied, a.Signer, a.Reason))
		for _, q := range a.Attestations {
			writeRequirement(w, "    ", q)
		}
		for _, e := range a.Examined {
			writeExamined(w, "    ", e)
		}
	}
	for _, q := range x.Attestations {
		writeRequirement(w, "  ", q)
	}
}

func writeRequirement(w io.Writer, indent string, q policy.RequirementExplanation) {
	by := ""
	if q.Authority != "" {
		by = ", signed by " + q.Authority
	}
	pol := ""
	if q.Policy != "" {
		pol = ", " + q.Policy + " policy"
	}
	fmt.Fprintf(w, "%sattestation %s (%s%s%s): %s\n", indent, q.Name, q.PredicateType, by, pol, satisfied(q.Satisfied, q.Signer, q.Reason))
	if q.Where != "" {
		fmt.Fprintf(w, "%s  at %s\n", indent, q.Where)
	}
}

func writeExamined(w io.Writer, indent string, e verify.Examined) {
	what := e.Kind + " (" + e.Format
	if e.PredicateType != "" {
		what += ", " + e.PredicateType
	}
	what += ")"
	outcome := "counted"
	if !e.Counted {
		outcome = "not counted"
		if e.Reason != "" {
			outcome += ": " + e.Reason
		}
	}
	if e.Signer != "" {
		outcome += "; signer " + e.Signer
	}
	fmt.Fprintf(w, "%s%s %s: %s\n", indent, what, e.Where, outcome)
}

func satisfied(ok bool, signer, reason string) string {
	if ok {
		if signer != "" {
			return "satisfied by " + signer
		}
		return "satisfied"
	}
	if reason != "" {
		return "not satisfied: " + reason
	}
	return "not satisfied"
}
