package policy_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
)

// TestDecisionJSONRoundTrip keeps Decision a plain value that a shared cache can store.
func TestDecisionJSONRoundTrip(t *testing.T) {
	d := policy.Decision{
		Allowed: true, Verified: true, Exempt: true, Policy: "prod", Mode: "enforce", Reason: "verified",
		Signers: []string{"release-key"}, Unsatisfied: []string{"other"}, AdmittedBy: digest.FromString("index"),
		DecidedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var got policy.Decision
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("Unmarshal(%s): %v", b, err)
	}
	if !reflect.DeepEqual(got, d) {
		t.Fatalf("round trip of %s = %+v, want %+v", b, got, d)
	}
	c := d.Clone()
	c.Signers[0] = "changed"
	if d.Signers[0] != "release-key" {
		t.Error("Clone shares its slices")
	}
}
