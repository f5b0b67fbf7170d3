package proxy

import (
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/verify/oci"
)

// TestManifestMemoryBound adds manifests beyond the bound: the bytes held stay under it, the
// least recently used go first, and a manifest over the size limit is not kept.
func TestManifestMemoryBound(t *testing.T) {
	u, err := upstream.New(upstream.Config{Name: "up.test", URL: "http://127.0.0.1:1", Insecure: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rt := route{upstream: u, repo: "demo/app"}
	manifest := func(i, size int) oci.Manifest {
		b := fmt.Appendf(nil, `{"i":%d,"pad":"%*s"}`, i, size, "")
		return oci.Manifest{Bytes: b, MediaType: oci.MediaTypeOCIManifest, Digest: digest.FromBytes(b)}
	}
	const size, max = 10 << 10, 100 << 10
	mm := newManifestMemory(max)
	var ms []oci.Manifest
	for i := range 20 {
		m := manifest(i, size)
		ms = append(ms, m)
		mm.add(rt, m)
		if i == 3 {
			mm.get(rt, ms[0].Digest) // used: outlives 1..3
		}
		if mm.bytes > max {
			t.Fatalf("after %d manifests of %d bytes, %d bytes held, bound %d", i+1, size, mm.bytes, max)
		}
	}
	for i, tc := range []struct {
		i    int
		kept bool
	}{{0, false}, {1, false}, {19, true}, {12, true}} {
		if got := mm.get(rt, ms[tc.i].Digest) != nil; got != tc.kept {
			t.Errorf("case %d: manifest %d kept %v, want %v", i, tc.i, got, tc.kept)
		}
	}
	if got := mm.get(route{upstream: u, repo: "demo/other"}, ms[19].Digest); got != nil {
		t.Error("a manifest is served to a repository that did not fetch it")
	}
	big := manifest(99, maxMemoryManifest)
	mm.add(rt, big)
	if mm.get(rt, big.Digest) != nil {
		t.Errorf("a %d-byte manifest is kept, limit %d", len(big.Bytes), maxMemoryManifest)
	}
	mm.remove(rt, ms[19].Digest)
	if mm.get(rt, ms[19].Digest) != nil {
		t.Error("a removed manifest is still served")
	}
}
