package sign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/verify/oci"
)

// Legacy signs img (an image reference by digest) in cosign's legacy format and adds the
// signature to the "sha256-<hex>.sig" manifest in sigRepo (img's repository when zero).
// It returns the tag written.
func Legacy(ctx context.Context, img name.Digest, sigRepo name.Repository, s signature.Signer, annotations map[string]string, opts ...remote.Option) (name.Tag, error) {
	pl, err := LegacyPayload(img, annotations)
	if err != nil {
		return name.Tag{}, err
	}
	// As cosign's duplicate detector: the same payload already signed by this key (ECDSA
	// signatures differ each time) is not signed again.
	if v, ok := s.(signature.Verifier); ok {
		if tag, found := signedBy(ctx, img, sigRepo, pl, v, opts...); found {
			return tag, nil
		}
	}
	sig, err := s.SignMessage(bytes.NewReader(pl), options.WithContext(ctx))
	if err != nil {
		return name.Tag{}, fmt.Errorf("sign payload: %w", err)
	}
	return AttachLegacy(ctx, img, sigRepo, pl, sig, nil, opts...)
}

// signedBy reports whether img's legacy signature manifest already holds payload pl with a
// signature v verifies.
func signedBy(ctx context.Context, img name.Digest, sigRepo name.Repository, pl []byte, v signature.Verifier, opts ...remote.Option) (name.Tag, bool) {
	tag, err := LegacyTag(img, sigRepo, cosign.SuffixSignature)
	if err != nil {
		return name.Tag{}, false
	}
	base, err := remote.Image(tag, append(opts, remote.WithContext(ctx))...)
	if err != nil {
		return name.Tag{}, false
	}
	mf, err := base.Manifest()
	if err != nil {
		return name.Tag{}, false
	}
	for _, l := range mf.Layers {
		if l.Digest.String() != digestOf(pl) {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(l.Annotations[cosign.AnnotationSignature])
		if err == nil && v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(pl), options.WithContext(ctx)) == nil {
			return tag, true
		}
	}
	return name.Tag{}, false
}

// Certificate is certificate material stored next to a signature: the PEM leaf certificate
// whose key made the signature and, optionally, the PEM chain (intermediates … root) and
// the proof of the signing time.
type Certificate struct {
	Leaf, Chain []byte
	// RFC3161Timestamp is the annotation value cosign writes for a TSA's timestamp of the
	// raw signature: JSON {"SignedRFC3161Timestamp": base64 DER TimeStampResponse}.
	RFC3161Timestamp []byte
}

// LegacyTag is the tag of img's legacy attachment manifest in sigRepo (img's repository
// when zero): "<repo>:sha256-<hex>.<suffix>", suffix one of cosign.SuffixSignature,
// SuffixAttestation, SuffixSBOM.
func LegacyTag(img name.Digest, sigRepo name.Repository, suffix string) (name.Tag, error) {
	if sigRepo.Name() == "" || sigRepo.RepositoryStr() == "" {
		sigRepo = img.Context()
	}
	d, err := digest.Parse(img.DigestStr())
	if err != nil {
		return name.Tag{}, fmt.Errorf("image digest: %w", err)
	}
	return sigRepo.Tag(cosign.AttachmentTag(d, suffix)), nil
}

// AttachLegacy adds a signature made elsewhere (sig, the raw signature bytes over payload) to
// the "sha256-<hex>.sig" manifest of img in sigRepo (img's repository when zero), with the
// certificate material when cert is not nil. Existing signatures stay; the same payload with
// the same signature is not added twice. The payload must be a simple signing payload naming
// img's digest: a signature over another digest would never verify for img.
func AttachLegacy(ctx context.Context, img name.Digest, sigRepo name.Repository, pl, sig []byte, cert *Certificate, opts ...remote.Option) (name.Tag, error) {
	tag, err := LegacyTag(img, sigRepo, cosign.SuffixSignature)
	if err != nil {
		return name.Tag{}, err
	}
	var p payload.SimpleContainerImage
	if err := json.Unmarshal(pl, &p); err != nil {
		return name.Tag{}, fmt.Errorf("payload is not a simple signing payload: %w", err)
	}
	if p.Critical.Image.DockerManifestDigest != img.DigestStr() {
		return name.Tag{}, fmt.Errorf("payload names digest %q, not the image's %s", p.Critical.Image.DockerManifestDigest, img.DigestStr())
	}
	if len(sig) == 0 {
		return name.Tag{}, errors.New("empty signature")
	}
	b64 := base64.StdEncoding.EncodeToString(sig)
	ann := cert.annotate(map[string]string{cosign.AnnotationSignature: b64})
	layer := static.NewLayer(pl, types.MediaType(cosign.MediaTypeSimpleSigning))
	err = appendToTag(ctx, tag, layer, ann, func(base v1.Image) (v1.Image, error) {
		layers, err := base.Layers()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", tag, err)
		}
		mf, err := base.Manifest()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", tag, err)
		}
		for i, l := range layers {
			d, _ := l.Digest()
			if d.String() == digestOf(pl) && mf.Layers[i].Annotations[cosign.AnnotationSignature] == b64 {
				return nil, nil // this exact signature is there already
			}
		}
		return base, nil
	}, opts...)
	if err != nil {
		return name.Tag{}, err
	}
	return tag, nil
}

// annotate adds the certificate material to the layer annotations ann and returns ann; a
// nil c adds nothing.
func (c *Certificate) annotate(ann map[string]string) map[string]string {
	if c == nil {
		return ann
	}
	for k, v := range map[string][]byte{
		cosign.AnnotationCertificate:      c.Leaf,
		cosign.AnnotationChain:            c.Chain,
		cosign.AnnotationRFC3161Timestamp: c.RFC3161Timestamp,
	} {
		if len(v) > 0 {
			ann[k] = string(v)
		}
	}
	return ann
}

// emptyAttachment is the manifest a legacy ".sig" or ".att" tag starts from: an OCI image
// manifest with an empty OCI config and no layers.
func emptyAttachment() v1.Image {
	return mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
}

// appendToTag pushes to tag the manifest it holds (emptyAttachment when the tag does not
// exist) with layer appended, annotated with ann. An existing manifest goes through keep
// first, which returns the image to append to, or nil when nothing is to be pushed (the
// layer is there already); keep's error is returned as it is.
func appendToTag(ctx context.Context, tag name.Tag, layer v1.Layer, ann map[string]string, keep func(v1.Image) (v1.Image, error), opts ...remote.Option) error {
	opts = append(opts, remote.WithContext(ctx))
	base, err := remote.Image(tag, opts...)
	var terr *transport.Error
	switch {
	case err == nil:
		if base, err = keep(base); err != nil {
			return err
		}
		if base == nil {
			return nil
		}
	case errors.As(err, &terr) && terr.StatusCode == 404:
		base = emptyAttachment()
	default:
		return fmt.Errorf("read %s: %w", tag, err)
	}
	out, err := mutate.Append(base, mutate.Addendum{Layer: layer, Annotations: ann})
	if err != nil {
		return err
	}
	if err := remote.Write(tag, out, opts...); err != nil {
		return fmt.Errorf("push %s: %w", tag, err)
	}
	return nil
}

// LegacyPayload is the simple-signing payload cosign signs for img, with annotations in its
// "optional" section.
func LegacyPayload(img name.Digest, annotations map[string]string) ([]byte, error) {
	var ann map[string]any
	if len(annotations) > 0 {
		ann = map[string]any{}
		for k, v := range annotations {
			ann[k] = v
		}
	}
	b, err := (payload.Cosign{Image: img, Annotations: ann}).MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("simple signing payload: %w", err)
	}
	return b, nil
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return fmt.Sprintf("sha256:%x", sum)
}

// Bundle signs subject (the image manifest's descriptor, in repository repo) as cosign v3
// does and pushes the bundle as a referrer. pub is the signer's public key (for the bundle's
// key hint). It returns the referrer's digest.
func Bundle(ctx context.Context, repo name.Repository, subject v1.Descriptor, s signature.Signer, pub crypto.PublicKey, annotations map[string]string, opts ...remote.Option) (v1.Hash, error) {
	b, err := NewBundle(ctx, subject.Digest, s, pub, annotations)
	if err != nil {
		return v1.Hash{}, err
	}
	return PushBundle(ctx, repo, subject, b, opts...)
}

// PushBundle pushes a sigstore bundle with cosign's signing predicate (from NewBundle or
// NewCertificateBundle) to repo as an OCI 1.1 referrer of subject, as cosign v3 does. repo may
// differ from the subject's repository (COSIGN_REPOSITORY). It returns the referrer's digest.
func PushBundle(ctx context.Context, repo name.Repository, subject v1.Descriptor, b []byte, opts ...remote.Option) (v1.Hash, error) {
	return pushReferrer(ctx, repo, subject, b, cosign.PredicateTypeSign, opts...)
}

// pushReferrer pushes bundle b, whose statement has predicateType, to repo as an OCI 1.1
// referrer of subject, with cosign v3's manifest annotations.
func pushReferrer(ctx context.Context, repo name.Repository, subject v1.Descriptor, b []byte, predicateType string, opts ...remote.Option) (v1.Hash, error) {
	opts = append(opts, remote.WithContext(ctx))
	layer := static.NewLayer(b, types.MediaType(cosign.MediaTypeSigstoreBundle))
	cfg := static.NewLayer([]byte("{}"), types.MediaType(oci.MediaTypeEmptyJSON))
	for _, l := range []v1.Layer{cfg, layer} {
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			return v1.Hash{}, fmt.Errorf("push bundle blob: %w", err)
		}
	}
	ld, _ := layer.Digest()
	cd, _ := cfg.Digest()
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     oci.MediaTypeOCIManifest,
		"artifactType":  cosign.MediaTypeSigstoreBundle,
		"config":        v1.Descriptor{MediaType: oci.MediaTypeEmptyJSON, Digest: cd, Size: 2},
		"layers":        []v1.Descriptor{{MediaType: cosign.MediaTypeSigstoreBundle, Digest: ld, Size: int64(len(b))}},
		"subject":       v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
		"annotations": map[string]string{
			cosign.AnnotationBundleContent:       cosign.BundleContentDSSE,
			cosign.AnnotationBundlePredicateType: predicateType,
			"org.opencontainers.image.created":   time.Now().UTC().Format(time.RFC3339),
		},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return v1.Hash{}, err
	}
	h, _, _ := v1.SHA256(bytes.NewReader(raw))
	if err := remote.Put(repo.Digest(h.String()), rawManifest{raw: raw, mt: types.OCIManifestSchema1}, opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("push bundle manifest: %w", err)
	}
	return h, nil
}

// NewBundle returns the sigstore bundle (v0.3 JSON) cosign v3 writes for digest d: a DSSE
// envelope over an in-toto statement with cosign's signing predicate and the annotations as
// subject annotations, with pub's key hint and no transparency log entry.
func NewBundle(ctx context.Context, d v1.Hash, s signature.Signer, pub crypto.PublicKey, annotations map[string]string) ([]byte, error) {
	vm, err := keyMaterial(pub)
	if err != nil {
		return nil, err
	}
	return newBundle(ctx, d, s, vm, annotations)
}

// keyMaterial is the verification material of a bundle signed with a key: pub's hint.
func keyMaterial(pub crypto.PublicKey) (*protobundle.VerificationMaterial, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	hint := sha256.Sum256(der)
	return &protobundle.VerificationMaterial{
		Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{
			Hint: base64.StdEncoding.EncodeToString(hint[:]),
		}},
	}, nil
}

// NewCertificateBundle is NewBundle for a signer holding a certificate: the bundle carries the
// DER leaf certificate (bundle v0.3 holds no chain; verifiers get it from their trusted root).
func NewCertificateBundle(ctx context.Context, d v1.Hash, s signature.Signer, leafDER []byte, annotations map[string]string) ([]byte, error) {
	if len(leafDER) == 0 {
		return nil, errors.New("empty certificate")
	}
	return newBundle(ctx, d, s, &protobundle.VerificationMaterial{
		Content: &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: leafDER}},
	}, annotations)
}

// Statement returns the in-toto statement cosign v3 signs for digest d.
func Statement(d v1.Hash, annotations map[string]string) ([]byte, error) {
	subj := map[string]any{"digest": map[string]string{d.Algorithm: d.Hex}}
	if len(annotations) > 0 {
		subj["annotations"] = annotations
	}
	return json.Marshal(map[string]any{
		"_type":         cosign.StatementTypeInToto,
		"subject":       []any{subj},
		"predicateType": cosign.PredicateTypeSign,
		"predicate":     map[string]any{},
	})
}

func newBundle(ctx context.Context, d v1.Hash, s signature.Signer, vm *protobundle.VerificationMaterial, annotations map[string]string) ([]byte, error) {
	stmt, err := Statement(d, annotations)
	if err != nil {
		return nil, err
	}
	return statementBundle(ctx, stmt, s, vm)
}

// statementBundle signs the in-toto statement stmt as a DSSE envelope in a sigstore bundle
// v0.3 with the verification material vm.
func statementBundle(ctx context.Context, stmt []byte, s signature.Signer, vm *protobundle.VerificationMaterial) ([]byte, error) {
	sig, err := s.SignMessage(bytes.NewReader(dsse.PAE(cosign.PayloadTypeInToto, stmt)), options.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("sign statement: %w", err)
	}
	pb := &protobundle.Bundle{
		MediaType:            cosign.MediaTypeSigstoreBundle,
		VerificationMaterial: vm,
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload:     stmt,
			PayloadType: cosign.PayloadTypeInToto,
			Signatures:  []*protodsse.Signature{{Sig: sig}},
		}},
	}
	return protojson.Marshal(pb)
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }
