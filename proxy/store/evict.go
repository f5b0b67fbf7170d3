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
	// Evictions and Bytes are the totals since the Store was created.
	evictions atomic.Int64
	bytes     atomic.Int64
}

func newUsage() *usage {
	return &usage{served: map[digest.Digest]time.Time{}, reading: map[digest.Digest]int{}}
}

func (u *usage) touch(d digest.Digest, now time.Time) {
	u.mu.Lock()
	u.served[d] = now
	u.mu.Unlock()
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
func (s *Store) SweepUploads(ctx context.Context, now time.Time, all bool) (int, error) {
	uploads, err := s.children(ctx, "/uploads")
	n := 0
	for _, fi := range uploads {
		if all || now.Sub(fi.ModTime()) > uploadMaxAge {
			if err := s.driver.Delete(ctx, fi.Path()); err == nil || isNotFound(err) {
				n++
			}
		}
	}
	return n, err
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

	var content []stored
	err = s.driver.Walk(ctx, "/blobs", func(fi storagedriver.FileInfo) error {
		if fi.IsDir() || path.Base(fi.Path()) != "data" {
			return nil
		}
		dir := path.Dir(fi.Path())
		content = append(content, stored{d: digest.NewDigestFromEncoded(digest.Algorithm(algOf(dir, "/blobs/")), path.Base(dir)),
			dir: dir, size: fi.Size(), lastUsed: fi.ModTime()})
		return nil
	})
	errs = append(errs, ignoreNotFound(err))
	err = s.driver.Walk(ctx, "/manifests", func(fi storagedriver.FileInfo) error {
		if fi.IsDir() || path.Base(fi.Path()) != "data" {
			return nil
		}
		dir := path.Dir(fi.Path())
		content = append(content, stored{d: digest.NewDigestFromEncoded(digest.Algorithm(algOf(dir, "/manifests/")), path.Base(dir)),
			dir: dir, size: fi.Size(), lastUsed: fi.ModTime()})
		return nil
	})
	errs = append(errs, ignoreNotFound(err))

	s.usage.mu.Lock()
	var total int64
	for i := range content {
		if t, ok := s.usage.served[content[i].d]; ok && t.After(content[i].lastUsed) {
			content[i].lastUsed = t
		}
		total += content[i].size
	}
	s.usage.mu.Unlock()
	slices.SortFunc(content, func(a, b stored) int { return a.lastUsed.Compare(b.lastUsed) })

	for _, c := range content {
		old := now.Sub(c.lastUsed) > o.MaxAge
		if !old && total <= o.MaxSize {
			break // sorted oldest first: nothing after this one is due either
		}
		if s.inUse(c.d) {
			continue
		}
		if err := s.driver.Delete(ctx, c.dir); err != nil && !isNotFound(err) {
			errs = append(errs, err)
			continue
		}
		total -= c.size
		res.Evicted++
		res.EvictedBytes += c.size
		s.usage.mu.Lock()
		delete(s.usage.served, c.d)
		s.usage.mu.Unlock()
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
