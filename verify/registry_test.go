package verify_test

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/internal/testtool"
	upstreamclient "github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
)

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

// registry is portcullis's own registry client for u, as the proxy uses it.
func (u upstream) registry(t testing.TB) verify.Registry {
	t.Helper()
	zero := 0
	c, err := upstreamclient.New(upstreamclient.Config{Name: u.host, URL: "http://" + u.host, Insecure: true, Retries: &zero}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

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
	var nref name.Reference
	var err error
	if strings.Contains(ref, ":") {
		nref, err = name.NewDigest(host+"/"+repo+"@"+ref, name.Insecure)
	} else {
		nref, err = name.NewTag(host+"/"+repo+":"+ref, name.Insecure)
	}
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
