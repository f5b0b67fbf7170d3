package policy_test

import (
	"context"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verify/trustroot"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		glob  string
		image string
		want  bool
	}{
		{"docker.io/library/alpine", "docker.io/library/alpine", true},
		{"docker.io/library/alpine", "docker.io/library/alpine2", false},
		{"docker.io/library/alpine", "docker.io/library", false},
		{"docker.io/library/*", "docker.io/library/alpine", true},
		{"docker.io/library/*", "docker.io/library/a/b", false},
		{"docker.io/library/*", "docker.io/library", false},
		{"docker.io/*/app", "docker.io/myorg/app", true},
		{"docker.io/*/app", "docker.io/a/b/app", false},
		{"docker.io/myorg/app-*", "docker.io/myorg/app-web", true},
		{"docker.io/myorg/app-*", "docker.io/myorg/app", false},
		{"docker.io/myorg/*-web", "docker.io/myorg/app-web", true},
		{"docker.io/myorg/**", "docker.io/myorg/app", true},
		{"docker.io/myorg/**", "docker.io/myorg/a/b", true},
		{"docker.io/myorg/**", "docker.io/myorg", true},
		{"docker.io/myorg/**", "docker.io/myorganisation/app", false},
		{"docker.io/myorg/**", "ghcr.io/myorg/app", false},
		{"docker.io/**/app", "docker.io/app", true},
		{"docker.io/**/app", "docker.io/a/b/c/app", true},
		{"docker.io/**/app", "docker.io/a/b/c/app/x", false},
		{"docker.io/**/team/**/app", "docker.io/x/team/y/z/app", true},
		{"docker.io/**/team/**/app", "docker.io/x/y/z/app", false},
		{"**", "ghcr.io/anything/at/all", true},
		{"*/library/alpine", "ghcr.io/library/alpine", true},
		{"localhost:5000/app", "localhost:5000/app", true},
		{"**/alpine", "docker.io/library/alpine", true},
		{"docker.io/library/alpine", "", false},
		{"**", "docker.io//alpine", false},
	}
	for _, tt := range tests {
		t.Run(tt.glob+" "+tt.image, func(t *testing.T) {
			set := compile(t, policy.Config{Policies: []policy.PolicyConfig{{Name: "p", Images: []string{tt.glob}, Mode: policy.ModeOff}}})
			if got := set.Match(tt.image) != nil; got != tt.want {
				t.Fatalf("glob %q matches %q = %v, want %v", tt.glob, tt.image, got, tt.want)
			}
		})
	}
}

func TestMatchFirstPolicyWins(t *testing.T) {
	set := compile(t, policy.Config{Policies: []policy.PolicyConfig{
		{Name: "app", Images: []string{"docker.io/myorg/app"}, Mode: policy.ModeOff},
		{Name: "org", Images: []string{"docker.io/myorg/**"}, Mode: policy.ModeOff},
		{Name: "also-app", Images: []string{"docker.io/myorg/app"}, Mode: policy.ModeOff},
	}})
	for image, want := range map[string]string{
		"docker.io/myorg/app":   "app",
		"docker.io/myorg/other": "org",
		"docker.io/other/app":   "",
	} {
		got := ""
		if p := set.Match(image); p != nil {
			got = p.Name()
		}
		if got != want {
			t.Errorf("Match(%q) = policy %q, want %q", image, got, want)
		}
	}
}

func TestValidateErrors(t *testing.T) {
	key := policy.KeyConfig{Data: "pem"}
	valid := func() policy.PolicyConfig {
		return policy.PolicyConfig{Name: "p", Images: []string{"docker.io/**"}, Authorities: []policy.AuthorityConfig{{Name: "a", Key: key}}}
	}
	with := func(f func(*policy.PolicyConfig)) []policy.PolicyConfig {
		p := valid()
		f(&p)
		return []policy.PolicyConfig{p}
	}
	tests := []struct {
		name string
		cfg  policy.Config
		want []string // substrings of the error; none means valid
	}{
		{name: "valid", cfg: policy.Config{Policies: []policy.PolicyConfig{valid()}}},
		{name: "empty config", cfg: policy.Config{}},
		{name: "default policy", cfg: policy.Config{DefaultPolicy: "maybe"}, want: []string{`defaultPolicy: unknown value "maybe"`}},
		{name: "missing name", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Name = "" })}, want: []string{"policies[0].name: a name is required"}},
		{name: "duplicate name", cfg: policy.Config{Policies: []policy.PolicyConfig{valid(), valid()}}, want: []string{`policies[1].name: "p" is already the name of policies[0]`}},
		{name: "no images", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Images = nil })}, want: []string{"policies[0].images: at least one image glob is required"}},
		{name: "empty glob", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Images = []string{"docker.io/**", ""} })}, want: []string{"policies[0].images[1]: empty image glob"}},
		{name: "triple star", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Images = []string{"docker.io/***"} })}, want: []string{`policies[0].images[0]: "docker.io/***": "**" must be a whole path segment`}},
		{name: "star star in segment", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Images = []string{"docker.io/app**"} })}, want: []string{"must be a whole path segment"}},
		{name: "uppercase", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Images = []string{"docker.io/MyOrg/*"} })}, want: []string{"policies[0].images[0]", "uppercase"}},
		{name: "tag", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Images = []string{"docker.io/library/alpine:3"} })}, want: []string{"policies[0].images[0]", "without tag or digest"}},
		{name: "empty segment", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Images = []string{"docker.io//alpine"} })}, want: []string{"empty path segment"}},
		{name: "trailing slash", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Images = []string{"docker.io/"} })}, want: []string{"empty path segment"}},
		{name: "bad character", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Images = []string{"docker.io/my org"} })}, want: []string{`' ' cannot occur`}},
		{name: "bad component", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Images = []string{"docker.io/-app"} })}, want: []string{`"-app" is not a repository path component`}},
		{name: "bad host", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Images = []string{"-docker.io/app"} })}, want: []string{`"-docker.io" is not a registry host`}},
		{name: "mode", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Mode = "audit" })}, want: []string{`policies[0].mode: unknown value "audit"`}},
		{name: "indexes", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Indexes = "each" })}, want: []string{`policies[0].indexes: unknown value "each"`}},
		{name: "require too many", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) {
			p.Require = "3"
			p.Authorities = append(p.Authorities, policy.AuthorityConfig{Name: "b", Key: key})
		})}, want: []string{`policies[0].require: "3" exceeds the 2 authorities`}},
		{name: "require zero", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Require = "0" })}, want: []string{`policies[0].require: "0" must be at least 1`}},
		{name: "require word", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Require = "most" })}, want: []string{`policies[0].require: unknown value "most"`}},
		{name: "no authorities", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Authorities = nil })}, want: []string{`policies[0].authorities: at least one authority is required unless mode is "off"`}},
		{name: "no authorities mode off", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Authorities, p.Mode = nil, policy.ModeOff })}},
		{name: "authority name", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) {
			p.Authorities = append(p.Authorities, policy.AuthorityConfig{Name: "a", Key: key}, policy.AuthorityConfig{Key: key})
		})}, want: []string{`policies[0].authorities[1].name: "a" is already the name of authorities[0]`, "policies[0].authorities[2].name: a name is required"}},
		{name: "no key", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Authorities[0].Key = policy.KeyConfig{} })}, want: []string{"policies[0].authorities[0].key: one of path, data, kms or env is required"}},
		{name: "two keys", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Authorities[0].Key.Path = "/k.pub" })}, want: []string{"policies[0].authorities[0].key: exactly one of path, data, kms or env may be set, got path, data"}},
		{name: "kms uri", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Authorities[0].Key = policy.KeyConfig{KMS: "my-key"} })}, want: []string{`policies[0].authorities[0].key.kms: "my-key" is not a KMS key reference`}},
		{name: "env name", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Authorities[0].Key = policy.KeyConfig{Env: "MY-KEY"} })}, want: []string{`policies[0].authorities[0].key.env: "MY-KEY" is not an environment variable name`}},
		{name: "keyless valid", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) {
			p.Authorities[0] = policy.AuthorityConfig{Name: "a", Keyless: &policy.KeylessConfig{Identities: []policy.IdentityConfig{{Issuer: "https://accounts.google.com", SubjectRegExp: "^krel@x$"}}}}
		})}},
		{name: "keyless and key", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) {
			p.Authorities[0].Keyless = &policy.KeylessConfig{Identities: []policy.IdentityConfig{{Issuer: "i", Subject: "s"}}}
		})}, want: []string{"policies[0].authorities[0]: key, keyless, certificate and static are exclusive, got key and keyless"}},
		{name: "keyless without identities", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) {
			p.Authorities[0] = policy.AuthorityConfig{Name: "a", Keyless: &policy.KeylessConfig{}}
		})}, want: []string{"policies[0].authorities[0].keyless.identities: at least one identity is required"}},
		{name: "keyless identity fields", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) {
			p.Authorities[0] = policy.AuthorityConfig{Name: "a", Keyless: &policy.KeylessConfig{Identities: []policy.IdentityConfig{
				{Issuer: "i", IssuerRegExp: "i", SubjectRegExp: "("}, {Subject: "s"},
			}}}
		})}, want: []string{
			"keyless.identities[0]: issuer and issuerRegExp are exclusive",
			"keyless.identities[0].subjectRegExp: error parsing regexp",
			"keyless.identities[1]: one of issuer or issuerRegExp is required",
		}},
		{name: "keyless unknown trust root", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) {
			p.Authorities[0] = policy.AuthorityConfig{Name: "a", Keyless: &policy.KeylessConfig{TrustRoot: "corp", Identities: []policy.IdentityConfig{{Issuer: "i", Subject: "s"}}}}
		})}, want: []string{`policies[0].authorities[0].keyless.trustRoot: "corp" is not a configured trust root`}},
		{name: "negative threshold", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) {
			n := -1
			p.Authorities[0] = policy.AuthorityConfig{Name: "a", Keyless: &policy.KeylessConfig{Identities: []policy.IdentityConfig{{Issuer: "i", Subject: "s"}}}, Tlog: &policy.ThresholdConfig{Threshold: &n}}
		})}, want: []string{"policies[0].authorities[0].tlog.threshold: -1 is negative"}},
		{name: "threshold on key authority", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) {
			p.Authorities[0].Timestamps = &policy.ThresholdConfig{}
		})}, want: []string{"policies[0].authorities[0].timestamps: applies only to keyless and certificate authorities"}},
		{name: "certificate", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) {
			n := 1
			p.Authorities[0] = policy.AuthorityConfig{Name: "a", Certificate: &policy.CertificateConfig{}, Tlog: &policy.ThresholdConfig{Threshold: &n}}
		})}, want: []string{
			"certificate.roots: a PEM file of root certificates is required",
			"certificate: one of subject or subjectRegExp is required",
			"certificate.trustRoot: tlog, timestamps or ctlog above 0 need a trust root",
		}},
		{name: "trust roots", cfg: policy.Config{TrustRoots: []trustroot.Config{
			{Name: "corp", TrustedRootFile: "/x.json"}, {Name: "corp", TUF: &trustroot.TUFConfig{}},
			{Name: "both", TrustedRootFile: "/x.json", TUF: &trustroot.TUFConfig{}}, {Name: "none"},
			{Name: "priv", TUF: &trustroot.TUFConfig{Mirror: "https://tuf.corp.example"}},
			{Name: "bad url", TUF: &trustroot.TUFConfig{Mirror: "ftp://x", Root: "/root.json", Refresh: -1}},
		}}, want: []string{
			`trustRoots[1].name: "corp" is already the name of trustRoots[0]`,
			"trustRoots[2]: tuf and trustedRootFile are exclusive",
			"trustRoots[3]: one of tuf or trustedRootFile is required",
			"trustRoots[4].tuf.root: the embedded root anchors only https://tuf-repo-cdn.sigstore.dev",
			`trustRoots[5].name: "bad url" is not a trust root name`,
			`trustRoots[5].tuf.mirror: "ftp://x" is not an http(s) URL`,
			"trustRoots[5].tuf.refresh: -1ns is negative",
		}},
		{name: "signatures repository", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Authorities[0].SignaturesRepository = "MyOrg/sigs" })}, want: []string{`policies[0].authorities[0].signaturesRepository: "MyOrg/sigs" is not a repository path`}},
		{name: "annotation name", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) { p.Authorities[0].Annotations = map[string]string{"": "x"} })}, want: []string{"policies[0].authorities[0].annotations: annotation names must not be empty"}},
		{name: "attestations valid", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) {
			p.Authorities = append(p.Authorities, policy.AuthorityConfig{Name: "ci", Key: key, Attestations: []policy.AttestationConfig{
				{Name: "sbom", PredicateType: "spdxjson"},
				{Name: "scan", PredicateType: "https://example.com/scan/v1", Policy: &policy.PredicatePolicyConfig{Rego: "package sigstore"}},
			}}, policy.AuthorityConfig{Name: "ok", Static: policy.StaticPass})
			p.Attestations = []policy.AttestationConfig{{Name: "provenance", PredicateType: "slsaprovenance1", Authority: "a", Policy: &policy.PredicatePolicyConfig{CUEFile: "p.cue"}}}
		})}},
		{name: "attestation fields", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) {
			p.Authorities = append(p.Authorities, policy.AuthorityConfig{Name: "s", Static: policy.StaticFail})
			p.Attestations = []policy.AttestationConfig{
				{Name: "x", PredicateType: "slsaprovenance9", Authority: "a"},
				{Name: "x", PredicateType: "custom", Authority: "nobody"},
				{PredicateType: "", Authority: ""},
				{Name: "y", PredicateType: "custom", Authority: "s", Policy: &policy.PredicatePolicyConfig{}},
				{Name: "z", PredicateType: "custom", Authority: "a", Policy: &policy.PredicatePolicyConfig{CUE: "x: 1", Rego: "package sigstore"}},
			}
		})}, want: []string{
			`policies[0].attestations[0].predicateType: predicate type "slsaprovenance9" is neither one of cosign's names`,
			`policies[0].attestations[1].name: "x" is already the name of policies[0].attestations[0]`,
			`policies[0].attestations[1].authority: "nobody" is not an authority of this policy`,
			"policies[0].attestations[2].name: a name is required",
			"policies[0].attestations[2].predicateType: a predicate type is required",
			"policies[0].attestations[2].authority: the name of the authority that signs the attestation is required",
			`policies[0].attestations[3].authority: "s" is a static authority, which signs nothing`,
			"policies[0].attestations[3].policy: one of cue, rego, cueFile or regoFile is required",
			"policies[0].attestations[4].policy: exactly one of cue, rego, cueFile or regoFile may be set, got cue, rego",
		}},
		{name: "authority attestations", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) {
			p.Authorities[0].Attestations = []policy.AttestationConfig{{Name: "x", PredicateType: "custom", Authority: "a"}, {Name: "x", PredicateType: "vuln"}}
		})}, want: []string{
			"policies[0].authorities[0].attestations[0].authority: must be empty in an authority's attestations",
			`policies[0].authorities[0].attestations[1].name: "x" is already the name of policies[0].authorities[0].attestations[0]`,
		}},
		{name: "static", cfg: policy.Config{Policies: with(func(p *policy.PolicyConfig) {
			p.Authorities[0].Static = "maybe"
			p.Authorities = append(p.Authorities, policy.AuthorityConfig{Name: "b", Static: policy.StaticPass, SignaturesRepository: "x/sigs",
				Annotations: map[string]string{"a": "b"}, Attestations: []policy.AttestationConfig{{Name: "x", PredicateType: "custom"}}})
		})}, want: []string{
			"policies[0].authorities[0]: key, keyless, certificate and static are exclusive, got static and key",
			`policies[0].authorities[0].static: unknown value "maybe" (want "pass" or "fail")`,
			"policies[0].authorities[1].attestations: a static authority has no attestations",
			"policies[0].authorities[1].annotations: a static authority has no signatures to carry annotations",
			"policies[0].authorities[1].signaturesRepository: a static authority has no signatures to look up",
		}},
		{name: "every problem reported", cfg: policy.Config{DefaultPolicy: "x", Policies: with(func(p *policy.PolicyConfig) { p.Mode = "y" })}, want: []string{"defaultPolicy:", "policies[0].mode:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: got %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: got no error, want one containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: got %q, want it to contain %q", err, w)
				}
			}
			// Compile reports the same problems.
			if _, cerr := policy.Compile(context.Background(), tt.cfg); cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("Compile: got %v, want %v", cerr, err)
			}
		})
	}
}

func TestCompileDefaults(t *testing.T) {
	set := compile(t, policy.Config{Policies: []policy.PolicyConfig{{
		Name: "p", Images: []string{"docker.io/**"}, Authorities: authorities(t, "a", "b"),
	}}})
	if got, want := set.DefaultPolicy(), policy.DefaultDeny; got != want {
		t.Errorf("DefaultPolicy() = %q, want %q", got, want)
	}
	p := set.Policies()[0]
	if p.Mode() != policy.ModeEnforce || p.Indexes() != policy.IndexesSigned || p.Required() != 1 || len(p.Authorities()) != 2 {
		t.Errorf("policy = mode %q, indexes %q, required %d, %d authorities; want enforce, signed, 1, 2",
			p.Mode(), p.Indexes(), p.Required(), len(p.Authorities()))
	}
	all := compile(t, policy.Config{Policies: []policy.PolicyConfig{{
		Name: "p", Images: []string{"docker.io/**"}, Require: policy.RequireAll, Authorities: authorities(t, "a", "b", "c"),
	}}})
	if got := all.Policies()[0].Required(); got != 3 {
		t.Errorf(`require "all" of 3: Required() = %d, want 3`, got)
	}
}
