package keyless

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/testtool"
)

// cosignAttestKeyless attests image with the real cosign v3, keylessly with token: a bundle
// (Fulcio, Rekor v2, TSA) or the legacy .att layout (Fulcio and the TSA), of the SLSA v1
// provenance predicate built by builder.
func (s *stack) cosignAttestKeyless(t *testing.T, token, image, builder string, bundle bool) {
	t.Helper()
	pred := filepath.Join(t.TempDir(), "provenance.json")
	body := fmt.Sprintf(`{"buildDefinition":{"buildType":"https://example.com/build/v1","externalParameters":{}},"runDetails":{"builder":{"id":%q}}}`, builder)
	if err := os.WriteFile(pred, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"attest", "--yes", "--allow-http-registry", "--identity-token", token, "--trusted-root", s.trustedRoot,
		"--type", "slsaprovenance1", "--predicate", pred}
	if bundle {
		args = append(args, "--signing-config", s.signingConfig)
	} else {
		args = append(args, "--new-bundle-format=false", "--use-signing-config=false", "--fulcio-url", s.fulcio,
			"--timestamp-server-url", s.tsa, "--tlog-upload=false")
	}
	s.must(t, s.cosign3, append(args, image)...)
}

// TestKeylessAttestationAdmission: images signed and attested keylessly by the real cosign v3
// on the local stack, pulled with crane through portcullis whose policy wants a keyless
// authority's signature and its SLSA provenance attestation with the CI builder (CUE).
func TestKeylessAttestationAdmission(t *testing.T) {
	s := needStack(t)
	crane := testtool.Path(t, "crane")
	up := newUpstream(t)
	email := s.oidc.url("email")
	alice := fmt.Sprintf("{issuer: %q, subject: alice@example.com}", email)
	const builder = "https://ci.example.com/builder"
	attestation := "    attestations:\n      - name: provenance\n        predicateType: slsaprovenance1\n        authority: alice\n" +
		"        policy: {cue: 'predicate: runDetails: builder: id: \"" + builder + "\"'}\n"
	px := startProxy(t, up, fmt.Sprintf(`trustRoots:
  - name: local
    trustedRootFile: %[1]s
defaultPolicy: deny
policies:
  - name: bundle
    images: ["%[2]s/bundle/**"]
    authorities:
      - name: alice
        keyless: {trustRoot: local, identities: [%[3]s]}
%[4]s  - name: legacy
    images: ["%[2]s/legacy/**"]
    authorities:
      - name: alice
        keyless: {trustRoot: local, identities: [%[3]s]}
        tlog: {threshold: 0}
        timestamps: {threshold: 1}
%[4]s`, s.trustedRoot, up.name, alice, attestation))
	const prefix = `attestation "provenance" (https://slsa.dev/provenance/v1, by alice): `
	aliceToken, malloryToken := s.oidc.emailToken("alice@example.com"), s.oidc.emailToken("mallory@example.com")
	for _, tc := range []struct {
		name, repo string
		prepare    func(t *testing.T, img string)
		admitted   bool
		reasonHas  string
	}{
		{"bundle", "bundle/ok", func(t *testing.T, img string) {
			s.cosignSignKeyless(t, aliceToken, img, true)
			s.cosignAttestKeyless(t, aliceToken, img, builder, true)
		}, true, ""},
		{"bundle, another builder", "bundle/builder", func(t *testing.T, img string) {
			s.cosignSignKeyless(t, aliceToken, img, true)
			s.cosignAttestKeyless(t, aliceToken, img, "https://evil.example.com", true)
		}, false, prefix + "predicate failed: predicate.runDetails.builder.id: conflicting values"},
		{"bundle, attested by mallory", "bundle/mallory", func(t *testing.T, img string) {
			s.cosignSignKeyless(t, aliceToken, img, true)
			s.cosignAttestKeyless(t, malloryToken, img, builder, true)
		}, false, prefix + "found 1, none verified: mallory@example.com (issuer " + email + "): subject mallory@example.com is not alice@example.com"},
		{"bundle, signature only", "bundle/sigonly", func(t *testing.T, img string) {
			s.cosignSignKeyless(t, aliceToken, img, true)
		}, false, prefix + "none found"},
		{"bundle, attestation only", "bundle/attonly", func(t *testing.T, img string) {
			s.cosignAttestKeyless(t, aliceToken, img, builder, true)
		}, false, `no signature verified by authority "alice"`},
		{"legacy .att", "legacy/ok", func(t *testing.T, img string) {
			s.cosignSignKeyless(t, aliceToken, img, false)
			s.cosignAttestKeyless(t, aliceToken, img, builder, false)
		}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := up.push(t, tc.repo)
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
