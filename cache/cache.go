package cache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unique"
	"weak"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"
)

// Key identifies one decision: the manifest Digest of Repository, decided under the policy set
// whose version is PolicyVersion.
type Key struct {
	// PolicyVersion is the version of the policy set that made the decision.
	PolicyVersion string `json:"policyVersion"`
	// Repository names what the decision is about. The policy engine stores the full image
	// name "upstream/repository" (e.g. "docker.io/library/alpine") so that one repository
	// path served by two upstreams never shares decisions.
	Repository string `json:"repository"`
	// Digest is the manifest digest the decision is about.
	Digest digest.Digest `json:"digest"`
}

// Value is what a Memory stores. Negative reports whether the value is kept only for the
// negative TTL (a denial, say, which a pushed signature may soon change). A Value with a
// Clone() method returning its own type is cloned when stored, so that the cache never
// aliases a caller's slices; values read from the cache are shared with it and are
// read-only. A Value that implements Splitter[V] is stored compactly: see there.
type Value interface {
	Negative() bool
}

// Splitter is implemented by values of which many are equal but for a time (a decision and
// when it was made). Memory keeps one shared copy of each distinct remainder — found by its
// Go syntax representation (%#v), released when no entry uses it — and the time per entry,
// so that an entry costs a pointer and a time rather than a whole value.
type Splitter[V any] interface {
	// Split returns the value without its time, and the time.
	Split() (V, time.Time)
	// Join returns the value with time t.
	Join(t time.Time) V
}

// Defaults of the Memory options.
const (
	DefaultSize        = 10000
	DefaultTTL         = 10 * time.Minute
	DefaultNegativeTTL = 30 * time.Second
	DefaultFillTimeout = time.Minute
)

type options struct {
	size        int
	ttl         time.Duration
	negativeTTL time.Duration
	negativeSet bool
	fillTimeout time.Duration
}

// Option configures a Memory cache.
type Option func(*options)

// WithSize bounds the number of allowed decisions and, separately, the number of negative
// decisions the cache holds, so that a flood of denials never evicts allowed decisions. It
// must be positive. Default DefaultSize.
func WithSize(n int) Option {
	return func(o *options) { o.size = n }
}

// WithTTL sets how long an allowed decision is kept. It must be positive. Default DefaultTTL.
func WithTTL(d time.Duration) Option {
	return func(o *options) { o.ttl = d }
}

// WithNegativeTTL sets how long a negative decision (see Decision.Negative) is kept. It must
// be positive and not longer than the TTL. Default DefaultNegativeTTL, or the TTL when that is
// shorter and no negative TTL is given.
func WithNegativeTTL(d time.Duration) Option {
	return func(o *options) { o.negativeTTL, o.negativeSet = d, true }
}

// WithFillTimeout bounds one fill run by Do, which is detached from its callers' cancellation.
// It must be positive. Default DefaultFillTimeout.
func WithFillTimeout(d time.Duration) Option {
	return func(o *options) { o.fillTimeout = d }
}

// Memory is an in-process decision cache: two size-bounded LRUs (allowed decisions, negative
// ones; golang-lru's simplelru), each with its own TTL, and a singleflight group for fills.
// It is safe for concurrent use. An expired entry is dropped when it is looked up or when the
// least recently used entries make room; it runs no goroutines.
type Memory[V Value] struct {
	mu       sync.Mutex // guards allowed and negative: simplelru is not safe for concurrent use
	allowed  polarity[V]
	negative polarity[V]
	shared   sharing[V]
	group    singleflight.Group

	fillTimeout time.Duration

	// epoch changes on every Forget; a fill stores its result only if the epoch it started
	// in is still current. storeMu orders those stores with Forget.
	epoch   atomic.Uint64
	storeMu sync.Mutex
}

// lkey is a Key as Memory keeps it: the policy version and repository, which many keys
// share, as handles of their one copy.
type lkey struct {
	version, repository unique.Handle[string]
	digest              digest.Digest
}

func toLKey(k Key) lkey {
	return lkey{version: unique.Make(k.PolicyVersion), repository: unique.Make(k.Repository), digest: k.Digest}
}

// item is one stored value: v points to the value or, for a Splitter, to the shared
// remainder that t completes; the item is served until expires (Unix nanoseconds).
type item[V any] struct {
	v       *V
	t       time.Time
	expires int64
}

// polarity is the LRU of one polarity's decisions and their TTL. Its methods are called with
// Memory.mu held.
type polarity[V any] struct {
	lru *simplelru.LRU[lkey, item[V]]
	ttl time.Duration
}

// get returns the item under k unless it expired before now; an expired item is dropped.
func (p polarity[V]) get(k lkey, now int64) (item[V], bool) {
	it, ok := p.lru.Get(k)
	if ok && now >= it.expires {
		p.lru.Remove(k)
		return item[V]{}, false
	}
	return it, ok
}

// add stores it under k, to expire the TTL after now, pushing out the least recently used
// item when the LRU is full.
func (p polarity[V]) add(k lkey, it item[V], now time.Time) {
	it.expires = now.Add(p.ttl).UnixNano()
	p.lru.Add(k, it)
}

// removeIf removes every item whose key match reports.
func (p polarity[V]) removeIf(match func(Key) bool) {
	for _, lk := range p.lru.Keys() {
		if match(Key{PolicyVersion: lk.version.Value(), Repository: lk.repository.Value(), Digest: lk.digest}) {
			p.lru.Remove(lk)
		}
	}
}

// NewMemory returns an empty Memory cache configured by opts.
func NewMemory[V Value](opts ...Option) (*Memory[V], error) {
	o := options{size: DefaultSize, ttl: DefaultTTL, fillTimeout: DefaultFillTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if !o.negativeSet {
		o.negativeTTL = DefaultNegativeTTL
		if o.ttl > 0 {
			o.negativeTTL = min(o.negativeTTL, o.ttl)
		}
	}
	var errs []error
	if o.size <= 0 {
		errs = append(errs, fmt.Errorf("size must be positive, got %d", o.size))
	}
	if o.ttl <= 0 {
		errs = append(errs, fmt.Errorf("ttl must be positive, got %s", o.ttl))
	}
	if o.negativeTTL <= 0 {
		errs = append(errs, fmt.Errorf("negative ttl must be positive, got %s", o.negativeTTL))
	} else if o.ttl > 0 && o.negativeTTL > o.ttl {
		errs = append(errs, fmt.Errorf("negative ttl %s is longer than ttl %s", o.negativeTTL, o.ttl))
	}
	if o.fillTimeout <= 0 {
		errs = append(errs, fmt.Errorf("fill timeout must be positive, got %s", o.fillTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("decision cache: %w", err)
	}
	allowed, err := simplelru.NewLRU[lkey, item[V]](o.size, nil)
	if err != nil {
		return nil, fmt.Errorf("decision cache: %w", err)
	}
	negative, err := simplelru.NewLRU[lkey, item[V]](o.size, nil)
	if err != nil {
		return nil, fmt.Errorf("decision cache: %w", err)
	}
	return &Memory[V]{
		allowed:     polarity[V]{lru: allowed, ttl: o.ttl},
		negative:    polarity[V]{lru: negative, ttl: o.negativeTTL},
		shared:      sharing[V]{m: map[string]weak.Pointer[V]{}},
		fillTimeout: o.fillTimeout,
	}, nil
}

// Get returns the unexpired decision stored under key. An allowed decision wins over a
// negative one stored concurrently. ctx is unused: Memory does no I/O.
func (c *Memory[V]) Get(_ context.Context, key Key) (V, bool) {
	lk, now := toLKey(key), time.Now().UnixNano()
	c.mu.Lock()
	it, ok := c.allowed.get(lk, now)
	if !ok {
		it, ok = c.negative.get(lk, now)
	}
	c.mu.Unlock()
	if !ok {
		var zero V
		return zero, false
	}
	if sp, ok := any(it.v).(Splitter[V]); ok { // boxing the pointer allocates nothing
		return sp.Join(it.t), true
	}
	return *it.v, true
}

// Put stores d under key, replacing any decision stored there, for the TTL that d's polarity
// gets (see Value). ctx is unused: Memory does no I/O.
func (c *Memory[V]) Put(_ context.Context, key Key, d V) {
	var it item[V]
	if sp, ok := any(d).(Splitter[V]); ok {
		rest, t := sp.Split()
		it = item[V]{v: c.shared.get(rest), t: t}
	} else {
		if cl, ok := any(d).(interface{ Clone() V }); ok {
			d = cl.Clone()
		}
		it = item[V]{v: &d}
	}
	lk, now := toLKey(key), time.Now()
	add, other := c.allowed, c.negative
	if d.Negative() {
		add, other = other, add
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	add.add(lk, it, now)
	other.lru.Remove(lk)
}

// Forget drops every decision about digest d of repository (of every repository when
// repository is empty), whatever its policy version.
// Fills already running when Forget is called still answer their callers but do not store
// their result. Forget walks the whole cache: it is meant for rare events such as a
// signature being pushed. ctx is unused: Memory does no I/O.
func (c *Memory[V]) Forget(_ context.Context, repository string, d digest.Digest) {
	c.storeMu.Lock()
	defer c.storeMu.Unlock()
	c.epoch.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range []polarity[V]{c.allowed, c.negative} {
		p.removeIf(func(k Key) bool { return (repository == "" || k.Repository == repository) && k.Digest == d })
	}
}

// Purge drops every decision, as if Forget had been called for each; a tier in front of a
// shared cache calls it when it may have missed invalidations. ctx is unused.
func (c *Memory[V]) Purge(_ context.Context) {
	c.storeMu.Lock()
	defer c.storeMu.Unlock()
	c.epoch.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.allowed.lru.Purge()
	c.negative.lru.Purge()
}

// Len returns the number of decisions held, which may include expired decisions that are
// not yet reclaimed.
func (c *Memory[V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.allowed.lru.Len() + c.negative.lru.Len()
}

// Source says where a decision Do or Fill returned came from.
type Source uint8

const (
	// Fresh: made by a fill this call started or joined.
	Fresh Source = iota
	// Local: found in this Memory.
	Local
	// Shared: found by a fill in a tier behind this Memory (a shared cache such as Redis).
	Shared
)

// String returns the name metrics label the source with: "fresh", "local" or "shared".
func (s Source) String() string {
	switch s {
	case Local:
		return "local"
	case Shared:
		return "shared"
	}
	return "fresh"
}

// flight is what one fill hands to every caller waiting on it.
type flight[V Value] struct {
	d   V
	src Source
}

// Do returns the decision stored under key or, on a miss, runs fill and stores what it
// returns. Concurrent misses for one key share a single fill. cached reports whether the
// decision came from the cache rather than from a fill this call started or joined.
//
// fill runs under context.WithoutCancel(ctx) bounded by the fill timeout, so it completes and
// is stored even if ctx ends; Do itself returns as soon as ctx ends, with an error wrapping
// ctx's cause. Errors from fill are returned to every waiting caller and are not stored.
func (c *Memory[V]) Do(ctx context.Context, key Key, fill func(ctx context.Context) (V, error)) (d V, cached bool, err error) {
	d, src, err := c.Fill(ctx, key, func(ctx context.Context) (V, Source, error) {
		d, err := fill(ctx)
		return d, Fresh, err
	})
	return d, src != Fresh, err
}

// Fill is Do for a Memory in front of another tier: fill says where its value came from
// (Fresh when it made it, Shared when it found it behind this Memory), and Fill returns that
// source to every caller the fill answered, or Local for a value found in this Memory. What
// fill returns is stored here either way.
func (c *Memory[V]) Fill(ctx context.Context, key Key, fill func(ctx context.Context) (V, Source, error)) (d V, src Source, err error) {
	if d, ok := c.Get(ctx, key); ok {
		return d, Local, nil
	}
	if err := ctx.Err(); err != nil {
		return d, Fresh, fmt.Errorf("decide %s: %w", key.Digest, context.Cause(ctx))
	}
	epoch := c.epoch.Load()
	ch := c.group.DoChan(flightKey(key, epoch), func() (any, error) {
		// The previous fill for this key may have stored its result between our miss and
		// this flight starting.
		if d, ok := c.Get(ctx, key); ok {
			return flight[V]{d: d, src: Local}, nil
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.fillTimeout)
		defer cancel()
		d, src, err := fill(fctx)
		if err != nil {
			return nil, err
		}
		c.storeFilled(fctx, key, d, epoch)
		return flight[V]{d: d, src: src}, nil
	})
	select {
	case <-ctx.Done():
		return d, Fresh, fmt.Errorf("decide %s: %w", key.Digest, context.Cause(ctx))
	case r := <-ch:
		if r.Err != nil {
			return d, Fresh, r.Err
		}
		f := r.Val.(flight[V])
		return f.d, f.src, nil
	}
}

// storeFilled stores the result of a fill unless Forget ran since the fill started.
func (c *Memory[V]) storeFilled(ctx context.Context, key Key, d V, epoch uint64) {
	c.storeMu.Lock()
	defer c.storeMu.Unlock()
	if c.epoch.Load() == epoch {
		c.Put(ctx, key, d)
	}
}

// flightKey names the singleflight call for key in epoch; after a Forget, new callers start a
// new fill instead of joining one that may have seen the forgotten state.
func flightKey(key Key, epoch uint64) string {
	return key.PolicyVersion + "\x00" + key.Repository + "\x00" + string(key.Digest) + "\x00" + strconv.FormatUint(epoch, 10)
}
