package cip_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/policy/cip"
)

// pubPEM is a fresh public key, indented for a YAML block scalar.
func pubPEM(t *testing.T) (pem, indented string) {
	t.Helper()
	_, pub, err := keys.GenerateKeyPair([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	return string(pub), "        " + strings.ReplaceAll(strings.TrimSpace(string(pub)), "\n", "\n        ")
}

func intp(n int) *int { return &n }

func TestConvertExamples(t *testing.T) {
	pem, key := pubPEM(t)
	for _, tc := range []struct {
		name string
		doc  string
		want []policy.PolicyConfig
	}{{
		name: "key",
		doc: `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: image-policy
spec:
  images:
  - glob: "registry.local:5000/cosigned/demo*"
  authorities:
  - key:
      data: |
` + key + `
      hashAlgorithm: sha256
`,
		want: []policy.PolicyConfig{{
			Name: "ClusterImagePolicy/image-policy", Images: []string{"registry.local:5000/cosigned/demo*"},
			Mode: policy.ModeEnforce, Require: policy.RequireAny,
			Authorities: []policy.AuthorityConfig{{Name: "authority-0", Key: policy.KeyConfig{Data: pem}}},
		}},
	}, {
		name: "keyless, two documents, warn, source",
		doc: `---
apiVersion: policy.sigstore.dev/v1alpha1
kind: ClusterImagePolicy
metadata:
  name: image-is-signed-by-github-actions
spec:
  images:
  - glob: "ghcr.io/myorg/**"
  mode: warn
  authorities:
  - name: gha
    keyless:
      url: https://fulcio.sigstore.dev
      identities:
      - issuer: https://token.actions.githubusercontent.com
        subjectRegExp: "^https://github.com/myorg/.*/.github/workflows/release.yaml@refs/tags/v.*$"
    ctlog:
      url: https://rekor.sigstore.dev
    source:
    - oci: ghcr.io/myorg/signatures
---
apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: private
spec:
  images:
  - glob: "registry.example.com/**"
  authorities:
  - keyless:
      trustRootRef: corp
      insecureIgnoreSCT: true
      identities:
      - issuerRegExp: ".*"
        subject: ci@example.com
    rfc3161timestamp:
      trustRootRef: corp
---
`,
		want: []policy.PolicyConfig{{
			Name: "ClusterImagePolicy/image-is-signed-by-github-actions", Images: []string{"ghcr.io/myorg/*/**"},
			Mode: policy.ModeWarn, Require: policy.RequireAny,
			Authorities: []policy.AuthorityConfig{{
				Name: "gha",
				Keyless: &policy.KeylessConfig{Identities: []policy.IdentityConfig{{
					Issuer: "https://token.actions.githubusercontent.com", SubjectRegExp: "^https://github.com/myorg/.*/.github/workflows/release.yaml@refs/tags/v.*$",
				}}},
				Tlog:                 &policy.ThresholdConfig{Threshold: intp(1)},
				SignaturesRepository: "myorg/signatures",
			}},
		}, {
			Name: "ClusterImagePolicy/private", Images: []string{"registry.example.com/*/**"},
			Mode: policy.ModeEnforce, Require: policy.RequireAny,
			Authorities: []policy.AuthorityConfig{{
				Name: "authority-0",
				Keyless: &policy.KeylessConfig{TrustRoot: "corp", Identities: []policy.IdentityConfig{{
					IssuerRegExp: ".*", Subject: "ci@example.com",
				}}},
				CTLog:      &policy.ThresholdConfig{Threshold: intp(0)},
				Timestamps: &policy.ThresholdConfig{Threshold: intp(1)},
				Tlog:       &policy.ThresholdConfig{Threshold: intp(0)},
			}},
		}},
	}, {
		name: "attestations and static",
		doc: `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: sbom
spec:
  images:
  - glob: "**"
  authorities:
  - name: custom-key
    key:
      data: |
` + key + `
    attestations:
    - name: must-have-spdxjson
      predicateType: spdxjson
      policy:
        type: cue
        data: |
          predicateType: "https://spdx.dev/Document"
    - name: rego
      predicateType: https://slsa.dev/provenance/v0.2
      policy:
        type: rego
        data: |
          package sigstore
          isCompliant := true
    - name: any-vuln
      predicateType: vuln
  - name: break-glass
    static:
      action: fail
`,
		want: []policy.PolicyConfig{{
			Name: "ClusterImagePolicy/sbom", Images: []string{"*/**"},
			Mode: policy.ModeEnforce, Require: policy.RequireAny,
			Authorities: []policy.AuthorityConfig{{
				Name: "custom-key", Key: policy.KeyConfig{Data: pem},
				Attestations: []policy.AttestationConfig{
					{Name: "must-have-spdxjson", PredicateType: "spdxjson", Policy: &policy.PredicatePolicyConfig{CUE: "predicateType: \"https://spdx.dev/Document\"\n"}},
					{Name: "rego", PredicateType: "https://slsa.dev/provenance/v0.2", Policy: &policy.PredicatePolicyConfig{Rego: "package sigstore\nisCompliant := true\n"}},
					{Name: "any-vuln", PredicateType: "vuln"},
				},
			}, {Name: "break-glass", Static: policy.StaticFail}},
		}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cip.Convert([]cip.File{{Name: "policy.yaml", Data: []byte(tc.doc)}}, cip.WithTrustRoots("corp"))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got\n%#v\nwant\n%#v", got, tc.want)
			}
			cfg := policy.Config{Policies: got}
			if err := cfg.Validate(); err != nil && !strings.Contains(err.Error(), "corp") {
				t.Errorf("the converted policies do not validate: %v", err)
			}
		})
	}
}

func TestConvertRefuses(t *testing.T) {
	_, key := pubPEM(t)
	doc := func(spec string) string {
		return "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: image-policy\nspec:\n" + spec
	}
	keyAuth := "  images: [{glob: \"ghcr.io/org/**\"}]\n  authorities:\n  - key:\n      data: |\n" + key + "\n"
	for _, tc := range []struct {
		name, doc string
		inline    []policy.PolicyConfig
		want      string
	}{
		{"secretRef", doc("  images: [{glob: \"**\"}]\n  authorities:\n  - key:\n      secretRef: {name: k}\n"),
			nil, `policy.yaml: ClusterImagePolicy "image-policy": spec.authorities[0].key.secretRef: not supported (portcullis reads keys from data, a file or KMS; put the key in data)`},
		{"unknown field", doc("  images: [{glob: \"**\"}]\n  authoritys: []\n"), nil, "field authoritys not found"},
		{"unknown nested field", doc(keyAuth + "    keyles: {}\n"), nil, "field keyles not found"},
		{"kind", strings.Replace(doc(keyAuth), "kind: ClusterImagePolicy", "kind: ImagePolicy", 1), nil, `kind: "ImagePolicy" is not ClusterImagePolicy`},
		{"apiVersion", strings.Replace(doc(keyAuth), "v1beta1", "v1", 1), nil, `apiVersion: "policy.sigstore.dev/v1" is not`},
		{"no name", strings.Replace(doc(keyAuth), "name: image-policy", "labels: {}", 1), nil, "document 1: metadata.name: a name is required"},
		{"regex", doc("  images: [{regex: \".*\"}]\n  authorities: [{static: {action: pass}}]\n"), nil, "spec.images[0].regex: not supported"},
		{"untranslatable glob", doc("  images: [{glob: \"ghcr.io/org/app\"}]\n  authorities: [{static: {action: pass}}]\n"), nil, `spec.images[0].glob: "ghcr.io/org/app": matches no image in policy-controller`},
		{"digest glob", doc("  images: [{glob: \"ghcr.io/org/app@sha256:abc\"}]\n  authorities: [{static: {action: pass}}]\n"), nil, "spec.images[0].glob"},
		{"spec.policy", doc("  images: [{glob: \"**\"}]\n  authorities: [{static: {action: pass}}]\n  policy: {type: cue, data: \"x: 1\"}\n"), nil, "spec.policy: not supported"},
		{"match", doc("  images: [{glob: \"**\"}]\n  authorities: [{static: {action: pass}}]\n  match: [{resource: pods, version: v1}]\n"), nil, "spec.match: not supported"},
		{"mode", doc("  images: [{glob: \"**\"}]\n  mode: audit\n  authorities: [{static: {action: pass}}]\n"), nil, `spec.mode: "audit" is not enforce or warn`},
		{"no authorities", doc("  images: [{glob: \"**\"}]\n"), nil, "spec.authorities: at least one authority is required"},
		{"static message", doc("  images: [{glob: \"**\"}]\n  authorities: [{static: {action: fail, message: no}}]\n"), nil, "spec.authorities[0].static.message: not supported"},
		{"static action", doc("  images: [{glob: \"**\"}]\n  authorities: [{static: {action: skip}}]\n"), nil, `spec.authorities[0].static.action: "skip" is not pass or fail`},
		{"key and keyless", doc(keyAuth + "    keyless: {url: \"https://fulcio.sigstore.dev\", identities: [{issuer: i, subject: s}]}\n"), nil, "spec.authorities[0]: exactly one of key, keyless or static"},
		{"bad key", doc("  images: [{glob: \"**\"}]\n  authorities:\n  - key: {data: nope}\n"), nil, "spec.authorities[0].key.data"},
		{"hashAlgorithm", doc(keyAuth + "      hashAlgorithm: sha512\n"), nil, "spec.authorities[0].key.hashAlgorithm: not supported"},
		{"key ctlog", doc(keyAuth + "    ctlog: {url: \"https://rekor.sigstore.dev\"}\n"), nil, "spec.authorities[0].ctlog: not supported (portcullis does not require transparency-log entries for key signatures"},
		{"key rfc3161timestamp", doc(keyAuth + "    rfc3161timestamp: {trustRootRef: corp}\n"), nil, "spec.authorities[0].rfc3161timestamp: not supported"},
		{"key bundle", doc(keyAuth + "    signatureFormat: bundle\n"), nil, "spec.authorities[0].signatureFormat: not supported"},
		{"ca-cert", doc("  images: [{glob: \"**\"}]\n  authorities:\n  - keyless: {ca-cert: {data: x}, identities: [{issuer: i, subject: s}]}\n"), nil, "spec.authorities[0].keyless.ca-cert: not supported"},
		{"private fulcio url", doc("  images: [{glob: \"**\"}]\n  authorities:\n  - keyless: {url: \"https://fulcio.corp\", identities: [{issuer: i, subject: s}]}\n"), nil, "spec.authorities[0].keyless.url: not supported"},
		{"unknown trust root", doc("  images: [{glob: \"**\"}]\n  authorities:\n  - keyless: {trustRootRef: nope, identities: [{issuer: i, subject: s}]}\n"), nil, `spec.authorities[0].keyless.trustRootRef: "nope" is not a configured trust root`},
		{"no identities", doc("  images: [{glob: \"**\"}]\n  authorities:\n  - keyless: {url: \"https://fulcio.sigstore.dev\"}\n"), nil, "spec.authorities[0].keyless.identities: at least one identity is required"},
		{"identity without issuer", doc("  images: [{glob: \"**\"}]\n  authorities:\n  - keyless: {identities: [{subject: s}]}\n"), nil, "spec.authorities[0].keyless.identities[0]: one of issuer or issuerRegExp is required"},
		{"ctlog other root", doc("  images: [{glob: \"**\"}]\n  authorities:\n  - keyless: {trustRootRef: corp, identities: [{issuer: i, subject: s}]}\n    ctlog: {trustRootRef: other}\n"), nil, "spec.authorities[0].ctlog.trustRootRef: not supported"},
		{"private rekor", doc("  images: [{glob: \"**\"}]\n  authorities:\n  - keyless: {identities: [{issuer: i, subject: s}]}\n    ctlog: {url: \"https://rekor.corp\"}\n"), nil, "spec.authorities[0].ctlog.url: not supported"},
		{"signaturePullSecrets", doc(keyAuth + "    source: [{oci: ghcr.io/org/sigs, signaturePullSecrets: [{name: s}]}]\n"), nil, "spec.authorities[0].source[0].signaturePullSecrets: not supported"},
		{"tagPrefix", doc(keyAuth + "    source: [{oci: ghcr.io/org/sigs, tagPrefix: x}]\n"), nil, "spec.authorities[0].source[0].tagPrefix: not supported"},
		{"source other registry", doc(keyAuth + "    source: [{oci: quay.io/org/sigs}]\n"), nil, "spec.authorities[0].source[0].oci: not supported"},
		{"two sources", doc(keyAuth + "    source: [{oci: ghcr.io/org/a}, {oci: ghcr.io/org/b}]\n"), nil, "spec.authorities[0].source: only one source"},
		{"remote policy", doc(keyAuth + "    attestations: [{name: a, predicateType: vuln, policy: {type: cue, remote: {url: \"https://x\", sha256sum: ab}}}]\n"), nil, "spec.authorities[0].attestations[0].policy.remote: not supported"},
		{"configMapRef policy", doc(keyAuth + "    attestations: [{name: a, predicateType: vuln, policy: {type: cue, configMapRef: {name: c, key: k}}}]\n"), nil, "spec.authorities[0].attestations[0].policy.configMapRef: not supported"},
		{"fetchConfigFile in attestation", doc(keyAuth + "    attestations: [{name: a, predicateType: vuln, policy: {type: cue, data: \"x: 1\", fetchConfigFile: true}}]\n"), nil, "spec.authorities[0].attestations[0].policy.fetchConfigFile"},
		{"policy type", doc(keyAuth + "    attestations: [{name: a, predicateType: vuln, policy: {type: cel, data: \"x\"}}]\n"), nil, `spec.authorities[0].attestations[0].policy.type: "cel" is not cue or rego`},
		{"predicate type", doc(keyAuth + "    attestations: [{name: a, predicateType: sbom}]\n"), nil, `spec.authorities[0].attestations[0].predicateType: predicate type "sbom" is neither`},
		{"bad regexp", doc("  images: [{glob: \"**\"}]\n  authorities:\n  - keyless: {identities: [{issuer: i, subjectRegExp: \"(\"}]}\n"), nil, "spec.authorities[0].keyless.identities[0].subjectRegExp: error parsing regexp"},
		{"kms reference", doc("  images: [{glob: \"**\"}]\n  authorities:\n  - key: {kms: not-a-reference}\n"), nil, `as a portcullis policy: authorities[0].key.kms: "not-a-reference" is not a KMS key reference`},
		{"attestation name", doc(keyAuth + "    attestations: [{predicateType: vuln}]\n"), nil, "spec.authorities[0].attestations[0].name: a name is required"},
		{"static with attestations", doc("  images: [{glob: \"**\"}]\n  authorities: [{static: {action: pass}, attestations: [{name: a, predicateType: vuln}]}]\n"), nil, "spec.authorities[0].attestations: a static authority"},
		{"duplicate authority names", doc("  images: [{glob: \"**\"}]\n  authorities: [{name: a, static: {action: pass}}, {name: a, static: {action: fail}}]\n"), nil, `spec.authorities[1].name: "a" is already the name of spec.authorities[0]`},
		{"name of an inline policy", doc(keyAuth), []policy.PolicyConfig{{Name: "ClusterImagePolicy/image-policy", Images: []string{"quay.io/x"}}},
			`metadata.name: "ClusterImagePolicy/image-policy" is also the name of an inline policy`},
		{"overlaps an inline policy", doc(keyAuth), []policy.PolicyConfig{{Name: "prod", Images: []string{"ghcr.io/org/app"}}},
			`spec.images: "ghcr.io/org/*/**" can match the same images as "ghcr.io/org/app" of the inline policy "prod"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cip.Convert([]cip.File{{Name: "policy.yaml", Data: []byte(tc.doc)}}, cip.WithTrustRoots("corp", "other"), cip.WithInlinePolicies(tc.inline))
			if err == nil {
				t.Fatalf("Convert = %+v, want an error containing %q", got, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error\n%v\ndoes not contain\n%s", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "policy.yaml: ") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestConvertAcrossDocuments(t *testing.T) {
	cipDoc := func(name, glob string) string {
		return "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: " + name +
			"\nspec:\n  images: [{glob: \"" + glob + "\"}]\n  authorities: [{static: {action: pass}}]\n"
	}
	for _, tc := range []struct {
		name  string
		files []cip.File
		want  string // "" accepted
	}{
		{"disjoint", []cip.File{{Name: "a.yaml", Data: []byte(cipDoc("a", "ghcr.io/org/a*"))}, {Name: "b.yaml", Data: []byte(cipDoc("b", "ghcr.io/org/b*"))}}, ""},
		{"identical globs", []cip.File{{Name: "a.yaml", Data: []byte(cipDoc("a", "ghcr.io/org/*"))}, {Name: "b.yaml", Data: []byte(cipDoc("b", "ghcr.io/org/*"))}},
			`b.yaml: ClusterImagePolicy "b": spec.images: "ghcr.io/org/*" can match the same images as "ghcr.io/org/*" of a.yaml: ClusterImagePolicy "a"`},
		{"prefix", []cip.File{{Name: "p.yaml", Data: []byte(cipDoc("all", "**") + "---\n" + cipDoc("app", "ghcr.io/org/app*"))}},
			`p.yaml: ClusterImagePolicy "app": spec.images: "ghcr.io/org/app*" can match the same images as "*/**" of p.yaml: ClusterImagePolicy "all"`},
		{"same name", []cip.File{{Name: "a.yaml", Data: []byte(cipDoc("a", "ghcr.io/org/a*"))}, {Name: "b.yaml", Data: []byte(cipDoc("a", "ghcr.io/org/b*"))}},
			`b.yaml: ClusterImagePolicy "a": metadata.name: "a" is already the name of a ClusterImagePolicy in a.yaml`},
		{"syntax error", []cip.File{{Name: "a.yaml", Data: []byte(cipDoc("a", "ghcr.io/org/a*") + "---\n: [\n")}}, "a.yaml: document 2: yaml:"},
		{"not a mapping", []cip.File{{Name: "a.yaml", Data: []byte("- 1\n")}}, "a.yaml: document 1: yaml:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cip.Convert(tc.files)
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want == "" && len(got) != len(tc.files):
				t.Fatalf("got %d policies, want %d", len(got), len(tc.files))
			case tc.want != "" && err == nil:
				t.Fatalf("accepted, want %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error\n%v\ndoes not contain\n%s", err, tc.want)
			}
		})
	}
}
