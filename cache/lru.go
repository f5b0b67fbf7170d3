package cache

import (
	"fmt"
	"reflect"
	"runtime"
	"sync"
	"time"
	"unique"
	"weak"

	"github.com/opencontainers/go-digest"
)

// item is one stored value: v points to the value or, for a Splitter, to the shared
// remainder that t completes.
type item[V any] struct {
	v       *V
	t       time.Time
	expires int64 // Unix nanoseconds
}

// lkey is a Key as an lru keeps it: the policy version and repository, which many keys
// share, as handles of their one copy.
type lkey struct {
	version, repository unique.Handle[string]
	digest              digest.Digest
}

func toLKey(k Key) lkey {
	return lkey{version: unique.Make(k.PolicyVersion), repository: unique.Make(k.Repository), digest: k.Digest}
}

// node is an lru entry; prev and next link the recency list by index (-1: none).
type node[V any] struct {
	key        lkey
	it         item[V]
	prev, next int32
}

// lru is a size-bounded LRU whose entries expire ttl after they were added. Expired entries
// are dropped when looked up, or pushed out by newer ones. Its entries live in one slice
// linked by index and found through a map of indexes: no allocation per entry, and about
// 150 bytes an entry for decisions (see Splitter).
type lru[V any] struct {
	mu         sync.Mutex
	idx        map[lkey]int32
	nodes      []node[V]
	head, tail int32 // most and least recently used
	free       int32 // a chain of unused nodes through next
	size       int
	ttl        time.Duration
}

func newLRU[V any](size int, ttl time.Duration) *lru[V] {
	return &lru[V]{idx: map[lkey]int32{}, head: -1, tail: -1, free: -1, size: size, ttl: ttl}
}

func (c *lru[V]) unlink(i int32) {
	n := &c.nodes[i]
	if n.prev >= 0 {
		c.nodes[n.prev].next = n.next
	} else {
		c.head = n.next
	}
	if n.next >= 0 {
		c.nodes[n.next].prev = n.prev
	} else {
		c.tail = n.prev
	}
}

func (c *lru[V]) pushFront(i int32) {
	n := &c.nodes[i]
	n.prev, n.next = -1, c.head
	if c.head >= 0 {
		c.nodes[c.head].prev = i
	}
	c.head = i
	if c.tail < 0 {
		c.tail = i
	}
}

// drop removes node i.
func (c *lru[V]) drop(i int32) {
	c.unlink(i)
	delete(c.idx, c.nodes[i].key)
	c.nodes[i] = node[V]{next: c.free}
	c.free = i
}

func (c *lru[V]) get(k Key) (item[V], bool) {
	lk := toLKey(k)
	now := time.Now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.idx[lk]
	if !ok {
		return item[V]{}, false
	}
	if now >= c.nodes[i].it.expires {
		c.drop(i)
		return item[V]{}, false
	}
	c.unlink(i)
	c.pushFront(i)
	return c.nodes[i].it, true
}

func (c *lru[V]) add(k Key, it item[V]) {
	lk := toLKey(k)
	it.expires = time.Now().Add(c.ttl).UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if i, ok := c.idx[lk]; ok {
		c.nodes[i].it = it
		c.unlink(i)
		c.pushFront(i)
		return
	}
	if len(c.idx) >= c.size {
		c.drop(c.tail)
	}
	var i int32
	if c.free >= 0 {
		i = c.free
		c.free = c.nodes[i].next
	} else {
		i = int32(len(c.nodes))
		c.nodes = append(c.nodes, node[V]{})
	}
	c.nodes[i] = node[V]{key: lk, it: it}
	c.idx[lk] = i
	c.pushFront(i)
}

func (c *lru[V]) remove(k Key) {
	lk := toLKey(k)
	c.mu.Lock()
	defer c.mu.Unlock()
	if i, ok := c.idx[lk]; ok {
		c.drop(i)
	}
}

// removeIf removes every entry whose key match reports.
func (c *lru[V]) removeIf(match func(Key) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for lk, i := range c.idx {
		if match(Key{PolicyVersion: lk.version.Value(), Repository: lk.repository.Value(), Digest: lk.digest}) {
			c.drop(i)
		}
	}
}

func (c *lru[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.idx)
}

// sharing holds one copy of each distinct value remainder (see Splitter), weakly: a copy no
// entry points to any more is collected and its index entry removed.
type sharing[V any] struct {
	mu   sync.Mutex
	m    map[string]weak.Pointer[V]
	last weak.Pointer[V] // the copy returned last: most decisions equal the one before
}

// get returns the shared copy of v, making v (cloned, if it can be) the shared copy if there
// is none.
func (s *sharing[V]) get(v V) *V {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.last.Value(); p != nil && reflect.DeepEqual(*p, v) {
		return p
	}
	id := fmt.Sprintf("%#v", v)
	if p := s.m[id].Value(); p != nil {
		s.last = s.m[id]
		return p
	}
	if cl, ok := any(v).(interface{ Clone() V }); ok {
		v = cl.Clone()
	}
	p := &v
	wp := weak.Make(p)
	s.m[id], s.last = wp, wp
	runtime.AddCleanup(p, func(id string) {
		s.mu.Lock()
		if s.m[id] == wp {
			delete(s.m, id)
		}
		s.mu.Unlock()
	}, id)
	return p
}
