package verify_test

import (
	"context"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/verify"
)

// FuzzKeylessBundle feeds mutated keyless bundles to a keyless authority: whatever the
// bytes, Verify must not panic and a refusal must say why.
func FuzzKeylessBundle(f *testing.F) {
	w := newKeylessWorld(f)
	good := w.bundleJSON(f, w.attest(f, alice, nil), bundleOptions{})
	f.Add(good)
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"certificate":{"rawBytes":"AAAA"}},"dsseEnvelope":{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"AA=="}]}}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"x509CertificateChain":{"certificates":[]}}}`))
	f.Add([]byte(`{}`))
	a := w.authority(exact(alice, issuer))
	f.Fuzz(func(t *testing.T, b []byte) {
		fw := &keylessWorld{vs: w.vs, reg: &memRegistry{manifests: map[string][]byte{}, blobs: map[digest.Digest][]byte{}}, d: w.d}
		fw.pushBundle(b)
		res, err := verify.New().Verify(context.Background(), fw.reg, verify.Subject{Repository: "app", Digest: fw.d}, []verify.Authority{a})
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if r := res.Authorities[0]; !r.Verified && r.Reason == "" {
			t.Errorf("refused without a reason")
		}
	})
}

// FuzzKeylessLegacy feeds arbitrary certificate, chain, Rekor bundle and timestamp
// annotations beside a real keyless signature: no panic, and nothing but the genuine
// annotations verifies.
func FuzzKeylessLegacy(f *testing.F) {
	f.Add("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "", `{"SignedEntryTimestamp":"AA==","Payload":{"body":"e30=","integratedTime":1,"logIndex":1,"logID":"00"}}`, `{"SignedRFC3161Timestamp":"AA=="}`)
	f.Add("", "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", "{", "[]")
	f.Add("x", "y", `{"Payload":{"body":"!!"}}`, `{"SignedRFC3161Timestamp":""}`)
	w := newKeylessWorld(f)
	a := w.authority(exact(alice, issuer))
	payload := simpleSigning(w.d, "")
	f.Fuzz(func(t *testing.T, cert, chain, rekorBundle, timestamp string) {
		fw := &keylessWorld{vs: w.vs, reg: &memRegistry{manifests: map[string][]byte{}, blobs: map[digest.Digest][]byte{}}, d: w.d}
		fw.pushLegacyLayer(payload, map[string]string{
			cosign.AnnotationSignature:        "MEUCIQ==",
			cosign.AnnotationCertificate:      cert,
			cosign.AnnotationChain:            chain,
			cosign.AnnotationRekorBundle:      rekorBundle,
			cosign.AnnotationRFC3161Timestamp: timestamp,
		})
		res, err := verify.New().Verify(context.Background(), fw.reg, verify.Subject{Repository: "app", Digest: fw.d}, []verify.Authority{a})
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		r := res.Authorities[0]
		if r.Verified {
			t.Fatalf("verified a signature with forged annotations by %s", r.Signer)
		}
		if r.Reason == "" {
			t.Error("refused without a reason")
		}
	})
}
