package trustroot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sigstore/sigstore-go/pkg/tuf"
)

// Manager resolves trust root configurations to Roots. Files are read on every call. TUF
// repositories are fetched once per (name, mirror, root, cache) and then refreshed by Run:
// when a refresh fails, the last good root keeps serving and Problems says so. A Manager is
// safe for concurrent use.
type Manager struct {
	logger *slog.Logger
	now    func() time.Time
	client *http.Client

	mu   sync.Mutex
	tufs map[string]*tufRoot
}

// ManagerOption configures a Manager.
type ManagerOption func(*Manager)

// WithLogger sets where refresh failures and new roots are logged. Default: discarded.
func WithLogger(l *slog.Logger) ManagerOption {
	return func(m *Manager) {
		if l != nil {
			m.logger = l
		}
	}
}

// WithClock sets the clock. Default time.Now.
func WithClock(now func() time.Time) ManagerOption {
	return func(m *Manager) {
		if now != nil {
			m.now = now
		}
	}
}

// WithHTTPClient sets the client TUF repositories are read with. Default: a client whose
// requests take at most DefaultFetchTimeout.
func WithHTTPClient(c *http.Client) ManagerOption {
	return func(m *Manager) {
		if c != nil {
			m.client = c
		}
	}
}

// NewManager returns a Manager.
func NewManager(opts ...ManagerOption) *Manager {
	m := &Manager{logger: slog.New(slog.DiscardHandler), now: time.Now, client: &http.Client{Timeout: DefaultFetchTimeout}, tufs: map[string]*tufRoot{}}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Root returns the current root of c: the file read now, or the TUF repository's last good
// trusted root (fetched now the first time; from the on-disk cache when the mirror cannot be
// reached then).
func (m *Manager) Root(ctx context.Context, c Config) (*Root, error) {
	if err := c.Validate("trust root " + c.Name); err != nil {
		return nil, err
	}
	if c.TUF == nil {
		return LoadFile(c.Name, c.TrustedRootFile, m.now())
	}
	return m.tufRoot(c).current(ctx, m)
}

// Status describes one TUF trust root.
type Status struct {
	// Name is the trust root's configured name; Mirror its repository.
	Name, Mirror string
	// Digest and Fetched describe the root serving (empty when none was ever fetched).
	Digest  string
	Fetched time.Time
	// Err is the last refresh failure, nil when the last refresh succeeded.
	Err error
	// FailingSince is when refreshes started failing.
	FailingSince time.Time
}

// Statuses returns the state of every TUF trust root in use, by name.
func (m *Manager) Statuses() []Status {
	m.mu.Lock()
	roots := make([]*tufRoot, 0, len(m.tufs))
	for _, t := range m.tufs {
		roots = append(roots, t)
	}
	m.mu.Unlock()
	var out []Status
	for _, t := range roots {
		out = append(out, t.status())
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Name+a.Mirror, b.Name+b.Mirror) })
	return out
}

// Problems lists, one sentence each, the TUF trust roots whose last refresh failed: they keep
// serving their last good root. Empty when all is well.
func (m *Manager) Problems() []string {
	var out []string
	for _, s := range m.Statuses() {
		if s.Err == nil {
			continue
		}
		if s.Digest == "" {
			out = append(out, fmt.Sprintf("trust root %s: TUF repository %s unreachable since %s and no root was ever fetched: %v",
				s.Name, s.Mirror, s.FailingSince.UTC().Format(time.RFC3339), s.Err))
			continue
		}
		out = append(out, fmt.Sprintf("trust root %s: TUF repository %s unreachable since %s; serving the root fetched at %s (%s): %v",
			s.Name, s.Mirror, s.FailingSince.UTC().Format(time.RFC3339), s.Fetched.UTC().Format(time.RFC3339), s.Digest, s.Err))
	}
	return out
}

// Refresh refreshes every TUF trust root whose refresh interval has passed since its last
// attempt (all of them when force is set) and reports whether any root changed.
func (m *Manager) Refresh(ctx context.Context, force bool) bool {
	m.mu.Lock()
	roots := make([]*tufRoot, 0, len(m.tufs))
	for _, t := range m.tufs {
		roots = append(roots, t)
	}
	m.mu.Unlock()
	changed := false
	for _, t := range roots {
		if force || t.due(m.now()) {
			if t.refresh(ctx, m) {
				changed = true
			}
		}
	}
	return changed
}

// Run refreshes the TUF trust roots in the background until ctx ends, checking every tick
// (default a minute when tick is 0) which are due; after a change it calls onChange, which
// should recompile the policies so that decisions are made under the new root.
func (m *Manager) Run(ctx context.Context, tick time.Duration, onChange func(context.Context)) {
	if tick <= 0 {
		tick = time.Minute
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if m.Refresh(ctx, false) && onChange != nil {
				onChange(ctx)
			}
		}
	}
}

// Keep forgets the TUF trust roots that are not among inUse (the roots of the policies now
// serving): they are no longer refreshed nor reported by Problems.
func (m *Manager) Keep(inUse []Config) {
	keep := map[string]bool{}
	for _, c := range inUse {
		if c.TUF != nil {
			keep[tufKey(c)] = true
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.tufs {
		if !keep[k] {
			delete(m.tufs, k)
		}
	}
}

func tufKey(c Config) string {
	t := c.TUF.WithDefaults()
	return strings.Join([]string{c.Name, t.Mirror, t.Root, t.CacheDir}, "\x00")
}

func (m *Manager) tufRoot(c Config) *tufRoot {
	t := c.TUF.WithDefaults()
	key := tufKey(c)
	m.mu.Lock()
	defer m.mu.Unlock()
	tr, ok := m.tufs[key]
	if !ok {
		tr = &tufRoot{name: c.Name, cfg: t}
		m.tufs[key] = tr
	}
	tr.mu.Lock()
	tr.cfg.Refresh = t.Refresh // the latest configuration's interval
	tr.mu.Unlock()
	return tr
}

// tufRoot is one TUF repository's trusted root and its refresh state.
type tufRoot struct {
	name string

	// fetch serialises fetches; mu guards the fields below.
	fetch        sync.Mutex
	mu           sync.Mutex
	cfg          TUFConfig
	last         *Root
	lastAttempt  time.Time
	err          error
	failingSince time.Time
}

func (t *tufRoot) status() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Status{Name: t.name, Mirror: t.cfg.Mirror, Err: t.err, FailingSince: t.failingSince}
	if t.last != nil {
		s.Digest, s.Fetched = t.last.Digest(), t.last.Fetched()
	}
	return s
}

// retryAfterFailure is how soon a failed refresh is retried (at most the refresh interval).
const retryAfterFailure = 5 * time.Minute

func (t *tufRoot) due(now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	wait := t.cfg.Refresh
	if t.err != nil {
		wait = min(wait, retryAfterFailure)
	}
	return !now.Before(t.lastAttempt.Add(wait))
}

// current returns the last good root, fetching it first if there is none.
func (t *tufRoot) current(ctx context.Context, m *Manager) (*Root, error) {
	t.mu.Lock()
	last := t.last
	t.mu.Unlock()
	if last != nil {
		return last, nil
	}
	t.refresh(ctx, m)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last == nil {
		return nil, fmt.Errorf("trust root %s: %w", t.name, t.err)
	}
	return t.last, nil
}

// refresh fetches the trusted root from the repository; when that fails and there is no root
// yet, it falls back to the on-disk cache. It reports whether the root changed.
func (t *tufRoot) refresh(ctx context.Context, m *Manager) bool {
	t.fetch.Lock()
	defer t.fetch.Unlock()
	t.mu.Lock()
	cfg, prev := t.cfg, t.last
	t.mu.Unlock()

	now := m.now()
	r, err := fetchTUF(ctx, m.client, t.name, cfg, false, now)
	if err != nil && prev == nil {
		// No root in memory: the cache on disk is better than nothing, and says so.
		if cached, cerr := fetchTUF(ctx, m.client, t.name, cfg, true, now); cerr == nil {
			r = cached
			m.logger.WarnContext(ctx, "TUF repository unreachable; serving the cached trusted root",
				slog.String("trustRoot", t.name), slog.String("mirror", cfg.Mirror), slog.String("digest", r.Digest()), slog.Any("error", err))
		}
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastAttempt = now
	if err != nil {
		if t.err == nil {
			t.failingSince = now
		}
		t.err = err
		if t.last == nil && r != nil {
			t.last = r
			return true
		}
		m.logger.WarnContext(ctx, "TUF refresh failed; the last good trusted root keeps serving",
			slog.String("trustRoot", t.name), slog.String("mirror", cfg.Mirror), slog.Any("error", err))
		return false
	}
	t.err, t.failingSince = nil, time.Time{}
	if prev != nil && prev.Digest() == r.Digest() {
		return false
	}
	t.last = r
	m.logger.InfoContext(ctx, "trusted root updated", slog.String("trustRoot", t.name),
		slog.String("mirror", cfg.Mirror), slog.String("digest", r.Digest()))
	return true
}

// fetchTUF runs sigstore-go's TUF client against cfg's repository (or only its cache, with
// cacheOnly) and parses the trusted_root.json target.
func fetchTUF(ctx context.Context, client *http.Client, name string, cfg TUFConfig, cacheOnly bool, now time.Time) (*Root, error) {
	opts := tuf.DefaultOptions()
	opts.RepositoryBaseURL = cfg.Mirror
	opts.CachePath = cfg.CacheDir
	opts.Context = ctx
	opts.Fetcher = fetcher{ctx: ctx, client: client}
	if cfg.Root == RootEmbedded {
		opts.Root = tuf.DefaultRoot()
	} else {
		b, err := os.ReadFile(cfg.Root)
		if err != nil {
			return nil, fmt.Errorf("tuf root: %w", err)
		}
		opts.Root = b
	}
	if cacheOnly {
		opts.ForceCache = true
	}
	if err := os.MkdirAll(filepath.Clean(cfg.CacheDir), 0o700); err != nil {
		return nil, fmt.Errorf("tuf cache: %w", err)
	}
	c, err := tuf.New(opts)
	if err != nil {
		return nil, fmt.Errorf("tuf %s: %w", cfg.Mirror, err)
	}
	b, err := c.GetTarget(TrustedRootTarget)
	if err != nil {
		return nil, fmt.Errorf("tuf %s: %w", cfg.Mirror, err)
	}
	if len(b) == 0 {
		return nil, errors.New("tuf " + cfg.Mirror + ": empty " + TrustedRootTarget)
	}
	return Parse(name, "tuf "+cfg.Mirror, b, now)
}
