package proxy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/singleflight"

	"github.com/portcullis/portcullis/internal/oci"
)

// UpstreamConfig describes one upstream registry. The config package maps the file into it.
type UpstreamConfig struct {
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
	// Retries is how many times a failed idempotent request is retried with backoff. Default 3.
	Retries *int `mapstructure:"retries"`
}

// BasicAuth is a username and password for an upstream.
type BasicAuth struct {
	Username string `mapstructure:"username"`
	Password string `mapstructure:"password"`
}

// Defaults for UpstreamConfig.
const (
	DefaultUpstreamTimeout = 30 * time.Second
	DefaultUpstreamRetries = 3
)

var upstreamNameRE = regexp.MustCompile(`^(localhost|[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+|[a-z0-9]([a-z0-9-]*[a-z0-9])?)(:[0-9]{1,5})?$`)

// Validate checks one upstream's settings; field names in errors are relative to the entry.
func (c UpstreamConfig) Validate() error {
	if c.Name == "" {
		return errors.New("name: must be set")
	}
	if !upstreamNameRE.MatchString(c.Name) || (!strings.ContainsAny(c.Name, ".:") && c.Name != "localhost") {
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
	if c.Timeout < 0 {
		return errors.New("timeout: must not be negative")
	}
	if c.Retries != nil && (*c.Retries < 0 || *c.Retries > 10) {
		return errors.New("retries: must be between 0 and 10")
	}
	return nil
}

// Upstream is a client for one upstream registry. It implements verify.Registry.
type Upstream struct {
	name      string
	base      *url.URL
	reg       name.Registry
	isDefault bool
	dockerHub bool
	timeout   time.Duration
	auth      func() (authn.Authenticator, error)
	inner     http.RoundTripper

	mu          sync.Mutex
	transports  *expirable.LRU[string, http.RoundTripper] // authenticated transports by repository
	challenge   *transport.Challenge                      // the answer to GET /v2/, until challengeAt+challengeTTL
	challengeAt time.Time
	pings       singleflight.Group
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

// NewUpstream builds the client for c, which must be valid. base is the HTTP transport to
// dial with; nil means a fresh one.
func NewUpstream(c UpstreamConfig, base *http.Transport) (*Upstream, error) {
	if err := c.Validate(); err != nil {
		return nil, err
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
		timeout = DefaultUpstreamTimeout
	}
	base.ResponseHeaderTimeout = timeout
	if c.Insecure {
		base.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the operator asked for it by name
	}
	retries := DefaultUpstreamRetries
	if c.Retries != nil {
		retries = *c.Retries
	}
	var inner http.RoundTripper = transport.NewUserAgent(base, "portcullis")
	if retries > 0 {
		inner = transport.NewRetry(inner,
			transport.WithRetryBackoff(transport.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: retries + 1}),
			transport.WithRetryStatusCodes(http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusTooManyRequests))
	}
	up := &Upstream{
		name:       c.Name,
		base:       u,
		reg:        reg,
		isDefault:  c.Default,
		dockerHub:  c.Name == "docker.io" || u.Host == "registry-1.docker.io" || u.Host == "index.docker.io",
		timeout:    timeout,
		inner:      inner,
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
func (u *Upstream) Name() string { return u.name }

// Normalize applies the upstream's naming rules: on Docker Hub "alpine" is "library/alpine".
func (u *Upstream) Normalize(repo string) string {
	if u.dockerHub && !strings.Contains(repo, "/") {
		return "library/" + repo
	}
	return repo
}

// transport returns a round tripper authenticated for repo, for pulls or, with push, for
// pushes. Authenticated transports are cached per repository and scope.
func (u *Upstream) transport(ctx context.Context, repo string, push bool) (http.RoundTripper, error) {
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
	auth, err := u.auth()
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", u.name, err)
	}
	t, err = u.authenticate(ctx, auth, scope)
	if err != nil {
		return nil, u.wrapErr(err)
	}
	u.mu.Lock()
	u.transports.Add(scope, t)
	u.mu.Unlock()
	return t, nil
}

// authenticate does what transport.NewWithContext does, with the upstream's challenge (its
// answer to GET /v2/) remembered rather than asked for again for every repository: a bearer
// token exchange for scope when the upstream wants one, static or no credentials otherwise.
func (u *Upstream) authenticate(ctx context.Context, auth authn.Authenticator, scope string) (http.RoundTripper, error) {
	pr, err := u.ping(ctx)
	if err != nil {
		return nil, err
	}
	tok := &transport.Token{}
	if strings.EqualFold(pr.Scheme, "bearer") {
		if tok, err = transport.Exchange(ctx, u.reg, auth, u.inner, []string{scope}, pr); err != nil {
			return nil, err
		}
	}
	return transport.FromToken(u.reg, auth, u.inner, pr, tok)
}

// ping returns the upstream's authentication challenge, asking for it at most once per
// challengeTTL however many requests need it at the same time.
func (u *Upstream) ping(ctx context.Context) (*transport.Challenge, error) {
	u.mu.Lock()
	pr, at := u.challenge, u.challengeAt
	u.mu.Unlock()
	if pr != nil && time.Since(at) < challengeTTL {
		return pr, nil
	}
	v, err, _ := u.pings.Do("", func() (any, error) {
		pr, err := transport.Ping(context.WithoutCancel(ctx), u.reg, u.inner)
		if err != nil {
			return nil, err
		}
		u.mu.Lock()
		u.challenge, u.challengeAt = pr, time.Now()
		u.mu.Unlock()
		return pr, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*transport.Challenge), nil
}

// client returns an HTTP client authenticated for pulls from repo. Redirects are followed
// only to the upstream's own host or to https URLs (blob storage), at most 5 times, and the
// upstream's credentials are never sent to another host.
func (u *Upstream) client(ctx context.Context, repo string) (*http.Client, error) {
	t, err := u.transport(ctx, repo, false)
	if err != nil {
		return nil, err
	}
	host := u.base.Host
	return &http.Client{Transport: t, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		if req.URL.Host != host && req.URL.Scheme != "https" {
			return fmt.Errorf("refusing redirect to %s: only https or the upstream itself", req.URL.Redacted())
		}
		return nil
	}}, nil
}

// UpstreamError is a non-success answer from an upstream registry.
type UpstreamError struct {
	Upstream string
	Status   int
	// Codes are the OCI error codes in the upstream's answer, if any.
	Codes   []string
	Message string
}

func (e *UpstreamError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("upstream %s answered %d: %s", e.Upstream, e.Status, msg)
}

// Is makes a 404 match oci.ErrNotFound.
func (e *UpstreamError) Is(target error) bool {
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

// ErrTooLarge is wrapped by errors for upstream bodies over their size limit.
var ErrTooLarge = errors.New("too large")

func (u *Upstream) wrapErr(err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		ue := &UpstreamError{Upstream: u.name, Status: te.StatusCode}
		for _, d := range te.Errors {
			ue.Codes = append(ue.Codes, string(d.Code))
			if ue.Message == "" {
				ue.Message = d.Message
			}
		}
		return ue
	}
	var ue *UpstreamError
	if errors.As(err, &ue) {
		return err
	}
	return &UnavailableError{Upstream: u.name, Err: err}
}

// do sends one request for path (starting with /v2/) and returns the response when its
// status is one of ok; otherwise the body is read (capped) into an error.
func (u *Upstream) do(ctx context.Context, method, repo, path, rawQuery string, hdr http.Header, ok ...int) (*http.Response, error) {
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
func (u *Upstream) Manifest(ctx context.Context, repo, ref string) (oci.Manifest, error) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	resp, err := u.do(ctx, http.MethodGet, repo, "/v2/"+repo+"/manifests/"+ref, "",
		http.Header{"Accept": {manifestAccept}}, http.StatusOK)
	if err != nil {
		return oci.Manifest{}, fmt.Errorf("manifest %s:%s: %w", repo, ref, err)
	}
	defer resp.Body.Close()
	if resp.ContentLength > oci.MaxManifestSize {
		return oci.Manifest{}, fmt.Errorf("manifest %s:%s from upstream %s is %d bytes, over the %d byte limit: %w", repo, ref, u.name, resp.ContentLength, oci.MaxManifestSize, ErrTooLarge)
	}
	b, err := readCapped(resp.Body, oci.MaxManifestSize)
	if err != nil {
		return oci.Manifest{}, fmt.Errorf("manifest %s:%s from upstream %s: %w", repo, ref, u.name, err)
	}
	var want digest.Digest
	if d, err := digest.Parse(ref); err == nil {
		want = d
	}
	m, err := oci.NewManifest(b, manifestMediaType(b, resp.Header.Get("Content-Type")), want)
	if err != nil {
		return oci.Manifest{}, fmt.Errorf("manifest %s:%s from upstream %s: %w", repo, ref, u.name, err)
	}
	return m, nil
}

// HeadManifest asks the upstream which digest ref currently has. The answer is a header the
// upstream chose: use it only to decide whether a stored manifest is still current, never as
// the digest of bytes to serve.
func (u *Upstream) HeadManifest(ctx context.Context, repo, ref string) (digest.Digest, error) {
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

// manifestMediaType prefers the mediaType the (digest-checked) content declares over the
// Content-Type header the upstream sent.
func manifestMediaType(b []byte, contentType string) string {
	var probe struct {
		MediaType string `json:"mediaType"`
	}
	if json.Unmarshal(b, &probe) == nil && probe.MediaType != "" {
		return probe.MediaType
	}
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && mt != "" {
		return mt
	}
	return oci.MediaTypeOCIManifest
}

// OpenBlob starts a download of blob d. The body is not verified: the caller must check it
// against d. A body that stalls for longer than the upstream timeout fails.
func (u *Upstream) OpenBlob(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	resp, err := u.do(ctx, http.MethodGet, repo, "/v2/"+repo+"/blobs/"+d.String(), "", nil, http.StatusOK)
	if err != nil {
		cancel()
		return nil, 0, fmt.Errorf("blob %s@%s: %w", repo, d, err)
	}
	return newIdleReader(resp.Body, u.timeout, cancel), resp.ContentLength, nil
}

// StatBlob asks the upstream whether repo has blob d and its size.
func (u *Upstream) StatBlob(ctx context.Context, repo string, d digest.Digest) (int64, error) {
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
func (u *Upstream) Blob(ctx context.Context, repo string, d digest.Digest, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	rc, size, err := u.OpenBlob(ctx, repo, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if size > limit {
		return nil, fmt.Errorf("blob %s@%s is %d bytes, over the %d byte limit: %w", repo, d, size, limit, ErrTooLarge)
	}
	b, err := readCapped(rc, limit)
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
func (u *Upstream) Tags(ctx context.Context, repo string, n, last string) (tl TagList, next url.Values, err error) {
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
	b, err := readCapped(resp.Body, maxTagListSize)
	if err != nil {
		return tl, nil, fmt.Errorf("tags of %s from upstream %s: %w", repo, u.name, err)
	}
	if err := json.Unmarshal(b, &tl); err != nil {
		return tl, nil, fmt.Errorf("tags of %s from upstream %s: invalid JSON: %w", repo, u.name, err)
	}
	if link := resp.Header.Get("Link"); link != "" {
		next = parseNextLink(link)
	}
	return tl, next, nil
}

// parseNextLink returns the query of a `<url>; rel="next"` Link header value.
func parseNextLink(link string) url.Values {
	for _, part := range strings.Split(link, ",") {
		part = strings.TrimSpace(part)
		if !strings.Contains(part, `rel="next"`) {
			continue
		}
		start, end := strings.Index(part, "<"), strings.Index(part, ">")
		if start < 0 || end < start {
			return nil
		}
		lu, err := url.Parse(part[start+1 : end])
		if err != nil {
			return nil
		}
		q := lu.Query()
		out := url.Values{}
		for _, k := range []string{"n", "last"} {
			if v := q.Get(k); v != "" {
				out.Set(k, v)
			}
		}
		return out
	}
	return nil
}

// Referrers lists the manifests whose subject is d: from the upstream's referrers API, or,
// when it has none, from the referrers tag schema index "sha256-<hex>". No referrers is an
// empty list.
func (u *Upstream) Referrers(ctx context.Context, repo string, d digest.Digest) ([]ocispec.Descriptor, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("referrers of %q: %w", d, err)
	}
	if seen := u.noReferrersAPI.Load(); seen == 0 || time.Since(time.Unix(0, seen)) >= referrersAPITTL {
		idx, err := u.referrersAPI(ctx, repo, d)
		if err == nil {
			return idx.Manifests, nil
		}
		var ue *UpstreamError
		if !errors.As(err, &ue) || (ue.Status != http.StatusNotFound && ue.Status != http.StatusBadRequest &&
			ue.Status != http.StatusMethodNotAllowed && ue.Status != http.StatusNotImplemented) {
			return nil, err
		}
		if lacksEndpoint(ue) {
			u.noReferrersAPI.Store(time.Now().UnixNano())
		}
	}
	m, err := u.Manifest(ctx, repo, ReferrersTag(d))
	if errors.Is(err, oci.ErrNotFound) {
		return []ocispec.Descriptor{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("referrers of %s@%s: %w", repo, d, err)
	}
	if !oci.IsIndex(m.MediaType) {
		return nil, fmt.Errorf("referrers of %s@%s: tag %s is a %s, not an index", repo, d, ReferrersTag(d), m.MediaType)
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

func (u *Upstream) referrersAPI(ctx context.Context, repo string, d digest.Digest) (ocispec.Index, error) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	var idx ocispec.Index
	resp, err := u.do(ctx, http.MethodGet, repo, "/v2/"+repo+"/referrers/"+d.String(), "",
		http.Header{"Accept": {oci.MediaTypeOCIIndex}}, http.StatusOK)
	if err != nil {
		return idx, err
	}
	defer resp.Body.Close()
	b, err := readCapped(resp.Body, oci.MaxManifestSize)
	if err != nil {
		return idx, fmt.Errorf("referrers of %s@%s from upstream %s: %w", repo, d, u.name, err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return idx, fmt.Errorf("referrers of %s@%s from upstream %s: invalid index: %w", repo, d, u.name, err)
	}
	if idx.Manifests == nil {
		idx.Manifests = []ocispec.Descriptor{}
	}
	return idx, nil
}

// lacksEndpoint reports whether ue says the upstream has no such endpoint, rather than that
// the repository or manifest is unknown: a registry that implements the referrers API
// answers with OCI error codes (other than UNSUPPORTED); a missing route does not.
func lacksEndpoint(ue *UpstreamError) bool {
	for _, c := range ue.Codes {
		if c != "UNSUPPORTED" {
			return false
		}
	}
	return true
}

// ReferrersTag is the referrers tag schema tag for d: "sha256-<hex>".
func ReferrersTag(d digest.Digest) string {
	return d.Algorithm().String() + "-" + d.Encoded()
}

// readCapped reads all of r, failing with ErrTooLarge past limit bytes.
func readCapped(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("body over the %d byte limit: %w", limit, ErrTooLarge)
	}
	return b, nil
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
