package verify_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
)

// memRegistry is an in-memory verify.Registry for fuzzing, where HTTP would be too slow.
type memRegistry struct {
	manifests map[string][]byte
	blobs     map[digest.Digest][]byte
	referrers []ocispec.Descriptor
}

func (m *memRegistry) Manifest(_ context.Context, _, ref string) (oci.Manifest, error) {
	b, ok := m.manifests[ref]
	if !ok {
		return oci.Manifest{}, fmt.Errorf("manifest %s: %w", ref, oci.ErrNotFound)
	}
	return oci.NewManifest(b, oci.MediaTypeOCIManifest, "")
}

func (m *memRegistry) Blob(_ context.Context, _ string, d digest.Digest, limit int64) ([]byte, error) {
	b, ok := m.blobs[d]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", d, oci.ErrNotFound)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("blob %s is larger than %d bytes", d, limit)
	}
	return b, nil
}

func (m *memRegistry) Referrers(context.Context, string, digest.Digest) ([]ocispec.Descriptor, error) {
	return m.referrers, nil
}

func (m *memRegistry) addBlob(b []byte) digest.Digest {
	d := digest.FromBytes(b)
	m.blobs[d] = b
	return d
}

// FuzzVerify signs whatever payload and statement the fuzzer makes with the authority's key
// and checks that Verify never panics and only admits a payload or statement that names the
// digest.
func FuzzVerify(f *testing.F) {
	d := digest.FromString("image")
	f.Add(simpleSigning(d, `{"env":"prod"}`), statement(d, cosign.PredicateTypeSign, ""))
	f.Add([]byte(`{"critical":{"image":{"docker-manifest-digest":"`+d.String()+`","Docker-manifest-digest":"x"},"type":"cosign container image signature"}}`),
		[]byte(`{"subject":[{"digest":{"sha256":"`+d.Encoded()+`"}},{"digest":{"sha256":"`+d.Encoded()+`"}}],"predicateType":"`+cosign.PredicateTypeSign+`"}`))
	f.Add([]byte(`[]`), []byte(`{"predicateType":1}`))
	f.Add([]byte(``), []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":{},"predicateType":"`+cosign.PredicateTypeSign+`"}`))
	key := newKey(f, "p256")
	v := verify.New()

	f.Fuzz(func(t *testing.T, payload, stmt []byte) {
		reg := &memRegistry{manifests: map[string][]byte{}, blobs: map[digest.Digest][]byte{}}
		sig := base64.StdEncoding.EncodeToString(key.sign(t, payload))
		man, _ := json.Marshal(ocispec.Manifest{
			MediaType: oci.MediaTypeOCIManifest,
			Layers: []ocispec.Descriptor{{
				MediaType: cosign.MediaTypeSimpleSigning, Digest: reg.addBlob(payload), Size: int64(len(payload)),
				Annotations: map[string]string{cosign.AnnotationSignature: sig},
			}},
		})
		reg.manifests[cosign.SignatureTag(d)] = man
		bd := reg.addBlob(dsseBundle(t, key, stmt))
		bm := bundleManifest(t, d, ocispec.Descriptor{MediaType: cosign.MediaTypeSigstoreBundle, Digest: bd, Size: int64(len(reg.blobs[bd]))})
		bmd := digest.FromBytes(bm)
		reg.manifests[bmd.String()] = bm
		reg.referrers = []ocispec.Descriptor{{MediaType: oci.MediaTypeOCIManifest, Digest: bmd, Size: int64(len(bm))}}

		res, err := v.Verify(context.Background(), reg, verify.Subject{Repository: "r", Digest: d},
			[]verify.Authority{{Name: "a", Key: key.verifier}})
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		got := res.Authorities[0]
		if !got.Verified {
			return
		}
		signed := payload
		if got.Format == verify.FormatBundle {
			signed = stmt
		}
		if !strings.Contains(string(signed), d.Encoded()) {
			t.Errorf("verified a %s signature over %q, which does not name %s", got.Format, signed, d)
		}
	})
}
