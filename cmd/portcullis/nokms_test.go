//go:build no_kms

package main

import (
	"context"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature/kms"

	"github.com/portcullis/portcullis/internal/keys"
)

// TestNoKMSBuild: a binary built with -tags no_kms links no KMS provider, and a KMS key
// reference is refused, saying so, without running a sigstore-kms-* plugin.
func TestNoKMSBuild(t *testing.T) {
	if got := kms.SupportedProviders(); len(got) != 0 {
		t.Errorf("a no_kms build links KMS providers %q", got)
	}
	for _, ref := range []string{"awskms:///alias/release", "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k", "hashivault://release"} {
		_, err := keys.LoadPublicKey(context.Background(), ref, nil)
		if err == nil || !strings.Contains(err.Error(), "no KMS provider") {
			t.Errorf("%s: err %v, want no KMS provider", ref, err)
		}
	}
}
