package store

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

// Defaults of the eviction options.
const (
	// DefaultMaxSize caps the content the store keeps: 20 GiB, a fraction of a node's disk.
	DefaultMaxSize = 20 << 30
	// DefaultMaxAge is how long content not served is kept, as distribution's proxy
	// schedules expiry (7 days).
	DefaultMaxAge = 7 * 24 * time.Hour
	// DefaultSweepInterval is how often the store is swept.
	DefaultSweepInterval = 10 * time.Minute
	// uploadMaxAge is how old an unfinished upload or partial write may get before a
	// periodic sweep removes it; upload sessions expire after an hour.
	uploadMaxAge = 2 * time.Hour
	// usedMarkEvery is how often a Store records in the store itself that it served a blob
	// or manifest (a "used" object beside its data): what every replica's sweep, and this
	// one's after a restart, goes by besides the times this process remembers.
	usedMarkEvery = time.Hour
)

// EvictionOptions bound the store.
type EvictionOptions struct {
	// MaxSize caps the bytes of stored blobs and manifests; the least recently served are
	// removed first. 0 means DefaultMaxSize.
	MaxSize int64
	// MaxAge removes content not served for that long. 0 means DefaultMaxAge.
	MaxAge time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (o EvictionOptions) withDefaults() EvictionOptions {
	if o.MaxSize == 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Validate refuses negative bounds.
func (o EvictionOptions) Validate() error {
	if o.MaxSize < 0 {
		return errors.New("maxSize: must not be negative")
	}
	if o.MaxAge < 0 {
		return errors.New("maxAge: must not be negative")
	}
	return nil
}

// SweepResult is what one sweep found and did.
type SweepResult struct {
	// Bytes is the size of the content kept.
	Bytes int64
	// Evicted is how many blobs and manifests were removed, EvictedBytes their size.
	Evicted      int
	EvictedBytes int64
	// Uploads is how many unfinished uploads or partial writes were removed.
	Uploads int
}

// usage remembers when content was last served and what is being read, so that eviction
// removes the least recently served first and never what a request is reading.
type usage struct {
	mu      sync.Mutex
	served  map[digest.Digest]time.Time
	reading map[digest.Digest]int
	// marked is when a used marker was last written, by digest.
	marked map[digest.Digest]time.Time
	// checked holds the blobs this Store wrote or read whole and found matching their
	// digest, with what they were when checked.
	checked map[digest.Digest]check
	// Evictions and Bytes are the totals since the Store was created.
	evictions atomic.Int64
	bytes     atomic.Int64
}

func newUsage() *usage {
	return &usage{served: map[digest.Digest]time.Time{}, reading: map[digest.Digest]int{},
		marked: map[digest.Digest]time.Time{}, checked: map[digest.Digest]check{}}
}

// touch records that d is served now and reports whether its used marker is due.
func (u *usage) touch(d digest.Digest, now time.Time) (markDue bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.served[d] = now
	if now.Sub(u.marked[d]) < usedMarkEvery {
		return false
	}
	u.marked[d] = now
	return true
}

// forget drops what is known about d once it is evicted.
func (u *usage) forget(d digest.Digest) {
	u.mu.Lock()
	delete(u.served, d)
	delete(u.marked, d)
	delete(u.checked, d)
	u.mu.Unlock()
}

// check is what a stored blob was when this Store checked it: its size and, on a local
// store, its modification time.
type check struct {
	size int64
	mod  time.Time
}

// verified records that blob d, as c describes it, matches its digest.
func (u *usage) verified(d digest.Digest, c check) {
	u.mu.Lock()
	u.checked[d] = c
	u.mu.Unlock()
}

// unverified forgets that blob d was checked.
func (u *usage) unverified(d digest.Digest) {
	u.mu.Lock()
	delete(u.checked, d)
	u.mu.Unlock()
}

// trusted reports whether blob d was checked, and (on a local store, now not nil) its
// file is still the size and modification time it was then.
func (u *usage) trusted(d digest.Digest, now *check) bool {
	u.mu.Lock()
	c, ok := u.checked[d]
	u.mu.Unlock()
	if !ok || now == nil {
		return ok
	}
	return !c.mod.IsZero() && c.size == now.size && c.mod.Equal(now.mod)
}

// touch records that d, stored in dir, is served: in this process, and at most every
// usedMarkEvery in the store (dir/used), where every replica's sweep sees it. A failed
// marker write only makes the content look older to the other replicas.
func (s *Store) touch(ctx context.Context, d digest.Digest, dir string) {
	if s.usage.touch(d, time.Now()) {
		_ = s.driver.PutContent(ctx, dir+"/used", []byte(time.Now().UTC().Format(time.RFC3339)))
	}
}

// open marks d as being read until the returned func is called.
func (u *usage) open(d digest.Digest) func() {
	u.mu.Lock()
	u.reading[d]++
	u.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			u.mu.Lock()
			if u.reading[d]--; u.reading[d] <= 0 {
				delete(u.reading, d)
			}
			u.mu.Unlock()
		})
	}
}

// Evictions returns how many blobs and manifests sweeps removed since the Store was created.
func (s *Store) Evictions() int64 { return s.usage.evictions.Load() }

// Bytes returns the size of the content found by the last sweep.
func (s *Store) Bytes() int64 { return s.usage.bytes.Load() }

// stored is one blob or manifest in the store.
type stored struct {
	d        digest.Digest
	dir      string // removed as a whole
	size     int64
	lastUsed time.Time
}

// SweepUploads removes unfinished uploads and partial writes: those older than two hours, or
// all of them when all is set — at start, before serving, nothing can be in progress, so a
// crash leaves nothing behind a restart. It returns how many it removed.
//
// A store that other processes share (every driver but filesystem and inmemory, e.g. s3)
// must never be swept with all set: another replica's uploads are in progress there.
func (s *Store) SweepUploads(ctx context.Context, now time.Time, all bool) (int, error) {
	uploads, err := s.children(ctx, "/uploads")
	n := 0
	for _, fi := range uploads {
		if !all {
			last, ok := s.lastWrite(ctx, fi)
			if !ok || now.Sub(last) <= uploadMaxAge {
				continue
			}
		}
		if err := s.driver.Delete(ctx, fi.Path()); err == nil {
			n++
		}
	}
	return n, err
}

// lastWrite returns when fi was last written: for a directory (a chunked upload), the newest
// of its files. Object stores have no directories (s3 reports them with a zero time), so a
// directory's own time is not enough. ok is false when that cannot be told.
func (s *Store) lastWrite(ctx context.Context, fi storagedriver.FileInfo) (last time.Time, ok bool) {
	last = fi.ModTime()
	if !fi.IsDir() {
		return last, true
	}
	err := s.driver.Walk(ctx, fi.Path(), func(c storagedriver.FileInfo) error {
		if !c.IsDir() && c.ModTime().After(last) {
			last = c.ModTime()
		}
		return nil
	})
	return last, ignoreNotFound(err) == nil && !last.IsZero()
}

// Sweep removes unfinished uploads and partial writes older than two hours, then content not
// served for MaxAge, then, while the store is over MaxSize, the least recently served
// content. Content being read is never removed. Links and grants stay: evicted content is
// fetched, and checked, again when it is next asked for.
func (s *Store) Sweep(ctx context.Context, o EvictionOptions) (SweepResult, error) {
	o = o.withDefaults()
	now := o.Now()
	var res SweepResult
	var errs []error
	var err error
	res.Uploads, err = s.SweepUploads(ctx, now, false)
	errs = append(errs, err)

	// One listing of each tree (on s3, one request per 1000 objects) finds every data object
	// and every used marker, whichever replica wrote them.
	var content []stored
	used := map[string]time.Time{}
	for _, root := range []string{"/blobs", "/manifests"} {
		err = s.driver.Walk(ctx, root, func(fi storagedriver.FileInfo) error {
			if fi.IsDir() {
				return nil
			}
			dir := path.Dir(fi.Path())
			switch path.Base(fi.Path()) {
			case "data", "manifest":
				content = append(content, stored{d: digest.NewDigestFromEncoded(digest.Algorithm(algOf(dir, root+"/")), path.Base(dir)),
					dir: dir, size: fi.Size(), lastUsed: fi.ModTime()})
			case "used":
				used[dir] = fi.ModTime()
			}
			return nil
		})
		errs = append(errs, ignoreNotFound(err))
	}

	s.usage.mu.Lock()
	var total int64
	for i := range content {
		c := &content[i]
		if t, ok := used[c.dir]; ok && t.After(c.lastUsed) {
			c.lastUsed = t
		}
		delete(used, c.dir)
		if t, ok := s.usage.served[c.d]; ok && t.After(c.lastUsed) {
			c.lastUsed = t
		}
		total += c.size
	}
	s.usage.mu.Unlock()
	// Markers left without data (written while another replica evicted it) go once stale.
	for dir, t := range used {
		if now.Sub(t) > uploadMaxAge {
			_ = s.driver.Delete(ctx, dir)
		}
	}
	slices.SortFunc(content, func(a, b stored) int { return a.lastUsed.Compare(b.lastUsed) })

	for _, c := range content {
		old := now.Sub(c.lastUsed) > o.MaxAge
		if !old && total <= o.MaxSize {
			break // sorted oldest first: nothing after this one is due either
		}
		if s.inUse(c.d) {
			continue
		}
		err := s.driver.Delete(ctx, c.dir)
		if err != nil && !isNotFound(err) {
			errs = append(errs, err)
			continue
		}
		total -= c.size
		s.usage.forget(c.d)
		if err != nil {
			continue // another replica evicted it first, and counts it
		}
		res.Evicted++
		res.EvictedBytes += c.size
	}
	res.Bytes = total
	s.usage.bytes.Store(total)
	s.usage.evictions.Add(int64(res.Evicted))
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("content store sweep: %w", err)
	}
	return res, nil
}

func (s *Store) inUse(d digest.Digest) bool {
	s.usage.mu.Lock()
	defer s.usage.mu.Unlock()
	return s.usage.reading[d] > 0
}

// children lists the entries directly under dir (none when dir does not exist).
func (s *Store) children(ctx context.Context, dir string) ([]storagedriver.FileInfo, error) {
	names, err := s.driver.List(ctx, dir)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []storagedriver.FileInfo
	for _, n := range names {
		fi, err := s.driver.Stat(ctx, n)
		if err != nil {
			continue // gone meanwhile
		}
		out = append(out, fi)
	}
	return out, nil
}

// algOf returns the algorithm segment of a content directory under root:
// /blobs/<alg>/<xx>/<hex> or /manifests/<alg>/<hex>.
func algOf(dir, root string) string {
	alg, _, _ := strings.Cut(strings.TrimPrefix(dir, root), "/")
	return alg
}

func ignoreNotFound(err error) error {
	if isNotFound(err) {
		return nil
	}
	return err
}

// RunSweeps sweeps at once and then every interval until ctx ends, reporting each sweep's
// outcome to report.
func (s *Store) RunSweeps(ctx context.Context, o EvictionOptions, interval time.Duration, report func(SweepResult, error)) {
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	report(s.Sweep(ctx, o))
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			report(s.Sweep(ctx, o))
		}
	}
}
