package verify_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/internal/oci"
	"github.com/portcullis/portcullis/internal/testtool"
	"github.com/portcullis/portcullis/verify"
)

// httpRegistry is a test-only verify.Registry over the distribution API, built on
// go-containerregistry's remote package. Digests are computed locally.
type httpRegistry struct {
	host string
}

var _ verify.Registry = httpRegistry{}

func (r httpRegistry) reference(repo, ref string) (name.Reference, error) {
	if strings.Contains(ref, ":") {
		return name.NewDigest(r.host+"/"+repo+"@"+ref, name.Insecure)
	}
	return name.NewTag(r.host+"/"+repo+":"+ref, name.Insecure)
}

func notFound(err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %v", oci.ErrNotFound, err)
	}
	return err
}

func (r httpRegistry) Manifest(ctx context.Context, repo, ref string) (oci.Manifest, error) {
	nref, err := r.reference(repo, ref)
	if err != nil {
		return oci.Manifest{}, err
	}
	desc, err := remote.Get(nref, remote.WithContext(ctx))
	if err != nil {
		return oci.Manifest{}, notFound(err)
	}
	if len(desc.Manifest) > oci.MaxManifestSize {
		return oci.Manifest{}, fmt.Errorf("manifest %s is larger than %d bytes", ref, oci.MaxManifestSize)
	}
	var want digest.Digest
	if d, ok := nref.(name.Digest); ok {
		want = digest.Digest(d.DigestStr())
	}
	return oci.NewManifest(desc.Manifest, string(desc.MediaType), want)
}

func (r httpRegistry) Blob(ctx context.Context, repo string, d digest.Digest, limit int64) ([]byte, error) {
	ref, err := name.NewDigest(r.host+"/"+repo+"@"+d.String(), name.Insecure)
	if err != nil {
		return nil, err
	}
	l, err := remote.Layer(ref, remote.WithContext(ctx))
	if err != nil {
		return nil, notFound(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, notFound(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, notFound(err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("blob %s is larger than %d bytes", d, limit)
	}
	if got := d.Algorithm().FromBytes(b); got != d {
		return nil, fmt.Errorf("blob digest mismatch: asked for %s, content is %s", d, got)
	}
	return b, nil
}

func (r httpRegistry) Referrers(ctx context.Context, repo string, d digest.Digest) ([]ocispec.Descriptor, error) {
	ref, err := name.NewDigest(r.host+"/"+repo+"@"+d.String(), name.Insecure)
	if err != nil {
		return nil, err
	}
	idx, err := remote.Referrers(ref, remote.WithContext(ctx))
	if err != nil {
		return nil, notFound(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	out := make([]ocispec.Descriptor, 0, len(im.Manifests))
	for _, m := range im.Manifests {
		out = append(out, ocispec.Descriptor{
			MediaType:    string(m.MediaType),
			Digest:       digest.Digest(m.Digest.String()),
			Size:         m.Size,
			ArtifactType: m.ArtifactType,
			Annotations:  m.Annotations,
		})
	}
	return out, nil
}

// faultRegistry wraps a Registry and fails chosen calls, as a broken upstream would.
type faultRegistry struct {
	verify.Registry
	manifest  func(ref string) error
	replace   func(ref string) ([]byte, bool)
	blob      func(d digest.Digest) error
	referrers error

	mu    sync.Mutex
	calls map[string]int
}

func (f *faultRegistry) count(what string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[what]++
}

func (f *faultRegistry) Manifest(ctx context.Context, repo, ref string) (oci.Manifest, error) {
	f.count("manifest")
	if f.manifest != nil {
		if err := f.manifest(ref); err != nil {
			return oci.Manifest{}, err
		}
	}
	if f.replace != nil {
		if b, ok := f.replace(ref); ok {
			return oci.NewManifest(b, oci.MediaTypeOCIManifest, "")
		}
	}
	return f.Registry.Manifest(ctx, repo, ref)
}

func (f *faultRegistry) Blob(ctx context.Context, repo string, d digest.Digest, limit int64) ([]byte, error) {
	f.count("blob")
	if f.blob != nil {
		if err := f.blob(d); err != nil {
			return nil, err
		}
	}
	return f.Registry.Blob(ctx, repo, d, limit)
}

func (f *faultRegistry) Referrers(ctx context.Context, repo string, d digest.Digest) ([]ocispec.Descriptor, error) {
	f.count("referrers")
	if f.referrers != nil {
		return nil, f.referrers
	}
	return f.Registry.Referrers(ctx, repo, d)
}

// upstream is one in-process registry under test.
type upstream struct {
	name string
	host string
	// referrersAPI is false when the registry needs the referrers tag schema.
	referrersAPI bool
}

func (u upstream) registry() verify.Registry { return httpRegistry{host: u.host} }

// newGGCR starts go-containerregistry's registry, which has the referrers API.
func newGGCR(t testing.TB) upstream {
	t.Helper()
	h := ggcrregistry.New(ggcrregistry.WithReferrersSupport(true), ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return upstream{name: "ggcr", host: strings.TrimPrefix(srv.URL, "http://"), referrersAPI: true}
}

// newDistribution starts distribution v3's registry with in-memory storage; it has no
// referrers API, so clients use the referrers tag schema.
func newDistribution(t testing.TB) upstream {
	t.Helper()
	srv := httptest.NewServer(testtool.Distribution(t))
	t.Cleanup(srv.Close)
	return upstream{name: "distribution", host: strings.TrimPrefix(srv.URL, "http://")}
}

func upstreams(t testing.TB) []upstream {
	return []upstream{newGGCR(t), newDistribution(t)}
}

// pushImage pushes a small random image to repo and returns its digest.
func pushImage(t testing.TB, host, repo string) digest.Digest {
	t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(host+"/"+repo+":latest", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push image: %v", err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(d.String())
}

// pushBlob uploads b to repo and returns its descriptor.
func pushBlob(t testing.TB, host, repo, mediaType string, b []byte) ocispec.Descriptor {
	t.Helper()
	r, err := name.NewRepository(host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(r, static.NewLayer(b, types.MediaType(mediaType))); err != nil {
		t.Fatalf("push blob: %v", err)
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// rawManifest is a manifest pushed byte for byte.
type rawManifest struct {
	b         []byte
	mediaType string
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.b, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.MediaType(m.mediaType), nil }

// putManifest pushes manifest bytes under ref (a tag, or "" for by digest) and returns the
// digest.
func putManifest(t testing.TB, host, repo, ref, mediaType string, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	if ref == "" {
		ref = d.String()
	}
	nref, err := httpRegistry{host: host}.reference(repo, ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(nref, rawManifest{b: b, mediaType: mediaType}); err != nil {
		t.Fatalf("put manifest %s: %v", ref, err)
	}
	return d
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
