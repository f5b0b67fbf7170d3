package verify_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
)

const provenance = "https://slsa.dev/provenance/v1"

// attWorld is an in-memory registry holding image D's signatures and attestations.
type attWorld struct {
	reg          *memRegistry
	d, other     digest.Digest
	key, wrong   testKey
	legacyLayers []ocispec.Descriptor
}

func newAttWorld(t *testing.T) *attWorld {
	return &attWorld{
		reg:   &memRegistry{manifests: map[string][]byte{}, blobs: map[digest.Digest][]byte{}},
		d:     digest.FromString("image D"),
		other: digest.FromString("image E"),
		key:   newKey(t, "p256"),
		wrong: newKey(t, "p256"),
	}
}

// envelope signs payload with k as a DSSE in-toto envelope (go-securesystemslib's PAE).
func envelope(t testing.TB, k testKey, payload []byte) []byte {
	t.Helper()
	return mustJSON(t, dsse.Envelope{
		PayloadType: cosign.PayloadTypeInToto,
		Payload:     base64.StdEncoding.EncodeToString(payload),
		Signatures:  []dsse.Signature{{Sig: base64.StdEncoding.EncodeToString(k.sign(t, dsse.PAE(cosign.PayloadTypeInToto, payload)))}},
	})
}

// pushAtt adds a layer holding env to D's legacy ".att" manifest, as cosign attest
// --new-bundle-format=false writes it.
func (w *attWorld) pushAtt(env []byte, predicateType string) {
	w.legacyLayers = append(w.legacyLayers, ocispec.Descriptor{
		MediaType: cosign.MediaTypeDSSEEnvelope, Digest: w.reg.addBlob(env), Size: int64(len(env)),
		Annotations: map[string]string{"predicateType": predicateType},
	})
	man, _ := json.Marshal(ocispec.Manifest{MediaType: oci.MediaTypeOCIManifest, Layers: w.legacyLayers})
	w.reg.manifests[cosign.AttachmentTag(w.d, cosign.SuffixAttestation)] = man
}

// pushReferrer adds bundle b as a referrer of D, with predicateType as the manifest's hint.
func (w *attWorld) pushReferrer(b []byte, predicateType string) {
	bd := w.reg.addBlob(b)
	bm, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": oci.MediaTypeOCIManifest, "artifactType": cosign.MediaTypeSigstoreBundle,
		"config":      map[string]any{"mediaType": oci.MediaTypeEmptyJSON, "size": 2, "digest": digest.FromString("{}")},
		"layers":      []any{ocispec.Descriptor{MediaType: cosign.MediaTypeSigstoreBundle, Digest: bd, Size: int64(len(b))}},
		"annotations": map[string]string{cosign.AnnotationBundlePredicateType: predicateType},
		"subject":     map[string]any{"mediaType": oci.MediaTypeOCIManifest, "size": 100, "digest": w.d},
	})
	bmd := digest.FromBytes(bm)
	w.reg.manifests[bmd.String()] = bm
	w.reg.referrers = append(w.reg.referrers, ocispec.Descriptor{MediaType: oci.MediaTypeOCIManifest, Digest: bmd, Size: int64(len(bm))})
}

// countingRegistry counts the manifests fetched by reference.
type countingRegistry struct {
	verify.Registry
	mu   sync.Mutex
	refs []string
}

func (c *countingRegistry) Manifest(ctx context.Context, repo, ref string) (oci.Manifest, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refs = append(c.refs, ref)
	return c.Registry.Manifest(ctx, repo, ref)
}

func TestAttestations(t *testing.T) {
	type result struct {
		verified     bool     // the authority's signature requirement
		attestations []string // predicate types verified
		reason       string   // a substring of some examined attestation's reason
	}
	tests := []struct {
		name  string
		want  []string // predicate types wanted from the authority
		setup func(t *testing.T, w *attWorld)
		res   result
	}{
		{
			name: "legacy .att by the key", want: []string{provenance},
			setup: func(t *testing.T, w *attWorld) {
				w.pushAtt(envelope(t, w.key, statement(w.d, provenance, "")), provenance)
			},
			res: result{attestations: []string{provenance}},
		},
		{
			name: "bundle by the key", want: []string{provenance},
			setup: func(t *testing.T, w *attWorld) {
				w.pushReferrer(dsseBundle(t, w.key, statement(w.d, provenance, "")), provenance)
			},
			res: result{attestations: []string{provenance}},
		},
		{
			name: "both formats and a signature", want: []string{provenance, "https://spdx.dev/Document"},
			setup: func(t *testing.T, w *attWorld) {
				w.pushAtt(envelope(t, w.key, statement(w.d, provenance, "")), provenance)
				w.pushReferrer(dsseBundle(t, w.key, statement(w.d, "https://spdx.dev/Document", "")), "https://spdx.dev/Document")
				w.pushReferrer(dsseBundle(t, w.key, statement(w.d, cosign.PredicateTypeSign, "")), cosign.PredicateTypeSign)
			},
			res: result{verified: true, attestations: []string{provenance, "https://spdx.dev/Document"}},
		},
		{
			name: "legacy .att by another key", want: []string{provenance},
			setup: func(t *testing.T, w *attWorld) {
				w.pushAtt(envelope(t, w.wrong, statement(w.d, provenance, "")), provenance)
			},
			res: result{reason: "wrong key"},
		},
		{
			name: "bundle by another key", want: []string{provenance},
			setup: func(t *testing.T, w *attWorld) {
				w.pushReferrer(dsseBundle(t, w.wrong, statement(w.d, provenance, "")), provenance)
			},
			res: result{reason: "wrong key"},
		},
		{
			name: "legacy .att about another digest", want: []string{provenance},
			setup: func(t *testing.T, w *attWorld) {
				w.pushAtt(envelope(t, w.key, statement(w.other, provenance, "")), provenance)
			},
			res: result{reason: "statement subject mismatch: signed " + w0(digest.FromString("image E"))},
		},
		{
			name: "bundle about another digest", want: []string{provenance},
			setup: func(t *testing.T, w *attWorld) {
				w.pushReferrer(dsseBundle(t, w.key, statement(w.other, provenance, "")), provenance)
			},
			res: result{reason: "statement subject mismatch"},
		},
		{
			name: "a signature is not an attestation", want: []string{provenance},
			setup: func(t *testing.T, w *attWorld) {
				w.pushReferrer(dsseBundle(t, w.key, statement(w.d, cosign.PredicateTypeSign, "")), provenance) // the hint lies
				pushLegacyMem(t, w, signedLayer(t, w.key, simpleSigning(w.d, "")))
			},
			res: result{verified: true},
		},
		{
			name: "a signing statement in .att is not an attestation", want: []string{provenance},
			setup: func(t *testing.T, w *attWorld) {
				w.pushAtt(envelope(t, w.key, statement(w.d, cosign.PredicateTypeSign, "")), provenance)
			},
			res: result{reason: "a cosign signature statement, not an attestation"},
		},
		{
			name: "an attestation is not a signature", want: nil,
			setup: func(t *testing.T, w *attWorld) {
				w.pushReferrer(dsseBundle(t, w.key, statement(w.d, provenance, "")), provenance)
			},
			res: result{},
		},
		{
			name: "type not wanted", want: []string{"https://spdx.dev/Document"},
			setup: func(t *testing.T, w *attWorld) {
				w.pushAtt(envelope(t, w.key, statement(w.d, provenance, "")), provenance)
			},
			res: result{reason: "predicate type not required from this authority"},
		},
		{
			name: "envelope of two signatures", want: []string{provenance},
			setup: func(t *testing.T, w *attWorld) {
				var env dsse.Envelope
				_ = json.Unmarshal(envelope(t, w.key, statement(w.d, provenance, "")), &env)
				env.Signatures = append(env.Signatures, env.Signatures[0])
				w.pushAtt(mustJSON(t, env), provenance)
			},
			res: result{reason: "envelope has 2 signatures, want 1"},
		},
		{
			name: "statement read strictly", want: []string{provenance},
			setup: func(t *testing.T, w *attWorld) {
				st := strings.Replace(string(statement(w.d, provenance, "")), `"predicateType"`, `"predicateType":"x","PredicateType"`, 1)
				w.pushAtt(envelope(t, w.key, []byte(st)), provenance)
			},
			res: result{reason: "invalid statement"},
		},
		{
			name: "envelope not in-toto", want: []string{provenance},
			setup: func(t *testing.T, w *attWorld) {
				w.pushAtt(mustJSON(t, dsse.Envelope{PayloadType: "text/plain", Payload: "eA=="}), provenance)
			},
			res: result{reason: `envelope payload type "text/plain" is not an in-toto statement`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newAttWorld(t)
			tt.setup(t, w)
			reg := &countingRegistry{Registry: w.reg}
			a := verify.Authority{Name: "ci", Key: w.key.verifier, Attestations: tt.want}
			res, err := verify.New().Verify(context.Background(), reg, verify.Subject{Repository: "app", Digest: w.d}, []verify.Authority{a})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			ar := res.Authorities[0]
			if ar.Verified != tt.res.verified {
				t.Errorf("Verified = %v (%s), want %v", ar.Verified, ar.Reason, tt.res.verified)
			}
			var got []string
			for _, at := range ar.Attestations {
				got = append(got, at.PredicateType)
				if at.Signer != w.key.keyID(t) {
					t.Errorf("attestation signer = %q, want %q", at.Signer, w.key.keyID(t))
				}
				if !strings.Contains(string(at.Statement), w.d.Encoded()) {
					t.Errorf("attestation statement %s does not name D", at.Statement)
				}
			}
			if !slices.Equal(got, tt.res.attestations) {
				t.Errorf("verified attestations = %q, want %q; examined %+v", got, tt.res.attestations, ar.Examined)
			}
			var reasons []string
			counted := 0
			for _, e := range ar.Examined {
				if e.Kind == verify.KindAttestation {
					reasons = append(reasons, e.Reason)
					if e.Counted {
						counted++
					}
				}
			}
			if counted != len(tt.res.attestations) {
				t.Errorf("examined attestations counted = %d, want %d", counted, len(tt.res.attestations))
			}
			if tt.res.reason != "" && !slices.ContainsFunc(reasons, func(r string) bool { return strings.Contains(r, tt.res.reason) }) {
				t.Errorf("attestation reasons %q, want one containing %q", reasons, tt.res.reason)
			}
			// The .att tag is read only when attestations are wanted.
			attTag := cosign.AttachmentTag(w.d, cosign.SuffixAttestation)
			if got, want := slices.Contains(reg.refs, attTag), len(tt.want) > 0; got != want {
				t.Errorf(".att fetched = %v, want %v (fetched %q)", got, want, reg.refs)
			}
		})
	}
}

// w0 abbreviates a digest as reasons do.
func w0(d digest.Digest) string { return "sha256:" + d.Encoded()[:12] + "…" }

// pushLegacyMem stores D's legacy ".sig" manifest with layers in w's registry.
func pushLegacyMem(t *testing.T, w *attWorld, layers ...legacyLayer) {
	t.Helper()
	m := ocispec.Manifest{MediaType: oci.MediaTypeOCIManifest}
	for _, l := range layers {
		desc := ocispec.Descriptor{MediaType: cosign.MediaTypeSimpleSigning, Digest: w.reg.addBlob(l.payload), Size: int64(len(l.payload))}
		if l.sig != nil {
			desc.Annotations = map[string]string{cosign.AnnotationSignature: *l.sig}
		}
		m.Layers = append(m.Layers, desc)
	}
	w.reg.manifests[cosign.SignatureTag(w.d)] = mustJSON(t, m)
}

// TestAttestationLookupFailure: a failed ".att" lookup is an error (no verdict) even when the
// authority's signature verified, since the attestation it wants may be what failed.
func TestAttestationLookupFailure(t *testing.T) {
	w := newAttWorld(t)
	pushLegacyMem(t, w, signedLayer(t, w.key, simpleSigning(w.d, "")))
	attTag := cosign.AttachmentTag(w.d, cosign.SuffixAttestation)
	reg := &faultRegistry{Registry: w.reg, manifest: func(ref string) error {
		if ref == attTag {
			return fmt.Errorf("upstream 503")
		}
		return nil
	}}
	a := verify.Authority{Name: "ci", Key: w.key.verifier, Attestations: []string{provenance}}
	res, err := verify.New().Verify(context.Background(), reg, verify.Subject{Repository: "app", Digest: w.d}, []verify.Authority{a})
	if err == nil {
		t.Fatalf("Verify: no error, want the failed .att lookup; result %+v", res)
	}
	if !res.Authorities[0].Verified {
		t.Errorf("signature not verified: %s", res.Authorities[0].Reason)
	}
	// Without attestations wanted, the same failure is not looked up at all.
	a.Attestations = nil
	if _, err := verify.New().Verify(context.Background(), reg, verify.Subject{Repository: "app", Digest: w.d}, []verify.Authority{a}); err != nil {
		t.Errorf("Verify without attestations: %v", err)
	}
}

// TestKeylessAttestation: attestations by a certificate go through the keyless checks.
func TestKeylessAttestation(t *testing.T) {
	for _, tt := range []struct {
		name, signer string
		stmt         func(w *keylessWorld) []byte
		want         bool
		reason       string
	}{
		{name: "alice", signer: alice, stmt: func(w *keylessWorld) []byte { return statement(w.d, provenance, "") }, want: true},
		{name: "mallory", signer: "mallory@example.com", stmt: func(w *keylessWorld) []byte { return statement(w.d, provenance, "") }, reason: "subject mallory@example.com is not " + alice},
		{name: "another digest", signer: alice, stmt: func(w *keylessWorld) []byte { return statement(digest.FromString("x"), provenance, "") }, reason: "signed another artifact"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newKeylessWorld(t)
			w.pushBundle(w.bundleJSON(t, w.attest(t, tt.signer, tt.stmt(w)), bundleOptions{}))
			a := w.authority(exact(alice, issuer))
			a.Attestations = []string{provenance}
			res, _ := verify.New().Verify(context.Background(), w.reg, verify.Subject{Repository: "app", Digest: w.d}, []verify.Authority{a})
			ar := res.Authorities[0]
			if got := len(ar.Attestations) == 1; got != tt.want {
				t.Fatalf("attestation verified = %v, want %v; examined %+v", got, tt.want, ar.Examined)
			}
			if ar.Verified {
				t.Errorf("an attestation satisfied the signature requirement")
			}
			if tt.want && !strings.HasPrefix(ar.Attestations[0].Signer, alice) {
				t.Errorf("signer %q, want alice's identity", ar.Attestations[0].Signer)
			}
			if !tt.want && !strings.Contains(ar.Examined[0].Reason, tt.reason) {
				t.Errorf("reason %q, want it to contain %q", ar.Examined[0].Reason, tt.reason)
			}
		})
	}
}

// FuzzLegacyAttestation feeds hostile bytes as the envelope of a ".att" layer: Verify never
// panics or errors, and an attestation counts only when its statement names D.
func FuzzLegacyAttestation(f *testing.F) {
	key := newKey(f, "p256")
	d := digest.FromString("image D")
	f.Add(envelope(f, key, statement(d, provenance, "")))
	f.Add(envelope(f, key, statement(digest.FromString("image E"), provenance, "")))
	f.Add(envelope(f, key, statement(d, cosign.PredicateTypeSign, "")))
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":""}]}`))
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"!!","signatures":[]}`))
	f.Fuzz(func(t *testing.T, env []byte) {
		w := &attWorld{reg: &memRegistry{manifests: map[string][]byte{}, blobs: map[digest.Digest][]byte{}}, d: d, key: key}
		w.pushAtt(env, provenance)
		a := verify.Authority{Name: "ci", Key: key.verifier, Attestations: []string{provenance}}
		res, err := verify.New().Verify(context.Background(), w.reg, verify.Subject{Repository: "app", Digest: d}, []verify.Authority{a})
		if err != nil && !strings.Contains(err.Error(), "look up") {
			t.Fatalf("Verify: %v", err)
		}
		for _, at := range res.Authorities[0].Attestations {
			if !strings.Contains(string(at.Statement), d.Encoded()) || at.PredicateType != provenance {
				t.Fatalf("counted an attestation about something else: %s", at.Statement)
			}
		}
	})
}
