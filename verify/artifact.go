package verify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/internal/strictjson"
	"github.com/portcullis/portcullis/verify/oci"
)

// DefaultMaxArtifactLayerSize is the largest layer of a signature artifact that CheckArtifact
// reads, 16 MiB: DSSE envelopes of attestations carry whole SBOMs.
const DefaultMaxArtifactLayerSize = 16 << 20

// ArtifactError says why a manifest that is shaped like a signature artifact is not one: what
// it references is not what its media types claim. Such a manifest is an image like any
// other, and goes through the policy.
type ArtifactError struct {
	// Reason says, for a person, what did not match.
	Reason string
}

func (e *ArtifactError) Error() string { return "not a signature artifact: " + e.Reason }

func notArtifact(format string, args ...any) error {
	return &ArtifactError{Reason: fmt.Sprintf(format, args...)}
}

// CheckArtifact checks the content a signature artifact references, so that nothing a
// runtime could unpack and run is served as a signature. m must already be shaped like one
// (policy.IsSignatureArtifact): an image manifest whose layers claim to be simple signing
// payloads, DSSE envelopes or sigstore bundles, or a referrers index (whose entries are
// judged when they are fetched; CheckArtifact accepts the index itself).
//
// The config blob and every layer blob are fetched from repo (each capped, digest checked)
// and parsed as exactly what their media types say: the config is the empty JSON object or
// an image config without entrypoint, command or environment (as cosign writes it); a
// simple signing layer is a cosign image signature payload; a DSSE layer is a DSSE envelope
// with at least one signature; a bundle layer is a sigstore bundle.
//
// It returns nil when all of that holds, an *ArtifactError when the content is not what it
// claims, and an error wrapping *LookupError when something could not be fetched (no
// verdict).
func (v *Verifier) CheckArtifact(ctx context.Context, reg Registry, repo string, m oci.Manifest) error {
	if oci.IsIndex(m.MediaType) {
		return nil
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(m.Bytes, &man); err != nil {
		return notArtifact("manifest is not an image manifest: %v", err)
	}
	if len(man.Layers) > v.cfg.maxLayers {
		return notArtifact("%d layers, more than the limit of %d", len(man.Layers), v.cfg.maxLayers)
	}
	blob := func(what string, d ocispec.Descriptor, limit int64) ([]byte, error) {
		if err := d.Digest.Validate(); err != nil {
			return nil, notArtifact("%s has an invalid digest: %v", what, err)
		}
		if d.Size < 0 || d.Size > limit {
			return nil, notArtifact("%s of %d bytes exceeds the limit of %d", what, d.Size, limit)
		}
		b, err := reg.Blob(ctx, repo, d.Digest, limit)
		if errors.Is(err, oci.ErrNotFound) {
			return nil, notArtifact("%s %s does not exist", what, d.Digest)
		}
		if err != nil {
			return nil, &LookupError{Repository: repo, What: what + " " + d.Digest.String(), Err: err}
		}
		if int64(len(b)) != d.Size {
			return nil, notArtifact("%s %s is %d bytes, its descriptor says %d", what, d.Digest, len(b), d.Size)
		}
		return b, nil
	}

	cfg, err := blob("config", man.Config, v.cfg.maxBlobSize)
	if err != nil {
		return err
	}
	if err := checkArtifactConfig(man.Config.MediaType, cfg); err != nil {
		return err
	}
	for i, l := range man.Layers {
		what := fmt.Sprintf("layer %d", i)
		b, err := blob(what, l, v.maxArtifactLayer())
		if err != nil {
			return err
		}
		if err := checkArtifactLayer(l.MediaType, b); err != nil {
			return notArtifact("%s (%s) is not a %s: %v", what, short(l.Digest.String()), l.MediaType, err)
		}
	}
	return nil
}

func (v *Verifier) maxArtifactLayer() int64 {
	return max(v.cfg.maxBlobSize, DefaultMaxArtifactLayerSize)
}

// checkArtifactConfig accepts the empty JSON object, a sigstore bundle (as the config of a
// bundle referrer) or an image config that runs nothing.
func checkArtifactConfig(mediaType string, b []byte) error {
	if mediaType == cosign.MediaTypeSigstoreBundle {
		if _, err := parseBundle(b); err != nil {
			return notArtifact("config is not a sigstore bundle: %v", err)
		}
		return nil
	}
	obj, err := strictjson.ParseObject(b)
	if err != nil {
		return notArtifact("config: %v", err)
	}
	if mediaType == oci.MediaTypeEmptyJSON {
		if len(obj) != 0 {
			return notArtifact("config of type %s is not the empty JSON object", mediaType)
		}
		return nil
	}
	// An image config (OCI or Docker). Runtimes read it with encoding/json, which matches
	// member names case-insensitively, so names are compared folded.
	for name, raw := range obj {
		if strictjson.Fold(name) != strictjson.Fold("config") || isEmptyJSON(raw) {
			continue
		}
		exec, err := strictjson.ParseObject(raw)
		if err != nil {
			return notArtifact("config.%s: %v", name, err)
		}
		for field, v := range exec {
			switch strictjson.Fold(field) {
			case strictjson.Fold("Entrypoint"), strictjson.Fold("Cmd"), strictjson.Fold("Env"):
				if !isEmptyJSON(v) {
					return notArtifact("config sets %s: a signature runs nothing", field)
				}
			}
		}
	}
	return nil
}

// isEmptyJSON reports whether raw is null, an empty array, object or string.
func isEmptyJSON(raw json.RawMessage) bool {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return false
	}
	switch x := v.(type) {
	case nil:
		return true
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	case string:
		return x == ""
	}
	return false
}

// checkArtifactLayer parses b as exactly what mediaType says it is.
func checkArtifactLayer(mediaType string, b []byte) error {
	switch mediaType {
	case cosign.MediaTypeSimpleSigning:
		return checkSimpleSigning(b)
	case cosign.MediaTypeDSSEEnvelope:
		return checkDSSE(b)
	case cosign.MediaTypeSigstoreBundle:
		_, err := parseBundle(b)
		return err
	}
	return fmt.Errorf("media type %q is not a signature type", mediaType)
}

// checkSimpleSigning accepts a cosign image signature payload.
func checkSimpleSigning(b []byte) error {
	p, err := strictjson.ParseObject(b)
	if err != nil {
		return err
	}
	crit, err := p.ObjectMember("critical", false)
	if err != nil {
		return err
	}
	typ, err := crit.StringMember("type")
	if err != nil {
		return err
	}
	if typ != cosign.SimpleSigningType {
		return fmt.Errorf("critical.type is %q, not %q", typ, cosign.SimpleSigningType)
	}
	img, err := crit.ObjectMember("image", false)
	if err != nil {
		return err
	}
	d, err := img.StringMember("docker-manifest-digest")
	if err != nil {
		return err
	}
	if _, err := digest.Parse(d); err != nil {
		return fmt.Errorf("critical.image.docker-manifest-digest: %w", err)
	}
	return nil
}

// checkDSSE accepts a DSSE envelope with a base64 payload and at least one signature.
func checkDSSE(b []byte) error {
	env, err := strictjson.ParseObject(b)
	if err != nil {
		return err
	}
	if _, err := env.StringMember("payloadType"); err != nil {
		return err
	}
	payload, err := env.StringMember("payload")
	if err != nil {
		return err
	}
	if _, err := base64.StdEncoding.DecodeString(payload); err != nil {
		return fmt.Errorf("payload is not base64: %w", err)
	}
	sigs, err := env.ArrayMember("signatures")
	if err != nil {
		return err
	}
	if len(sigs) == 0 {
		return errors.New("no signatures")
	}
	for i, raw := range sigs {
		s, err := strictjson.ParseObject(raw)
		if err != nil {
			return fmt.Errorf("signature %d: %w", i, err)
		}
		sig, err := s.StringMember("sig")
		if err != nil {
			return fmt.Errorf("signature %d: %w", i, err)
		}
		if _, err := base64.StdEncoding.DecodeString(sig); err != nil {
			return fmt.Errorf("signature %d is not base64: %w", i, err)
		}
	}
	return nil
}
