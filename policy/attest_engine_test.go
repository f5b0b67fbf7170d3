package policy_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
)

func newMemRegistry() *memRegistry {
	return &memRegistry{manifests: map[string][]byte{}, blobs: map[digest.Digest][]byte{}}
}

// put stores a manifest of layers of layerType under tag.
func (m *memRegistry) put(tag, layerType string, layers ...[]byte) {
	man := ocispec.Manifest{Versioned: specsVersioned, MediaType: oci.MediaTypeOCIManifest}
	for _, l := range layers {
		d := digest.FromBytes(l)
		m.blobs[d] = l
		man.Layers = append(man.Layers, ocispec.Descriptor{MediaType: layerType, Digest: d, Size: int64(len(l))})
	}
	m.manifests[tag], _ = json.Marshal(man)
}

// signer is a key that signs as cosign does.
type signer struct {
	sv  signature.SignerVerifier
	pem string
}

func newSigner(t testing.TB) signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(k, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return signer{sv: sv, pem: publicPEM(t, k.Public())}
}

func (s signer) sign(t testing.TB, msg []byte) []byte {
	t.Helper()
	sig, err := s.sv.SignMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// signImage stores a legacy cosign signature of d.
func (s signer) signImage(t testing.TB, reg *memRegistry, d digest.Digest) {
	t.Helper()
	payload := fmt.Appendf(nil, `{"critical":{"identity":{"docker-reference":"x"},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, d)
	pd := digest.FromBytes(payload)
	reg.blobs[pd] = payload
	reg.manifests[cosign.SignatureTag(d)], _ = json.Marshal(ocispec.Manifest{Versioned: specsVersioned, MediaType: oci.MediaTypeOCIManifest, Layers: []ocispec.Descriptor{{
		MediaType: cosign.MediaTypeSimpleSigning, Digest: pd, Size: int64(len(payload)),
		Annotations: map[string]string{cosign.AnnotationSignature: base64.StdEncoding.EncodeToString(s.sign(t, payload))},
	}}})
}

// attest stores a legacy ".att" attestation of image d (its statement naming subject) with a
// SLSA v1 provenance predicate built by builder.
func (s signer) attest(t testing.TB, reg *memRegistry, d, subject digest.Digest, builder string) {
	t.Helper()
	st := fmt.Appendf(nil, `{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":%q}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{"buildDefinition":{"buildType":"https://example.com/build/v1"},"runDetails":{"builder":{"id":%q}}}}`,
		subject.Encoded(), builder)
	env, _ := json.Marshal(dsse.Envelope{
		PayloadType: cosign.PayloadTypeInToto, Payload: base64.StdEncoding.EncodeToString(st),
		Signatures: []dsse.Signature{{Sig: base64.StdEncoding.EncodeToString(s.sign(t, dsse.PAE(cosign.PayloadTypeInToto, st)))}},
	})
	reg.put(cosign.AttachmentTag(d, cosign.SuffixAttestation), cosign.MediaTypeDSSEEnvelope, env)
}

const (
	goodBuilder = "https://ci.example.com/builder"
	cueBuilder  = `predicate: runDetails: builder: id: "https://ci.example.com/builder"`
	regoBuilder = `package sigstore
default isCompliant = false
isCompliant { input.predicate.runDetails.builder.id == "https://ci.example.com/builder" }`
)

func TestAdmitAttestations(t *testing.T) {
	ci, other := newSigner(t), newSigner(t)
	provenance := func(p *policy.PredicatePolicyConfig) []policy.AttestationConfig {
		return []policy.AttestationConfig{{Name: "provenance", PredicateType: "slsaprovenance1", Authority: "ci", Policy: p}}
	}
	policyLevel := func(p *policy.PredicatePolicyConfig) policy.PolicyConfig {
		return policy.PolicyConfig{Name: "prod", Images: []string{"docker.io/**"},
			Authorities: []policy.AuthorityConfig{{Name: "ci", Key: policy.KeyConfig{Data: ci.pem}}}, Attestations: provenance(p)}
	}
	authorityLevel := policy.PolicyConfig{Name: "prod", Images: []string{"docker.io/**"}, Authorities: []policy.AuthorityConfig{{
		Name: "ci", Key: policy.KeyConfig{Data: ci.pem},
		Attestations: []policy.AttestationConfig{{Name: "provenance", PredicateType: "https://slsa.dev/provenance/v1", Policy: &policy.PredicatePolicyConfig{CUE: cueBuilder}}},
	}}}
	cue := &policy.PredicatePolicyConfig{CUE: cueBuilder}
	rego := &policy.PredicatePolicyConfig{Rego: regoBuilder}
	const prefix = `attestation "provenance" (https://slsa.dev/provenance/v1, by ci): `
	tests := []struct {
		name    string
		pol     policy.PolicyConfig
		setup   func(reg *memRegistry, d digest.Digest)
		allowed bool
		reason  string // a substring of the decision's reason
	}{
		{"cue holds", policyLevel(cue), func(r *memRegistry, d digest.Digest) {
			ci.signImage(t, r, d)
			ci.attest(t, r, d, d, goodBuilder)
		}, true, `verified by authority "ci"; attestation "provenance" held`},
		{"cue fails", policyLevel(cue), func(r *memRegistry, d digest.Digest) {
			ci.signImage(t, r, d)
			ci.attest(t, r, d, d, "https://evil.example.com")
		}, false, prefix + "predicate failed: predicate.runDetails.builder.id: conflicting values"},
		{"rego holds", policyLevel(rego), func(r *memRegistry, d digest.Digest) {
			ci.signImage(t, r, d)
			ci.attest(t, r, d, d, goodBuilder)
		}, true, `attestation "provenance" held`},
		{"rego fails", policyLevel(rego), func(r *memRegistry, d digest.Digest) {
			ci.signImage(t, r, d)
			ci.attest(t, r, d, d, "https://evil.example.com")
		}, false, prefix + "predicate failed: "},
		{"no policy: verified is enough", policyLevel(nil), func(r *memRegistry, d digest.Digest) {
			ci.signImage(t, r, d)
			ci.attest(t, r, d, d, "https://evil.example.com")
		}, true, `attestation "provenance" held`},
		{"none", policyLevel(cue), func(r *memRegistry, d digest.Digest) { ci.signImage(t, r, d) }, false, prefix + "none found"},
		{"another signer", policyLevel(cue), func(r *memRegistry, d digest.Digest) {
			ci.signImage(t, r, d)
			other.attest(t, r, d, d, goodBuilder)
		}, false, prefix + "found 1, none verified: wrong signer"},
		{"another digest", policyLevel(cue), func(r *memRegistry, d digest.Digest) {
			ci.signImage(t, r, d)
			ci.attest(t, r, d, digest.FromString("another image"), goodBuilder)
		}, false, prefix + "found 1, none verified: subject is another digest"},
		{"an attestation is not a signature", policyLevel(cue), func(r *memRegistry, d digest.Digest) {
			ci.attest(t, r, d, d, goodBuilder)
		}, false, `no signature verified by authority "ci" (no signatures found)`},
		{"authority satisfied by its attestation", authorityLevel, func(r *memRegistry, d digest.Digest) {
			ci.attest(t, r, d, d, goodBuilder)
		}, true, `verified by authority "ci"`},
		{"a signature is not an attestation", authorityLevel, func(r *memRegistry, d digest.Digest) {
			ci.signImage(t, r, d)
		}, false, `authority "ci" not satisfied: attestation "provenance" (https://slsa.dev/provenance/v1): none found`},
		{"static pass", policy.PolicyConfig{Name: "prod", Images: []string{"docker.io/**"},
			Authorities: []policy.AuthorityConfig{{Name: "anyone", Static: policy.StaticPass}}},
			func(*memRegistry, digest.Digest) {}, true, `verified by authority "anyone"`},
		{"static fail", policy.PolicyConfig{Name: "prod", Images: []string{"docker.io/**"},
			Authorities: []policy.AuthorityConfig{{Name: "no-one", Static: policy.StaticFail}}},
			func(*memRegistry, digest.Digest) {}, false, `authority "no-one" is static "fail"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newMemRegistry()
			m := imageManifest(t, tt.name)
			tt.setup(reg, m.Digest)
			set := compile(t, policy.Config{Policies: []policy.PolicyConfig{tt.pol}})
			e := policy.NewEngine(set, verify.New(), newCache(t))
			req := policy.Request{Image: "docker.io/myorg/app", Repository: "myorg/app", Manifest: m, Registry: reg}
			d, err := e.Admit(context.Background(), req)
			if _, denied := errors.AsType[*policy.DenyError](err); err != nil && !denied {
				t.Fatalf("Admit: %v", err)
			}
			if d.Allowed != tt.allowed || !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("Admit: allowed %v, reason %q; want %v, reason containing %q", d.Allowed, d.Reason, tt.allowed, tt.reason)
			}
			if d.Negative() == tt.allowed {
				t.Errorf("Negative() = %v for allowed %v", d.Negative(), d.Allowed)
			}
			// Explain decides the same, with the details.
			x, err := e.Explain(context.Background(), req)
			if err != nil {
				t.Fatalf("Explain: %v", err)
			}
			if x.Decision.Allowed != d.Allowed || x.Decision.Reason != d.Reason || x.Policy != "prod" {
				t.Errorf("Explain: decision %+v, want %+v", x.Decision, d)
			}
		})
	}
}

// TestExplain checks the explanation's content and JSON field names.
func TestExplain(t *testing.T) {
	ci, other := newSigner(t), newSigner(t)
	reg := newMemRegistry()
	m := imageManifest(t, "app")
	ci.signImage(t, reg, m.Digest)
	other.attest(t, reg, m.Digest, m.Digest, goodBuilder)
	set := compile(t, policy.Config{Policies: []policy.PolicyConfig{{
		Name: "prod", Images: []string{"docker.io/**"},
		Authorities:  []policy.AuthorityConfig{{Name: "ci", Key: policy.KeyConfig{Data: ci.pem}}, {Name: "ok", Static: policy.StaticPass}},
		Require:      "all",
		Attestations: []policy.AttestationConfig{{Name: "provenance", PredicateType: "slsaprovenance1", Authority: "ci", Policy: &policy.PredicatePolicyConfig{Rego: regoBuilder}}},
	}}})
	fv := newCache(t)
	e := policy.NewEngine(set, verify.New(), fv)
	req := policy.Request{Image: "docker.io/myorg/app", Repository: "myorg/app", Manifest: m, Registry: reg}
	x, err := e.Explain(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fv.Get(context.Background(), cache.Key{PolicyVersion: set.Version(), Repository: req.Image, Digest: m.Digest}); ok {
		t.Errorf("Explain stored its decision in the cache")
	}
	b, _ := json.Marshal(x)
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"image", "digest", "policyVersion", "policy", "mode", "require", "signatures", "attestationsFound", "authorities", "attestations", "decision"} {
		if _, ok := got[k]; !ok {
			t.Errorf("explanation JSON has no %q: %s", k, b)
		}
	}
	if x.Decision.Allowed || x.Require != 2 || x.Signatures != 1 || x.AttestationsFound != 1 {
		t.Errorf("explanation: allowed %v, require %d, signatures %d, attestations %d; want false, 2, 1, 1", x.Decision.Allowed, x.Require, x.Signatures, x.AttestationsFound)
	}
	if len(x.Authorities) != 2 || !x.Authorities[0].Satisfied || x.Authorities[0].Kind != "signature" || x.Authorities[1].Kind != "static" || !x.Authorities[1].Satisfied {
		t.Errorf("authorities %+v", x.Authorities)
	}
	var examined []string
	for _, ex := range x.Authorities[0].Examined {
		examined = append(examined, fmt.Sprintf("%s %s counted=%v %s", ex.Kind, ex.Format, ex.Counted, ex.Reason))
	}
	want := []string{"attestation legacy counted=false wrong key", "signature legacy counted=true "}
	if strings.Join(examined, "|") != strings.Join(want, "|") {
		t.Errorf("examined %q, want %q", examined, want)
	}
	if len(x.Attestations) != 1 || x.Attestations[0].Satisfied || x.Attestations[0].Policy != "rego" ||
		!strings.Contains(x.Attestations[0].Reason, "wrong signer") {
		t.Errorf("attestation requirements %+v", x.Attestations)
	}
}

// TestAttestationVersion: the predicate policy is part of the set's version.
func TestAttestationVersion(t *testing.T) {
	pem := newKeyPEM(t)
	version := func(src string) string {
		return compile(t, policy.Config{Policies: []policy.PolicyConfig{{
			Name: "p", Images: []string{"docker.io/**"}, Authorities: []policy.AuthorityConfig{{Name: "ci", Key: policy.KeyConfig{Data: pem}}},
			Attestations: []policy.AttestationConfig{{Name: "a", PredicateType: "custom", Authority: "ci", Policy: &policy.PredicatePolicyConfig{CUE: src}}},
		}}}).Version()
	}
	if version(`predicate: x: 1`) == version(`predicate: x: 2`) {
		t.Errorf("two predicate policies give the same version")
	}
}

// TestCompilePredicatePolicyErrors: predicate policies compile at load, errors name the field.
func TestCompilePredicatePolicyErrors(t *testing.T) {
	pem := newKeyPEM(t)
	for _, tc := range []struct {
		name string
		p    policy.PredicatePolicyConfig
		want string
	}{
		{"bad cue", policy.PredicatePolicyConfig{CUE: "predicate: {"}, "policies[0].attestations[0].policy: "},
		{"bad rego", policy.PredicatePolicyConfig{Rego: "package other\nisCompliant = true"}, "policies[0].attestations[0].policy: "},
		{"missing file", policy.PredicatePolicyConfig{CUEFile: "/nonexistent/p.cue"}, "policies[0].attestations[0].policy.cueFile: open /nonexistent/p.cue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policy.Compile(context.Background(), policy.Config{Policies: []policy.PolicyConfig{{
				Name: "p", Images: []string{"docker.io/**"}, Authorities: []policy.AuthorityConfig{{Name: "ci", Key: policy.KeyConfig{Data: pem}}},
				Attestations: []policy.AttestationConfig{{Name: "a", PredicateType: "custom", Authority: "ci", Policy: &tc.p}},
			}}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Compile: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestWantsAttestations: the proxy prefetches signatures for policies with authorities to
// verify, and the .att tag only for those that want attestations.
func TestWantsAttestations(t *testing.T) {
	pem := newKeyPEM(t)
	set := compile(t, policy.Config{Policies: []policy.PolicyConfig{
		{Name: "attested", Images: []string{"docker.io/attested/**"}, Authorities: []policy.AuthorityConfig{{Name: "ci", Key: policy.KeyConfig{Data: pem}}},
			Attestations: []policy.AttestationConfig{{Name: "sbom", PredicateType: "spdxjson", Authority: "ci"}}},
		{Name: "own", Images: []string{"docker.io/own/**"}, Authorities: []policy.AuthorityConfig{{Name: "ci", Key: policy.KeyConfig{Data: pem},
			Attestations: []policy.AttestationConfig{{Name: "sbom", PredicateType: "spdxjson"}}}}},
		{Name: "signed", Images: []string{"docker.io/signed/**"}, Authorities: []policy.AuthorityConfig{{Name: "ci", Key: policy.KeyConfig{Data: pem}}}},
		{Name: "static", Images: []string{"docker.io/static/**"}, Authorities: []policy.AuthorityConfig{{Name: "ok", Static: policy.StaticPass}}},
		{Name: "off", Images: []string{"docker.io/off/**"}, Mode: policy.ModeOff, Authorities: []policy.AuthorityConfig{{Name: "ci", Key: policy.KeyConfig{Data: pem},
			Attestations: []policy.AttestationConfig{{Name: "sbom", PredicateType: "spdxjson"}}}}},
	}})
	e := policy.NewEngine(set, verify.New(), newCache(t))
	for image, want := range map[string][2]bool{
		"docker.io/attested/app": {true, true},
		"docker.io/own/app":      {true, true},
		"docker.io/signed/app":   {true, false},
		"docker.io/static/app":   {false, false},
		"docker.io/off/app":      {false, false},
		"docker.io/none/app":     {false, false},
	} {
		if got := [2]bool{e.WantsSignatures(image), e.WantsAttestations(image)}; got != want {
			t.Errorf("%s: WantsSignatures, WantsAttestations = %v, want %v", image, got, want)
		}
	}
}
