package policy_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
)

var specsVersioned = specs.Versioned{SchemaVersion: 2}

// publicPEM returns the PEM encoding of pub.
func publicPEM(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	b, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		t.Fatalf("MarshalPublicKeyToPEM: %v", err)
	}
	return string(b)
}

// newKeyPEM returns a fresh ECDSA P-256 public key in PEM.
func newKeyPEM(t testing.TB) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	return publicPEM(t, k.Public())
}

// authorities returns authority configs with the given names and fresh inline keys.
func authorities(t testing.TB, names ...string) []policy.AuthorityConfig {
	t.Helper()
	var as []policy.AuthorityConfig
	for _, n := range names {
		as = append(as, policy.AuthorityConfig{Name: n, Key: policy.KeyConfig{Data: newKeyPEM(t)}})
	}
	return as
}

func compile(t testing.TB, cfg policy.Config, opts ...policy.Option) *policy.Set {
	t.Helper()
	s, err := policy.Compile(context.Background(), cfg, opts...)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return s
}

// manifest builds an oci.Manifest from v's JSON.
func manifest(t testing.TB, mediaType string, v any) oci.Manifest {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	return rawManifest(t, mediaType, string(b))
}

func rawManifest(t testing.TB, mediaType, body string) oci.Manifest {
	t.Helper()
	m, err := oci.NewManifest([]byte(body), mediaType, "")
	if err != nil {
		t.Fatalf("NewManifest: %v", err)
	}
	return m
}

func desc(mediaType, content string) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromString(content), Size: int64(len(content))}
}

// imageManifest is a runnable image: an image config and a tar layer.
func imageManifest(t testing.TB, name string) oci.Manifest {
	t.Helper()
	return manifest(t, oci.MediaTypeOCIManifest, ocispec.Manifest{
		Versioned: specsVersioned,
		MediaType: oci.MediaTypeOCIManifest,
		Config:    desc("application/vnd.oci.image.config.v1+json", name+" config"),
		Layers:    []ocispec.Descriptor{desc("application/vnd.oci.image.layer.v1.tar+gzip", name+" layer")},
	})
}

// index lists children as platform manifests.
func index(t testing.TB, children ...oci.Manifest) oci.Manifest {
	t.Helper()
	idx := ocispec.Index{Versioned: specsVersioned, MediaType: oci.MediaTypeOCIIndex}
	for i, c := range children {
		idx.Manifests = append(idx.Manifests, ocispec.Descriptor{
			MediaType: c.MediaType, Digest: c.Digest, Size: int64(len(c.Bytes)),
			Platform: &ocispec.Platform{OS: "linux", Architecture: []string{"amd64", "arm64", "s390x"}[i%3]},
		})
	}
	return manifest(t, oci.MediaTypeOCIIndex, idx)
}

// fakeRegistry stands for an upstream; the Engine only hands it to the Verifier.
type fakeRegistry struct{ name string }

var _ verify.Registry = (*fakeRegistry)(nil)

var errFakeRegistry = errors.New("fake registry: the engine must not read the registry itself")

func (r *fakeRegistry) Manifest(context.Context, string, string) (oci.Manifest, error) {
	return oci.Manifest{}, errFakeRegistry
}

func (r *fakeRegistry) Blob(context.Context, string, digest.Digest, int64) ([]byte, error) {
	return nil, errFakeRegistry
}

func (r *fakeRegistry) Referrers(context.Context, string, digest.Digest) ([]ocispec.Descriptor, error) {
	return nil, errFakeRegistry
}

// fakeVerifier verifies, for each digest, the authorities named in signed. It counts calls and
// can hold them at a gate.
type fakeVerifier struct {
	registry verify.Registry // the registry every call must receive

	mu        sync.Mutex
	signed    map[digest.Digest][]string
	err       error
	calls     int
	gate      chan struct{}
	artifacts map[digest.Digest]error // CheckArtifact's answer per manifest; nil: a real signature
	checks    int
}

var _ policy.Verifier = (*fakeVerifier)(nil)

func newFakeVerifier(reg verify.Registry) *fakeVerifier {
	return &fakeVerifier{registry: reg, signed: map[digest.Digest][]string{}, artifacts: map[digest.Digest]error{}}
}

// CheckArtifact answers what artifacts says for m (nil by default) and counts its calls.
func (f *fakeVerifier) CheckArtifact(_ context.Context, reg verify.Registry, _ string, m oci.Manifest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks++
	if reg != f.registry {
		return fmt.Errorf("CheckArtifact got registry %v, want %v", reg, f.registry)
	}
	return f.artifacts[m.Digest]
}

func (f *fakeVerifier) sign(d digest.Digest, authorities ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.signed[d] = append(f.signed[d], authorities...)
}

func (f *fakeVerifier) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeVerifier) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeVerifier) Verify(ctx context.Context, reg verify.Registry, s verify.Subject, auths []verify.Authority) (verify.Result, error) {
	f.mu.Lock()
	f.calls++
	gate, err, signed := f.gate, f.err, slices.Clone(f.signed[s.Digest])
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return verify.Result{}, ctx.Err()
		}
	}
	if reg != f.registry {
		return verify.Result{}, fmt.Errorf("verifier got registry %v, want %v", reg, f.registry)
	}
	res := verify.Result{Signatures: 1}
	for _, a := range auths {
		if a.Key == nil {
			return verify.Result{}, fmt.Errorf("authority %q has no key", a.Name)
		}
		ar := verify.AuthorityResult{Authority: a.Name, Format: "legacy"}
		if slices.Contains(signed, a.Name) {
			ar.Verified, ar.Signer = true, "key "+a.Name
		} else {
			ar.Reason = "found 1 signature: wrong key"
		}
		res.Authorities = append(res.Authorities, ar)
	}
	if err != nil {
		// Like the real verifier: a lookup failure comes with what was found anyway.
		return res, err
	}
	return res, nil
}

func newCache(t testing.TB) *cache.Memory[policy.Decision] {
	t.Helper()
	c, err := cache.NewMemory[policy.Decision]()
	if err != nil {
		t.Fatalf("NewMemory: %v", err)
	}
	return c
}
