package policy

import (
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
)

// Decision is the outcome of admitting one manifest: a plain JSON-serialisable value, so
// that a shared cache can hold it. Values read from a cache share their slices with it:
// treat them as read-only.
type Decision struct {
	// Allowed reports whether the manifest may be served.
	Allowed bool `json:"allowed"`
	// Verified reports whether the policy's requirement was met: by the manifest's own
	// signatures, or (AdmittedBy set) through a verified parent index.
	Verified bool `json:"verified,omitempty"`
	// Exempt reports a signature artifact admitted without signatures of its own: its
	// content was checked to be nothing but signatures or attestations.
	Exempt bool `json:"exempt,omitempty"`
	// Warning reports an allowed decision whose policy was not satisfied but is in warn mode.
	Warning bool `json:"warning,omitempty"`
	// Policy is the name of the policy that applied; empty when the default policy applied.
	Policy string `json:"policy,omitempty"`
	// Mode is the policy's mode ("enforce", "warn", "off"), or "default" for the default
	// policy.
	Mode string `json:"mode,omitempty"`
	// Reason says, for a person, why the manifest is allowed or denied.
	Reason string `json:"reason,omitempty"`
	// Signers describes the verified signers, one per authority whose signature verified;
	// on a denial, those that verified but were not enough. A manifest admitted through its
	// index carries the index's signers.
	Signers []string `json:"signers,omitempty"`
	// Unsatisfied names the authorities whose signatures were not verified, when that
	// decided the outcome (a denial or a warning).
	Unsatisfied []string `json:"unsatisfied,omitempty"`
	// AdmittedBy is the digest of the verified index that lists this manifest and admitted
	// it, if any.
	AdmittedBy digest.Digest `json:"admittedBy,omitempty"`
	// DecidedAt is when the decision was made.
	DecidedAt time.Time `json:"decidedAt"`
}

// Negative reports whether d is kept only for the negative TTL: a denial, or an allowed
// decision carrying a warning, both of which may change as soon as a signature is pushed.
func (d Decision) Negative() bool {
	return !d.Allowed || d.Warning
}

// Clone returns d with its own copies of the slices (the cache stores clones).
func (d Decision) Clone() Decision {
	d.Signers = slices.Clone(d.Signers)
	d.Unsatisfied = slices.Clone(d.Unsatisfied)
	return d
}
