package policy_test

import (
	"encoding/json"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verify/oci"
)

const (
	ociConfig      = "application/vnd.oci.image.config.v1+json"
	dockerConfig   = "application/vnd.docker.container.image.v1+json"
	tarLayer       = "application/vnd.oci.image.layer.v1.tar+gzip"
	dockerTarLayer = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// legacySig is a cosign .sig manifest with one simple-signing layer per signature.
func legacySig(t testing.TB, layers ...string) oci.Manifest {
	t.Helper()
	m := ocispec.Manifest{Versioned: specsVersioned, MediaType: oci.MediaTypeOCIManifest, Config: desc(ociConfig, "sig config")}
	for _, l := range layers {
		m.Layers = append(m.Layers, desc(l, "payload "+l))
	}
	return manifest(t, oci.MediaTypeOCIManifest, m)
}

// bundleReferrer is a cosign v3 sigstore bundle referrer of subject.
func bundleReferrer(t testing.TB, subject oci.Manifest) oci.Manifest {
	t.Helper()
	return manifest(t, oci.MediaTypeOCIManifest, ocispec.Manifest{
		Versioned:    specsVersioned,
		MediaType:    oci.MediaTypeOCIManifest,
		ArtifactType: cosign.MediaTypeSigstoreBundle,
		Config:       ocispec.DescriptorEmptyJSON,
		Layers:       []ocispec.Descriptor{desc(cosign.MediaTypeSigstoreBundle, "bundle")},
		Subject:      &ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: int64(len(subject.Bytes))},
		Annotations:  map[string]string{cosign.AnnotationBundleContent: cosign.BundleContentDSSE},
	})
}

func TestIsSignatureArtifact(t *testing.T) {
	image := imageManifest(t, "app")
	subject := &ocispec.Descriptor{MediaType: image.MediaType, Digest: image.Digest, Size: int64(len(image.Bytes))}
	bundle := bundleReferrer(t, image)
	tests := []struct {
		name string
		m    oci.Manifest
		want bool
	}{
		{"legacy .sig", legacySig(t, cosign.MediaTypeSimpleSigning, cosign.MediaTypeSimpleSigning), true},
		{"legacy .att", legacySig(t, cosign.MediaTypeDSSEEnvelope), true},
		{"legacy docker media types", manifest(t, oci.MediaTypeDockerManifest, ocispec.Manifest{
			Versioned: specsVersioned, MediaType: oci.MediaTypeDockerManifest, Config: desc(dockerConfig, "c"),
			Layers: []ocispec.Descriptor{desc(cosign.MediaTypeSimpleSigning, "p")},
		}), true},
		{"legacy as OCI 1.1 referrer", manifest(t, oci.MediaTypeOCIManifest, ocispec.Manifest{
			Versioned: specsVersioned, MediaType: oci.MediaTypeOCIManifest, ArtifactType: cosign.ArtifactTypeSignature,
			Config: ocispec.DescriptorEmptyJSON, Layers: []ocispec.Descriptor{desc(cosign.MediaTypeSimpleSigning, "p")}, Subject: subject,
		}), true},
		{"sigstore bundle referrer", bundle, true},
		{"bundle by config media type", manifest(t, oci.MediaTypeOCIManifest, ocispec.Manifest{
			Versioned: specsVersioned, MediaType: oci.MediaTypeOCIManifest,
			Config: desc(cosign.MediaTypeSigstoreBundle, "c"), Layers: []ocispec.Descriptor{desc(cosign.MediaTypeSigstoreBundle, "b")},
		}), true},
		{"referrers tag schema index", manifest(t, oci.MediaTypeOCIIndex, ocispec.Index{
			Versioned: specsVersioned, MediaType: oci.MediaTypeOCIIndex,
			Manifests: []ocispec.Descriptor{
				{MediaType: oci.MediaTypeOCIManifest, ArtifactType: cosign.MediaTypeSigstoreBundle, Digest: bundle.Digest, Size: int64(len(bundle.Bytes))},
				{MediaType: oci.MediaTypeOCIManifest, ArtifactType: cosign.ArtifactTypeSignature, Digest: bundle.Digest, Size: int64(len(bundle.Bytes))},
			},
		}), true},

		{"runnable image", image, false},
		{"runnable image with a subject", manifest(t, oci.MediaTypeOCIManifest, ocispec.Manifest{
			Versioned: specsVersioned, MediaType: oci.MediaTypeOCIManifest, ArtifactType: cosign.MediaTypeSigstoreBundle,
			Config: desc(ociConfig, "c"), Layers: []ocispec.Descriptor{desc(tarLayer, "rootfs")}, Subject: subject,
		}), false},
		{"signature layer beside a tar layer", legacySig(t, cosign.MediaTypeSimpleSigning, tarLayer), false},
		{"docker tar layer", legacySig(t, dockerTarLayer), false},
		{"no layers", legacySig(t), false},
		{"bundle artifactType with a tar layer", manifest(t, oci.MediaTypeOCIManifest, ocispec.Manifest{
			Versioned: specsVersioned, MediaType: oci.MediaTypeOCIManifest, ArtifactType: cosign.MediaTypeSigstoreBundle,
			Config: ocispec.DescriptorEmptyJSON, Layers: []ocispec.Descriptor{desc(cosign.MediaTypeSigstoreBundle, "b"), desc(tarLayer, "t")},
		}), false},
		{"bundle layers without bundle type", manifest(t, oci.MediaTypeOCIManifest, ocispec.Manifest{
			Versioned: specsVersioned, MediaType: oci.MediaTypeOCIManifest,
			Config: ocispec.DescriptorEmptyJSON, Layers: []ocispec.Descriptor{desc(cosign.MediaTypeSigstoreBundle, "b")},
		}), false},
		{"unknown config type", manifest(t, oci.MediaTypeOCIManifest, ocispec.Manifest{
			Versioned: specsVersioned, MediaType: oci.MediaTypeOCIManifest,
			Config: desc("application/vnd.cncf.helm.config.v1+json", "c"), Layers: []ocispec.Descriptor{desc(cosign.MediaTypeSimpleSigning, "p")},
		}), false},
		{"declared type disagrees with content", rawManifest(t, oci.MediaTypeDockerManifest, string(legacySig(t, cosign.MediaTypeSimpleSigning).Bytes)), false},
		{"platform index", index(t, image), false},
		{"referrers index with an image entry", manifest(t, oci.MediaTypeOCIIndex, ocispec.Index{
			Versioned: specsVersioned, MediaType: oci.MediaTypeOCIIndex,
			Manifests: []ocispec.Descriptor{
				{MediaType: oci.MediaTypeOCIManifest, ArtifactType: cosign.MediaTypeSigstoreBundle, Digest: bundle.Digest, Size: 1},
				{MediaType: oci.MediaTypeOCIManifest, Digest: image.Digest, Size: 1},
			},
		}), false},
		{"referrers index entry with a platform", manifest(t, oci.MediaTypeOCIIndex, ocispec.Index{
			Versioned: specsVersioned, MediaType: oci.MediaTypeOCIIndex,
			Manifests: []ocispec.Descriptor{{MediaType: oci.MediaTypeOCIManifest, ArtifactType: cosign.MediaTypeSigstoreBundle, Digest: bundle.Digest, Size: 1, Platform: &ocispec.Platform{OS: "linux", Architecture: "amd64"}}},
		}), false},
		{"empty index", manifest(t, oci.MediaTypeOCIIndex, ocispec.Index{Versioned: specsVersioned, MediaType: oci.MediaTypeOCIIndex, Manifests: []ocispec.Descriptor{}}), false},
		{"duplicate layers key", rawManifest(t, oci.MediaTypeOCIManifest, `{"schemaVersion":2,"mediaType":"`+oci.MediaTypeOCIManifest+`",`+
			`"config":{"mediaType":"`+ociConfig+`","digest":"`+string(image.Digest)+`","size":1},`+
			`"layers":[{"mediaType":"`+tarLayer+`","digest":"`+string(image.Digest)+`","size":1}],`+
			`"Layers":[{"mediaType":"`+cosign.MediaTypeSimpleSigning+`","digest":"`+string(image.Digest)+`","size":1}]}`), false},
		{"duplicate key by Unicode folding", rawManifest(t, oci.MediaTypeOCIManifest, `{"schemaVersion":2,`+
			`"config":{"mediaType":"`+ociConfig+`","digest":"`+string(image.Digest)+`","size":1},`+
			`"layers":[{"mediaType":"`+tarLayer+`","digest":"`+string(image.Digest)+`","size":1}],`+
			`"layerſ":[{"mediaType":"`+cosign.MediaTypeSimpleSigning+`","digest":"`+string(image.Digest)+`","size":1}]}`), false},
		{"trailing data", rawManifest(t, oci.MediaTypeOCIManifest, string(legacySig(t, cosign.MediaTypeSimpleSigning).Bytes)+` {}`), false},
		{"schema 1", rawManifest(t, oci.MediaTypeDockerManifest, `{"schemaVersion":1,"fsLayers":[]}`), false},
		{"not JSON", rawManifest(t, oci.MediaTypeOCIManifest, `not json`), false},
		{"empty", rawManifest(t, oci.MediaTypeOCIManifest, ``), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := policy.IsSignatureArtifact(tt.m); got != tt.want {
				t.Fatalf("IsSignatureArtifact(%s) = %v, want %v", tt.m.Bytes, got, tt.want)
			}
		})
	}
}

func FuzzIsSignatureArtifact(f *testing.F) {
	f.Add([]byte(legacySig(f, cosign.MediaTypeSimpleSigning).Bytes), oci.MediaTypeOCIManifest)
	f.Add([]byte(imageManifest(f, "app").Bytes), oci.MediaTypeOCIManifest)
	f.Add([]byte(`{"schemaVersion":2,"manifests":[]}`), oci.MediaTypeOCIIndex)
	f.Fuzz(func(t *testing.T, b []byte, mediaType string) {
		m, err := oci.NewManifest(b, mediaType, "")
		if err != nil {
			t.Skip()
		}
		if !policy.IsSignatureArtifact(m) {
			return
		}
		// Whatever is exempt has no layer a runtime could unpack, however a Go client reads it.
		var doc struct {
			Layers    []ocispec.Descriptor `json:"layers"`
			Manifests []ocispec.Descriptor `json:"manifests"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("exempt manifest is not JSON: %v", err)
		}
		for _, l := range doc.Layers {
			switch l.MediaType {
			case cosign.MediaTypeSimpleSigning, cosign.MediaTypeDSSEEnvelope, cosign.MediaTypeSigstoreBundle:
			default:
				t.Fatalf("exempt manifest has a layer of type %q: %s", l.MediaType, b)
			}
		}
		for _, e := range doc.Manifests {
			if e.Platform != nil {
				t.Fatalf("exempt index has a platform entry: %s", b)
			}
		}
	})
}
