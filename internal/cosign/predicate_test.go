package cosign_test

import (
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/cosign"
)

func TestPredicateType(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		// Every short name of cosign's options.PredicateTypeMap, spelled out.
		{in: "custom", want: "https://cosign.sigstore.dev/attestation/v1"},
		{in: "slsaprovenance", want: "https://slsa.dev/provenance/v0.2"},
		{in: "slsaprovenance02", want: "https://slsa.dev/provenance/v0.2"},
		{in: "slsaprovenance1", want: "https://slsa.dev/provenance/v1"},
		{in: "link", want: "https://in-toto.io/Link/v1"},
		{in: "spdx", want: "https://spdx.dev/Document"},
		{in: "spdxjson", want: "https://spdx.dev/Document"},
		{in: "cyclonedx", want: "https://cyclonedx.org/bom"},
		{in: "vuln", want: "https://cosign.sigstore.dev/attestation/vuln/v1"},
		{in: "openvex", want: "https://openvex.dev/ns"},
		// URIs pass through unchanged.
		{in: "https://slsa.dev/provenance/v1", want: "https://slsa.dev/provenance/v1"},
		{in: "https://example.com/my-predicate/v2?x=1", want: "https://example.com/my-predicate/v2?x=1"},
		{in: "urn:example:predicate", want: "urn:example:predicate"},
		// Neither.
		{in: "", wantErr: "neither one of cosign's names"},
		{in: "SLSAProvenance", wantErr: `"SLSAProvenance"`},
		{in: "slsa", wantErr: "nor an absolute URI"},
		{in: "/provenance/v1", wantErr: "nor an absolute URI"},
		{in: "https://exa mple.com/x", wantErr: "nor an absolute URI"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := cosign.PredicateType(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("PredicateType(%q) = %q, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("PredicateType(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}
