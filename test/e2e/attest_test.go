package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/internal/testtool"
)

const (
	ciBuilder = "https://ci.example.com/builder"
	// provenanceCUE and provenanceRego require the SLSA v1 provenance's builder to be ciBuilder.
	provenanceCUE  = `predicate: runDetails: builder: id: "https://ci.example.com/builder"`
	provenanceRego = `package sigstore

builder := input.predicate.runDetails.builder.id

isCompliant := {"result": builder == "https://ci.example.com/builder", "error": sprintf("builder %s is not the CI builder", [builder])}
`
)

// cosignAttest attests image with the real cosign: a SLSA v1 provenance predicate built by
// builder, with key k.
func cosignAttest(t *testing.T, cosignPath string, k signer, image, builder string, extra ...string) {
	t.Helper()
	pred := filepath.Join(t.TempDir(), "prov.json")
	body := fmt.Sprintf(`{"buildDefinition":{"buildType":"https://example.com/build/v1","externalParameters":{"ref":"main"}},"runDetails":{"builder":{"id":%q}}}`, builder)
	if err := os.WriteFile(pred, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	args := testtool.CosignAttestArgs(testtool.CosignMajor(t, cosignPath), k.priv)
	args = append(args, "--type", "slsaprovenance1", "--predicate", pred)
	testtool.Cosign(t, cosignPath, nil, append(append(args, extra...), image)...)
}

// TestEnforceAttestations attests images with the real cosign (v3 bundles, v3 and v2 legacy
// .att) and pulls them with crane through portcullis serving policies that require a SLSA
// provenance attestation whose builder a CUE or a Rego policy checks.
func TestEnforceAttestations(t *testing.T) {
	up := newUpstream(t)
	cosign2, cosign3, crane := tool(t, "cosign2"), tool(t, "cosign3"), tool(t, "crane")
	ci, other := cosignKeys(t, cosign3), cosignKeys(t, cosign3)
	dir := t.TempDir()
	regoFile := filepath.Join(dir, "provenance.rego")
	if err := os.WriteFile(regoFile, []byte(provenanceRego), 0o600); err != nil {
		t.Fatal(err)
	}
	pol := fmt.Sprintf(`policies:
  - name: cue
    images: ["%[1]s/cue/**"]
    authorities:
      - name: ci
        key: {path: %[2]s}
    attestations:
      - name: provenance
        predicateType: slsaprovenance1
        authority: ci
        policy:
          cue: '%[3]s'
  - name: rego
    images: ["%[1]s/rego/**"]
    authorities:
      - name: ci
        key: {path: %[2]s}
    attestations:
      - name: provenance
        predicateType: https://slsa.dev/provenance/v1
        authority: ci
        policy: {regoFile: %[4]s}
  - name: signature-only
    images: ["%[1]s/sigonly/**"]
    authorities:
      - name: ci
        key: {path: %[2]s}
  - name: attestation-only
    images: ["%[1]s/attonly/**"]
    authorities:
      - name: ci
        key: {path: %[2]s}
        attestations:
          - name: provenance
            predicateType: slsaprovenance1
defaultPolicy: deny
`, upstreamName, ci.pub, provenanceCUE, regoFile)
	px := startProxy(t, up, pol)

	push := func(t *testing.T, repo string) string {
		d := up.pushImage(t, repo+":v1", testImage(t))
		return up.host + "/" + repo + "@" + d.String()
	}
	const prefix = `attestation "provenance" (https://slsa.dev/provenance/v1, by ci): `
	for _, tc := range []struct {
		name      string
		repo      string
		prepare   func(t *testing.T, image string)
		admitted  bool
		reasonHas string
	}{
		{"cue, v3 bundle", "cue/v3", func(t *testing.T, img string) {
			cosignSign(t, cosign3, ci, img)
			cosignAttest(t, cosign3, ci, img, ciBuilder)
		}, true, ""},
		{"cue, v3 legacy .att", "cue/v3legacy", func(t *testing.T, img string) {
			cosignSign(t, cosign3, ci, img)
			cosignAttest(t, cosign3, ci, img, ciBuilder, "--new-bundle-format=false")
		}, true, ""},
		{"cue, v2 legacy .att", "cue/v2", func(t *testing.T, img string) {
			cosignSign(t, cosign2, ci, img)
			cosignAttest(t, cosign2, ci, img, ciBuilder)
		}, true, ""},
		{"cue, another builder", "cue/builder", func(t *testing.T, img string) {
			cosignSign(t, cosign3, ci, img)
			cosignAttest(t, cosign3, ci, img, "https://evil.example.com")
		}, false, prefix + `predicate failed: predicate.runDetails.builder.id: conflicting values`},
		{"rego, v3 bundle", "rego/v3", func(t *testing.T, img string) {
			cosignSign(t, cosign3, ci, img)
			cosignAttest(t, cosign3, ci, img, ciBuilder)
		}, true, ""},
		{"rego, v2 legacy .att", "rego/v2", func(t *testing.T, img string) {
			cosignSign(t, cosign2, ci, img)
			cosignAttest(t, cosign2, ci, img, ciBuilder)
		}, true, ""},
		{"rego, another builder", "rego/builder", func(t *testing.T, img string) {
			cosignSign(t, cosign3, ci, img)
			cosignAttest(t, cosign3, ci, img, "https://evil.example.com", "--new-bundle-format=false")
		}, false, prefix + "predicate failed: builder https://evil.example.com is not the CI builder"},
		{"attestation by another key, v3", "cue/otherkey", func(t *testing.T, img string) {
			cosignSign(t, cosign3, ci, img)
			cosignAttest(t, cosign3, other, img, ciBuilder)
		}, false, prefix + "found 1, none verified: wrong signer"},
		{"attestation by another key, v2", "rego/otherkey", func(t *testing.T, img string) {
			cosignSign(t, cosign3, ci, img)
			cosignAttest(t, cosign2, other, img, ciBuilder)
		}, false, prefix + "found 1, none verified: wrong signer"},
		{"attestation of another digest", "cue/replayed", func(t *testing.T, img string) {
			cosignSign(t, cosign3, ci, img)
			donor := push(t, "cue/donor")
			cosignAttest(t, cosign2, ci, donor, ciBuilder)
			copyTag(t, up.host, "cue/donor", donor, "cue/replayed", img, cosign.SuffixAttestation)
		}, false, prefix + "found 1, none verified: subject is another digest"},
		{"no attestation", "cue/none", func(t *testing.T, img string) {
			cosignSign(t, cosign3, ci, img)
		}, false, prefix + "none found"},
		{"an attestation is not a signature", "sigonly/att", func(t *testing.T, img string) {
			cosignAttest(t, cosign3, ci, img, ciBuilder)
			cosignAttest(t, cosign2, ci, img, ciBuilder)
		}, false, `no signature verified by authority "ci" (no signatures found; ignored 1 attestation(s) with predicate type https://slsa.dev/provenance/v1`},
		{"a signature is not an attestation", "attonly/sig", func(t *testing.T, img string) {
			cosignSign(t, cosign3, ci, img)
			cosignSign(t, cosign2, ci, img)
		}, false, `authority "ci" not satisfied: attestation "provenance" (https://slsa.dev/provenance/v1): none found`},
		{"an authority satisfied by its attestation", "attonly/att", func(t *testing.T, img string) {
			cosignAttest(t, cosign3, ci, img, ciBuilder)
		}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := push(t, tc.repo)
			tc.prepare(t, img)
			out, err := testtool.Run(t, "", crane, nil, "pull", "--insecure", "--format", "oci", px.host+"/"+tc.repo+":v1", filepath.Join(t.TempDir(), "out"))
			if tc.admitted {
				if err != nil {
					t.Fatalf("not admitted: %v\n%s", err, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("admitted, want DENIED")
			}
			if !strings.Contains(out, "DENIED") || !strings.Contains(out, tc.reasonHas) {
				t.Errorf("crane's error does not carry the reason (want %q):\n%s", tc.reasonHas, out)
			}
		})
	}
}

// copyTag copies the legacy attachment (suffix) manifest of the image from (fromRepo) to the
// same tag of the image to (toRepo): a replayed attestation.
func copyTag(t *testing.T, host, fromRepo, from, toRepo, to, suffix string) {
	t.Helper()
	fd := digest.Digest(from[strings.Index(from, "@")+1:])
	td := digest.Digest(to[strings.Index(to, "@")+1:])
	src, _ := name.ParseReference(host+"/"+fromRepo+":"+cosign.AttachmentTag(fd, suffix), name.Insecure)
	dst, _ := name.ParseReference(host+"/"+toRepo+":"+cosign.AttachmentTag(td, suffix), name.Insecure)
	img, err := remote.Image(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(dst, img); err != nil {
		t.Fatal(err)
	}
}
