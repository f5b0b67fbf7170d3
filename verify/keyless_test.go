package verify_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
)

const (
	alice  = "alice@example.com"
	issuer = "https://accounts.example.com"
)

// keylessWorld is a virtual sigstore (Fulcio CA, Rekor, TSA in process), an in-memory
// registry and the digest D being verified.
type keylessWorld struct {
	vs  *ca.VirtualSigstore
	reg *memRegistry
	d   digest.Digest
}

func newKeylessWorld(t testing.TB) *keylessWorld {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	return &keylessWorld{
		vs:  vs,
		reg: &memRegistry{manifests: map[string][]byte{}, blobs: map[digest.Digest][]byte{}},
		d:   digest.FromString("the image manifest"),
	}
}

// authority is a keyless authority trusting w's virtual sigstore, with the thresholds set
// by f (default tlog 1, timestamps 0, ctlog 0: the virtual CA issues no SCTs).
func (w *keylessWorld) authority(ids []verify.Identity, f ...func(*verify.Keyless)) verify.Authority {
	k := &verify.Keyless{TrustRoot: "trust root test", Material: w.vs, Identities: ids, Tlog: 1}
	for _, fn := range f {
		fn(k)
	}
	return verify.Authority{Name: "keyless", Keyless: k}
}

func exact(subject, iss string) []verify.Identity {
	return []verify.Identity{{Subject: subject, Issuer: iss}}
}

// attest signs a cosign signing statement for D (or the given statement) as alice,
// with a Rekor v1 entry (inclusion proof and SET) and a TSA timestamp.
func (w *keylessWorld) attest(t testing.TB, subject string, stmt []byte) *ca.TestEntity {
	t.Helper()
	if stmt == nil {
		stmt = statement(w.d, cosign.PredicateTypeSign, "")
	}
	e, err := w.vs.AttestAtTime(subject, issuer, stmt, time.Now().Add(time.Minute), true)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// bundleOptions shape the bundle made from a test entity.
type bundleOptions struct {
	noTlog, noTimestamps bool
	tamper               func(*protorekor.TransparencyLogEntry)
	chain                []*x509.Certificate
}

// bundleJSON turns a virtual sigstore entity into the v0.3 bundle cosign v3 would push.
func (w *keylessWorld) bundleJSON(t testing.TB, e *ca.TestEntity, o bundleOptions) []byte {
	t.Helper()
	vc, err := e.VerificationContent()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := e.SignatureContent()
	if err != nil {
		t.Fatal(err)
	}
	env := sc.EnvelopeContent().RawEnvelope()
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	vm := &protobundle.VerificationMaterial{}
	if o.chain != nil {
		chain := &protocommon.X509CertificateChain{}
		for _, c := range append([]*x509.Certificate{vc.Certificate()}, o.chain...) {
			chain.Certificates = append(chain.Certificates, &protocommon.X509Certificate{RawBytes: c.Raw})
		}
		vm.Content = &protobundle.VerificationMaterial_X509CertificateChain{X509CertificateChain: chain}
	} else {
		vm.Content = &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}}
	}
	if !o.noTlog {
		entries, err := e.TlogEntries()
		if err != nil {
			t.Fatal(err)
		}
		for _, entry := range entries {
			tle := w.transparencyLogEntry(t, entry, "dsse")
			if o.tamper != nil {
				o.tamper(tle)
			}
			vm.TlogEntries = append(vm.TlogEntries, tle)
		}
	}
	if !o.noTimestamps {
		ts, err := e.Timestamps()
		if err != nil {
			t.Fatal(err)
		}
		vm.TimestampVerificationData = &protobundle.TimestampVerificationData{}
		for _, b := range ts {
			vm.TimestampVerificationData.Rfc3161Timestamps = append(vm.TimestampVerificationData.Rfc3161Timestamps, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: b})
		}
	}
	pb := &protobundle.Bundle{
		MediaType:            cosign.MediaTypeSigstoreBundle,
		VerificationMaterial: vm,
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: payload, PayloadType: env.PayloadType, Signatures: []*protodsse.Signature{{Sig: sig}},
		}},
	}
	b, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// transparencyLogEntry is entry as a bundle holds it: a Rekor v1 entry gets its kind and its
// signed entry timestamp (re-signed by the virtual Rekor, which tlog.Entry keeps private).
func (w *keylessWorld) transparencyLogEntry(t testing.TB, entry *tlog.Entry, kind string) *protorekor.TransparencyLogEntry {
	t.Helper()
	tle := proto.Clone(entry.TransparencyLogEntry()).(*protorekor.TransparencyLogEntry)
	if entry.IsRekorV2() {
		return tle
	}
	if tle.KindVersion == nil {
		tle.KindVersion = &protorekor.KindVersion{Kind: kind, Version: "0.0.1"}
	}
	set, err := w.vs.RekorSignPayload(tlog.RekorPayload{
		Body:           base64.StdEncoding.EncodeToString(tle.CanonicalizedBody),
		IntegratedTime: tle.IntegratedTime,
		LogIndex:       tle.LogIndex,
		LogID:          hex.EncodeToString(tle.LogId.KeyId),
	})
	if err != nil {
		t.Fatal(err)
	}
	tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
	return tle
}

// pushBundle stores b as a bundle referrer of D.
func (w *keylessWorld) pushBundle(b []byte) {
	bd := w.reg.addBlob(b)
	bm, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": oci.MediaTypeOCIManifest, "artifactType": cosign.MediaTypeSigstoreBundle,
		"config":  map[string]any{"mediaType": oci.MediaTypeEmptyJSON, "size": 2, "digest": digest.FromString("{}")},
		"layers":  []any{ocispec.Descriptor{MediaType: cosign.MediaTypeSigstoreBundle, Digest: bd, Size: int64(len(b))}},
		"subject": map[string]any{"mediaType": oci.MediaTypeOCIManifest, "size": 100, "digest": w.d},
	})
	bmd := digest.FromBytes(bm)
	w.reg.manifests[bmd.String()] = bm
	w.reg.referrers = append(w.reg.referrers, ocispec.Descriptor{MediaType: oci.MediaTypeOCIManifest, Digest: bmd, Size: int64(len(bm))})
}

// legacyOptions shape a legacy keyless layer.
type legacyOptions struct {
	noBundle, noTimestamp bool
	tamperSET             bool
	certPEM               string // replaces the certificate annotation when set
}

// pushLegacy signs D's simple signing payload as subject and stores it as cosign v2 does:
// a ".sig" layer with the certificate, chain, Rekor bundle and RFC 3161 annotations.
func (w *keylessWorld) pushLegacy(t *testing.T, subject string, o legacyOptions) {
	t.Helper()
	payload := simpleSigning(w.d, "")
	e, err := w.vs.SignAtTime(subject, issuer, payload, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := e.VerificationContent()
	sc, _ := e.SignatureContent()
	certPEM, _ := cryptoutils.MarshalCertificateToPEM(vc.Certificate())
	ann := map[string]string{
		cosign.AnnotationSignature:   base64.StdEncoding.EncodeToString(sc.MessageSignatureContent().Signature()),
		cosign.AnnotationCertificate: string(certPEM),
		cosign.AnnotationChain:       "",
	}
	if o.certPEM != "" {
		ann[cosign.AnnotationCertificate] = o.certPEM
	}
	if !o.noBundle {
		entries, _ := e.TlogEntries()
		tle := w.transparencyLogEntry(t, entries[0], "hashedrekord")
		set := tle.InclusionPromise.SignedEntryTimestamp
		if o.tamperSET {
			set = append([]byte(nil), set...)
			set[len(set)/2] ^= 0xff
		}
		rb, _ := json.Marshal(map[string]any{
			"SignedEntryTimestamp": set,
			"Payload": map[string]any{
				"body": base64.StdEncoding.EncodeToString(tle.CanonicalizedBody), "integratedTime": tle.IntegratedTime,
				"logIndex": tle.LogIndex, "logID": hex.EncodeToString(tle.LogId.KeyId),
			},
		})
		ann[cosign.AnnotationRekorBundle] = string(rb)
	}
	if !o.noTimestamp {
		ts, _ := e.Timestamps()
		tb, _ := json.Marshal(map[string]any{"SignedRFC3161Timestamp": ts[0]})
		ann[cosign.AnnotationRFC3161Timestamp] = string(tb)
	}
	w.pushLegacyLayer(payload, ann)
}

func (w *keylessWorld) pushLegacyLayer(payload []byte, ann map[string]string) {
	man, _ := json.Marshal(ocispec.Manifest{
		MediaType: oci.MediaTypeOCIManifest,
		Layers: []ocispec.Descriptor{{
			MediaType: cosign.MediaTypeSimpleSigning, Digest: w.reg.addBlob(payload), Size: int64(len(payload)), Annotations: ann,
		}},
	})
	w.reg.manifests[cosign.SignatureTag(w.d)] = man
}

func (w *keylessWorld) verify(t *testing.T, a verify.Authority) verify.AuthorityResult {
	t.Helper()
	res, err := verify.New().Verify(context.Background(), w.reg, verify.Subject{Repository: "app", Digest: w.d}, []verify.Authority{a})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return res.Authorities[0]
}

// mixedMaterial trusts cas for certificates and other's logs and timestamp authorities.
type mixedMaterial struct {
	root.TrustedMaterial
	cas []root.CertificateAuthority
}

func (m mixedMaterial) FulcioCertificateAuthorities() []root.CertificateAuthority { return m.cas }

// ownPKI is a bring-your-own CA: root, intermediate, and a leaf maker.
type ownPKI struct {
	root, inter       *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey
}

func newOwnPKI(t *testing.T) ownPKI {
	t.Helper()
	rc, rk, err := ca.GenerateRootCa()
	if err != nil {
		t.Fatal(err)
	}
	ic, ik, err := ca.GenerateFulcioIntermediate(rc, rk)
	if err != nil {
		t.Fatal(err)
	}
	return ownPKI{root: rc, inter: ic, rootKey: rk, interKey: ik}
}

// sign makes a bundle for stmt signed by a leaf of p for subject, valid from notBefore for
// ten minutes, with no log entry and no timestamp, the leaf and intermediate in the bundle.
func (p ownPKI) sign(t *testing.T, subject string, notBefore time.Time, stmt []byte) []byte {
	return p.signBy(t, p.inter, p.interKey, subject, notBefore, stmt)
}

// signBy is sign with the leaf issued by parent (the root: no intermediate in the chain).
func (p ownPKI) signBy(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, subject string, notBefore time.Time, stmt []byte) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.GenerateLeafCert(subject, "", notBefore, key, parent, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return p.bundleWith(t, parent, leaf, key, stmt)
}

// githubWorkflow signs stmt with a leaf of p's intermediate shaped like a Fulcio certificate
// for a GitHub Actions workflow: a URI SAN, the issuer extension and the workflow extensions.
func (p ownPKI) githubWorkflow(t *testing.T, repo, ref string, stmt []byte) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	san, _ := url.Parse("https://github.com/" + repo + "/.github/workflows/release.yml@" + ref)
	issuerDER, _ := asn1.MarshalWithParams(gha, "utf8")
	ext := func(n int, v []byte) pkix.Extension {
		return pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, n}, Value: v}
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(9 * time.Minute),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		URIs:            []*url.URL{san},
		ExtraExtensions: []pkix.Extension{ext(8, issuerDER), ext(5, []byte(repo)), ext(6, []byte(ref)), ext(2, []byte("push"))},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.inter, key.Public(), p.interKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return p.bundleWith(t, p.inter, leaf, key, stmt)
}

const gha = "https://token.actions.githubusercontent.com"

// bundleWith is the bundle of stmt signed with key, certified by leaf (issued by parent).
func (p ownPKI) bundleWith(t *testing.T, parent, leaf *x509.Certificate, key *ecdsa.PrivateKey, stmt []byte) []byte {
	t.Helper()
	const pt = "application/vnd.in-toto+json"
	pae := fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(pt), pt, len(stmt), stmt)
	sum := sha256.Sum256(pae)
	sig, err := key.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	chain := []*protocommon.X509Certificate{{RawBytes: leaf.Raw}}
	if parent != p.root {
		chain = append(chain, &protocommon.X509Certificate{RawBytes: parent.Raw})
	}
	pb := &protobundle.Bundle{
		MediaType: cosign.MediaTypeSigstoreBundle,
		VerificationMaterial: &protobundle.VerificationMaterial{Content: &protobundle.VerificationMaterial_X509CertificateChain{
			X509CertificateChain: &protocommon.X509CertificateChain{Certificates: chain},
		}},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: stmt, PayloadType: pt, Signatures: []*protodsse.Signature{{Sig: sig}},
		}},
	}
	b, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (p ownPKI) material() root.TrustedMaterial {
	return mixedMaterial{TrustedMaterial: &root.BaseTrustedMaterial{}, cas: []root.CertificateAuthority{&root.FulcioCertificateAuthority{Root: p.root}}}
}

func TestKeyless(t *testing.T) {
	krel := regexp.MustCompile(`^krel-(trust|staging)@k8s\.example$`)
	tests := []struct {
		name  string
		setup func(t *testing.T, w *keylessWorld) verify.Authority
		// want is "" for verified, else a substring of the reason.
		want string
		// signer, when set, must be in the verified signer.
		signer string
	}{
		{
			name: "bundle exact identity and issuer",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, alice, nil), bundleOptions{}))
				return w.authority(exact(alice, issuer))
			},
			signer: alice + " (issuer " + issuer + ")",
		},
		{
			name: "bundle regexp identity and issuer",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, "krel-trust@k8s.example", nil), bundleOptions{}))
				return w.authority([]verify.Identity{{SubjectRegExp: krel, IssuerRegExp: regexp.MustCompile(`^https://accounts\.example\.com$`)}})
			},
			signer: "krel-trust@k8s.example",
		},
		{
			name: "wrong subject exact",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, "mallory@example.com", nil), bundleOptions{}))
				return w.authority(exact(alice, issuer))
			},
			want: "mallory@example.com (issuer " + issuer + "): subject mallory@example.com is not " + alice,
		},
		{
			name: "wrong subject regexp",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, "krel-evil@k8s.example", nil), bundleOptions{}))
				return w.authority([]verify.Identity{{SubjectRegExp: krel, Issuer: issuer}})
			},
			want: `subject krel-evil@k8s.example does not match ^krel-(trust|staging)@k8s\.example$`,
		},
		{
			name: "wrong issuer exact",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, alice, nil), bundleOptions{}))
				return w.authority(exact(alice, "https://token.actions.githubusercontent.com"))
			},
			want: "issuer " + issuer + " is not https://token.actions.githubusercontent.com",
		},
		{
			name: "wrong issuer regexp",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, alice, nil), bundleOptions{}))
				return w.authority([]verify.Identity{{Subject: alice, IssuerRegExp: regexp.MustCompile(`^https://github\.com$`)}})
			},
			want: "issuer " + issuer + ` does not match ^https://github\.com$`,
		},
		{
			name: "any of several identities",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, alice, nil), bundleOptions{}))
				return w.authority([]verify.Identity{{Subject: "bob@example.com", Issuer: issuer}, {Subject: alice, Issuer: issuer}})
			},
		},
		{
			name: "none of several identities",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, alice, nil), bundleOptions{}))
				return w.authority([]verify.Identity{{Subject: "bob@example.com", Issuer: issuer}, {Subject: "carol@example.com", Issuer: issuer}})
			},
			want: "matches none of the 2 identities (first: subject alice@example.com is not bob@example.com)",
		},
		{
			name: "workflow extension mismatch",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, alice, nil), bundleOptions{}))
				return w.authority(exact(alice, issuer), func(k *verify.Keyless) { k.Extensions.Repository = "myorg/app" })
			},
			want: `GitHub workflow repository "" is not "myorg/app"`,
		},
		{
			name: "untrusted CA",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				other, err := ca.NewVirtualSigstore()
				if err != nil {
					t.Fatal(err)
				}
				w.pushBundle(w.bundleJSON(t, w.attest(t, alice, nil), bundleOptions{}))
				// The logs and TSA are trusted, the CA is another one.
				return w.authority(exact(alice, issuer), func(k *verify.Keyless) {
					k.TrustRoot = "trust root corp"
					k.Material = mixedMaterial{TrustedMaterial: w.vs, cas: other.FulcioCertificateAuthorities()}
				})
			},
			want: "certificate not issued by a CA of trust root corp",
		},
		{
			name: "certificate expired before the signing time proven",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				e, err := w.vs.AttestAtTime(alice, issuer, statement(w.d, cosign.PredicateTypeSign, ""), time.Now().Add(30*time.Minute), true)
				if err != nil {
					t.Fatal(err)
				}
				w.pushBundle(w.bundleJSON(t, e, bundleOptions{noTimestamps: true}))
				return w.authority(exact(alice, issuer))
			},
			want: "certificate expired before the signing time proven",
		},
		{
			name: "certificate expired with no proof of signing time",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				p := newOwnPKI(t)
				w.pushBundle(p.signBy(t, p.root, p.rootKey, alice, time.Now().Add(-time.Hour), statement(w.d, cosign.PredicateTypeSign, "")))
				return w.authority([]verify.Identity{{Subject: alice}}, func(k *verify.Keyless) {
					k.Material, k.Tlog = p.material(), 0
				})
			},
			want: "certificate expired (valid",
		},
		{
			name: "no Rekor entry",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, alice, nil), bundleOptions{noTlog: true}))
				return w.authority(exact(alice, issuer))
			},
			want: "no Rekor entry (tlog threshold 1)",
		},
		{
			name: "tampered Rekor entry",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, alice, nil), bundleOptions{tamper: func(tle *protorekor.TransparencyLogEntry) {
					tle.IntegratedTime += 60
				}}))
				return w.authority(exact(alice, issuer))
			},
			want: "Rekor entr",
		},
		{
			name: "TSA-only signature meets a timestamps threshold without a log",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, alice, nil), bundleOptions{noTlog: true}))
				return w.authority(exact(alice, issuer), func(k *verify.Keyless) { k.Tlog, k.Timestamps = 0, 1 })
			},
		},
		{
			name: "TSA threshold not met",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, alice, nil), bundleOptions{noTimestamps: true}))
				return w.authority(exact(alice, issuer), func(k *verify.Keyless) { k.Timestamps = 1 })
			},
			want: "0 RFC 3161 timestamps, 1 required",
		},
		{
			name: "TSA threshold above the timestamps present",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, alice, nil), bundleOptions{}))
				return w.authority(exact(alice, issuer), func(k *verify.Keyless) { k.Timestamps = 2 })
			},
			want: "1 RFC 3161 timestamps, 2 required",
		},
		{
			name: "missing SCT when required",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, alice, nil), bundleOptions{}))
				return w.authority(exact(alice, issuer), func(k *verify.Keyless) { k.CTLog = 1 })
			},
			want: "certificate has no SCT (ctlog threshold 1)",
		},
		{
			name: "Rekor v2 entry with a TSA timestamp",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				e, err := w.vs.AttestHashedRekordV2(alice, issuer, statement(w.d, cosign.PredicateTypeSign, ""))
				if err != nil {
					t.Fatal(err)
				}
				w.pushBundle(w.bundleJSON(t, e, bundleOptions{}))
				return w.authority(exact(alice, issuer))
			},
		},
		{
			name: "Rekor v2 entry without a timestamp proves no signing time",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				e, err := w.vs.AttestHashedRekordV2(alice, issuer, statement(w.d, cosign.PredicateTypeSign, ""))
				if err != nil {
					t.Fatal(err)
				}
				w.pushBundle(w.bundleJSON(t, e, bundleOptions{noTimestamps: true}))
				return w.authority(exact(alice, issuer))
			},
			want: "no proof of signing time: Rekor v2 entries carry no time",
		},
		{
			name: "attestation bundle never counts as a signature",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, alice, statement(w.d, "https://slsa.dev/provenance/v1", "")), bundleOptions{}))
				return w.authority(exact(alice, issuer))
			},
			want: "no signatures found; ignored 1 attestation(s) with predicate type https://slsa.dev/provenance/v1",
		},
		{
			name: "signature for another digest",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, alice, statement(digest.FromString("other"), cosign.PredicateTypeSign, "")), bundleOptions{}))
				return w.authority(exact(alice, issuer))
			},
			want: alice + " (issuer " + issuer + "): signed another artifact",
		},
		{
			name: "annotations match",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, alice, statement(w.d, cosign.PredicateTypeSign, `{"env":"prod"}`)), bundleOptions{}))
				a := w.authority(exact(alice, issuer))
				a.Annotations = map[string]string{"env": "prod"}
				return a
			},
		},
		{
			name: "annotations mismatch",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, alice, statement(w.d, cosign.PredicateTypeSign, `{"env":"dev"}`)), bundleOptions{}))
				a := w.authority(exact(alice, issuer))
				a.Annotations = map[string]string{"env": "prod"}
				return a
			},
			want: alice + ` (issuer ` + issuer + `): annotation "env" is "dev", want "prod"`,
		},
		{
			name: "legacy keyless annotations mismatch",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushLegacy(t, alice, legacyOptions{})
				a := w.authority(exact(alice, issuer))
				a.Annotations = map[string]string{"env": "prod"}
				return a
			},
			want: `annotation "env" missing`,
		},
		{
			name: "key authority refuses a certificate signature",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushBundle(w.bundleJSON(t, w.attest(t, alice, nil), bundleOptions{}))
				return verify.Authority{Name: "key", Key: newKey(t, "p256").verifier}
			},
			want: "signed with a certificate, not a key",
		},
		{
			name: "legacy keyless layer with Rekor SET and timestamp",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushLegacy(t, alice, legacyOptions{})
				return w.authority(exact(alice, issuer), func(k *verify.Keyless) { k.Timestamps = 1 })
			},
			signer: alice,
		},
		{
			name: "legacy keyless layer with a tampered SET",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushLegacy(t, alice, legacyOptions{tamperSET: true})
				return w.authority(exact(alice, issuer))
			},
			want: "Rekor entry does not verify",
		},
		{
			name: "legacy keyless layer without a Rekor bundle",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushLegacy(t, alice, legacyOptions{noBundle: true})
				return w.authority(exact(alice, issuer))
			},
			want: "no Rekor entry",
		},
		{
			name: "legacy keyless layer, wrong subject",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushLegacy(t, "mallory@example.com", legacyOptions{})
				return w.authority(exact(alice, issuer))
			},
			want: "subject mallory@example.com is not alice@example.com",
		},
		{
			name: "legacy key-signed layer for a keyless authority",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				k := newKey(t, "p256")
				payload := simpleSigning(w.d, "")
				w.pushLegacyLayer(payload, map[string]string{cosign.AnnotationSignature: base64.StdEncoding.EncodeToString(k.sign(t, payload))})
				return w.authority(exact(alice, issuer))
			},
			want: "signed with a key, not a certificate",
		},
		{
			name: "legacy layer with a malformed certificate",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				w.pushLegacy(t, alice, legacyOptions{certPEM: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"})
				return w.authority(exact(alice, issuer))
			},
			want: "certificate annotation is not one PEM certificate",
		},
		{
			name: "GitHub workflow identity and extensions",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				p := newOwnPKI(t)
				w.pushBundle(p.githubWorkflow(t, "acme/widget", "refs/heads/main", statement(w.d, cosign.PredicateTypeSign, "")))
				return w.authority([]verify.Identity{{Issuer: gha, SubjectRegExp: regexp.MustCompile(`^https://github\.com/acme/widget/`)}}, func(k *verify.Keyless) {
					k.Material, k.Tlog = p.material(), 0
					k.Extensions = verify.WorkflowExtensions{Repository: "acme/widget", Ref: "refs/heads/main", Trigger: "push"}
				})
			},
			signer: "https://github.com/acme/widget/.github/workflows/release.yml@refs/heads/main (issuer " + gha + ", workflow acme/widget@refs/heads/main)",
		},
		{
			name: "GitHub workflow of another ref",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				p := newOwnPKI(t)
				w.pushBundle(p.githubWorkflow(t, "acme/widget", "refs/heads/dev", statement(w.d, cosign.PredicateTypeSign, "")))
				return w.authority([]verify.Identity{{Issuer: gha, SubjectRegExp: regexp.MustCompile(`^https://github\.com/acme/widget/`)}}, func(k *verify.Keyless) {
					k.Material, k.Tlog = p.material(), 0
					k.Extensions = verify.WorkflowExtensions{Repository: "acme/widget", Ref: "refs/heads/main"}
				})
			},
			want: `(issuer ` + gha + `, workflow acme/widget@refs/heads/dev): GitHub workflow ref "refs/heads/dev" is not "refs/heads/main"`,
		},
		{
			name: "many signers: the reason lists five",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				for i := range 7 {
					w.pushBundle(w.bundleJSON(t, w.attest(t, fmt.Sprintf("user%d@example.com", i), nil), bundleOptions{}))
				}
				return w.authority(exact(alice, issuer))
			},
			want: "user4@example.com is not alice@example.com, and 2 other reasons",
		},
		{
			name: "own PKI chain admitted",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				p := newOwnPKI(t)
				w.pushBundle(p.sign(t, "builder@corp.example", time.Now().Add(-time.Minute), statement(w.d, cosign.PredicateTypeSign, "")))
				return w.authority([]verify.Identity{{Subject: "builder@corp.example"}}, func(k *verify.Keyless) {
					k.TrustRoot, k.Material, k.Tlog = "the certificate roots of authority corp", p.material(), 0
				})
			},
			signer: "builder@corp.example (issuer none)",
		},
		{
			name: "own PKI: leaf of another CA denied",
			setup: func(t *testing.T, w *keylessWorld) verify.Authority {
				p, other := newOwnPKI(t), newOwnPKI(t)
				w.pushBundle(other.sign(t, "builder@corp.example", time.Now().Add(-time.Minute), statement(w.d, cosign.PredicateTypeSign, "")))
				return w.authority([]verify.Identity{{Subject: "builder@corp.example"}}, func(k *verify.Keyless) {
					k.TrustRoot, k.Material, k.Tlog = "the certificate roots of authority corp", p.material(), 0
				})
			},
			want: "certificate not issued by a CA of the certificate roots of authority corp",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newKeylessWorld(t)
			got := w.verify(t, tt.setup(t, w))
			if tt.want == "" {
				if !got.Verified {
					t.Fatalf("not verified: %s", got.Reason)
				}
				if !strings.Contains(got.Signer, tt.signer) {
					t.Errorf("signer = %q, want it to contain %q", got.Signer, tt.signer)
				}
				if len(got.Signatures) != 1 || got.Signatures[0].Signer != got.Signer {
					t.Errorf("signatures = %+v, want one by %q", got.Signatures, got.Signer)
				}
				return
			}
			if got.Verified {
				t.Fatalf("verified by %q, want a denial containing %q", got.Signer, tt.want)
			}
			if !strings.Contains(got.Reason, tt.want) {
				t.Errorf("reason = %q, want it to contain %q", got.Reason, tt.want)
			}
		})
	}
}
