// Package sign writes cosign signatures in the two formats package verify reads, so that
// `cosign verify` accepts them:
//
//   - Legacy: a simple-signing payload as a layer of the manifest tagged
//     "sha256-<hex>.sig", its signature in the layer annotation
//     "dev.cosignproject.cosign/signature" (cosign v2's default). Signing again appends a layer;
//     existing signatures stay.
//   - Bundle: a sigstore bundle v0.3 holding a DSSE-signed in-toto statement with cosign's
//     signing predicate, pushed as an OCI 1.1 referrer of the image (cosign v3's default).
//     go-containerregistry maintains the referrers tag schema index "sha256-<hex>" for
//     registries without the referrers API.
//
// Signing is offline: nothing is uploaded to a transparency log.
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
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/portcullis/portcullis/internal/oci"
)

// Cosign's names for what it writes.
const (
	SignatureAnnotation  = "dev.cosignproject.cosign/signature"
	SignPredicateType    = "https://sigstore.dev/cosign/sign/v1"
	InTotoPayloadType    = "application/vnd.in-toto+json"
	InTotoStatementType  = "https://in-toto.io/Statement/v1"
	bundleContentAnnot   = "dev.sigstore.bundle.content"
	bundlePredicateAnnot = "dev.sigstore.bundle.predicateType"
)

// Legacy signs img (an image reference by digest) in cosign's legacy format and adds the
// signature to the "sha256-<hex>.sig" manifest in sigRepo (img's repository when zero).
// It returns the tag written.
func Legacy(ctx context.Context, img name.Digest, sigRepo name.Repository, s signature.Signer, annotations map[string]string, opts ...remote.Option) (name.Tag, error) {
	if sigRepo.Name() == "" || sigRepo.RepositoryStr() == "" {
		sigRepo = img.Context()
	}
	h, err := v1.NewHash(img.DigestStr())
	if err != nil {
		return name.Tag{}, fmt.Errorf("image digest: %w", err)
	}
	pl, err := LegacyPayload(img, annotations)
	if err != nil {
		return name.Tag{}, err
	}
	sig, err := s.SignMessage(bytes.NewReader(pl), options.WithContext(ctx))
	if err != nil {
		return name.Tag{}, fmt.Errorf("sign payload: %w", err)
	}
	b64 := base64.StdEncoding.EncodeToString(sig)
	tag := sigRepo.Tag(fmt.Sprintf("%s-%s.sig", h.Algorithm, h.Hex))
	opts = append(opts, remote.WithContext(ctx))

	base, err := remote.Image(tag, opts...)
	var terr *transport.Error
	switch {
	case err == nil:
		layers, err := base.Layers()
		if err != nil {
			return name.Tag{}, fmt.Errorf("read %s: %w", tag, err)
		}
		mf, err := base.Manifest()
		if err != nil {
			return name.Tag{}, fmt.Errorf("read %s: %w", tag, err)
		}
		for i, l := range layers {
			d, _ := l.Digest()
			if d.String() == digestOf(pl) && mf.Layers[i].Annotations[SignatureAnnotation] == b64 {
				return tag, nil // this exact signature is there already
			}
		}
	case errors.As(err, &terr) && terr.StatusCode == 404:
		base = mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	default:
		return name.Tag{}, fmt.Errorf("read %s: %w", tag, err)
	}
	out, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(pl, types.MediaType(oci.MediaTypeSimpleSigning)),
		Annotations: map[string]string{SignatureAnnotation: b64},
	})
	if err != nil {
		return name.Tag{}, err
	}
	if err := remote.Write(tag, out, opts...); err != nil {
		return name.Tag{}, fmt.Errorf("push %s: %w", tag, err)
	}
	return tag, nil
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
	opts = append(opts, remote.WithContext(ctx))
	layer := static.NewLayer(b, types.MediaType(oci.MediaTypeSigstoreBundle))
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
		"artifactType":  oci.MediaTypeSigstoreBundle,
		"config":        v1.Descriptor{MediaType: oci.MediaTypeEmptyJSON, Digest: cd, Size: 2},
		"layers":        []v1.Descriptor{{MediaType: oci.MediaTypeSigstoreBundle, Digest: ld, Size: int64(len(b))}},
		"subject":       v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
		"annotations": map[string]string{
			bundleContentAnnot:                 "dsse-envelope",
			bundlePredicateAnnot:               SignPredicateType,
			"org.opencontainers.image.created": time.Now().UTC().Format(time.RFC3339),
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
	subj := map[string]any{"digest": map[string]string{d.Algorithm: d.Hex}}
	if len(annotations) > 0 {
		subj["annotations"] = annotations
	}
	stmt, err := json.Marshal(map[string]any{
		"_type":         InTotoStatementType,
		"subject":       []any{subj},
		"predicateType": SignPredicateType,
		"predicate":     map[string]any{},
	})
	if err != nil {
		return nil, err
	}
	sig, err := s.SignMessage(bytes.NewReader(PAE(InTotoPayloadType, stmt)), options.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("sign statement: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	hint := sha256.Sum256(der)
	pb := &protobundle.Bundle{
		MediaType: oci.MediaTypeSigstoreBundle,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{
				Hint: base64.StdEncoding.EncodeToString(hint[:]),
			}},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload:     stmt,
			PayloadType: InTotoPayloadType,
			Signatures:  []*protodsse.Signature{{Sig: sig}},
		}},
	}
	return protojson.Marshal(pb)
}

// PAE is DSSE's pre-authentication encoding of a payload.
func PAE(payloadType string, body []byte) []byte {
	return fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(body), body)
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }
