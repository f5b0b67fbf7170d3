package policy_test

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verify/trustroot"
)

// writeTrustedRoot writes the trusted_root.json of a fresh virtual sigstore to path.
func writeTrustedRoot(t *testing.T, path string) {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), vs.CTLogs(), vs.TimestampingAuthorities(), vs.RekorLogs())
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func keylessConfig(rootFile string) policy.Config {
	return policy.Config{
		TrustRoots: []trustroot.Config{{Name: "corp", TrustedRootFile: rootFile}},
		Policies: []policy.PolicyConfig{{
			Name: "k8s", Images: []string{"registry.k8s.io/**"},
			Authorities: []policy.AuthorityConfig{{
				Name: "krel",
				Keyless: &policy.KeylessConfig{
					TrustRoot: "corp",
					Identities: []policy.IdentityConfig{{
						Issuer: "https://accounts.google.com", SubjectRegExp: `^krel-(trust|staging)@k8s-releng-prod\.iam\.gserviceaccount\.com$`,
					}},
					GithubWorkflowRepository: "kubernetes/release",
				},
			}},
		}},
	}
}

func TestCompileKeyless(t *testing.T) {
	file := filepath.Join(t.TempDir(), "trusted_root.json")
	writeTrustedRoot(t, file)
	set := compile(t, keylessConfig(file))
	a := set.Policies()[0].Authorities()[0]
	if a.Key != nil || a.Keyless == nil {
		t.Fatalf("authority = %+v, want a keyless one", a)
	}
	k := a.Keyless
	if k.TrustRoot != "trust root corp" || k.Tlog != 1 || k.CTLog != 1 || k.Timestamps != 0 {
		t.Errorf("keyless = %s, tlog %d, ctlog %d, timestamps %d; want trust root corp, 1, 1, 0", k.TrustRoot, k.Tlog, k.CTLog, k.Timestamps)
	}
	if k.Extensions.Repository != "kubernetes/release" || len(k.Identities) != 1 || k.Identities[0].Issuer != "https://accounts.google.com" ||
		!k.Identities[0].SubjectRegExp.MatchString("krel-trust@k8s-releng-prod.iam.gserviceaccount.com") {
		t.Errorf("identities %+v, extensions %+v: not the configured ones", k.Identities, k.Extensions)
	}
	if len(k.Material.FulcioCertificateAuthorities()) != 1 {
		t.Errorf("material has %d CAs, want the trusted root's 1", len(k.Material.FulcioCertificateAuthorities()))
	}

	// Thresholds are taken as configured, zero included.
	cfg := keylessConfig(file)
	zero, two := 0, 2
	cfg.Policies[0].Authorities[0].Tlog = &policy.ThresholdConfig{Threshold: &zero}
	cfg.Policies[0].Authorities[0].Timestamps = &policy.ThresholdConfig{Threshold: &two}
	k = compile(t, cfg).Policies()[0].Authorities()[0].Keyless
	if k.Tlog != 0 || k.Timestamps != 2 || k.CTLog != 1 {
		t.Errorf("tlog %d, timestamps %d, ctlog %d; want 0, 2, 1", k.Tlog, k.Timestamps, k.CTLog)
	}
}

func TestKeylessVersion(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "trusted_root.json")
	writeTrustedRoot(t, file)
	v1 := compile(t, keylessConfig(file)).Version()
	if again := compile(t, keylessConfig(file)).Version(); again != v1 {
		t.Errorf("same config and root: version %s, then %s", v1, again)
	}
	// Another file with the same bytes: the same version.
	b, _ := os.ReadFile(file)
	copyFile := filepath.Join(dir, "copy.json")
	if err := os.WriteFile(copyFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := compile(t, keylessConfig(copyFile)).Version(); got != v1 {
		t.Errorf("same root bytes elsewhere: version %s, want %s", got, v1)
	}
	// A new root: a new version, so no decision is reused.
	writeTrustedRoot(t, file)
	if got := compile(t, keylessConfig(file)).Version(); got == v1 {
		t.Error("a new trusted root kept the policy version")
	}
	// An identity change: a new version.
	cfg := keylessConfig(file)
	cfg.Policies[0].Authorities[0].Keyless.Identities[0].Issuer = "https://other.example"
	if got := compile(t, cfg).Version(); got == v1 {
		t.Error("a new identity kept the policy version")
	}
}

// countingRoots counts the trust roots resolved.
type countingRoots struct {
	inner policy.TrustRoots
	calls map[string]int
}

func (c *countingRoots) Root(ctx context.Context, cfg trustroot.Config) (*trustroot.Root, error) {
	c.calls[cfg.Name]++
	return c.inner.Root(ctx, cfg)
}

func TestKeylessTrustRootsResolvedOnce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "trusted_root.json")
	writeTrustedRoot(t, file)
	cfg := keylessConfig(file)
	second := cfg.Policies[0]
	second.Name, second.Images = "other", []string{"ghcr.io/**"}
	cfg.Policies = append(cfg.Policies, second)
	c := &countingRoots{inner: trustroot.NewManager(), calls: map[string]int{}}
	compile(t, cfg, policy.WithTrustRoots(c))
	if c.calls["corp"] != 1 || len(c.calls) != 1 {
		t.Errorf("trust roots resolved %v, want corp once", c.calls)
	}
	set := compile(t, cfg)
	if tr := set.TrustRoots(); len(tr) != 1 || tr[0].Name != "corp" || tr[0].TrustedRootFile != file {
		t.Errorf("Set.TrustRoots() = %+v, want corp only", tr)
	}
	if tr := compile(t, policy.Config{TrustRoots: cfg.TrustRoots}).TrustRoots(); len(tr) != 0 {
		t.Errorf("Set.TrustRoots() of a set without keyless authorities = %+v, want none", tr)
	}
}

func TestCompileKeylessErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.json")
	if err := os.WriteFile(garbage, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := policy.Compile(context.Background(), keylessConfig(filepath.Join(dir, "missing.json")))
	if err == nil || !strings.Contains(err.Error(), "policies[0].authorities[0].keyless.trustRoot: ") || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing trusted root file: got %v", err)
	}
	_, err = policy.Compile(context.Background(), keylessConfig(garbage))
	if err == nil || !strings.Contains(err.Error(), "parse trusted root") {
		t.Errorf("garbage trusted root file: got %v", err)
	}
}

func TestCompileCertificate(t *testing.T) {
	dir := t.TempDir()
	rootCert, rootKey, err := ca.GenerateRootCa()
	if err != nil {
		t.Fatal(err)
	}
	inter, _, err := ca.GenerateFulcioIntermediate(rootCert, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(certs ...[]byte) string {
		var b strings.Builder
		for _, c := range certs {
			p, _ := cryptoutils.MarshalCertificateToPEM(mustParse(t, c))
			b.Write(p)
		}
		return b.String()
	}
	rootsFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(rootsFile, []byte(pemOf(rootCert.Raw)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := func(c policy.CertificateConfig) policy.Config {
		return policy.Config{Policies: []policy.PolicyConfig{{
			Name: "corp", Images: []string{"registry.corp.example/**"},
			Authorities: []policy.AuthorityConfig{{Name: "corp-pki", Certificate: &c}},
		}}}
	}
	set := compile(t, cfg(policy.CertificateConfig{Roots: rootsFile, Intermediates: pemOf(inter.Raw), Subject: "signer@corp.example"}))
	k := set.Policies()[0].Authorities()[0].Keyless
	if k == nil || k.Tlog != 0 || k.CTLog != 0 || k.Timestamps != 0 || k.Identities[0].Subject != "signer@corp.example" {
		t.Fatalf("certificate authority compiled to %+v, want thresholds 0 and the subject", k)
	}
	cas := k.Material.FulcioCertificateAuthorities()
	if len(cas) != 1 {
		t.Fatalf("%d CAs, want 1", len(cas))
	}
	if fca := cas[0].(*root.FulcioCertificateAuthority); !fca.Root.Equal(rootCert) || len(fca.Intermediates) != 1 {
		t.Errorf("CA root %s with %d intermediates, want the configured root and 1", fca.Root.Subject, len(fca.Intermediates))
	}
	if len(k.Material.RekorLogs()) != 0 || len(k.Material.TimestampingAuthorities()) != 0 {
		t.Error("a certificate authority without trustRoot trusts logs or timestamp authorities")
	}

	for _, tt := range []struct {
		name string
		c    policy.CertificateConfig
		want string
	}{
		{"missing roots", policy.CertificateConfig{Roots: filepath.Join(dir, "none.pem"), SubjectRegExp: ".*"}, "policies[0].authorities[0].certificate.roots: open "},
		{"no certificate", policy.CertificateConfig{Roots: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", SubjectRegExp: ".*"}, "policies[0].authorities[0].certificate.roots: "},
		{"bad intermediates", policy.CertificateConfig{Roots: rootsFile, Intermediates: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", SubjectRegExp: ".*"}, "policies[0].authorities[0].certificate.intermediates: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policy.Compile(context.Background(), cfg(tt.c))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Compile: got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
