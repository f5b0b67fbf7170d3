package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/internal/testtool"
	"github.com/portcullis/portcullis/policy"
	upstreamclient "github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
)

// cipWorld is an upstream registry holding images that the real cosign v3 signed and
// attested in various ways, and the means to decide on them with the policy engine and the
// real verifier, as serve does.
type cipWorld struct {
	up       *upstream
	client   *upstreamclient.Client
	trusted  signer
	pemBlock string            // the trusted public key, indented for a ClusterImagePolicy's key.data
	images   map[string]string // image case → repository; each holds one image at :v1
}

// cipImages are the image cases: how each image is signed or attested.
var cipImages = []string{"signed-bundle", "signed-legacy", "unsigned", "other-key", "spdx-attested", "slsa-good", "slsa-bad", "slsa-other-key"}

func newCIPWorld(t *testing.T) *cipWorld {
	t.Helper()
	cosign3 := tool(t, "cosign3")
	w := &cipWorld{up: newUpstream(t), trusted: cosignKeys(t, cosign3), images: map[string]string{}}
	other := cosignKeys(t, cosign3)
	pub, err := os.ReadFile(w.trusted.pub)
	if err != nil {
		t.Fatal(err)
	}
	w.pemBlock = "        " + strings.ReplaceAll(strings.TrimSpace(string(pub)), "\n", "\n        ")
	if w.client, err = upstreamclient.New(upstreamclient.Config{Name: upstreamName, URL: w.up.srv.URL, Insecure: true}, nil); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	predicate := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	spdx := predicate("sbom.spdx.json", `{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","name":"app","dataLicense":"CC0-1.0","documentNamespace":"https://example.com/app","creationInfo":{"created":"2026-01-01T00:00:00Z","creators":["Tool: test"]},"packages":[]}`)
	slsaGood := predicate("good.json", `{"builder":{"id":"https://ci.example.com/builder@v1"},"buildType":"https://example.com/build","invocation":{}}`)
	slsaBad := predicate("bad.json", `{"builder":{"id":"https://evil.example.com/builder"},"buildType":"https://example.com/build","invocation":{}}`)
	major := testtool.CosignMajor(t, cosign3)
	attest := func(k signer, image, typ, pred string) {
		testtool.Cosign(t, cosign3, nil, append(testtool.CosignAttestArgs(major, k.priv), "--type", typ, "--predicate", pred, image)...)
	}
	for _, c := range cipImages {
		repo := "cip/" + c
		d := w.up.pushImage(t, repo+":v1", testImage(t))
		img := w.up.host + "/" + repo + "@" + d.String()
		w.images[c] = repo
		switch c {
		case "signed-bundle":
			cosignSign(t, cosign3, w.trusted, img)
		case "signed-legacy":
			cosignSign(t, cosign3, w.trusted, img, "--new-bundle-format=false")
		case "other-key":
			cosignSign(t, cosign3, other, img)
		case "spdx-attested":
			attest(w.trusted, img, "spdxjson", spdx)
		case "slsa-good":
			attest(w.trusted, img, "slsaprovenance", slsaGood)
		case "slsa-bad":
			attest(w.trusted, img, "slsaprovenance", slsaBad)
		case "slsa-other-key":
			attest(other, img, "slsaprovenance", slsaGood)
		}
	}
	return w
}

// engine loads a portcullis configuration file whose policy part is policyYAML (and whose
// files are in dir) as serve does, and returns the engine it compiles to.
func (w *cipWorld) engine(t *testing.T, dir, policyYAML string) *policy.Engine {
	t.Helper()
	p := filepath.Join(dir, fmt.Sprintf("portcullis-%d.yaml", len(policyYAML)))
	yml := "storage: {driver: inmemory}\nupstreams:\n  - {name: " + upstreamName + ", url: " + w.up.srv.URL + ", insecure: true}\n" + policyYAML
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Compile(t.Context(), cfg.Policy())
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.NewMemory[policy.Decision]()
	if err != nil {
		t.Fatal(err)
	}
	return policy.NewEngine(set, verify.New(), c)
}

// decide admits the image of case c and returns the decision (a denial's reason in Reason)
// and whether it was a denial.
func (w *cipWorld) decide(t *testing.T, e *policy.Engine, c string) (policy.Decision, bool) {
	t.Helper()
	repo := w.images[c]
	m, err := w.client.Manifest(t.Context(), repo, "v1")
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.Admit(t.Context(), policy.Request{Image: upstreamName + "/" + repo, Repository: repo, Manifest: m, Registry: w.client})
	denied := false
	if err != nil {
		if _, ok := errors.AsType[*policy.DenyError](err); !ok {
			t.Fatalf("%s: no decision: %v", c, err)
		}
		denied = true
		d.Reason = err.Error()
	}
	return d, denied
}

// cipCase is a ClusterImagePolicy and the equivalent portcullis policy, and the image
// cases they admit (the others must be denied) and, of those, the ones admitted with a warning.
type cipCase struct {
	name, cip, inline string
	admitted, warned  []string
}

// check loads each case's ClusterImagePolicy from policyFiles and its inline policy (both
// after prelude, e.g. trust roots, in a configuration file in dir), runs both through the
// engine on every image case and requires the same decision, and the expected one.
func (w *cipWorld) check(t *testing.T, dir, prelude string, images []string, cases []cipCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, "cip.yaml"), []byte(tc.cip), 0o600); err != nil {
				t.Fatal(err)
			}
			fromCIP := w.engine(t, dir, prelude+"policyFiles: [cip.yaml]\n")
			inline := w.engine(t, dir, prelude+tc.inline)
			for _, c := range images {
				got, gotDenied := w.decide(t, fromCIP, c)
				want, wantDenied := w.decide(t, inline, c)
				got.DecidedAt = want.DecidedAt
				if fmt.Sprintf("%+v %t", got, gotDenied) != fmt.Sprintf("%+v %t", want, wantDenied) {
					t.Errorf("%s: the ClusterImagePolicy decides\n  %+v (denied %t)\nthe portcullis policy\n  %+v (denied %t)", c, got, gotDenied, want, wantDenied)
				}
				admitted, warned := slices.Contains(tc.admitted, c), slices.Contains(tc.warned, c)
				if got.Allowed != admitted || gotDenied == admitted || got.Warning != warned {
					t.Errorf("%s: allowed %t warning %t (%s), want allowed %t warning %t", c, got.Allowed, got.Warning, got.Reason, admitted, warned)
				}
			}
		})
	}
}

// keyBlocks returns the YAML of a key authority with the trusted key, as a
// ClusterImagePolicy's (its data inline) and as portcullis's (a file), each with extra lines.
func (w *cipWorld) keyBlocks() (cip, inline func(extra string) string) {
	return func(extra string) string {
			return "  - key:\n      data: |\n" + w.pemBlock + "\n" + extra
		}, func(extra string) string {
			return "      - name: authority-0\n        key: {path: " + w.trusted.pub + "}\n" + extra
		}
}

// TestClusterImagePolicyDecidesAsPortcullis loads the key, static and attestation examples of
// policy-controller's documentation (written out with a local key made by cosign
// generate-key-pair; in enforce and warn mode; attestations checked with CUE and Rego) from
// policyFiles, and the equivalent inline portcullis policy, and runs both through the policy
// engine with the real verifier against images the real cosign v3 signed (bundle and legacy
// formats, another key) and attested (SPDX; SLSA provenance by the right builder, a wrong one,
// another key): every decision must be the same, and the expected one.
func TestClusterImagePolicyDecidesAsPortcullis(t *testing.T) {
	w := newCIPWorld(t)
	key, inlineKey := w.keyBlocks()
	w.check(t, t.TempDir(), "", cipImages, []cipCase{{
		name: "key (docs: image-policy with a public key)",
		cip: `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: image-policy
spec:
  images:
  - glob: "**"
  authorities:
` + key("      hashAlgorithm: sha256\n"),
		inline: `policies:
  - name: ClusterImagePolicy/image-policy
    images: ["**"]
    authorities:
` + inlineKey(""),
		admitted: []string{"signed-bundle", "signed-legacy"},
	}, {
		name: "key in warn mode (docs: mode warn)",
		cip: `apiVersion: policy.sigstore.dev/v1alpha1
kind: ClusterImagePolicy
metadata:
  name: image-policy-warn
spec:
  mode: warn
  images:
  - glob: "` + upstreamName + `/cip/**"
  authorities:
` + key(""),
		inline: `policies:
  - name: ClusterImagePolicy/image-policy-warn
    mode: warn
    images: ["` + upstreamName + `/cip/**"]
    authorities:
` + inlineKey(""),
		admitted: cipImages,
		warned:   []string{"unsigned", "other-key", "spdx-attested", "slsa-good", "slsa-bad", "slsa-other-key"},
	}, {
		name: "static pass (docs: static authority)",
		cip: `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: allow-cip
spec:
  images:
  - glob: "` + upstreamName + `/cip/*"
  authorities:
  - static:
      action: pass
`,
		inline: `policies:
  - name: ClusterImagePolicy/allow-cip
    images: ["` + upstreamName + `/cip/*"]
    authorities: [{name: authority-0, static: pass}]
`,
		admitted: cipImages,
	}, {
		name: "static fail or key",
		cip: `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: deny-cip
spec:
  images:
  - glob: "` + upstreamName + `/cip/**"
  authorities:
  - name: never
    static:
      action: fail
` + key(""),
		inline: `policies:
  - name: ClusterImagePolicy/deny-cip
    images: ["` + upstreamName + `/cip/**"]
    authorities:
      - {name: never, static: fail}
      - name: authority-1
        key: {path: ` + w.trusted.pub + `}
`,
		admitted: []string{"signed-bundle", "signed-legacy"},
	}, {
		name: "attestation (docs sample: custom-key-attestation-sbom-spdxjson)",
		cip: `apiVersion: policy.sigstore.dev/v1alpha1
kind: ClusterImagePolicy
metadata:
  name: custom-key-attestation-sbom-spdxjson
spec:
  images:
  - glob: "**"
  authorities:
  - name: custom-key
    key:
      data: |
` + w.pemBlock + `
    attestations:
    - name: must-have-spdxjson
      predicateType: spdxjson
      policy:
        type: cue
        data: |
          predicateType: "https://spdx.dev/Document"
`,
		inline: `policies:
  - name: ClusterImagePolicy/custom-key-attestation-sbom-spdxjson
    images: ["**"]
    authorities:
      - name: custom-key
        key: {path: ` + w.trusted.pub + `}
        attestations:
          - name: must-have-spdxjson
            predicateType: spdxjson
            policy:
              cue: |
                predicateType: "https://spdx.dev/Document"
`,
		admitted: []string{"spdx-attested"},
	}, {
		name: "attestations with CUE and Rego (docs: attestations with policies) or a signature",
		cip: `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: provenance
spec:
  images:
  - glob: "` + upstreamName + `/cip/*"
  authorities:
  - name: keyatt
    key:
      data: |
` + w.pemBlock + `
    attestations:
    - name: builder-cue
      predicateType: slsaprovenance
      policy:
        type: cue
        data: |
          predicate: builder: id: "https://ci.example.com/builder@v1"
    - name: builder-rego
      predicateType: https://slsa.dev/provenance/v0.2
      policy:
        type: rego
        data: |
          package sigstore
          default isCompliant := false
          isCompliant := input.predicate.builder.id == "https://ci.example.com/builder@v1"
  - name: signed
    key:
      data: |
` + w.pemBlock + `
`,
		inline: `policies:
  - name: ClusterImagePolicy/provenance
    images: ["` + upstreamName + `/cip/*"]
    authorities:
      - name: keyatt
        key: {path: ` + w.trusted.pub + `}
        attestations:
          - name: builder-cue
            predicateType: slsaprovenance
            policy:
              cue: |
                predicate: builder: id: "https://ci.example.com/builder@v1"
          - name: builder-rego
            predicateType: https://slsa.dev/provenance/v0.2
            policy:
              rego: |
                package sigstore
                default isCompliant := false
                isCompliant := input.predicate.builder.id == "https://ci.example.com/builder@v1"
      - name: signed
        key: {path: ` + w.trusted.pub + `}
`,
		admitted: []string{"signed-bundle", "signed-legacy", "slsa-good"},
	}})
}

// pushKeylessBundle stores, as cosign v3 does, a keyless signature of the image repo:v1 by
// subject: a sigstore bundle (a DSSE envelope of cosign's signing statement, the Fulcio
// certificate of vs and an RFC 3161 timestamp) in a referrer manifest, which the registry
// (without a referrers API) lists in the sha256-<hex> tag index.
func pushKeylessBundle(t *testing.T, up *upstream, vs *ca.VirtualSigstore, repo, subject, issuer string) {
	t.Helper()
	desc, err := remote.Head(up.ref(t, repo+":v1"))
	if err != nil {
		t.Fatal(err)
	}
	stmt := fmt.Appendf(nil, `{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":%q}}],"predicateType":%q,"predicate":{}}`,
		desc.Digest.Hex, cosign.PredicateTypeSign)
	e, err := vs.Attest(subject, issuer, stmt)
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := e.VerificationContent()
	sc, _ := e.SignatureContent()
	ts, _ := e.Timestamps()
	env := sc.EnvelopeContent().RawEnvelope()
	sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	b, err := protojson.Marshal(&protobundle.Bundle{
		MediaType: cosign.MediaTypeSigstoreBundle,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content:                   &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
			TimestampVerificationData: &protobundle.TimestampVerificationData{Rfc3161Timestamps: []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: ts[0]}}},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{Payload: stmt, PayloadType: env.PayloadType, Signatures: []*protodsse.Signature{{Sig: sig}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	repoRef := up.ref(t, repo+":v1").Context()
	bundleLayer := static.NewLayer(b, types.MediaType(cosign.MediaTypeSigstoreBundle))
	configLayer := static.NewLayer([]byte("{}"), types.MediaType(oci.MediaTypeEmptyJSON))
	for _, l := range []v1.Layer{bundleLayer, configLayer} {
		if err := remote.WriteLayer(repoRef, l); err != nil {
			t.Fatal(err)
		}
	}
	bd, _ := bundleLayer.Digest()
	man, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": oci.MediaTypeOCIManifest, "artifactType": cosign.MediaTypeSigstoreBundle,
		"config":  map[string]any{"mediaType": oci.MediaTypeEmptyJSON, "size": 2, "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
		"layers":  []any{map[string]any{"mediaType": cosign.MediaTypeSigstoreBundle, "digest": bd.String(), "size": len(b)}},
		"subject": map[string]any{"mediaType": desc.MediaType, "size": desc.Size, "digest": desc.Digest.String()},
	})
	md := sha256.Sum256(man)
	if err := remote.Put(repoRef.Digest("sha256:"+hex.EncodeToString(md[:])), rawManifest{man, types.OCIManifestSchema1}); err != nil {
		t.Fatal(err)
	}
}

// TestClusterImagePolicyKeylessDecidesAsPortcullis is the keyless example of
// policy-controller's documentation (identities with an issuer and a subject, or their
// regular expressions), with a local trust root (a sigstore-go virtual sigstore: Fulcio CA
// and timestamp authority) named by trustRootRef, against cosign v3 keyless bundles in a real
// registry: the ClusterImagePolicy and the equivalent portcullis policy decide alike.
func TestClusterImagePolicyKeylessDecidesAsPortcullis(t *testing.T) {
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), vs.CTLogs(), vs.TimestampingAuthorities(), vs.RekorLogs())
	if err != nil {
		t.Fatal(err)
	}
	trJSON, _ := tr.MarshalJSON()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "trusted_root.json"), trJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	const (
		issuer  = "https://token.actions.githubusercontent.com"
		release = "https://github.com/myorg/app/.github/workflows/release.yaml@refs/tags/v1.0.0"
	)
	w := &cipWorld{up: newUpstream(t), images: map[string]string{}}
	if w.client, err = upstreamclient.New(upstreamclient.Config{Name: upstreamName, URL: w.up.srv.URL, Insecure: true}, nil); err != nil {
		t.Fatal(err)
	}
	cases := []string{"release-workflow", "other-workflow", "other-issuer", "unsigned"}
	for _, c := range cases {
		repo := "keyless/" + c
		w.up.pushImage(t, repo+":v1", testImage(t))
		w.images[c] = repo
		switch c {
		case "release-workflow":
			pushKeylessBundle(t, w.up, vs, repo, release, issuer)
		case "other-workflow":
			pushKeylessBundle(t, w.up, vs, repo, "https://github.com/myorg/app/.github/workflows/test.yaml@refs/heads/main", issuer)
		case "other-issuer":
			pushKeylessBundle(t, w.up, vs, repo, release, "https://accounts.google.com")
		}
	}
	roots := "trustRoots: [{name: sigstore-local, trustedRootFile: trusted_root.json}]\n"
	w.check(t, dir, roots, cases, []cipCase{{
		name: "issuer and subject",
		cip: `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: image-is-signed-by-github-actions
spec:
  images:
  - glob: "` + upstreamName + `/keyless/**"
  authorities:
  - keyless:
      trustRootRef: sigstore-local
      insecureIgnoreSCT: true
      identities:
      - issuer: ` + issuer + `
        subject: "` + release + `"
    rfc3161timestamp:
      trustRootRef: sigstore-local
`,
		inline: `policies:
  - name: ClusterImagePolicy/image-is-signed-by-github-actions
    images: ["` + upstreamName + `/keyless/**"]
    authorities:
      - name: authority-0
        keyless:
          trustRoot: sigstore-local
          identities: [{issuer: "` + issuer + `", subject: "` + release + `"}]
        tlog: {threshold: 0}
        timestamps: {threshold: 1}
        ctlog: {threshold: 0}
`,
		admitted: []string{"release-workflow"},
	}, {
		name: "regular expressions",
		cip: `apiVersion: policy.sigstore.dev/v1alpha1
kind: ClusterImagePolicy
metadata:
  name: any-myorg-workflow
spec:
  images:
  - glob: "` + upstreamName + `/keyless/*"
  authorities:
  - name: myorg
    keyless:
      trustRootRef: sigstore-local
      insecureIgnoreSCT: true
      identities:
      - issuerRegExp: "^https://token\\.actions\\.githubusercontent\\.com$"
        subjectRegExp: "^https://github\\.com/myorg/.*$"
    rfc3161timestamp:
      trustRootRef: sigstore-local
`,
		inline: `policies:
  - name: ClusterImagePolicy/any-myorg-workflow
    images: ["` + upstreamName + `/keyless/*"]
    authorities:
      - name: myorg
        keyless:
          trustRoot: sigstore-local
          identities: [{issuerRegExp: "^https://token\\.actions\\.githubusercontent\\.com$", subjectRegExp: "^https://github\\.com/myorg/.*$"}]
        tlog: {threshold: 0}
        timestamps: {threshold: 1}
        ctlog: {threshold: 0}
`,
		admitted: []string{"release-workflow", "other-workflow"},
	}})
}

// TestClusterImagePolicyThroughTheProxy serves with a ClusterImagePolicy from policyFiles,
// built as serve builds it: crane pulls through portcullis the image cosign v3 signed with the
// policy's key, and is refused the unsigned one, the denial naming the converted policy.
func TestClusterImagePolicyThroughTheProxy(t *testing.T) {
	up := newUpstream(t)
	cosign3, crane := tool(t, "cosign3"), tool(t, "crane")
	k := cosignKeys(t, cosign3)
	pub, err := os.ReadFile(k.pub)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "cip.yaml")
	doc := `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: image-policy
spec:
  images:
  - glob: "` + upstreamName + `/team/**"
  authorities:
  - key:
      data: |
        ` + strings.ReplaceAll(strings.TrimSpace(string(pub)), "\n", "\n        ") + "\n"
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	px := startProxy(t, up, "policyFiles: ["+file+"]\ndefaultPolicy: allow\n")
	signed := up.pushImage(t, "team/signed:v1", testImage(t))
	cosignSign(t, cosign3, k, up.host+"/team/signed@"+signed.String())
	up.pushImage(t, "team/unsigned:v1", testImage(t))
	up.pushImage(t, "other/unsigned:v1", testImage(t))

	for _, tc := range []struct {
		repo     string
		admitted bool
	}{{"team/signed", true}, {"team/unsigned", false}, {"other/unsigned", true}} {
		out, err := testtool.Run(t, "", crane, nil, "pull", "--insecure", "--format", "oci", px.host+"/"+tc.repo+":v1", filepath.Join(t.TempDir(), "out"))
		switch {
		case tc.admitted && err != nil:
			t.Errorf("%s: not admitted: %v\n%s", tc.repo, err, out)
		case !tc.admitted && err == nil:
			t.Errorf("%s: admitted, want DENIED", tc.repo)
		case !tc.admitted && !strings.Contains(out, `denied by policy "ClusterImagePolicy/image-policy"`):
			t.Errorf("%s: the denial does not name the converted policy:\n%s", tc.repo, out)
		}
	}
}
