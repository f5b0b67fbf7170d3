package verify

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/strictjson"
)

// Signature is one signature that verified for an authority: where it was found, in which
// format, what it signs and who signed it.
type Signature struct {
	// Repository is the repository the signature was read from (the authority's
	// SignaturesRepository, else the image's).
	Repository string
	// Reference is the tag of the legacy signature manifest ("sha256-<hex>.sig") or the digest
	// of the bundle's referrer manifest.
	Reference string
	// Layer is the index of the signature's layer in the legacy manifest; it is 0 for bundles.
	Layer int
	// Format is FormatLegacy or FormatBundle.
	Format string
	// Blob is the digest of the simple signing payload (legacy) or of the bundle.
	Blob digest.Digest
	// Payload is what cosign verify prints for the signature: the simple signing payload,
	// byte for byte, for a legacy signature; for a bundle, cosign's rendering of its statement
	// in the same shape, {"critical":{"identity":{"docker-reference":"<Subject.Repository>@<digest>"},
	// "image":{"docker-manifest-digest":"<digest>"},"type":"<predicate type>"},
	// "optional":<the annotations of the statement's subject, null when none>}.
	Payload []byte
	// Statement is the signed in-toto statement of a bundle (the DSSE payload); nil for legacy.
	Statement []byte
	// Signer describes the signer (key hint or identity), as AuthorityResult.Signer.
	Signer string
}

// String names the signature for messages: "repo:sha256-<hex>.sig layer 0", "repo@sha256:…".
func (s Signature) String() string {
	if s.Format == FormatLegacy {
		return fmt.Sprintf("%s:%s layer %d", s.Repository, s.Reference, s.Layer)
	}
	return s.Repository + "@" + s.Reference
}

// verifiedSignature describes candidate c, which verified for signer, in repository repo
// for subject s.
func verifiedSignature(c *candidate, repo string, s Subject, signer string) (Signature, error) {
	sig := Signature{Repository: repo, Format: c.format, Blob: c.blob, Signer: signer}
	// c.where is "<repo>:<tag> layer <i>" (legacy) or "<repo>@<digest>" (bundle).
	rest := strings.TrimPrefix(c.where, repo)
	if c.format == FormatLegacy {
		if _, err := fmt.Sscanf(rest, ":%s layer %d", &sig.Reference, &sig.Layer); err != nil {
			return Signature{}, fmt.Errorf("signature location %q: %w", c.where, err)
		}
		sig.Payload = c.payload
		return sig, nil
	}
	sig.Reference = strings.TrimPrefix(rest, "@")
	payload, err := bundlePayload(c.bundle.statement, s)
	if err != nil {
		return Signature{}, err
	}
	sig.Payload = payload
	sig.Statement = c.bundle.payload
	return sig, nil
}

// bundlePayload renders a verified statement as cosign verify prints it (see
// Signature.Payload). The statement has been checked: its predicate type is cosign's
// signing predicate and exactly one subject names s.Digest.
func bundlePayload(st strictjson.Object, s Subject) ([]byte, error) {
	pt, err := st.StringMember("predicateType")
	if err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	subjects, err := st.ArrayMember("subject")
	if err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	var optional map[string]any
	alg := s.Digest.Algorithm().String()
	for _, raw := range subjects {
		sub, err := strictjson.ParseObject(raw)
		if err != nil {
			return nil, fmt.Errorf("statement subject: %w", err)
		}
		digests, err := sub.ObjectMember("digest", false)
		if err != nil {
			return nil, fmt.Errorf("statement subject: %w", err)
		}
		if got, err := digests.StringMember(alg); err != nil || got != s.Digest.Encoded() {
			continue
		}
		ann, ok, err := sub.Member("annotations")
		if err != nil {
			return nil, fmt.Errorf("statement subject: %w", err)
		}
		if ok {
			var m map[string]any
			if err := json.Unmarshal(ann, &m); err != nil {
				return nil, fmt.Errorf("statement subject annotations: %w", err)
			}
			if len(m) > 0 {
				optional = m
			}
		}
	}
	return json.Marshal(map[string]any{
		"critical": map[string]any{
			"identity": map[string]string{"docker-reference": s.Repository + "@" + s.Digest.String()},
			"image":    map[string]string{"docker-manifest-digest": s.Digest.String()},
			"type":     pt,
		},
		"optional": optional,
	})
}
