package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/internal/strictjson"
	"github.com/portcullis/portcullis/verify/oci"
)

// Kinds reported in Examined.Kind.
const (
	KindSignature   = "signature"
	KindAttestation = "attestation"
)

// Attestation is one attestation that verified for an authority: a DSSE envelope signed by
// the authority holding an in-toto statement whose one subject naming the digest is exactly it.
type Attestation struct {
	// PredicateType is the statement's predicateType.
	PredicateType string `json:"predicateType"`
	// Format is FormatLegacy (a layer of the ".att" manifest) or FormatBundle.
	Format string `json:"format"`
	// Where names it: "<repo>:<alg>-<hex>.att layer <i>" or "<repo>@<referrer digest>".
	Where string `json:"where"`
	// Signer describes the signer (key hint or identity).
	Signer string `json:"signer"`
	// Statement is the in-toto statement as signed (the DSSE payload), at most the
	// Verifier's blob size limit.
	Statement []byte `json:"-"`
}

// Examined is one signature or attestation examined for an authority, and why it counted or
// not.
type Examined struct {
	// Kind is KindSignature or KindAttestation.
	Kind string `json:"kind"`
	// Format is FormatLegacy or FormatBundle.
	Format string `json:"format"`
	// Where names it: a legacy tag and layer ("<repo>:<alg>-<hex>.sig layer 0") or a
	// referrer ("<repo>@sha256:…").
	Where string `json:"where"`
	// PredicateType is the predicate type the attestation's statement claims (read before
	// verification: for messages only).
	PredicateType string `json:"predicateType,omitempty"`
	// Signer describes the signer when known (a key authority's key once it verified, a
	// certificate's identity).
	Signer string `json:"signer,omitempty"`
	// Counted reports whether it verified for the authority (a signature satisfying it, an
	// attestation of a wanted predicate type reported in AuthorityResult.Attestations).
	Counted bool `json:"counted"`
	// Reason says why it did not count.
	Reason string `json:"reason,omitempty"`
}

// discoverAttestations reads the legacy ".att" manifest of dgst in repo (cosign v2's attest,
// v3's with --new-bundle-format=false) and the DSSE envelope of each of its layers.
func (v *Verifier) discoverAttestations(ctx context.Context, reg Registry, repo string, dgst digest.Digest) ([]*candidate, []string, []error) {
	tag := cosign.AttachmentTag(dgst, cosign.SuffixAttestation)
	m, err := reg.Manifest(ctx, repo, tag)
	if errors.Is(err, oci.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, []error{&LookupError{Repository: repo, What: "legacy attestation tag " + tag, Err: err}}
	}
	where := repo + ":" + tag
	brokenManifest := func(format string, args ...any) []*candidate {
		return []*candidate{{format: FormatLegacy, where: where, broken: fmt.Sprintf(format, args...)}}
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(m.Bytes, &man); err != nil {
		return brokenManifest("invalid attestation manifest %s: %v", tag, err), nil, nil
	}
	for _, mt := range []string{m.MediaType, man.MediaType} {
		if mt != "" && mt != oci.MediaTypeOCIManifest && mt != oci.MediaTypeDockerManifest {
			return brokenManifest("attestation tag %s is a %s, not an image manifest", tag, mt), nil, nil
		}
	}
	if len(man.Layers) > v.cfg.maxLayers {
		return brokenManifest("attestation manifest %s has %d layers, more than the limit of %d", tag, len(man.Layers), v.cfg.maxLayers), nil, nil
	}
	var cands []*candidate
	var notes []string
	for i, l := range man.Layers {
		if l.MediaType != cosign.MediaTypeDSSEEnvelope {
			continue
		}
		if len(cands) == v.cfg.maxReferrers {
			notes = append(notes, fmt.Sprintf("only the first %d attestation layers of %s were inspected", v.cfg.maxReferrers, tag))
			break
		}
		c := &candidate{format: FormatLegacy, where: fmt.Sprintf("%s layer %d", where, i), blob: l.Digest,
			predicateType: l.Annotations["predicateType"], // cosign's hint, replaced by the statement's
			legacy: legacyMaterial{
				cert:        l.Annotations[cosign.AnnotationCertificate],
				chain:       l.Annotations[cosign.AnnotationChain],
				rekorBundle: l.Annotations[cosign.AnnotationRekorBundle],
				timestamp:   l.Annotations[cosign.AnnotationRFC3161Timestamp],
			}}
		cands = append(cands, c)
		switch {
		case l.Digest.Validate() != nil:
			c.broken = "invalid envelope digest in attestation manifest"
		case l.Size > v.cfg.maxBlobSize:
			c.broken = fmt.Sprintf("envelope of %d bytes exceeds the limit of %d", l.Size, v.cfg.maxBlobSize)
		}
	}

	errs := v.fetchBlobs(ctx, reg, repo, cands, "envelope", "attestation envelope", func(c *candidate, b []byte) {
		c.bundle, c.predicateType, c.broken = parseEnvelope(b, c.legacy, c.predicateType)
	})
	return cands, notes, errs
}

// parseEnvelope reads the DSSE envelope of a legacy attestation layer with its annotations
// m. It returns the candidate and its predicate type, or the reason it is broken (and hint,
// the predicate type the layer's annotation claims).
func parseEnvelope(raw []byte, m legacyMaterial, hint string) (*bundleCandidate, string, string) {
	var env dsse.Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, hint, "invalid envelope: " + err.Error()
	}
	if env.PayloadType != cosign.PayloadTypeInToto {
		return nil, hint, fmt.Sprintf("envelope payload type %q is not an in-toto statement", env.PayloadType)
	}
	if len(env.Signatures) != 1 {
		return nil, hint, fmt.Sprintf("envelope has %d signatures, want 1", len(env.Signatures))
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		return nil, hint, "invalid envelope payload: " + err.Error()
	}
	st, err := strictjson.ParseObject(payload)
	if err != nil {
		return nil, hint, "invalid statement: " + err.Error()
	}
	pt, err := st.StringMember("predicateType")
	if err != nil {
		return nil, hint, "invalid statement: " + err.Error()
	}
	if pt == cosign.PredicateTypeSign {
		return nil, pt, "a cosign signature statement, not an attestation"
	}
	content := &bundle.Envelope{Envelope: &env}
	bc := &bundleCandidate{
		key:       &legacyEntity{content: &bundle.PublicKey{}, sig: content},
		payload:   payload,
		statement: st,
	}
	if e, err := newCertEntity(m, content); err != nil {
		bc.certErr = err.Error()
	} else {
		bc.cert = e
	}
	return bc, pt, ""
}

// checkAttestations checks the attestations of d against authority a (keys, when a key
// authority, with signer keySigner) and adds what verified and what was examined to r.
func checkAttestations(a Authority, keys []signature.Verifier, keySigner string, d *discovery, dgst digest.Digest, r *AuthorityResult) {
	for _, c := range d.attestations {
		e := Examined{Kind: KindAttestation, Format: c.format, Where: c.where, PredicateType: c.predicateType}
		switch {
		case c.broken != "":
			e.Reason = c.broken
		case !slices.Contains(a.Attestations, c.predicateType):
			e.Reason = "predicate type not required from this authority"
		case a.Keyless != nil:
			e.Signer, e.Reason = checkBundleKeyless(a.Keyless, nil, c.bundle, dgst)
		default:
			if e.Reason = checkBundle(keys, nil, c.bundle, dgst); e.Reason == "" {
				e.Signer = keySigner
			}
		}
		if e.Reason == "" {
			e.Counted = true
			r.Attestations = append(r.Attestations, Attestation{
				PredicateType: c.predicateType, Format: c.format, Where: c.where, Signer: e.Signer, Statement: c.bundle.payload,
			})
		}
		r.Examined = append(r.Examined, e)
	}
}
