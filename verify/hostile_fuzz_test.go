package verify_test

import (
	"bytes"
	"context"
	"strconv"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
)

// FuzzHostileSignatures feeds attacker-made signature artifacts to Verify: the ".sig"
// manifest, its payload blob, the bundle referrer manifest, its bundle blob and the
// referrers listing are all fuzzed. In the manifests, $PAYLOAD, $PSIZE, $BUNDLE and $BSIZE
// are replaced with the digest and size of the fuzzed blobs, so that the fuzzer reaches the
// parsers behind the digest checks. Nobody but the test holds the authority's key, so
// nothing may verify, and Verify must not fail (a registry that answers is no lookup error).
func FuzzHostileSignatures(f *testing.F) {
	d := digest.FromString("image")
	sigMan := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"$PAYLOAD","size":$PSIZE,"annotations":{"dev.cosignproject.cosign/signature":"MEUCIQDx"}}]}`)
	bunMan := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","digest":"$BUNDLE","size":$BSIZE}],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + d.String() + `","size":100}}`)
	f.Add(sigMan, simpleSigning(d, `{"env":"prod"}`), bunMan,
		[]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"AAAA"}},"dsseEnvelope":{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"MEUCIQDx"}]}}`),
		cosign.MediaTypeSigstoreBundle)
	f.Add(sigMan, []byte(`{"critical":{"image":{"docker-manifest-digest":"`+d.String()+`"},"type":"cosign container image signature","Type":"x"}}`), bunMan,
		[]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","messageSignature":{"messageDigest":{"algorithm":"SHA2_256","digest":"AAAA"},"signature":"AAAA"}}`), "")
	f.Add([]byte(`{"layers":[{"digest":"$PAYLOAD","size":-1}]}`), []byte(`null`), []byte(`{"layers":[]}`), []byte(`[]`), "application/vnd.oci.empty.v1+json")
	key := newKey(f, "p256")
	v := verify.New()

	f.Fuzz(func(t *testing.T, sigManifest, payload, bundleManifest, bundleBlob []byte, artifactType string) {
		reg := &memRegistry{manifests: map[string][]byte{}, blobs: map[digest.Digest][]byte{}}
		pd, bd := reg.addBlob(payload), reg.addBlob(bundleBlob)
		fill := func(b []byte) []byte {
			b = bytes.ReplaceAll(b, []byte("$PAYLOAD"), []byte(pd))
			b = bytes.ReplaceAll(b, []byte("$PSIZE"), []byte(strconv.Itoa(len(payload))))
			b = bytes.ReplaceAll(b, []byte("$BUNDLE"), []byte(bd))
			return bytes.ReplaceAll(b, []byte("$BSIZE"), []byte(strconv.Itoa(len(bundleBlob))))
		}
		reg.manifests[cosign.SignatureTag(d)] = fill(sigManifest)
		bm := fill(bundleManifest)
		bmd := digest.FromBytes(bm)
		reg.manifests[bmd.String()] = bm
		reg.referrers = []ocispec.Descriptor{{MediaType: oci.MediaTypeOCIManifest, ArtifactType: artifactType, Digest: bmd, Size: int64(len(bm))}}

		res, err := v.Verify(context.Background(), reg, verify.Subject{Repository: "r", Digest: d},
			[]verify.Authority{{Name: "a", Key: key.verifier}})
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if len(res.Authorities) != 1 {
			t.Fatalf("%d authority results for 1 authority", len(res.Authorities))
		}
		if got := res.Authorities[0]; got.Verified {
			t.Fatalf("verified a signature nobody made with the key: %+v", got)
		}
	})
}
