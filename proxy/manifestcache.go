package proxy

import (
	"strconv"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/verify/oci"
)

// Defaults of the manifest memory (Options.ManifestMemory).
const (
	// DefaultManifestMemory bounds the bytes of the manifests kept in memory.
	DefaultManifestMemory = 32 << 20
	// maxMemoryManifest is the largest manifest kept in memory; larger ones (big indexes)
	// are read from the store each time.
	maxMemoryManifest = 64 << 10
	// memoryOverhead is what an entry costs besides its manifest's bytes (key, headers,
	// list element), counted against the bound.
	memoryOverhead = 512
)

// manifestMemory keeps manifests that were admitted recently, by upstream, repository and
// digest, so that a GET of one by digest is answered without the store and with its response
// headers built once. It holds only what the store holds for that repository (the bytes
// whose digest portcullis computed), and serving from it never skips the Gate: every GET is
// still decided (a cached decision is a lookup). Bounded in bytes, least recently used out
// first; safe for concurrent use.
type manifestMemory struct {
	mu    sync.Mutex
	lru   *simplelru.LRU[manifestKey, *memManifest]
	bytes int64
	max   int64
}

type manifestKey struct {
	upstream, repo string
	digest         digest.Digest
}

// memManifest is a manifest with what serving it needs, built once. Read-only once stored.
type memManifest struct {
	m oci.Manifest
	// image is the name policies match, grantKey the key of its blob grants.
	image, grantKey string
	// header values, each a one-element slice with no spare capacity (net/http only reads
	// them, and an append would copy).
	contentType, digest, length, etag []string
	size                              int64
}

// newManifestMemory returns a memory bounded to max bytes; max ≤ 0 keeps nothing.
func newManifestMemory(max int64) *manifestMemory {
	if max <= 0 {
		return &manifestMemory{}
	}
	mm := &manifestMemory{max: max}
	// The LRU's own count bound is never the one that bites: max/memoryOverhead entries
	// would already exceed max bytes.
	mm.lru, _ = simplelru.NewLRU[manifestKey, *memManifest](int(max/memoryOverhead)+1, func(_ manifestKey, v *memManifest) {
		mm.bytes -= v.size
	})
	return mm
}

// get returns the manifest d of rt's repository, if it is in memory.
func (mm *manifestMemory) get(rt route, d digest.Digest) *memManifest {
	if mm.lru == nil {
		return nil
	}
	k := manifestKey{upstream: rt.upstream.Name(), repo: rt.repo, digest: d}
	mm.mu.Lock()
	v, _ := mm.lru.Get(k)
	mm.mu.Unlock()
	return v
}

// add keeps m, as served for rt's repository, unless it is too large.
func (mm *manifestMemory) add(rt route, m oci.Manifest) {
	if mm.lru == nil || len(m.Bytes) > maxMemoryManifest {
		return
	}
	k := manifestKey{upstream: rt.upstream.Name(), repo: rt.repo, digest: m.Digest}
	v := &memManifest{
		m:           m,
		image:       rt.image(),
		grantKey:    grantKey(rt, m.Digest),
		contentType: []string{m.MediaType},
		digest:      []string{m.Digest.String()},
		length:      []string{strconv.Itoa(len(m.Bytes))},
		etag:        []string{`"` + m.Digest.String() + `"`},
		size:        int64(len(m.Bytes)+len(k.upstream)+len(k.repo)+len(k.digest)) + memoryOverhead,
	}
	mm.mu.Lock()
	defer mm.mu.Unlock()
	if mm.lru.Contains(k) {
		return
	}
	mm.lru.Add(k, v)
	mm.bytes += v.size
	for mm.bytes > mm.max {
		mm.lru.RemoveOldest()
	}
}

// remove forgets manifest d of rt's repository (deleted upstream).
func (mm *manifestMemory) remove(rt route, d digest.Digest) {
	if mm.lru == nil {
		return
	}
	mm.mu.Lock()
	mm.lru.Remove(manifestKey{upstream: rt.upstream.Name(), repo: rt.repo, digest: d})
	mm.mu.Unlock()
}
