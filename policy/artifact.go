package policy

import (
	"encoding/json"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/internal/strictjson"
	"github.com/portcullis/portcullis/verify/oci"
)

// Config media types of the image manifests cosign writes legacy signatures as.
const (
	mediaTypeOCIConfig    = "application/vnd.oci.image.config.v1+json"
	mediaTypeDockerConfig = "application/vnd.docker.container.image.v1+json"
)

// manifestDoc is the part of an image manifest or index that IsSignatureArtifact reads.
type manifestDoc struct {
	SchemaVersion int              `json:"schemaVersion"`
	MediaType     string           `json:"mediaType"`
	ArtifactType  string           `json:"artifactType"`
	Config        *descriptorDoc   `json:"config"`
	Layers        []descriptorDoc  `json:"layers"`
	Manifests     []descriptorDoc  `json:"manifests"`
	FSLayers      *json.RawMessage `json:"fsLayers"` // schema 1: never a signature artifact
}

type descriptorDoc struct {
	MediaType    string           `json:"mediaType"`
	ArtifactType string           `json:"artifactType"`
	Digest       string           `json:"digest"`
	Platform     *json.RawMessage `json:"platform"`
}

// IsSignatureArtifact reports whether m is, by its content, a signature artifact that is
// served without signatures of its own. Tag names play no part. Recognised:
//   - a cosign legacy signature or attestation manifest (the ".sig"/".att" tags, or a
//     referrer with artifactType application/vnd.dev.cosign.artifact.sig.v1+json): an OCI or
//     Docker image manifest with an image or empty config whose layers, at least one, are all
//     simple-signing payloads or DSSE envelopes;
//   - a sigstore bundle referrer: an OCI image manifest whose artifactType or config media
//     type is the sigstore bundle v0.3 type, with an empty or bundle config, and whose layers,
//     at least one, are all sigstore bundles;
//   - an OCI index as written for the referrers tag schema ("sha256-<hex>"): at least one
//     entry, every entry an OCI image manifest without platform whose artifactType is one of
//     the two above. The entries are then fetched and judged on their own.
//
// It is conservative: a manifest with any layer of another type (anything a runtime could
// unpack), an unknown config type, a declared media type that disagrees with the content, or
// JSON that parsers could read differently (duplicate keys, trailing data) is not exempt.
func IsSignatureArtifact(m oci.Manifest) bool {
	if len(m.Bytes) > oci.MaxManifestSize {
		return false
	}
	var doc manifestDoc
	if err := json.Unmarshal(m.Bytes, &doc); err != nil {
		return false
	}
	if doc.SchemaVersion != 2 || doc.FSLayers != nil || (doc.MediaType != "" && doc.MediaType != m.MediaType) {
		return false
	}
	var ok bool
	switch m.MediaType {
	case oci.MediaTypeOCIManifest:
		ok = isLegacySignature(doc, false) || isBundleReferrer(doc)
	case oci.MediaTypeDockerManifest:
		ok = isLegacySignature(doc, true)
	case oci.MediaTypeOCIIndex:
		ok = isReferrersIndex(doc)
	}
	// Only what would be exempt pays for the strict parse.
	return ok && strictjson.CheckUnambiguous(m.Bytes) == nil
}

// isLegacySignature recognises a cosign simple-signing (.sig) or DSSE (.att) manifest.
func isLegacySignature(doc manifestDoc, docker bool) bool {
	if doc.Config == nil || len(doc.Layers) == 0 || doc.Manifests != nil {
		return false
	}
	switch doc.Config.MediaType {
	case mediaTypeOCIConfig, oci.MediaTypeEmptyJSON:
		if docker {
			return false
		}
	case mediaTypeDockerConfig:
		if !docker {
			return false
		}
	default:
		return false
	}
	switch doc.ArtifactType {
	case "", cosign.ArtifactTypeSignature:
	default:
		return false
	}
	for _, l := range doc.Layers {
		if l.MediaType != cosign.MediaTypeSimpleSigning && l.MediaType != cosign.MediaTypeDSSEEnvelope {
			return false
		}
	}
	return true
}

// isBundleReferrer recognises a sigstore bundle stored as an OCI 1.1 referrer.
func isBundleReferrer(doc manifestDoc) bool {
	if doc.Config == nil || len(doc.Layers) == 0 || doc.Manifests != nil {
		return false
	}
	if doc.ArtifactType != cosign.MediaTypeSigstoreBundle && doc.Config.MediaType != cosign.MediaTypeSigstoreBundle {
		return false
	}
	if doc.ArtifactType != "" && doc.ArtifactType != cosign.MediaTypeSigstoreBundle {
		return false
	}
	if doc.Config.MediaType != oci.MediaTypeEmptyJSON && doc.Config.MediaType != cosign.MediaTypeSigstoreBundle {
		return false
	}
	for _, l := range doc.Layers {
		if l.MediaType != cosign.MediaTypeSigstoreBundle {
			return false
		}
	}
	return true
}

// isReferrersIndex recognises a referrers tag schema index listing only signature artifacts.
func isReferrersIndex(doc manifestDoc) bool {
	if len(doc.Manifests) == 0 || doc.Config != nil || doc.Layers != nil {
		return false
	}
	for _, e := range doc.Manifests {
		if e.MediaType != oci.MediaTypeOCIManifest || e.Platform != nil {
			return false
		}
		if e.ArtifactType != cosign.MediaTypeSigstoreBundle && e.ArtifactType != cosign.ArtifactTypeSignature {
			return false
		}
	}
	return true
}

// isIndexContent reports whether m is an index both by its declared media type and by its
// content, so that an image manifest labelled as an index is never treated as one.
func isIndexContent(m oci.Manifest) bool {
	if !oci.IsIndex(m.MediaType) {
		return false
	}
	var doc manifestDoc
	if err := json.Unmarshal(m.Bytes, &doc); err != nil {
		return false
	}
	return doc.SchemaVersion == 2 && doc.Config == nil && doc.Layers == nil && doc.FSLayers == nil &&
		(doc.MediaType == "" || doc.MediaType == m.MediaType) &&
		strictjson.CheckUnambiguous(m.Bytes) == nil
}
