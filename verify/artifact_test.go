package verify_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
)

// cosignConfig is the image config cosign writes for a ".sig" or ".att" manifest.
const cosignConfig = `{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":[]},"config":{}}`

// runnableLayer is a gzip'd tar holding an executable script: what a runtime would unpack
// and run if it were served as a signature.
func runnableLayer(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	script := []byte("#!/bin/sh\necho pwned\n")
	if err := tw.WriteHeader(&tar.Header{Name: "run.sh", Mode: 0o755, Size: int64(len(script))}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write(script)
	_ = tw.Close()
	_ = zw.Close()
	return buf.Bytes()
}

func dsseEnvelope(payload string, sigs ...string) []byte {
	var s []string
	for _, sig := range sigs {
		s = append(s, fmt.Sprintf(`{"keyid":"","sig":%q}`, sig))
	}
	return fmt.Appendf(nil, `{"payloadType":"application/vnd.in-toto+json","payload":%q,"signatures":[%s]}`,
		base64.StdEncoding.EncodeToString([]byte(payload)), strings.Join(s, ","))
}

// artifact builds a manifest of mediaType with config (of configType) and layers (of
// layerType) in reg, as a signature artifact would be.
type artifact struct {
	mediaType, configType, layerType string
	config                           []byte
	layers                           [][]byte
	// edit changes the descriptors before the manifest is written.
	edit func(m *ocispec.Manifest)
}

func (a artifact) build(t *testing.T, reg *memRegistry) oci.Manifest {
	t.Helper()
	desc := func(mt string, b []byte) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: mt, Digest: reg.addBlob(b), Size: int64(len(b))}
	}
	m := ocispec.Manifest{MediaType: a.mediaType, Config: desc(a.configType, a.config)}
	m.SchemaVersion = 2
	for _, l := range a.layers {
		m.Layers = append(m.Layers, desc(a.layerType, l))
	}
	if a.edit != nil {
		a.edit(&m)
	}
	b := mustJSON(t, m)
	man, err := oci.NewManifest(b, a.mediaType, "")
	if err != nil {
		t.Fatal(err)
	}
	return man
}

// failingRegistry answers every blob with an upstream failure.
type failingRegistry struct{ *memRegistry }

func (failingRegistry) Blob(context.Context, string, digest.Digest, int64) ([]byte, error) {
	return nil, errors.New("upstream answered 503")
}

func TestCheckArtifact(t *testing.T) {
	k := newKey(t, "p256")
	d := digest.FromString("image")
	payload := simpleSigning(d, "")
	sig := base64.StdEncoding.EncodeToString([]byte("signature"))
	legacy := artifact{mediaType: oci.MediaTypeOCIManifest, configType: "application/vnd.oci.image.config.v1+json",
		layerType: cosign.MediaTypeSimpleSigning, config: []byte(cosignConfig), layers: [][]byte{payload}}
	withConfig := func(cfg string) artifact { a := legacy; a.config = []byte(cfg); return a }
	withLayer := func(mt string, b []byte) artifact { a := legacy; a.layerType, a.layers = mt, [][]byte{b}; return a }
	docker := legacy
	docker.mediaType, docker.configType = oci.MediaTypeDockerManifest, "application/vnd.docker.container.image.v1+json"
	bundleRef := artifact{mediaType: oci.MediaTypeOCIManifest, configType: oci.MediaTypeEmptyJSON, layerType: cosign.MediaTypeSigstoreBundle,
		config: []byte("{}"), layers: [][]byte{dsseBundle(t, k, statement(d, cosign.PredicateTypeSign, ""))}}

	tests := []struct {
		name string
		a    artifact
		fail bool   // the registry fails every blob read
		want string // "" (a signature artifact), "lookup", or a piece of the ArtifactError
	}{
		{name: "legacy signature", a: legacy},
		{name: "legacy signature, docker types", a: docker},
		{name: "several signatures", a: func() artifact { a := legacy; a.layers = [][]byte{payload, simpleSigning(d, `{"k":"v"}`)}; return a }()},
		{name: "attestation", a: withLayer(cosign.MediaTypeDSSEEnvelope, dsseEnvelope(`{"_type":"x"}`, sig))},
		{name: "bundle referrer", a: bundleRef},
		{name: "bundle referrer with a certificate chain (cosign --certificate-chain)", a: func() artifact {
			a := bundleRef
			a.layers = [][]byte{newOwnPKI(t).sign(t, "builder@corp.example", time.Now(), statement(d, cosign.PredicateTypeSign, ""))}
			return a
		}()},
		{name: "empty config", a: func() artifact { a := legacy; a.configType, a.config = oci.MediaTypeEmptyJSON, []byte("{}"); return a }()},

		{name: "gzip tar as simple signing", a: withLayer(cosign.MediaTypeSimpleSigning, runnableLayer(t)), want: "layer 0"},
		{name: "gzip tar as DSSE", a: withLayer(cosign.MediaTypeDSSEEnvelope, runnableLayer(t)), want: "is not a application/vnd.dsse.envelope.v1+json"},
		{name: "gzip tar as bundle", a: func() artifact { a := bundleRef; a.layers = [][]byte{runnableLayer(t)}; return a }(), want: "layer 0"},
		{name: "tar among signatures", a: func() artifact { a := legacy; a.layers = [][]byte{payload, runnableLayer(t)}; return a }(), want: "layer 1"},
		{name: "payload of another type", a: withLayer(cosign.MediaTypeSimpleSigning, []byte(`{"critical":{"type":"x","image":{"docker-manifest-digest":"`+d.String()+`"}}}`)), want: "critical.type"},
		{name: "JSON that is not a payload", a: withLayer(cosign.MediaTypeSimpleSigning, []byte(`{"a":1}`)), want: `missing "critical"`},
		{name: "DSSE without signatures", a: withLayer(cosign.MediaTypeDSSEEnvelope, dsseEnvelope("{}")), want: "no signatures"},
		{name: "DSSE payload not base64", a: withLayer(cosign.MediaTypeDSSEEnvelope, []byte(`{"payloadType":"t","payload":"%%%","signatures":[{"sig":"AA=="}]}`)), want: "not base64"},
		{name: "config with an entrypoint", a: withConfig(`{"config":{"Entrypoint":["/run.sh"]},"rootfs":{"type":"layers","diff_ids":[]}}`), want: "sets Entrypoint"},
		{name: "config with a lower-case cmd", a: withConfig(`{"config":{"cmd":["/run.sh"]}}`), want: "sets cmd"},
		{name: "config with an environment", a: withConfig(`{"config":{"Env":["PATH=/"]}}`), want: "sets Env"},
		{name: "config under another spelling", a: withConfig(`{"Config":{"Entrypoint":"/run.sh"}}`), want: "sets Entrypoint"},
		{name: "config with two spellings", a: withConfig(`{"config":{},"Config":{"Cmd":["/run.sh"]}}`), want: "ambiguous"},
		{name: "config that is not JSON", a: withConfig(`not json`), want: "config"},
		{name: "empty config that is not empty", a: func() artifact {
			a := legacy
			a.configType, a.config = oci.MediaTypeEmptyJSON, []byte(`{"config":{}}`)
			return a
		}(), want: "not the empty JSON object"},
		{name: "missing layer blob", a: func() artifact {
			a := legacy
			a.edit = func(m *ocispec.Manifest) { m.Layers[0].Digest = digest.FromString("absent") }
			return a
		}(), want: "does not exist"},
		{name: "descriptor size that lies", a: func() artifact {
			a := legacy
			a.edit = func(m *ocispec.Manifest) { m.Layers[0].Size = 3 }
			return a
		}(), want: "its descriptor says 3"},
		{name: "oversized layer", a: func() artifact {
			a := legacy
			a.edit = func(m *ocispec.Manifest) { m.Layers[0].Size = 1 << 40 }
			return a
		}(), want: "exceeds the limit"},
		{name: "upstream failure", a: legacy, fail: true, want: "lookup"},
	}
	v := verify.New()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := &memRegistry{blobs: map[digest.Digest][]byte{}}
			m := tt.a.build(t, mem)
			var reg verify.Registry = mem
			if tt.fail {
				reg = failingRegistry{mem}
			}
			err := v.CheckArtifact(t.Context(), reg, "app", m)
			ae, isArtifactErr := errors.AsType[*verify.ArtifactError](err)
			_, isLookup := errors.AsType[*verify.LookupError](err)
			switch tt.want {
			case "":
				if err != nil {
					t.Fatalf("CheckArtifact = %v, want a signature artifact", err)
				}
			case "lookup":
				if !isLookup || isArtifactErr {
					t.Fatalf("CheckArtifact = %v, want a *LookupError (no verdict)", err)
				}
			default:
				if !isArtifactErr || !strings.Contains(ae.Error(), tt.want) {
					t.Fatalf("CheckArtifact = %v, want an *ArtifactError containing %q", err, tt.want)
				}
			}
		})
	}
}

func TestCheckArtifactIndex(t *testing.T) {
	// A referrers index lists manifests, which are judged when fetched: nothing to read.
	b := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
	m, err := oci.NewManifest(b, oci.MediaTypeOCIIndex, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.New().CheckArtifact(t.Context(), failingRegistry{}, "app", m); err != nil {
		t.Fatalf("CheckArtifact(index) = %v, want nil without reading anything", err)
	}
}
