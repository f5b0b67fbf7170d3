package keyless

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/testtool"
)

// admissionPolicy is the proxy's policy for TestKeylessAdmission: one policy per repository
// prefix, each with one authority, so that each case names what it is checked against.
func (s *stack) admissionPolicy(up *upstream) string {
	email, gha := s.oidc.url("email"), s.oidc.url("gha")
	alice := fmt.Sprintf("{issuer: %q, subject: alice@example.com}", email)
	pol := func(repo, authority string) string {
		return fmt.Sprintf("  - name: %s\n    images: [\"%s/%s/**\"]\n    authorities:\n      - name: %s-signer\n%s", repo, up.name, repo, repo, authority)
	}
	return fmt.Sprintf(`trustRoots:
  - name: local
    trustedRootFile: %s
  - name: byo-only
    trustedRootFile: %s
defaultPolicy: deny
policies:
`, s.trustedRoot, s.byoRoot) +
		// Bundles: the defaults (a Rekor entry and an SCT); the time comes from the TSA.
		pol("bundle", "        keyless: {trustRoot: local, identities: ["+alice+"]}\n") +
		// The legacy layout is timestamped, not logged (no Rekor v1 here).
		pol("legacy", "        keyless: {trustRoot: local, identities: ["+alice+"]}\n        tlog: {threshold: 0}\n        timestamps: {threshold: 1}\n") +
		// Bundles with a timestamp and no log entry.
		pol("notlog", "        keyless: {trustRoot: local, identities: ["+alice+"]}\n        tlog: {threshold: 0}\n        timestamps: {threshold: 1}\n") +
		pol("regexp", fmt.Sprintf("        keyless: {trustRoot: local, identities: [{issuerRegExp: %q, subjectRegExp: %q}]}\n",
			"^"+regexp.QuoteMeta(email)+"$", `^alice@example\.com$`)) +
		pol("wrongissuer", fmt.Sprintf("        keyless: {trustRoot: local, identities: [{issuer: %q, subject: alice@example.com}]}\n", gha)) +
		pol("wrongroot", "        keyless: {trustRoot: byo-only, identities: ["+alice+"]}\n        tlog: {threshold: 0}\n        ctlog: {threshold: 0}\n") +
		pol("gha", fmt.Sprintf("        keyless: {trustRoot: local, identities: [{issuer: %q, subjectRegExp: %q}], githubWorkflowRepository: acme/widget, githubWorkflowRef: refs/heads/main}\n",
			gha, `^https://github\.com/acme/widget/\.github/workflows/`)) +
		pol("gharepo", fmt.Sprintf("        keyless: {trustRoot: local, identities: [{issuer: %q, subjectRegExp: %q}], githubWorkflowRepository: acme/other}\n",
			gha, `^https://github\.com/`)) +
		pol("byo", fmt.Sprintf("        certificate: {roots: %s, subject: %s}\n", s.pki.path(byoRootPEM), byoIdentity))
}

// cosignImportKey turns a PEM private key into cosign's encrypted format (empty password),
// as cosign sign --key wants it.
func (s *stack) cosignImportKey(t *testing.T, pemKey string) string {
	t.Helper()
	prefix := filepath.Join(t.TempDir(), "imported")
	s.must(t, s.cosign3, "import-key-pair", "--key", pemKey, "--output-key-prefix", prefix)
	return prefix + ".key"
}

// TestKeylessAdmission: images signed keylessly by the real cosign (v3 in both formats, v2 in
// the legacy one) on the local stack, and by cosign with a bring-your-own certificate, pulled
// through portcullis with crane and skopeo: admitted for the identity the policy names, denied with the
// reason for another subject, another issuer, a trust root without the CA, another workflow
// repository, a certificate from another CA, and no signature at all.
func TestKeylessAdmission(t *testing.T) {
	s := needStack(t)
	cosign2 := testtool.Path(t, "cosign2")
	crane := testtool.Path(t, "crane")
	skopeo := testtool.Path(t, "skopeo")
	up := newUpstream(t)
	px := startProxy(t, up, s.admissionPolicy(up))
	email := s.oidc.url("email")
	byoKey := s.cosignImportKey(t, s.pki.path(byoLeafKeyPEM))
	otherKey := s.cosignImportKey(t, s.pki.path(otherLeafKey))

	sign3 := func(token string, bundle bool) func(t *testing.T, img string) {
		return func(t *testing.T, img string) { s.cosignSignKeyless(t, token, img, bundle) }
	}
	byo := func(key, leaf string, bundle bool) func(t *testing.T, img string) {
		return func(t *testing.T, img string) {
			args := []string{"sign", "--yes", "--allow-http-registry", "--key", key, "--certificate", s.pki.path(leaf),
				"--tlog-upload=false", "--use-signing-config=false"}
			if leaf == byoLeafPEM {
				args = append(args, "--certificate-chain", s.pki.path(byoChainPEM))
			}
			if !bundle {
				args = append(args, "--new-bundle-format=false")
			}
			s.must(t, s.cosign3, append(args, img)...)
		}
	}
	for _, tc := range []struct {
		name, repo string
		sign       func(t *testing.T, img string)
		admitted   bool
		reasonHas  []string
	}{
		{"cosign v3 bundle (Rekor v2, TSA, SCT)", "bundle/v3", sign3(s.oidc.emailToken("alice@example.com"), true), true, nil},
		{"cosign v3 legacy (TSA)", "legacy/v3", sign3(s.oidc.emailToken("alice@example.com"), false), true, nil},
		{"cosign v2 legacy (TSA)", "legacy/v2", func(t *testing.T, img string) {
			out, err := testtool.Run(t, "", cosign2, []string{"SIGSTORE_ROOT_FILE=" + s.pki.path(fulcioChainPEM),
				"SIGSTORE_CT_LOG_PUBLIC_KEY_FILE=" + s.pki.path(ctPubPEM), "TUF_ROOT=" + filepath.Join(t.TempDir(), "tuf")},
				"sign", "--yes", "--allow-http-registry", "--identity-token", s.oidc.emailToken("alice@example.com"),
				"--fulcio-url", s.fulcio, "--timestamp-server-url", s.tsa, "--tlog-upload=false", img)
			if err != nil {
				t.Fatalf("cosign v2 sign: %v\n%s", err, out)
			}
		}, true, nil},
		{"cosign v3 bundle (TSA, SCT, no log)", "notlog/v3", func(t *testing.T, img string) {
			s.must(t, s.cosign3, "sign", "--yes", "--allow-http-registry", "--identity-token", s.oidc.emailToken("alice@example.com"),
				"--trusted-root", s.trustedRoot, "--signing-config", s.signingConfigNoTlog, img)
		}, true, nil},
		{"cosign v2 bundle (TSA, SCT, no log)", "notlog/v2", func(t *testing.T, img string) {
			s.must(t, cosign2, "sign", "--yes", "--allow-http-registry", "--identity-token", s.oidc.emailToken("alice@example.com"),
				"--new-bundle-format", "--trusted-root", s.trustedRoot, "--signing-config", s.signingConfigNoTlog, img)
		}, true, nil},
		{"identity and issuer regexps", "regexp/app", sign3(s.oidc.emailToken("alice@example.com"), true), true, nil},
		{"GitHub workflow identity and extensions", "gha/app", sign3(s.oidc.ghaToken("acme/widget", "refs/heads/main", "release.yml"), true), true, nil},
		{"BYO PKI, bundle", "byo/bundle", byo(byoKey, byoLeafPEM, true), true, nil},
		{"BYO PKI, legacy", "byo/legacy", byo(byoKey, byoLeafPEM, false), true, nil},

		{"wrong subject, bundle", "bundle/mallory", sign3(s.oidc.emailToken("mallory@example.com"), true), false, []string{"subject mallory@example.com is not alice@example.com"}},
		{"wrong subject, legacy", "legacy/mallory", sign3(s.oidc.emailToken("mallory@example.com"), false), false, []string{"subject mallory@example.com is not alice@example.com"}},
		{"wrong issuer", "wrongissuer/app", sign3(s.oidc.emailToken("alice@example.com"), true), false, []string{"issuer " + email + " is not " + s.oidc.url("gha")}},
		{"trust root without the CA", "wrongroot/app", sign3(s.oidc.emailToken("alice@example.com"), true), false, []string{`authority "wrongroot-signer"`, "not issued by a CA of trust root byo-only"}},
		{"other workflow repository", "gharepo/app", sign3(s.oidc.ghaToken("acme/widget", "refs/heads/main", "release.yml"), true), false, []string{`repository "acme/widget" is not "acme/other"`}},
		{"BYO leaf from another CA", "byo/other", byo(otherKey, otherLeafPEM, true), false, []string{`authority "byo-signer"`, "not issued by a CA of the certificate roots"}},
		{"no Rekor entry where the policy wants one", "bundle/notlog", func(t *testing.T, img string) {
			s.must(t, s.cosign3, "sign", "--yes", "--allow-http-registry", "--identity-token", s.oidc.emailToken("alice@example.com"),
				"--trusted-root", s.trustedRoot, "--signing-config", s.signingConfigNoTlog, img)
		}, false, []string{`authority "bundle-signer"`, "no Rekor entry (tlog threshold 1)"}},
		{"unsigned", "bundle/unsigned", func(*testing.T, string) {}, false, []string{"no signatures found"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := up.push(t, tc.repo)
			tc.sign(t, img)
			ref := px.host + "/" + tc.repo + ":v1"
			for _, client := range []struct {
				name string
				pull func() (string, error)
			}{
				{"crane", func() (string, error) {
					return testtool.Run(t, "", crane, nil, "pull", "--insecure", "--format", "oci", ref, filepath.Join(t.TempDir(), "out"))
				}},
				{"skopeo", func() (string, error) {
					out, err := testtool.Run(t, "", skopeo, nil, "copy", "--retry-times", "0", "--src-tls-verify=false", "docker://"+ref, "dir:"+t.TempDir())
					return strings.ReplaceAll(out, `\"`, `"`), err // its log line quotes the message
				}},
			} {
				out, err := client.pull()
				if tc.admitted {
					if err != nil {
						t.Fatalf("%s: not admitted: %v\n%s", client.name, err, out)
					}
					continue
				}
				if err == nil {
					t.Fatalf("%s: admitted, want DENIED", client.name)
				}
				t.Logf("%s: denied: %s", client.name, strings.TrimSpace(out))
				for _, want := range append([]string{"denied", "denied by policy"}, tc.reasonHas...) {
					if !strings.Contains(out, want) {
						t.Errorf("%s's error does not say %q:\n%s", client.name, want, out)
					}
				}
			}
		})
	}
}
