package pushauth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"

	"github.com/portcullis/portcullis/policy"
)

// Config opens portcullis to pushes of signatures. Without an htpasswd file the proxy is
// read-only. The config package maps the file's "push:" section into it.
type Config struct {
	// Htpasswd is a file of "user:bcrypt-hash" lines (htpasswd -B).
	Htpasswd string `mapstructure:"htpasswd"`
	// Realm is the Basic authentication realm. Default "portcullis".
	Realm string `mapstructure:"realm"`
	// Users grant each user the images ("upstream/repository" globs, as policies use) it may
	// push signatures for, and resolve while they are still unsigned.
	Users []User `mapstructure:"users"`
	// PassThrough opts images into plain push-through: any manifest and blob, not only
	// signatures, by users granted the image. Off by default.
	PassThrough PassThrough `mapstructure:"passThrough"`
	// LoginThrottle bounds failed logins per client address.
	LoginThrottle LoginThrottle `mapstructure:"loginThrottle"`
}

// LoginThrottle lets each client address make Burst failed logins at once, then one more
// every Every. Zero values take DefaultFailedLoginBurst and DefaultFailedLoginEvery.
type LoginThrottle struct {
	Burst int           `mapstructure:"burst"`
	Every time.Duration `mapstructure:"every"`
}

// User is one user's grant.
type User struct {
	Name   string   `mapstructure:"name"`
	Images []string `mapstructure:"images"`
}

// PassThrough lists the images that accept any push.
type PassThrough struct {
	Images []string `mapstructure:"images"`
	// Allow is "any" for plain push-through; "signatures" (the default) is what every
	// granted image accepts anyway.
	Allow string `mapstructure:"allow"`
}

// Validate checks c; field names in errors are relative to the "push" section.
func (c Config) Validate() error {
	var errs []error
	if c.Htpasswd == "" && (len(c.Users) > 0 || len(c.PassThrough.Images) > 0) {
		errs = append(errs, errors.New("htpasswd: must be set to accept pushes"))
	}
	seen := map[string]bool{}
	for i, u := range c.Users {
		if u.Name == "" || strings.Contains(u.Name, ":") {
			errs = append(errs, fmt.Errorf("users[%d].name: %q is not an htpasswd user name", i, u.Name))
		}
		if seen[u.Name] {
			errs = append(errs, fmt.Errorf("users[%d].name: %q is listed twice", i, u.Name))
		}
		seen[u.Name] = true
		if len(u.Images) == 0 {
			errs = append(errs, fmt.Errorf("users[%d].images: at least one image glob", i))
		}
		for j, g := range u.Images {
			if _, err := policy.CompileGlob(g); err != nil {
				errs = append(errs, fmt.Errorf("users[%d].images[%d]: %w", i, j, err))
			}
		}
	}
	for j, g := range c.PassThrough.Images {
		if _, err := policy.CompileGlob(g); err != nil {
			errs = append(errs, fmt.Errorf("passThrough.images[%d]: %w", j, err))
		}
	}
	switch c.PassThrough.Allow {
	case "", "signatures", "any":
	default:
		errs = append(errs, fmt.Errorf("passThrough.allow: %q is not signatures or any", c.PassThrough.Allow))
	}
	if c.LoginThrottle.Burst < 0 {
		errs = append(errs, errors.New("loginThrottle.burst: must not be negative"))
	}
	if c.LoginThrottle.Every < 0 {
		errs = append(errs, errors.New("loginThrottle.every: must not be negative"))
	}
	return errors.Join(errs...)
}

// Defaults of the login throttle (see the package documentation).
const (
	// DefaultFailedLoginBurst is how many failed logins a client address may make at once.
	DefaultFailedLoginBurst = 10
	// DefaultFailedLoginEvery is how often a throttled address regains one attempt.
	DefaultFailedLoginEvery = 6 * time.Second
	// throttledAddresses bounds the per-address limiters kept; the least recently used
	// address is forgotten first.
	throttledAddresses = 16384
)

// Option configures New.
type Option func(*options)

type options struct {
	every    time.Duration
	burst    int
	hashing  int
	now      func() time.Time
	optErrs  []error
	setLimit bool
}

// WithFailedLoginLimit lets each client address make burst failed logins at once, then one
// more every every, whatever the Config's LoginThrottle says. Defaults: the Config's
// LoginThrottle, else DefaultFailedLoginBurst and DefaultFailedLoginEvery.
func WithFailedLoginLimit(every time.Duration, burst int) Option {
	return func(o *options) {
		if every <= 0 || burst < 1 {
			o.optErrs = append(o.optErrs, fmt.Errorf("failed login limit: %d every %s is not a limit", burst, every))
		}
		if o.setLimit {
			o.optErrs = append(o.optErrs, errors.New("failed login limit given twice"))
		}
		o.every, o.burst, o.setLimit = every, burst, true
	}
}

// WithHashConcurrency bounds how many bcrypt comparisons run at once, whatever the number
// of clients, so that logins never take all of the CPU from pulls. Default: half the CPUs
// Go may use (at least one).
func WithHashConcurrency(n int) Option {
	return func(o *options) {
		if n < 1 {
			o.optErrs = append(o.optErrs, fmt.Errorf("hash concurrency %d: at least one", n))
		}
		o.hashing = n
	}
}

// WithClock replaces time.Now in the login throttle. Default time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// Pushers authenticates users (HTTP Basic against an htpasswd file) and says what they may
// push.
type Pushers struct {
	realm  string
	hashes map[string][]byte
	grants map[string][]policy.Glob
	plain  []policy.Glob
	// ok remembers recently verified credentials, so that bcrypt runs once per client and
	// not once per request.
	ok *expirable.LRU[[32]byte, string]
	// decoy is compared against for unknown users, so that names cannot be probed by
	// timing. Its cost is the highest of the file's hashes.
	decoy []byte
	// limiters hold each client address's failed-login budget.
	limiters *lru.Cache[string, *rate.Limiter]
	every    rate.Limit
	burst    int
	now      func() time.Time
	hashing  chan struct{} // a slot per bcrypt comparison allowed at once
	// counts for Stats
	nHashes, nFailures, nThrottled atomic.Uint64
}

// New compiles c with the htpasswd file's content.
func New(c Config, htpasswd []byte, opts ...Option) (*Pushers, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	o := options{every: DefaultFailedLoginEvery, burst: DefaultFailedLoginBurst, hashing: max(1, runtime.GOMAXPROCS(0)/2), now: time.Now}
	if c.LoginThrottle.Burst > 0 {
		o.burst = c.LoginThrottle.Burst
	}
	if c.LoginThrottle.Every > 0 {
		o.every = c.LoginThrottle.Every
	}
	for _, opt := range opts {
		opt(&o)
	}
	if err := errors.Join(o.optErrs...); err != nil {
		return nil, err
	}
	limiters, err := lru.New[string, *rate.Limiter](throttledAddresses)
	if err != nil {
		return nil, err
	}
	p := &Pushers{realm: c.Realm, hashes: map[string][]byte{}, grants: map[string][]policy.Glob{},
		ok:       expirable.NewLRU[[32]byte, string](1024, nil, 5*time.Minute),
		limiters: limiters, every: rate.Every(o.every), burst: o.burst, now: o.now,
		hashing: make(chan struct{}, o.hashing)}
	if p.realm == "" {
		p.realm = "portcullis"
	}
	cost := 0
	sc := bufio.NewScanner(bytes.NewReader(htpasswd))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("htpasswd line %d: not user:hash", n)
		}
		hc, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return nil, fmt.Errorf("htpasswd line %d (%s): only bcrypt hashes are accepted (htpasswd -B): %w", n, user, err)
		}
		cost = max(cost, hc)
		p.hashes[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("htpasswd: %w", err)
	}
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	if p.decoy, err = bcrypt.GenerateFromPassword([]byte("decoy"), cost); err != nil {
		return nil, fmt.Errorf("htpasswd: decoy hash of cost %d: %w", cost, err)
	}
	for i, u := range c.Users {
		if _, ok := p.hashes[u.Name]; !ok {
			return nil, fmt.Errorf("users[%d].name: %q is not in the htpasswd file", i, u.Name)
		}
		for _, g := range u.Images {
			cg, _ := policy.CompileGlob(g)
			p.grants[u.Name] = append(p.grants[u.Name], cg)
		}
	}
	if c.PassThrough.Allow == "any" {
		for _, g := range c.PassThrough.Images {
			cg, _ := policy.CompileGlob(g)
			p.plain = append(p.plain, cg)
		}
	}
	return p, nil
}

// ErrBadCredentials is answered 401 UNAUTHORIZED.
var ErrBadCredentials = errors.New("invalid username or password")

// ThrottledError is returned instead of checking credentials when their client address has
// spent its failed-login budget; no hashing is done. It is answered 429 TOOMANYREQUESTS (or
// 401).
type ThrottledError struct {
	// RetryAfter is when the address may try again.
	RetryAfter time.Duration
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many failed logins from this address: try again in %s", e.RetryAfter.Round(time.Second))
}

// Stats counts what Authenticate did since New.
type Stats struct {
	// Hashes is the number of bcrypt comparisons made (for known and unknown users).
	Hashes uint64
	// Failures is the number of wrong user names or passwords.
	Failures uint64
	// Throttled is the number of attempts refused without hashing by the login throttle.
	Throttled uint64
}

// Stats returns the counts so far.
func (p *Pushers) Stats() Stats {
	return Stats{Hashes: p.nHashes.Load(), Failures: p.nFailures.Load(), Throttled: p.nThrottled.Load()}
}

// Authenticate returns the user a request authenticates as: "" without credentials (an
// empty Basic username counts as none; nothing is hashed then), ErrBadCredentials for wrong
// ones, a *ThrottledError, without hashing, when the request's address (r.RemoteAddr, never
// a header) has made too many failed logins. Credentials verified in the last five minutes
// are accepted without hashing and without throttling.
func (p *Pushers) Authenticate(r *http.Request) (string, error) {
	user, pass, ok := r.BasicAuth()
	if !ok || user == "" {
		return "", nil
	}
	key := sha256.Sum256([]byte(user + "\x00" + pass))
	if u, hit := p.ok.Get(key); hit {
		return u, nil
	}
	// Every comparison takes one of the address's attempts first, so that concurrent
	// attempts cannot overrun the budget; a successful one gives it back.
	now := p.now()
	res := p.limiter(clientAddress(r.RemoteAddr)).ReserveN(now, 1)
	if wait := res.DelayFrom(now); !res.OK() || wait > 0 {
		res.CancelAt(now)
		p.nThrottled.Add(1)
		return "", &ThrottledError{RetryAfter: wait}
	}
	hash, known := p.hashes[user]
	if !known {
		// Spend the same time as for a known user, so that names cannot be probed.
		hash = p.decoy
	}
	err := p.compare(r.Context(), hash, []byte(pass))
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		res.CancelAt(p.now())
		return "", err
	}
	if err != nil || !known {
		p.nFailures.Add(1)
		return "", ErrBadCredentials
	}
	res.CancelAt(p.now())
	p.ok.Add(key, user)
	return user, nil
}

// compare runs one bcrypt comparison when a hashing slot is free.
func (p *Pushers) compare(ctx context.Context, hash, pass []byte) error {
	select {
	case p.hashing <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.hashing }()
	p.nHashes.Add(1)
	return bcrypt.CompareHashAndPassword(hash, pass)
}

// limiter returns the failed-login limiter of a client address.
func (p *Pushers) limiter(addr string) *rate.Limiter {
	if l, ok := p.limiters.Get(addr); ok {
		return l
	}
	l := rate.NewLimiter(p.every, p.burst)
	if prev, ok, _ := p.limiters.PeekOrAdd(addr, l); ok {
		return prev
	}
	return l
}

// clientAddress is the throttle's key for a connection's remote address: the IP address,
// or for IPv6 its /64, the block one machine usually has.
func clientAddress(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	pfx, _ := a.Prefix(64)
	return pfx.String()
}

// MayPush reports whether user may push signatures for image.
func (p *Pushers) MayPush(user, image string) bool {
	for _, g := range p.grants[user] {
		if g.Match(image) {
			return true
		}
	}
	return false
}

// PlainPush reports whether image accepts any push (from a user granted it).
func (p *Pushers) PlainPush(image string) bool {
	for _, g := range p.plain {
		if g.Match(image) {
			return true
		}
	}
	return false
}

// Challenge asks the client to authenticate, as Docker's registry auth conventions say.
func (p *Pushers) Challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf("Basic realm=%q", p.realm))
}
