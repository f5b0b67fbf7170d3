//go:build !no_kms

package main

import (
	"slices"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature/kms"
)

// TestKMSProvidersLinked: the binary serves exactly the KMS providers it links (hashivault
// also answers to openbao://), in serve and the CLI alike, since both go through
// sigstore's kms registry that these imports fill.
func TestKMSProvidersLinked(t *testing.T) {
	got := kms.SupportedProviders()
	slices.Sort(got)
	want := []string{"awskms://", "azurekms://", "gcpkms://", "hashivault://", "openbao://"}
	if !slices.Equal(got, want) {
		t.Errorf("linked KMS providers %q, want %q", got, want)
	}
}
