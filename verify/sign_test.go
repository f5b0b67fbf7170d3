package verify_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/verify/oci"
)

// testKey is a signing key and the verifier an authority would be configured with.
type testKey struct {
	signer   signature.Signer
	verifier signature.Verifier
}

func newKey(t testing.TB, kind string) testKey {
	t.Helper()
	var (
		s   signature.SignerVerifier
		v   signature.Verifier
		err error
	)
	switch kind {
	case "p256", "p384":
		curve, h := elliptic.P256(), crypto.SHA256
		if kind == "p384" {
			curve, h = elliptic.P384(), crypto.SHA384
		}
		priv, gerr := ecdsa.GenerateKey(curve, rand.Reader)
		if gerr != nil {
			t.Fatal(gerr)
		}
		s, err = signature.LoadECDSASignerVerifier(priv, h)
	case "rsa":
		priv, gerr := rsa.GenerateKey(rand.Reader, 2048)
		if gerr != nil {
			t.Fatal(gerr)
		}
		s, err = signature.LoadRSAPKCS1v15SignerVerifier(priv, crypto.SHA256)
	case "ed25519", "ed25519ph":
		_, priv, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			t.Fatal(gerr)
		}
		if kind == "ed25519" {
			s, err = signature.LoadED25519SignerVerifier(priv)
		} else {
			s, err = signature.LoadED25519phSignerVerifier(priv)
			if err == nil {
				// The authority holds the plain Ed25519 verifier, as a PEM key loads.
				v, err = signature.LoadED25519Verifier(priv.Public().(ed25519.PublicKey))
			}
		}
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	if v == nil {
		v = s
	}
	return testKey{signer: s, verifier: v}
}

func (k testKey) sign(t testing.TB, msg []byte) []byte {
	t.Helper()
	sig, err := k.signer.SignMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// keyID is "sha256:<hex>" of the PKIX DER public key, as AuthorityResult.Signer shows it.
func (k testKey) keyID(t testing.TB) string {
	t.Helper()
	sum := k.pkixSum(t)
	return "key sha256:" + hex.EncodeToString(sum[:])
}

func (k testKey) pkixSum(t testing.TB) [32]byte {
	pub, err := k.verifier.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(der)
}

// simpleSigning is the cosign legacy payload for d with optional annotations.
func simpleSigning(d digest.Digest, optional string) []byte {
	if optional == "" {
		optional = "null"
	}
	return fmt.Appendf(nil, `{"critical":{"identity":{"docker-reference":"example.test/app"},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":%s}`, d, optional)
}

// legacyLayer is one layer of a ".sig" manifest.
type legacyLayer struct {
	payload []byte
	// sig is the annotation value; nil means none.
	sig *string
}

func signedLayer(t testing.TB, k testKey, payload []byte) legacyLayer {
	s := base64.StdEncoding.EncodeToString(k.sign(t, payload))
	return legacyLayer{payload: payload, sig: &s}
}

// pushLegacy writes the ".sig" manifest of d in repo as cosign does and returns its bytes.
func pushLegacy(t testing.TB, host, repo string, d digest.Digest, layers ...legacyLayer) []byte {
	t.Helper()
	cfg := pushBlob(t, host, repo, "application/vnd.oci.image.config.v1+json",
		[]byte(`{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":[]},"config":{}}`))
	m := ocispec.Manifest{MediaType: oci.MediaTypeOCIManifest, Config: cfg}
	m.SchemaVersion = 2
	for _, l := range layers {
		desc := pushBlob(t, host, repo, cosign.MediaTypeSimpleSigning, l.payload)
		if l.sig != nil {
			desc.Annotations = map[string]string{cosign.AnnotationSignature: *l.sig}
		}
		m.Layers = append(m.Layers, desc)
	}
	b := mustJSON(t, m)
	putManifest(t, host, repo, d.Algorithm().String()+"-"+d.Encoded()+".sig", oci.MediaTypeOCIManifest, b)
	return b
}

// statement is a cosign v3 signing statement for d.
func statement(d digest.Digest, predicateType, annotations string) []byte {
	if annotations == "" {
		annotations = "null"
	}
	return fmt.Appendf(nil, `{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":%q},"annotations":%s}],"predicateType":%q,"predicate":{}}`,
		d.Encoded(), annotations, predicateType)
}

// dsseBundle signs payload as a DSSE in-toto envelope and wraps it in a v0.3 bundle with a
// public key hint, as cosign v3 does without a transparency log.
func dsseBundle(t testing.TB, k testKey, payload []byte) []byte {
	t.Helper()
	const pt = "application/vnd.in-toto+json"
	pae := fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(pt), pt, len(payload), payload)
	sum := k.pkixSum(t)
	return mustJSON(t, map[string]any{
		"mediaType": cosign.MediaTypeSigstoreBundle,
		"verificationMaterial": map[string]any{
			"publicKey": map[string]any{"hint": base64.StdEncoding.EncodeToString(sum[:])},
		},
		"dsseEnvelope": map[string]any{
			"payload":     base64.StdEncoding.EncodeToString(payload),
			"payloadType": pt,
			"signatures":  []any{map[string]any{"sig": base64.StdEncoding.EncodeToString(k.sign(t, pae))}},
		},
	})
}

// messageBundle is a v0.3 bundle with a bare message signature over the manifest bytes.
func messageBundle(t testing.TB, k testKey, manifest []byte) []byte {
	t.Helper()
	sum := k.pkixSum(t)
	md := sha256.Sum256(manifest)
	return mustJSON(t, map[string]any{
		"mediaType": cosign.MediaTypeSigstoreBundle,
		"verificationMaterial": map[string]any{
			"publicKey": map[string]any{"hint": base64.StdEncoding.EncodeToString(sum[:])},
		},
		"messageSignature": map[string]any{
			"messageDigest": map[string]any{"algorithm": "SHA2_256", "digest": base64.StdEncoding.EncodeToString(md[:])},
			"signature":     base64.StdEncoding.EncodeToString(k.sign(t, manifest)),
		},
	})
}

// bundleManifest is the referrer manifest cosign v3 writes around a bundle blob.
func bundleManifest(t testing.TB, subject digest.Digest, bundle ocispec.Descriptor) []byte {
	t.Helper()
	return mustJSON(t, map[string]any{
		"schemaVersion": 2,
		"mediaType":     oci.MediaTypeOCIManifest,
		"artifactType":  cosign.MediaTypeSigstoreBundle,
		"config": map[string]any{
			"mediaType": oci.MediaTypeEmptyJSON, "size": 2,
			"digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
		},
		"layers":      []any{bundle},
		"annotations": map[string]string{cosign.AnnotationBundleContent: cosign.BundleContentDSSE},
		"subject": map[string]any{
			"mediaType": oci.MediaTypeOCIManifest, "size": 100, "digest": subject,
		},
	})
}

// pushBundle pushes bundle as a referrer of d (go-containerregistry maintains the referrers
// tag schema index when the registry has no referrers API) and returns the manifest digest.
func pushBundle(t testing.TB, host, repo string, d digest.Digest, bundle []byte) digest.Digest {
	t.Helper()
	pushBlob(t, host, repo, oci.MediaTypeEmptyJSON, []byte("{}"))
	desc := pushBlob(t, host, repo, cosign.MediaTypeSigstoreBundle, bundle)
	return putManifest(t, host, repo, "", oci.MediaTypeOCIManifest, bundleManifest(t, d, desc))
}
