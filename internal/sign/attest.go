package sign

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/portcullis/portcullis/internal/cosign"
)

// MaxPredicateSize bounds a predicate to attest. Its statement is stored base64-encoded in a
// DSSE envelope (a third larger), which must fit the signature blob limit portcullis pushes
// and reads (verify.DefaultMaxArtifactLayerSize, 16 MiB) with room for the bundle around it.
const MaxPredicateSize = 8 << 20

// maxAttestationLayer bounds an existing ".att" layer read to replace it: the signature blob
// limit (verify.DefaultMaxArtifactLayerSize).
const maxAttestationLayer = 16 << 20

// Attestation is an in-toto statement about one image, ready to sign.
type Attestation struct {
	// Statement is the in-toto statement's JSON.
	Statement []byte
	// PredicateType is the statement's predicate type URI.
	PredicateType string
}

// statement is an in-toto statement as cosign attest writes it, fields in its order.
type statement struct {
	Type          string          `json:"_type"`
	Subject       []subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

type subject struct {
	Name        string            `json:"name"`
	Digest      map[string]string `json:"digest"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// NewAttestation returns the in-toto statement (Statement v1) that attests predicate, of type
// predicateType (a URI: cosign.PredicateType resolves cosign's short names), about img. Its
// one subject is cosign's: the image's repository as name and its digest; annotations, when
// given, are the subject's annotations, as cosign v3 writes them for signatures. The
// predicate is the JSON object given, as given, except as cosign attest treats two types:
// cosign's custom type wraps the bytes as {"Data": text, "Timestamp": now}, and an SPDX
// document that is not JSON (tag-value) becomes a JSON string.
func NewAttestation(img name.Digest, predicateType string, predicate []byte, annotations map[string]string, now time.Time) (Attestation, error) {
	if predicateType == "" {
		return Attestation{}, errors.New("no predicate type")
	}
	if len(predicate) > MaxPredicateSize {
		return Attestation{}, fmt.Errorf("predicate of %d bytes is over the %d byte (%d MiB) limit", len(predicate), MaxPredicateSize, MaxPredicateSize>>20)
	}
	d, err := digest.Parse(img.DigestStr())
	if err != nil {
		return Attestation{}, fmt.Errorf("image digest: %w", err)
	}
	pred, err := predicateJSON(predicateType, predicate, now)
	if err != nil {
		return Attestation{}, err
	}
	st := statement{
		Type: cosign.StatementTypeInToto,
		Subject: []subject{{
			Name:        img.Context().Name(),
			Digest:      map[string]string{d.Algorithm().String(): d.Encoded()},
			Annotations: annotations,
		}},
		PredicateType: predicateType,
		Predicate:     pred,
	}
	b, err := json.Marshal(st)
	if err != nil {
		return Attestation{}, fmt.Errorf("in-toto statement: %w", err)
	}
	return Attestation{Statement: b, PredicateType: predicateType}, nil
}

// predicateJSON is the statement's predicate for the bytes of a predicate file.
func predicateJSON(predicateType string, b []byte, now time.Time) (json.RawMessage, error) {
	if predicateType == cosign.PredicateTypeCustom {
		return json.Marshal(map[string]string{"Data": string(b), "Timestamp": now.UTC().Format(time.RFC3339)})
	}
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) == 0 {
		return nil, errors.New("the predicate is empty")
	}
	if trimmed[0] != '{' {
		if predicateType == cosign.PredicateTypeSPDX && !json.Valid(trimmed) {
			return json.Marshal(string(b))
		}
		return nil, fmt.Errorf("the predicate of type %s must be a JSON object", predicateType)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, trimmed); err != nil {
		return nil, fmt.Errorf("the predicate of type %s is not valid JSON: %w", predicateType, err)
	}
	return buf.Bytes(), nil
}

// dsseSigner signs DSSE's pre-authentication encoding with a sigstore signer, for
// go-securesystemslib's envelope signer.
type dsseSigner struct {
	s signature.Signer
}

func (d dsseSigner) Sign(ctx context.Context, pae []byte) ([]byte, error) {
	return d.s.SignMessage(bytes.NewReader(pae), options.WithContext(ctx))
}

// KeyID is empty, as cosign writes it.
func (d dsseSigner) KeyID() (string, error) { return "", nil }

// Envelope signs the attestation with s: the DSSE envelope's JSON (payload type
// application/vnd.in-toto+json), the layer of a legacy ".att" manifest.
func (a Attestation) Envelope(ctx context.Context, s signature.Signer) ([]byte, error) {
	es, err := dsse.NewEnvelopeSigner(dsseSigner{s})
	if err != nil {
		return nil, err
	}
	env, err := es.SignPayload(ctx, cosign.PayloadTypeInToto, a.Statement)
	if err != nil {
		return nil, fmt.Errorf("sign statement: %w", err)
	}
	return json.Marshal(env)
}

// Bundle signs the attestation with s as cosign v3 attest does with a key: a sigstore bundle
// v0.3 holding the DSSE envelope, with pub's key hint and no transparency log entry.
func (a Attestation) Bundle(ctx context.Context, s signature.Signer, pub crypto.PublicKey) ([]byte, error) {
	vm, err := keyMaterial(pub)
	if err != nil {
		return nil, err
	}
	return statementBundle(ctx, a.Statement, s, vm)
}

// PushAttestationBundle pushes a sigstore bundle holding an attestation of predicateType to
// repo as an OCI 1.1 referrer of subject, as cosign v3 attest does: artifactType the bundle
// media type, the predicate type in the manifest's dev.sigstore.bundle.predicateType
// annotation, and the referrers tag schema index updated for registries without the
// referrers API. It returns the referrer's digest.
func PushAttestationBundle(ctx context.Context, repo name.Repository, subject v1.Descriptor, b []byte, predicateType string, opts ...remote.Option) (v1.Hash, error) {
	if predicateType == "" || predicateType == cosign.PredicateTypeSign {
		return v1.Hash{}, fmt.Errorf("predicate type %q is not an attestation's", predicateType)
	}
	return pushReferrer(ctx, repo, subject, b, predicateType, opts...)
}

// AttestBundle signs att with a key and pushes it as a bundle referrer of subject in repo.
func AttestBundle(ctx context.Context, repo name.Repository, subject v1.Descriptor, att Attestation, s signature.Signer, pub crypto.PublicKey, opts ...remote.Option) (v1.Hash, error) {
	b, err := att.Bundle(ctx, s, pub)
	if err != nil {
		return v1.Hash{}, err
	}
	return PushAttestationBundle(ctx, repo, subject, b, att.PredicateType, opts...)
}

// AttestLegacy signs att with a key and adds it to img's legacy ".att" manifest in sigRepo
// (img's repository when zero); see AttachAttestation.
func AttestLegacy(ctx context.Context, img name.Digest, sigRepo name.Repository, att Attestation, s signature.Signer, replace bool, opts ...remote.Option) (name.Tag, error) {
	env, err := att.Envelope(ctx, s)
	if err != nil {
		return name.Tag{}, err
	}
	return AttachAttestation(ctx, img, sigRepo, env, nil, replace, opts...)
}

// AttachAttestation adds the DSSE envelope env (an attestation about img) to img's
// "sha256-<hex>.att" manifest in sigRepo (img's repository when zero), as cosign v2 attest
// does: a layer of media type application/vnd.dsse.envelope.v1+json annotated with the
// statement's predicate type and an empty signature annotation, plus the certificate
// material when cert is not nil. Other attestations stay, unless replace: then those of the
// same predicate type are dropped (cosign attest --replace). The envelope's statement must
// name img's digest. It returns the tag written.
func AttachAttestation(ctx context.Context, img name.Digest, sigRepo name.Repository, env []byte, cert *Certificate, replace bool, opts ...remote.Option) (name.Tag, error) {
	tag, err := LegacyTag(img, sigRepo, cosign.SuffixAttestation)
	if err != nil {
		return name.Tag{}, err
	}
	st, err := envelopeStatement(env)
	if err != nil {
		return name.Tag{}, err
	}
	if !st.names(img) {
		return name.Tag{}, fmt.Errorf("the attestation's subject is not the image's digest %s", img.DigestStr())
	}
	ann := cert.annotate(map[string]string{cosign.AnnotationSignature: "", cosign.AnnotationPredicateType: st.PredicateType})
	layer := static.NewLayer(env, types.MediaType(cosign.MediaTypeDSSEEnvelope))
	err = appendToTag(ctx, tag, layer, ann, func(base v1.Image) (v1.Image, error) {
		if !replace {
			return base, nil
		}
		out, err := withoutPredicateType(base, emptyAttachment(), st.PredicateType)
		if err != nil {
			return nil, fmt.Errorf("replace in %s: %w", tag, err)
		}
		return out, nil
	}, opts...)
	if err != nil {
		return name.Tag{}, err
	}
	return tag, nil
}

// withoutPredicateType rebuilds the attestation manifest img on fresh without the layers whose
// statement has predicateType. A layer that cannot be read as an attestation is an error, as
// in cosign: replacing must not drop what it cannot recognise.
func withoutPredicateType(img, fresh v1.Image, predicateType string) (v1.Image, error) {
	mf, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	if len(layers) != len(mf.Layers) {
		return nil, errors.New("manifest and layers disagree")
	}
	out := fresh
	for i, l := range layers {
		desc := mf.Layers[i]
		b, err := readCapped(l, maxAttestationLayer)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", desc.Digest, err)
		}
		st, err := envelopeStatement(b)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", desc.Digest, err)
		}
		if st.PredicateType == predicateType {
			continue
		}
		if out, err = mutate.Append(out, mutate.Addendum{Layer: l, Annotations: desc.Annotations, MediaType: desc.MediaType}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func readCapped(l v1.Layer, limit int64) ([]byte, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("over the %d byte limit", limit)
	}
	return b, nil
}

// parsedStatement is what attaching needs to know of an envelope's statement.
type parsedStatement struct {
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
}

// names reports whether a subject of the statement is img's digest.
func (st parsedStatement) names(img name.Digest) bool {
	d, err := digest.Parse(img.DigestStr())
	if err != nil {
		return false
	}
	for _, s := range st.Subject {
		if s.Digest[d.Algorithm().String()] == d.Encoded() {
			return true
		}
	}
	return false
}

// envelopeStatement decodes the in-toto statement of a DSSE envelope's JSON.
func envelopeStatement(b []byte) (parsedStatement, error) {
	var env dsse.Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return parsedStatement{}, fmt.Errorf("not a DSSE envelope: %w", err)
	}
	if env.PayloadType != cosign.PayloadTypeInToto {
		return parsedStatement{}, fmt.Errorf("DSSE payload type %q, not %s", env.PayloadType, cosign.PayloadTypeInToto)
	}
	if len(env.Signatures) == 0 {
		return parsedStatement{}, errors.New("DSSE envelope without a signature")
	}
	pl, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return parsedStatement{}, fmt.Errorf("DSSE payload is not base64: %w", err)
	}
	var st parsedStatement
	if err := json.Unmarshal(pl, &st); err != nil {
		return parsedStatement{}, fmt.Errorf("DSSE payload is not an in-toto statement: %w", err)
	}
	if st.PredicateType == "" {
		return parsedStatement{}, errors.New("the in-toto statement has no predicateType")
	}
	return st, nil
}
