package upstream

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/singleflight"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/verify/oci"
)

// Config describes one upstream registry. The config package maps the file into it.
type Config struct {
	// Name is how clients name the upstream: the value of containerd's ?ns= and the first path
	// component of a path-prefix mirror, e.g. "docker.io", "ghcr.io", "registry.local:5000".
	Name string `mapstructure:"name"`
	// URL is where the upstream answers, e.g. "https://registry-1.docker.io".
	URL string `mapstructure:"url"`
	// Default marks the upstream used when a request names none (Docker's registry-mirrors).
	Default bool `mapstructure:"default"`
	// Insecure allows a plain-HTTP URL and skips TLS certificate verification.
	Insecure bool `mapstructure:"insecure"`
	// Auth holds static credentials; Keychain reads them from the docker config.json instead.
	Auth     *BasicAuth `mapstructure:"auth"`
	Keychain bool       `mapstructure:"keychain"`
	// Timeout bounds a manifest, tag or referrers request, and the wait for a blob's first
	// byte and between two reads of its body. Default 30s.
	Timeout time.Duration `mapstructure:"timeout"`
	// Retries is how many times a failed GET or HEAD is retried with backoff (on a network
	// error or a 500, 502, 503 or 504; never on a 429, whose Retry-After is honoured
	// instead). Requests that are not idempotent (upload POST, PATCH, PUT) are never
	// retried. Default 3.
	Retries *int `mapstructure:"retries"`
	// MaxConcurrent caps the requests to this upstream in flight at once (blob downloads
	// until their body is read, token fetches and signature lookups included). Default (and
	// 0) DefaultMaxConcurrent.
	MaxConcurrent int `mapstructure:"maxConcurrent"`
	// QueueWait is how long a request waits for one of the MaxConcurrent slots before it
	// fails as overloaded (the client gets 503 with Retry-After). Default (and 0)
	// DefaultQueueWait.
	QueueWait time.Duration `mapstructure:"queueWait"`
	// AllowedHosts are the hosts besides the URL's own that portcullis may connect to for
	// this upstream: where it redirects blob downloads (a CDN) and where its token realm
	// is. Each entry is host[:port] (a DNS name, an IPv4 address or a bracketed IPv6
	// address), or *.domain[:port] for every host under domain; without a port, the
	// default port of the scheme (443, or 80 for an insecure upstream). No schemes or
	// paths. Docker Hub needs "auth.docker.io" (its token realm) and
	// "production.cloudflare.docker.com" (its blob CDN).
	//
	// Nothing else is ever contacted: a redirect, token realm, upload location or /v2/
	// handshake that leads elsewhere fails with a *ForeignHostError before a connection is
	// made. The upstream's credentials go only to the URL's host (Basic, bearer tokens) and
	// to a token realm on an allowed host (Basic, to get a token), and over plain http only
	// when Insecure is set. An allowed host used as a token realm therefore receives the
	// credentials: list only hosts the upstream's operator runs or trusts.
	AllowedHosts []string `mapstructure:"allowedHosts"`
	// AnyHostUnsafe lets the client follow the registry to any host (over https, or http
	// when Insecure), as cosign and crane do: for the CLI, which talks to registries a user
	// names, never for the proxy. It cannot be set from the configuration file.
	AnyHostUnsafe bool `mapstructure:"-"`
}

// BasicAuth is a username and password for an upstream. The password is given inline or,
// so that a mounted Kubernetes Secret can hold it, as PasswordFile: a file whose content
// (less one trailing newline) is the password. New does not read files: the caller reads
// PasswordFile into Password (package app does, on every start and reload).
type BasicAuth struct {
	Username     string `mapstructure:"username"`
	Password     string `mapstructure:"password"`
	PasswordFile string `mapstructure:"passwordFile"`
}

// Defaults for Config.
const (
	DefaultTimeout = 30 * time.Second
	DefaultRetries = 3
)

var nameRE = regexp.MustCompile(`^(localhost|[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+|[a-z0-9]([a-z0-9-]*[a-z0-9])?)(:[0-9]{1,5})?$`)

// Validate checks one upstream's settings; field names in errors are relative to the entry.
func (c Config) Validate() error {
	if c.Name == "" {
		return errors.New("name: must be set")
	}
	if !nameRE.MatchString(c.Name) || (!strings.ContainsAny(c.Name, ".:") && c.Name != "localhost") {
		return fmt.Errorf("name: %q is not a registry host name (a domain with a dot or a port, or localhost, lowercase)", c.Name)
	}
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("url: %q is not a registry base URL like https://host[:port]", c.URL)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !c.Insecure {
			return fmt.Errorf("url: plain http %q needs insecure: true", c.URL)
		}
	default:
		return fmt.Errorf("url: scheme %q is not http or https", u.Scheme)
	}
	if c.Auth != nil && c.Keychain {
		return errors.New("auth: set either auth or keychain, not both")
	}
	if c.Auth != nil && c.Auth.Username == "" {
		return errors.New("auth.username: must be set with auth")
	}
	if c.Auth != nil && c.Auth.Password != "" && c.Auth.PasswordFile != "" {
		return errors.New("auth: set either password or passwordFile, not both")
	}
	if c.Timeout < 0 {
		return errors.New("timeout: must not be negative")
	}
	if c.Retries != nil && (*c.Retries < 0 || *c.Retries > 10) {
		return errors.New("retries: must be between 0 and 10")
	}
	if c.MaxConcurrent < 0 {
		return errors.New("maxConcurrent: must not be negative")
	}
	if c.QueueWait < 0 {
		return errors.New("queueWait: must not be negative")
	}
	for i, h := range c.AllowedHosts {
		if _, err := parseHostPattern(h); err != nil {
			return fmt.Errorf("allowedHosts[%d]: %w", i, err)
		}
	}
	return nil
}

// Client is a client for one upstream registry: pulls (manifests, blobs, tags, referrers)
// and pushes, with the proxy's credentials. It implements verify.Registry.
type Client struct {
	name      string
	base      *url.URL
	reg       name.Registry
	isDefault bool
	dockerHub bool
	timeout   time.Duration
	auth      func() (authn.Authenticator, error)
	inner     http.RoundTripper
	dialer    *http.Transport // the transport inner dials with
	hosts     *hostPolicy
	limit     *limiter
	rate      *rateGuard

	mu          sync.Mutex
	transports  *expirable.LRU[string, http.RoundTripper] // authenticated transports by repository
	challenge   *transport.Challenge                      // the answer to GET /v2/, until challengeAt+challengeTTL
	challengeAt time.Time
	pings       singleflight.Group
	auths       singleflight.Group // authentications in progress, by scope
	// noReferrersAPI is when the upstream was last seen without the referrers API (Unix
	// nanoseconds; 0: never): for referrersAPITTL after it, the tag schema is asked directly.
	noReferrersAPI atomic.Int64
}

// How long an upstream's authentication challenge and the absence of its referrers API are
// remembered: one GET /v2/ per upstream rather than per repository, and no referrers API
// request bound to fail before every tag schema lookup.
const (
	challengeTTL    = 10 * time.Minute
	referrersAPITTL = 10 * time.Minute
)

// New builds the client for c, which must be valid, with any auth.passwordFile already
// read into auth.password (and cleared). base is the HTTP transport to dial with; nil means
// a fresh one. opts configure what the configuration does not (see Option).
func New(c Config, base *http.Transport, opts ...Option) (*Client, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Auth != nil && c.Auth.PasswordFile != "" {
		// Fail closed rather than authenticate with an empty password.
		return nil, fmt.Errorf("auth.passwordFile: %s was not read", c.Auth.PasswordFile)
	}
	u, _ := url.Parse(c.URL)
	u.Path = ""
	var ropts []name.Option
	if c.Insecure {
		ropts = append(ropts, name.Insecure)
	}
	reg, err := name.NewRegistry(u.Host, ropts...)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	if base == nil {
		base = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			MaxIdleConnsPerHost:   32,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	} else {
		base = base.Clone()
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	base.ResponseHeaderTimeout = timeout
	if c.Insecure {
		base.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the operator asked for it by name
	}
	retries := DefaultRetries
	if c.Retries != nil {
		retries = *c.Retries
	}
	hosts, err := newHostPolicy(c.Name, u, c.Insecure, c.AllowedHosts)
	if hosts != nil {
		hosts.any = c.AnyHostUnsafe
	}
	if err != nil {
		return nil, err
	}
	// The guard wraps the only *http.Transport the client has: whatever sends a request
	// (go-containerregistry's ping, token exchange and remote writer, any http.Client's
	// redirects) goes through it.
	// Below the retries: the concurrency limit (per attempt, so a retry's backoff holds no
	// slot) and, above it, the guard that keeps a rate-limited upstream alone.
	maxConc, queueWait := c.MaxConcurrent, c.QueueWait
	if maxConc == 0 {
		maxConc = DefaultMaxConcurrent
	}
	if queueWait == 0 {
		queueWait = DefaultQueueWait
	}
	limit := newLimiter(c.Name, maxConc, queueWait, applyOptions(opts).wrap(transport.NewUserAgent(&hostGuard{policy: hosts, next: base}, "portcullis")))
	rate := &rateGuard{name: c.Name, next: limit, now: time.Now}
	var inner http.RoundTripper = rate
	if retries > 0 {
		inner = idempotentOnly{once: rate, retry: transport.NewRetry(rate,
			transport.WithRetryBackoff(transport.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: retries + 1}),
			transport.WithRetryStatusCodes(http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout))}
	}
	up := &Client{
		name:       c.Name,
		base:       u,
		reg:        reg,
		isDefault:  c.Default,
		dockerHub:  c.Name == "docker.io" || u.Host == "registry-1.docker.io" || u.Host == "index.docker.io",
		timeout:    timeout,
		inner:      inner,
		dialer:     base,
		hosts:      hosts,
		limit:      limit,
		rate:       rate,
		transports: expirable.NewLRU[string, http.RoundTripper](1024, nil, 10*time.Minute),
	}
	switch {
	case c.Auth != nil:
		a := authn.FromConfig(authn.AuthConfig{Username: c.Auth.Username, Password: c.Auth.Password})
		up.auth = func() (authn.Authenticator, error) { return a, nil }
	case c.Keychain:
		up.auth = func() (authn.Authenticator, error) { return authn.DefaultKeychain.Resolve(reg) }
	default:
		up.auth = func() (authn.Authenticator, error) { return authn.Anonymous, nil }
	}
	return up, nil
}

// Name is the upstream's configured name.
func (u *Client) Name() string { return u.name }

// IsDefault reports whether the upstream serves requests that name none.
func (u *Client) IsDefault() bool { return u.isDefault }

// Timeout is the upstream's per-request timeout.
func (u *Client) Timeout() time.Duration { return u.timeout }

// Normalize applies the upstream's naming rules: on Docker Hub "alpine" is "library/alpine".
func (u *Client) Normalize(repo string) string {
	if u.dockerHub && !strings.Contains(repo, "/") {
		return "library/" + repo
	}
	return repo
}

// transport returns a round tripper authenticated for repo, for pulls or, with push, for
// pushes. Authenticated transports are cached per repository and scope.
func (u *Client) transport(ctx context.Context, repo string, push bool) (http.RoundTripper, error) {
	scope := u.reg.Repo(repo).Scope(transport.PullScope)
	if push {
		scope = u.reg.Repo(repo).Scope(transport.PushScope)
	}
	u.mu.Lock()
	t, ok := u.transports.Get(scope)
	u.mu.Unlock()
	if ok {
		return t, nil
	}
	// Concurrent first requests for a repository (a cold manifest's fetch and its signature
	// lookups) share one authentication: one token fetch, not one each. The shared work is
	// detached from any one caller's cancellation (authenticate bounds it by the timeout);
	// each caller waits only as long as its own context allows.
	ch := u.auths.DoChan(scope, func() (any, error) {
		auth, err := u.auth()
		if err != nil {
			return nil, fmt.Errorf("credentials for %s: %w", u.name, err)
		}
		t, err := u.authenticate(context.WithoutCancel(ctx), auth, scope)
		if err != nil {
			return nil, u.wrapErr(err)
		}
		u.mu.Lock()
		u.transports.Add(scope, t)
		u.mu.Unlock()
		return t, nil
	})
	select {
	case <-ctx.Done():
		return nil, u.wrapErr(ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(http.RoundTripper), nil
	}
}

// authenticate does what transport.NewWithContext does, with the upstream's challenge (its
// answer to GET /v2/) remembered rather than asked for again for every repository: a bearer
// token exchange for scope when the upstream wants one, static or no credentials otherwise.
// The handshake and the token fetch together take at most the upstream's timeout. A token
// realm must be on the upstream's host or one of its allowedHosts (and https unless the
// upstream is insecure): the credentials are sent there.
func (u *Client) authenticate(ctx context.Context, auth authn.Authenticator, scope string) (http.RoundTripper, error) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	pr, err := u.ping(ctx)
	if err != nil {
		return nil, err
	}
	tok := &transport.Token{}
	if strings.EqualFold(pr.Scheme, "bearer") {
		realm, err := url.Parse(pr.Parameters["realm"])
		if err != nil || realm.Host == "" {
			return nil, fmt.Errorf("upstream %s: token realm %q is not a URL", u.name, printable(pr.Parameters["realm"]))
		}
		if err := u.hosts.check(realm, "token realm"); err != nil {
			return nil, err
		}
		if tok, err = transport.Exchange(ctx, u.reg, auth, u.inner, []string{scope}, pr); err != nil {
			return nil, err
		}
	}
	return transport.FromToken(u.reg, auth, u.inner, pr, tok)
}

// ping returns the upstream's authentication challenge, asking for it at most once per
// challengeTTL however many requests need it at the same time. The shared request is
// detached from any one caller's cancellation and bounded by the upstream's timeout; each
// caller waits for it only as long as its own context allows.
func (u *Client) ping(ctx context.Context) (*transport.Challenge, error) {
	u.mu.Lock()
	pr, at := u.challenge, u.challengeAt
	u.mu.Unlock()
	if pr != nil && time.Since(at) < challengeTTL {
		return pr, nil
	}
	ch := u.pings.DoChan("", func() (any, error) {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), u.timeout)
		defer cancel()
		pr, err := transport.Ping(pctx, u.reg, u.inner)
		if err != nil {
			if pctx.Err() != nil {
				err = fmt.Errorf("GET /v2/: no answer within %s: %w", u.timeout, pctx.Err())
			}
			return nil, err
		}
		u.mu.Lock()
		u.challenge, u.challengeAt = pr, time.Now()
		u.mu.Unlock()
		return pr, nil
	})
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("GET /v2/: %w", ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*transport.Challenge), nil
	}
}

// client returns an HTTP client authenticated for pulls from repo. Redirects are followed at
// most 5 times, only to the upstream's own host or one of its allowedHosts (over https
// unless the upstream is insecure); the upstream's credentials are never sent to another
// host (go-containerregistry's transports add them only for the upstream's host).
func (u *Client) client(ctx context.Context, repo string) (*http.Client, error) {
	t, err := u.transport(ctx, repo, false)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: t, CheckRedirect: u.checkRedirect}, nil
}

// checkRedirect is the redirect policy of every http.Client the Client makes.
func (u *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return fmt.Errorf("upstream %s: more than 5 redirects", u.name)
	}
	return u.hosts.check(req.URL, "redirect")
}

// Error is a non-success answer from an upstream registry.
type Error struct {
	Upstream string
	Status   int
	// Codes are the OCI error codes in the upstream's answer, if any.
	Codes   []string
	Message string
	// RetryAfter is, for a 429, how long the upstream asked to be left alone (its
	// Retry-After, bounded); portcullis sends it no request meanwhile.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("upstream %s answered %d: %s", e.Upstream, e.Status, msg)
}

// AuthFailed reports whether the upstream refused portcullis's own credentials (or their
// absence): a 401 or 403, from a registry request, its /v2/ handshake or its token realm.
func (e *Error) AuthFailed() bool {
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
}

// Brief says what the upstream answered without its free text, for clients: the status and
// the OCI error codes (at most 4, each a short upper-case word).
func (e *Error) Brief() string {
	s := fmt.Sprintf("upstream %s answered %d %s", e.Upstream, e.Status, http.StatusText(e.Status))
	var codes []string
	for _, c := range e.Codes {
		if len(codes) == 4 {
			break
		}
		if codeRE.MatchString(c) {
			codes = append(codes, c)
		}
	}
	if len(codes) > 0 {
		s += " (" + strings.Join(codes, ", ") + ")"
	}
	return s
}

var codeRE = regexp.MustCompile(`^[A-Z][A-Z_]{0,31}$`)

// Is makes a 404 match oci.ErrNotFound.
func (e *Error) Is(target error) bool {
	return target == oci.ErrNotFound && e.Status == http.StatusNotFound
}

// UnavailableError means the upstream could not be reached or did not answer in time.
type UnavailableError struct {
	Upstream string
	Err      error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("upstream %s unavailable: %v", e.Upstream, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Brief says why the upstream is unavailable without the transport's text (which names
// URLs, possibly signed ones), for clients.
func (e *UnavailableError) Brief() string {
	var (
		dns *net.DNSError
		ne  net.Error
		cv  *tls.CertificateVerificationError
	)
	switch {
	case errors.Is(e.Err, context.DeadlineExceeded) || (errors.As(e.Err, &ne) && ne.Timeout()):
		return fmt.Sprintf("upstream %s did not answer in time", e.Upstream)
	case errors.Is(e.Err, context.Canceled):
		return fmt.Sprintf("upstream %s: request cancelled", e.Upstream)
	case errors.As(e.Err, &dns):
		return fmt.Sprintf("upstream %s unavailable: its host name does not resolve", e.Upstream)
	case errors.As(e.Err, &cv):
		return fmt.Sprintf("upstream %s unavailable: its TLS certificate is not trusted", e.Upstream)
	case errors.Is(e.Err, syscall.ECONNREFUSED):
		return fmt.Sprintf("upstream %s unavailable: connection refused", e.Upstream)
	case errors.Is(e.Err, syscall.ECONNRESET) || errors.Is(e.Err, io.ErrUnexpectedEOF) || errors.Is(e.Err, io.EOF):
		return fmt.Sprintf("upstream %s unavailable: connection lost", e.Upstream)
	}
	return fmt.Sprintf("upstream %s unavailable", e.Upstream)
}

func (u *Client) wrapErr(err error) error {
	var fh *ForeignHostError
	if errors.As(err, &fh) {
		return fh
	}
	var oe *OverloadError
	if errors.As(err, &oe) {
		return oe
	}
	var te *transport.Error
	if errors.As(err, &te) {
		ue := &Error{Upstream: u.name, Status: te.StatusCode}
		if te.StatusCode == http.StatusTooManyRequests {
			ue.RetryAfter = max(u.rate.remaining(), time.Second)
		}
		for _, d := range te.Errors {
			ue.Codes = append(ue.Codes, string(d.Code))
			if ue.Message == "" {
				ue.Message = printable(d.Message)
			}
		}
		return ue
	}
	var ue *Error
	if errors.As(err, &ue) {
		return err
	}
	return &UnavailableError{Upstream: u.name, Err: err}
}

// do sends one request for path (starting with /v2/) and returns the response when its
// status is one of ok; otherwise the body is read (capped) into an error.
func (u *Client) do(ctx context.Context, method, repo, path, rawQuery string, hdr http.Header, ok ...int) (*http.Response, error) {
	c, err := u.client(ctx, repo)
	if err != nil {
		return nil, err
	}
	target := *u.base
	target.Path = path
	target.RawQuery = rawQuery
	req, err := http.NewRequestWithContext(ctx, method, target.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("build upstream request: %w", err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, u.wrapErr(err)
	}
	for _, code := range ok {
		if resp.StatusCode == code {
			return resp, nil
		}
	}
	defer resp.Body.Close()
	return nil, u.wrapErr(transport.CheckError(resp, ok...))
}

var manifestAccept = strings.Join([]string{
	oci.MediaTypeOCIManifest, oci.MediaTypeOCIIndex, oci.MediaTypeDockerManifest, oci.MediaTypeDockerList,
}, ", ")

// Manifest fetches a manifest by tag or digest; the digest is computed from the bytes.
func (u *Client) Manifest(ctx context.Context, repo, ref string) (oci.Manifest, error) {
	return u.ManifestHinted(ctx, repo, ref, nil)
}

// ManifestHinted is Manifest that, when the upstream's answer names its digest in a valid
// Docker-Content-Digest header, calls hint with it before reading the body, so that the
// caller can start work on that digest early (the signature lookup of a tag's manifest).
// The header is the upstream's word, not a fact: the manifest returned has the digest
// computed from its bytes, which may not be the hinted one.
func (u *Client) ManifestHinted(ctx context.Context, repo, ref string, hint func(digest.Digest)) (oci.Manifest, error) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	resp, err := u.do(ctx, http.MethodGet, repo, "/v2/"+repo+"/manifests/"+ref, "",
		http.Header{"Accept": {manifestAccept}}, http.StatusOK)
	if err != nil {
		return oci.Manifest{}, fmt.Errorf("manifest %s:%s: %w", repo, ref, err)
	}
	defer resp.Body.Close()
	if hint != nil {
		if d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest")); err == nil {
			hint(d)
		}
	}
	if resp.ContentLength > oci.MaxManifestSize {
		return oci.Manifest{}, fmt.Errorf("manifest %s:%s from upstream %s is %d bytes, over the %d byte limit: %w", repo, ref, u.name, resp.ContentLength, oci.MaxManifestSize, oci.ErrTooLarge)
	}
	b, err := oci.ReadCapped(resp.Body, oci.MaxManifestSize)
	if err != nil {
		return oci.Manifest{}, fmt.Errorf("manifest %s:%s from upstream %s: %w", repo, ref, u.name, err)
	}
	var want digest.Digest
	if d, err := digest.Parse(ref); err == nil {
		want = d
	}
	m, err := oci.NewManifest(b, oci.ManifestMediaType(b, resp.Header.Get("Content-Type")), want)
	if err != nil {
		return oci.Manifest{}, fmt.Errorf("manifest %s:%s from upstream %s: %w", repo, ref, u.name, err)
	}
	return m, nil
}

// HeadManifest asks the upstream which digest ref currently has. The answer is a header the
// upstream chose: use it only to decide whether a stored manifest is still current, never as
// the digest of bytes to serve.
func (u *Client) HeadManifest(ctx context.Context, repo, ref string) (digest.Digest, error) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	resp, err := u.do(ctx, http.MethodHead, repo, "/v2/"+repo+"/manifests/"+ref, "",
		http.Header{"Accept": {manifestAccept}}, http.StatusOK)
	if err != nil {
		return "", fmt.Errorf("manifest %s:%s: %w", repo, ref, err)
	}
	resp.Body.Close()
	return digest.Parse(resp.Header.Get("Docker-Content-Digest"))
}

// OpenBlob starts a download of blob d. The body is not verified: the caller must check it
// against d. Authentication, redirects and the wait for the body's first byte together take
// at most the upstream timeout; then a body that stalls for longer than it fails.
func (u *Client) OpenBlob(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	deadline := time.AfterFunc(u.timeout, cancel)
	resp, err := u.do(ctx, http.MethodGet, repo, "/v2/"+repo+"/blobs/"+d.String(), "", nil, http.StatusOK)
	if fired := !deadline.Stop(); fired && (err == nil || errors.Is(err, context.Canceled)) {
		if err == nil {
			resp.Body.Close()
		}
		err = &UnavailableError{Upstream: u.name, Err: fmt.Errorf("no answer within %s: %w", u.timeout, context.DeadlineExceeded)}
	}
	if err != nil {
		cancel()
		return nil, 0, fmt.Errorf("blob %s@%s: %w", repo, d, err)
	}
	return newIdleReader(resp.Body, u.timeout, cancel), resp.ContentLength, nil
}

// StatBlob asks the upstream whether repo has blob d and its size.
func (u *Client) StatBlob(ctx context.Context, repo string, d digest.Digest) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	resp, err := u.do(ctx, http.MethodHead, repo, "/v2/"+repo+"/blobs/"+d.String(), "", nil, http.StatusOK)
	if err != nil {
		return 0, fmt.Errorf("blob %s@%s: %w", repo, d, err)
	}
	resp.Body.Close()
	return resp.ContentLength, nil
}

// Blob downloads a small blob of at most limit bytes and checks it against d.
func (u *Client) Blob(ctx context.Context, repo string, d digest.Digest, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	rc, size, err := u.OpenBlob(ctx, repo, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if size > limit {
		return nil, fmt.Errorf("blob %s@%s is %d bytes, over the %d byte limit: %w", repo, d, size, limit, oci.ErrTooLarge)
	}
	b, err := oci.ReadCapped(rc, limit)
	if err != nil {
		return nil, fmt.Errorf("blob %s@%s: %w", repo, d, err)
	}
	if got := d.Algorithm().FromBytes(b); got != d {
		return nil, fmt.Errorf("blob %s@%s from upstream %s has digest %s", repo, d, u.name, got)
	}
	return b, nil
}

// TagList is the body of a tags/list answer.
type TagList struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// maxTagListSize caps a tags/list body.
const maxTagListSize = 32 << 20

// Tags lists repo's tags, passing the n and last pagination parameters through. next is the
// query of the upstream's next page ("" when there is none).
func (u *Client) Tags(ctx context.Context, repo string, n, last string) (tl TagList, next url.Values, err error) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	q := url.Values{}
	if n != "" {
		q.Set("n", n)
	}
	if last != "" {
		q.Set("last", last)
	}
	resp, err := u.do(ctx, http.MethodGet, repo, "/v2/"+repo+"/tags/list", q.Encode(), nil, http.StatusOK)
	if err != nil {
		return tl, nil, fmt.Errorf("tags of %s: %w", repo, err)
	}
	defer resp.Body.Close()
	b, err := oci.ReadCapped(resp.Body, maxTagListSize)
	if err != nil {
		return tl, nil, fmt.Errorf("tags of %s from upstream %s: %w", repo, u.name, err)
	}
	if err := json.Unmarshal(b, &tl); err != nil {
		return tl, nil, fmt.Errorf("tags of %s from upstream %s: invalid JSON: %w", repo, u.name, err)
	}
	if next := nextLink(resp.Header.Get("Link")); next != nil {
		q := next.Query()
		out := url.Values{}
		for _, k := range []string{"n", "last"} {
			if v := q.Get(k); v != "" {
				out.Set(k, v)
			}
		}
		return tl, out, nil
	}
	return tl, nil, nil
}

// nextLink returns the URL of a `<url>; rel="next"` Link header value (RFC 8288), or nil.
func nextLink(link string) *url.URL {
	rest := link
	for {
		// Each link-value is <URI-reference> then ;-parameters up to a comma outside
		// quotes; the URI may hold commas and semicolons, never '>'.
		open := strings.IndexByte(rest, '<')
		if open < 0 {
			return nil
		}
		closing := strings.IndexByte(rest[open:], '>')
		if closing < 0 {
			return nil
		}
		target := rest[open+1 : open+closing]
		params, after := splitParams(rest[open+closing+1:])
		rest = after
		next := false
		for p := range strings.SplitSeq(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(strings.TrimSpace(k), "rel") && slices.Contains(strings.Fields(strings.Trim(strings.TrimSpace(v), `"`)), "next") {
				next = true
			}
		}
		if !next {
			continue
		}
		u, err := url.Parse(target)
		if err != nil {
			return nil
		}
		return u
	}
}

// splitParams returns the parameters of a link-value, up to the first comma outside a
// quoted string, and what follows that comma.
func splitParams(s string) (params, rest string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case '\\':
			if quoted {
				i++
			}
		case ',':
			if !quoted {
				return s[:i], s[i+1:]
			}
		}
	}
	return s, ""
}

// CloseIdleConnections closes the client's idle connections to the upstream (and its
// allowed hosts), as a client a reload replaced no longer needs them; requests under way are
// not affected.
func (u *Client) CloseIdleConnections() { u.dialer.CloseIdleConnections() }

// Referrers lists the manifests whose subject is d: from the upstream's referrers API, or,
// when it has none, from the referrers tag schema index "sha256-<hex>". No referrers is an
// empty list.
func (u *Client) Referrers(ctx context.Context, repo string, d digest.Digest) ([]ocispec.Descriptor, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("referrers of %q: %w", d, err)
	}
	if seen := u.noReferrersAPI.Load(); seen == 0 || time.Since(time.Unix(0, seen)) >= referrersAPITTL {
		idx, err := u.referrersAPI(ctx, repo, d)
		if err == nil {
			return idx.Manifests, nil
		}
		var ue *Error
		if !errors.As(err, &ue) || (ue.Status != http.StatusNotFound && ue.Status != http.StatusBadRequest &&
			ue.Status != http.StatusMethodNotAllowed && ue.Status != http.StatusNotImplemented) {
			return nil, err
		}
		if lacksEndpoint(ue) {
			u.noReferrersAPI.Store(time.Now().UnixNano())
		}
	}
	m, err := u.Manifest(ctx, repo, cosign.ReferrersTag(d))
	if errors.Is(err, oci.ErrNotFound) {
		return []ocispec.Descriptor{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("referrers of %s@%s: %w", repo, d, err)
	}
	if !oci.IsIndex(m.MediaType) {
		return nil, fmt.Errorf("referrers of %s@%s: tag %s is a %s, not an index", repo, d, cosign.ReferrersTag(d), m.MediaType)
	}
	var fallback ocispec.Index
	if err := json.Unmarshal(m.Bytes, &fallback); err != nil {
		return nil, fmt.Errorf("referrers of %s@%s: invalid index: %w", repo, d, err)
	}
	if fallback.Manifests == nil {
		fallback.Manifests = []ocispec.Descriptor{}
	}
	return fallback.Manifests, nil
}

// maxReferrersPages bounds how many pages of the referrers API one listing follows; a
// listing with more is an error (verification then has no verdict), not a truncated list.
const maxReferrersPages = 16

// referrersAPI lists d's referrers from the referrers API, following its Link pagination
// within the same upstream and endpoint.
func (u *Client) referrersAPI(ctx context.Context, repo string, d digest.Digest) (ocispec.Index, error) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	path := "/v2/" + repo + "/referrers/" + d.String()
	all := ocispec.Index{Manifests: []ocispec.Descriptor{}}
	rawQuery := ""
	for page := 1; ; page++ {
		resp, err := u.do(ctx, http.MethodGet, repo, path, rawQuery,
			http.Header{"Accept": {oci.MediaTypeOCIIndex}}, http.StatusOK)
		if err != nil {
			return all, err
		}
		b, err := oci.ReadCapped(resp.Body, oci.MaxManifestSize)
		resp.Body.Close()
		if err != nil {
			return all, fmt.Errorf("referrers of %s@%s from upstream %s: %w", repo, d, u.name, err)
		}
		var idx ocispec.Index
		if err := json.Unmarshal(b, &idx); err != nil {
			return all, fmt.Errorf("referrers of %s@%s from upstream %s: invalid index: %w", repo, d, u.name, err)
		}
		all.Manifests = append(all.Manifests, idx.Manifests...)
		next := nextLink(resp.Header.Get("Link"))
		if next == nil {
			return all, nil
		}
		if page == maxReferrersPages {
			return all, fmt.Errorf("referrers of %s@%s from upstream %s: more than %d pages", repo, d, u.name, maxReferrersPages)
		}
		next = resp.Request.URL.ResolveReference(next)
		if next.Host != u.base.Host || next.Path != path {
			return all, fmt.Errorf("referrers of %s@%s from upstream %s: next page %s is not this endpoint", repo, d, u.name, next.Redacted())
		}
		rawQuery = next.RawQuery
	}
}

// lacksEndpoint reports whether ue says the upstream has no such endpoint, rather than that
// the repository or manifest is unknown: a registry that implements the referrers API
// answers with OCI error codes (other than UNSUPPORTED); a missing route does not.
func lacksEndpoint(ue *Error) bool {
	for _, c := range ue.Codes {
		if c != "UNSUPPORTED" {
			return false
		}
	}
	return true
}

// idleReader fails a body that makes no progress for the timeout, and releases its request
// when closed.
type idleReader struct {
	rc     io.ReadCloser
	timer  *time.Timer
	idle   time.Duration
	cancel context.CancelFunc
}

func newIdleReader(rc io.ReadCloser, idle time.Duration, cancel context.CancelFunc) *idleReader {
	return &idleReader{rc: rc, idle: idle, cancel: cancel, timer: time.AfterFunc(idle, cancel)}
}

func (r *idleReader) Read(p []byte) (int, error) {
	r.timer.Reset(r.idle)
	n, err := r.rc.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("reading upstream body: %w", err)
	}
	return n, err
}

func (r *idleReader) Close() error {
	r.timer.Stop()
	err := r.rc.Close()
	r.cancel()
	return err
}
