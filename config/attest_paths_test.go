package config_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/portcullis/portcullis/config"
)

// TestAttestationPolicyPaths: the cueFile and regoFile of attestation requirements are
// relative to the configuration file, and are among the files a change of which reloads.
func TestAttestationPolicyPaths(t *testing.T) {
	yml := good + `policies:
  - name: p
    images: ["docker.io/**"]
    authorities:
      - name: k
        key: {path: /abs/cosign.pub}
        attestations:
          - {name: sbom, predicateType: spdxjson, policy: {regoFile: policies/sbom.rego}}
    attestations:
      - {name: provenance, predicateType: slsaprovenance1, authority: k, policy: {cueFile: policies/provenance.cue}}
      - {name: inline, predicateType: custom, authority: k, policy: {cue: "predicate: {}"}}
`
	p := write(t, yml)
	dir := filepath.Dir(p)
	c, err := config.Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Policies[0].Attestations[0].Policy.CUEFile, filepath.Join(dir, "policies/provenance.cue"); got != want {
		t.Errorf("policies[0].attestations[0].policy.cueFile = %q, want %q", got, want)
	}
	if got, want := c.Policies[0].Authorities[0].Attestations[0].Policy.RegoFile, filepath.Join(dir, "policies/sbom.rego"); got != want {
		t.Errorf("policies[0].authorities[0].attestations[0].policy.regoFile = %q, want %q", got, want)
	}
	if got := c.Policies[0].Attestations[1].Policy.CUE; got != "predicate: {}" {
		t.Errorf("inline cue = %q", got)
	}
	files := c.Files()
	for _, f := range []string{filepath.Join(dir, "policies/provenance.cue"), filepath.Join(dir, "policies/sbom.rego")} {
		if !slices.Contains(files, f) {
			t.Errorf("Files() = %q, want it to hold %s", files, f)
		}
	}
}
