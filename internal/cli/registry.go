package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
)

// RegistryOptions are cosign's registry flags.
type RegistryOptions struct {
	// AllowHTTP permits plain HTTP (--allow-http-registry). Loopback and private registries
	// always may, as in cosign: https is tried first.
	AllowHTTP bool
	// AllowInsecure permits TLS without certificate verification, and HTTP
	// (--allow-insecure-registry).
	AllowInsecure bool
	// Username and Password are HTTP Basic credentials; without them the docker config.json
	// keychain is used.
	Username, Password string
	// Token is a bearer token (--registry-token), for signing only.
	Token string
	// Transport, when set, is the HTTP transport every registry request is dialled with (for
	// tests); nil means a fresh default one.
	Transport *http.Transport
}

// Validate rejects conflicting credentials.
func (o RegistryOptions) Validate() error {
	switch {
	case o.Token != "" && (o.Username != "" || o.Password != ""):
		return errors.New("--registry-token and --registry-username/--registry-password are exclusive")
	case o.Password != "" && o.Username == "":
		return errors.New("--registry-password needs --registry-username")
	}
	return nil
}

func (o RegistryOptions) nameOpts() []name.Option {
	if o.AllowHTTP || o.AllowInsecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

// remoteOpts are go-containerregistry options for the pushes and resolutions of
// internal/sign, with the same credentials and transport as the Registries.
func (o RegistryOptions) remoteOpts(ctx context.Context) ([]remote.Option, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithUserAgent("portcullis")}
	switch {
	case o.Token != "":
		opts = append(opts, remote.WithAuth(&authn.Bearer{Token: o.Token}))
	case o.Username != "":
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: o.Username, Password: o.Password}))
	default:
		opts = append(opts, remote.WithAuthFromKeychain(authn.DefaultKeychain))
	}
	var t *http.Transport
	switch {
	case o.Transport != nil:
		t = o.Transport.Clone()
	case o.AllowInsecure:
		t = remote.DefaultTransport.(*http.Transport).Clone()
	}
	if t != nil {
		if o.AllowInsecure {
			t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user asked for it by name
		}
		opts = append(opts, remote.WithTransport(t))
	}
	return opts, nil
}

// ParseRef parses an image reference as cosign does, with the registry options.
func (o RegistryOptions) ParseRef(s string) (name.Reference, error) {
	ref, err := name.ParseReference(s, o.nameOpts()...)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %w", s, err)
	}
	return ref, nil
}

// Registries is a verify.Registry over every registry a command names: repositories are
// full names "host/path" (as name.Repository.Name spells them), and each host is read
// through one upstream.Client, portcullis's registry client, made on first use. It is safe
// for concurrent use.
type Registries struct {
	opts RegistryOptions

	mu      sync.Mutex
	clients map[string]*upstream.Client
}

var _ verify.Registry = (*Registries)(nil)

// NewRegistries returns the Registries for o. --registry-token cannot be used for reads:
// upstream.Config has HTTP Basic credentials and the keychain only.
func NewRegistries(o RegistryOptions) (*Registries, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Token != "" {
		return nil, errors.New("--registry-token: reading signatures with a bearer token is not supported yet; use --registry-username/--registry-password or docker login")
	}
	return &Registries{opts: o, clients: map[string]*upstream.Client{}}, nil
}

// Client returns the client for the registry host (as name.Registry.RegistryStr spells it).
func (r *Registries) Client(ctx context.Context, host string) (*upstream.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.clients[host]; ok {
		return c, nil
	}
	reg, err := name.NewRegistry(host, r.opts.nameOpts()...)
	if err != nil {
		return nil, fmt.Errorf("registry %q: %w", host, err)
	}
	scheme := "https"
	if reg.Scheme() == "http" && !r.speaksTLS(ctx, host) {
		scheme = "http"
	}
	cfg := upstream.Config{
		Name:     host,
		URL:      scheme + "://" + host,
		Insecure: scheme == "http" || r.opts.AllowInsecure,
		Keychain: r.opts.Username == "",
		// The user names the registry; follow its token realm and blob CDN as cosign does.
		AnyHostUnsafe: true,
	}
	if r.opts.Username != "" {
		cfg.Auth = &upstream.BasicAuth{Username: r.opts.Username, Password: r.opts.Password}
	}
	c, err := upstream.New(cfg, r.opts.Transport)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", host, err)
	}
	r.clients[host] = c
	return c, nil
}

// speaksTLS reports whether host answers https, for registries that may also be spoken to in
// plain HTTP (loopback, private addresses, --allow-http-registry): as go-containerregistry and
// cosign do, https is preferred.
func (r *Registries) speaksTLS(ctx context.Context, host string) bool {
	t := &http.Transport{TLSHandshakeTimeout: 5 * time.Second}
	if r.opts.Transport != nil {
		t = r.opts.Transport.Clone()
	}
	if r.opts.AllowInsecure {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user asked for it by name
	}
	defer t.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/v2/", nil)
	if err != nil {
		return false
	}
	resp, err := t.RoundTrip(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// split returns the client and the repository path of a full repository name.
func (r *Registries) split(ctx context.Context, repo string) (*upstream.Client, string, error) {
	rp, err := name.NewRepository(repo, r.opts.nameOpts()...)
	if err != nil {
		return nil, "", fmt.Errorf("repository %q: %w", repo, err)
	}
	c, err := r.Client(ctx, rp.RegistryStr())
	if err != nil {
		return nil, "", err
	}
	return c, rp.RepositoryStr(), nil
}

// Manifest fetches a manifest of the full repository name repo.
func (r *Registries) Manifest(ctx context.Context, repo, ref string) (oci.Manifest, error) {
	c, path, err := r.split(ctx, repo)
	if err != nil {
		return oci.Manifest{}, err
	}
	return c.Manifest(ctx, path, ref)
}

// Blob fetches a blob of the full repository name repo.
func (r *Registries) Blob(ctx context.Context, repo string, d digest.Digest, limit int64) ([]byte, error) {
	c, path, err := r.split(ctx, repo)
	if err != nil {
		return nil, err
	}
	return c.Blob(ctx, path, d, limit)
}

// Referrers lists the referrers of d in the full repository name repo.
func (r *Registries) Referrers(ctx context.Context, repo string, d digest.Digest) ([]ocispec.Descriptor, error) {
	c, path, err := r.split(ctx, repo)
	if err != nil {
		return nil, err
	}
	return c.Referrers(ctx, path, d)
}
