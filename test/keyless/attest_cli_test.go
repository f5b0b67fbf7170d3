package keyless

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// slsaProvenance is a SLSA provenance v1 predicate, as a build system writes it.
const slsaProvenance = `{"buildDefinition": {"buildType": "https://example.com/build/v1", "externalParameters": {}},
 "runDetails": {"builder": {"id": "https://github.com/actions/runner"}}}`

// portcullisAttestArgs are the arguments of a keyless `portcullis attest` of the predicate
// file on the stack: those of portcullisSignArgs, for attest.
func (s *stack) portcullisAttestArgs(token string, bundle bool, predicate, typ string) []string {
	args := s.portcullisSignArgs(token, bundle)
	args[0] = "attest"
	return append(args, "--predicate", predicate, "--type", typ)
}

// cosignVerifyAttestationArgs are the arguments of a real `cosign verify-attestation` of a
// keyless attestation of typ made on this stack by identity of issuer. For the legacy layout
// it checks no timestamp: cosign's verify-attestation checks a legacy attestation's RFC 3161
// timestamp over the layer, while cosign's (and portcullis's) attest timestamps the
// signature, so cosign refuses both with --use-signed-timestamps; the certificate is checked
// at the present time, within its 10 minutes.
func (s *stack) cosignVerifyAttestationArgs(identity, issuer, typ string, bundle bool) []string {
	var args []string
	for _, a := range s.cosignVerifyArgs(identity, issuer, bundle) {
		if a != "--use-signed-timestamps" {
			args = append(args, a)
		}
	}
	args[0] = "verify-attestation"
	return append(args, "--type", typ)
}

// TestPortcullisAttestsKeylessCosignVerifies: `portcullis attest` attests keylessly on the
// stack (bundle: Fulcio, Rekor v2, TSA; legacy .att: Fulcio and the TSA), and the real
// cosign v3 verify-attestation accepts it for the signer's identity and the trusted root,
// and refuses it for another identity or another predicate type. (cosign v2's
// verify-attestation takes a trusted root only for bundles.)
func TestPortcullisAttestsKeylessCosignVerifies(t *testing.T) {
	s := needStack(t)
	pc := portcullisBin(t)
	up := newUpstream(t)
	predicate := filepath.Join(t.TempDir(), "provenance.json")
	if err := os.WriteFile(predicate, []byte(slsaProvenance), 0o600); err != nil {
		t.Fatal(err)
	}
	const alice = "alice@example.com"
	email := s.oidc.url("email")
	for _, tc := range []struct {
		name   string
		bundle bool
	}{{"bundle", true}, {"legacy", false}} {
		t.Run(tc.name, func(t *testing.T) {
			img := up.push(t, "portcullis-attested/"+tc.name)
			s.must(t, pc, append(s.portcullisAttestArgs(s.oidc.emailToken(alice), tc.bundle, predicate, "slsaprovenance1"), img)...)
			out := s.must(t, s.cosign3, append(s.cosignVerifyAttestationArgs(alice, email, "slsaprovenance1", tc.bundle), img)...)
			if !strings.Contains(out, `"payloadType":"application/vnd.in-toto+json"`) {
				t.Errorf("cosign verify-attestation printed no envelope:\n%s", out)
			}
			for _, wrong := range []struct{ what, identity, typ string }{
				{"another identity", "mallory@example.com", "slsaprovenance1"},
				{"another predicate type", alice, "slsaprovenance02"},
			} {
				if out, err := s.run(t, s.cosign3, append(s.cosignVerifyAttestationArgs(wrong.identity, email, wrong.typ, tc.bundle), img)...); err == nil {
					t.Errorf("cosign verify-attestation accepted %s:\n%s", wrong.what, out)
				}
			}
		})
	}
}

// TestPortcullisVerifiesKeylessAttestations: `portcullis verify-attestation` with the
// certificate flags accepts the keyless attestations the real cosign v3 attest made on the
// stack (bundle: Fulcio, Rekor v2, TSA; legacy .att: Fulcio and the TSA) and those portcullis
// attest made, for the signer's identity, and refuses another identity.
func TestPortcullisVerifiesKeylessAttestations(t *testing.T) {
	s := needStack(t)
	pc := portcullisBin(t)
	up := newUpstream(t)
	predicate := filepath.Join(t.TempDir(), "provenance.json")
	if err := os.WriteFile(predicate, []byte(slsaProvenance), 0o600); err != nil {
		t.Fatal(err)
	}
	const alice = "alice@example.com"
	email := s.oidc.url("email")
	for _, tc := range []struct {
		name   string
		bundle bool
		cosign bool // attested by cosign v3, else by portcullis
	}{{"cosign bundle", true, true}, {"cosign legacy", false, true}, {"portcullis bundle", true, false}, {"portcullis legacy", false, false}} {
		t.Run(tc.name, func(t *testing.T) {
			img := up.push(t, "verified-attestations/"+strings.ReplaceAll(tc.name, " ", "-"))
			tok := s.oidc.emailToken(alice)
			if tc.cosign {
				args := []string{"attest", "--yes", "--allow-http-registry", "--identity-token", tok, "--trusted-root", s.trustedRoot,
					"--predicate", predicate, "--type", "slsaprovenance1"}
				if tc.bundle {
					args = append(args, "--signing-config", s.signingConfig)
				} else {
					args = append(args, "--new-bundle-format=false", "--use-signing-config=false", "--fulcio-url", s.fulcio,
						"--timestamp-server-url", s.tsa, "--tlog-upload=false")
				}
				s.must(t, s.cosign3, append(args, img)...)
			} else {
				s.must(t, pc, append(s.portcullisAttestArgs(tok, tc.bundle, predicate, "slsaprovenance1"), img)...)
			}
			verify := func(identity string) []string {
				args := []string{"verify-attestation", "--allow-http-registry", "--trusted-root", s.trustedRoot,
					"--certificate-identity", identity, "--certificate-oidc-issuer", email, "--type", "slsaprovenance1"}
				if !tc.bundle { // no Rekor entry: the TSA's timestamp proves the signing time
					args = append(args, "--insecure-ignore-tlog", "--use-signed-timestamps")
				}
				return append(args, img)
			}
			out := s.must(t, pc, verify(alice)...)
			if !strings.Contains(out, `"payloadType":"application/vnd.in-toto+json"`) || !strings.Contains(out, "Signed by "+alice) {
				t.Errorf("portcullis verify-attestation printed no envelope or signer:\n%s", out)
			}
			if out, err := s.run(t, pc, verify("mallory@example.com")...); err == nil {
				t.Errorf("portcullis verify-attestation accepted another identity:\n%s", out)
			} else if !strings.Contains(out, "no matching attestations") {
				t.Errorf("refused, but not for the identity:\n%s", out)
			}
		})
	}
}
