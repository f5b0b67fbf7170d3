package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/go-viper/mapstructure/v2"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/cache/redistier"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/pushauth"
	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/verify/trustroot"
)

// Config is the whole configuration.
type Config struct {
	// Listen is the address to serve on. Default ":5000".
	Listen string `mapstructure:"listen"`
	TLS    TLS    `mapstructure:"tls"`
	Log    Log    `mapstructure:"log"`
	// Storage is the content cache's distribution storage driver.
	Storage   Storage           `mapstructure:"storage"`
	Upstreams []upstream.Config `mapstructure:"upstreams"`
	Cache     Cache             `mapstructure:"cache"`
	// TrustRoots are the named trust roots of keyless authorities; see package policy.
	TrustRoots []trustroot.Config `mapstructure:"trustRoots"`
	// Policies say which signatures each image needs; see package policy.
	Policies []policy.PolicyConfig `mapstructure:"policies"`
	// DefaultPolicy applies to images no policy covers: "deny" (default) or "allow".
	DefaultPolicy policy.DefaultPolicy `mapstructure:"defaultPolicy"`
	// PolicyFiles are paths or globs of policy-controller ClusterImagePolicy files, whose
	// policies follow the inline ones; see package policy/cip.
	PolicyFiles []string `mapstructure:"policyFiles"`
	// Push opens the proxy to authenticated signature pushes; read-only without it.
	Push pushauth.Config `mapstructure:"push"`
	// Keys says how the policies' keys are loaded.
	Keys Keys `mapstructure:"keys"`
	// Server configures the overload limit and the shutdown of serve.
	Server Server `mapstructure:"server"`

	// filePolicies are the policies read from PolicyFiles, policyFileNames the files read.
	filePolicies    []policy.PolicyConfig
	policyFileNames []string
}

// Keys says how the policies' keys are loaded, on start and on every reload.
type Keys struct {
	// Timeout bounds loading every key of the policies (files, environment, KMS public
	// keys); a KMS that does not answer in time fails the start, or the reload, which
	// leaves the running configuration serving. Default (and 0) 30s.
	Timeout time.Duration `mapstructure:"timeout"`
	// AllowKMSPlugins lets a kms: reference that no linked provider (awskms, gcpkms,
	// azurekms, hashivault) serves execute sigstore's KMS plugin "sigstore-kms-<scheme>"
	// found on PATH. Default false: nothing is executed.
	AllowKMSPlugins bool `mapstructure:"allowKMSPlugins"`
}

// Policy returns the policy part of the configuration: the inline policies, then those of
// the policy files.
func (c *Config) Policy() policy.Config {
	return policy.Config{
		TrustRoots:    c.TrustRoots,
		Policies:      append(slices.Clip(c.Policies), c.filePolicies...),
		DefaultPolicy: c.DefaultPolicy,
		PolicyFiles:   c.PolicyFiles,
	}
}

// TLS enables HTTPS when both files are set.
type TLS struct {
	Cert string `mapstructure:"cert"`
	Key  string `mapstructure:"key"`
}

// Log configures the process logger.
type Log struct {
	// Format is "json" (default) or "text".
	Format string `mapstructure:"format"`
	// Level is "debug", "info" (default), "warn" or "error".
	Level string `mapstructure:"level"`
}

// Storage selects the content store: driver "filesystem" (default; params.rootdirectory,
// default /var/lib/portcullis), "s3" (params as distribution's s3 driver takes them, see
// S3Params; one bucket can serve several replicas) or "inmemory", and bounds it.
type Storage struct {
	Driver string         `mapstructure:"driver"`
	Params map[string]any `mapstructure:"params"`
	// MaxSize caps the stored content, e.g. "20GiB" (the default, also when empty); the
	// least recently served content is evicted first.
	MaxSize string `mapstructure:"maxSize"`
	// MaxAge evicts content not served for that long. Default (and 0) 168h (7 days).
	MaxAge time.Duration `mapstructure:"maxAge"`
	// SweepInterval is how often the store is swept. Default (and 0) 10m.
	SweepInterval time.Duration `mapstructure:"sweepInterval"`
}

// Eviction returns the store's bounds; Validate has checked them.
func (s Storage) Eviction() store.EvictionOptions {
	var n uint64
	if s.MaxSize != "" {
		n, _ = humanize.ParseBytes(s.MaxSize)
	}
	return store.EvictionOptions{MaxSize: int64(n), MaxAge: s.MaxAge} // zero values: the defaults
}

// Cache configures what portcullis remembers.
type Cache struct {
	// Size bounds the number of allowed, and separately of denied, decisions. Default 10000.
	Size int `mapstructure:"size"`
	// TTL is how long an allowed decision is kept. Default 10m.
	TTL time.Duration `mapstructure:"ttl"`
	// NegativeTTL is how long a denial is kept. Default 30s.
	NegativeTTL time.Duration `mapstructure:"negativeTTL"`
	// TagTTL is how long a tag's digest is used without asking the upstream. Default 0.
	TagTTL time.Duration `mapstructure:"tagTTL"`
	// MaxStale is how long, while an upstream fails (unreachable, 5xx, 429), a tag keeps
	// resolving to the digest it last had and a stored manifest is served on its last
	// admission (stale-if-error). Default 24h; 0 turns it off.
	MaxStale time.Duration `mapstructure:"maxStale"`
	// Redis, when set, shares decisions between replicas through Redis: a second tier
	// behind the in-process one (see package cache/redistier). Default: none.
	Redis *redistier.Config `mapstructure:"redis"`
}

// defaults returns the default values of the keys that have one.
func defaults() map[string]any {
	return map[string]any{
		"listen": ":5000",
		"tls":    map[string]any{"cert": "", "key": ""},
		"log":    map[string]any{"format": "json", "level": "info"},
		"storage": map[string]any{"driver": "filesystem", "maxSize": "20GiB",
			"maxAge": store.DefaultMaxAge.String(), "sweepInterval": store.DefaultSweepInterval.String()},
		"cache": map[string]any{"size": cache.DefaultSize, "ttl": cache.DefaultTTL.String(),
			"negativeTTL": cache.DefaultNegativeTTL.String(), "tagTTL": "0s", "maxStale": "24h"},
		"defaultPolicy": string(policy.DefaultDeny),
		"keys":          map[string]any{"timeout": "30s"},
		"server":        serverDefaults(),
	}
}

// Load reads the YAML file at path (may be empty: defaults and environment only) with
// overrides from environ (os.Environ's format): environment beats file beats defaults.
func Load(path string, environ []string) (*Config, error) {
	doc := tree{}
	if path != "" {
		var err error
		if doc, err = readTree(path); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	doc = merge(defaults(), doc)
	if err := applyEnv(doc, environ); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := decode(doc)
	if err != nil {
		return nil, err
	}
	c.Storage.normalize()
	if path != "" {
		// Files named in the configuration are relative to it.
		c.resolvePaths(filepath.Dir(path))
		c.resolvePolicyFiles(filepath.Dir(path))
	}
	if err := c.loadPolicyFiles(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// Defaults returns the configuration made of the defaults alone, not validated (it names no
// upstream): the base of a configuration built in code, such as the demo's, so that every key
// it does not set has the value serve would give it.
func Defaults() (*Config, error) {
	c, err := decode(defaults())
	if err != nil {
		return nil, err
	}
	c.Storage.normalize()
	return c, nil
}

// decode turns a configuration tree into a Config.
func decode(doc tree) (*Config, error) {
	var c Config
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:           &c,
		ErrorUnused:      true,
		WeaklyTypedInput: true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		),
	})
	if err == nil {
		err = dec.Decode(map[string]any(doc))
	}
	if err != nil {
		return nil, fmt.Errorf("config: %s", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	return &c, nil
}

// Validate checks the whole configuration; errors name the offending key.
func (c *Config) Validate() error {
	var errs []error
	if err := validateListen(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen: %w", err))
	}
	if c.Keys.Timeout < 0 {
		errs = append(errs, errors.New("keys.timeout: must not be negative"))
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		errs = append(errs, errors.New("tls: cert and key must be set together"))
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		errs = append(errs, fmt.Errorf("log.format: %q is not json or text", c.Log.Format))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q is not debug, info, warn or error", c.Log.Level))
	}
	errs = append(errs, c.Storage.validate()...)
	if c.Storage.MaxSize != "" {
		if n, err := humanize.ParseBytes(c.Storage.MaxSize); err != nil || n == 0 || n > math.MaxInt64 {
			errs = append(errs, fmt.Errorf("storage.maxSize: %q is not a positive size like 20GiB", c.Storage.MaxSize))
		}
	}
	if c.Storage.MaxAge < 0 {
		errs = append(errs, errors.New("storage.maxAge: must not be negative"))
	}
	if c.Storage.SweepInterval < 0 {
		errs = append(errs, errors.New("storage.sweepInterval: must not be negative"))
	}
	if len(c.Upstreams) == 0 {
		errs = append(errs, errors.New("upstreams: at least one upstream is needed"))
	}
	names, defaults := map[string]bool{}, 0
	for i, u := range c.Upstreams {
		if err := u.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("upstreams[%d].%w", i, err))
		}
		if names[u.Name] {
			errs = append(errs, fmt.Errorf("upstreams[%d].name: %q is configured twice", i, u.Name))
		}
		names[u.Name] = true
		if u.Default {
			defaults++
		}
	}
	if defaults > 1 {
		errs = append(errs, errors.New("upstreams: more than one upstream is marked default"))
	}
	if c.Cache.TagTTL < 0 {
		errs = append(errs, errors.New("cache.tagTTL: must not be negative"))
	}
	if c.Cache.MaxStale < 0 {
		errs = append(errs, errors.New("cache.maxStale: must not be negative"))
	}
	errs = append(errs, c.Server.validate()...)
	if c.Cache.Size <= 0 {
		errs = append(errs, errors.New("cache.size: must be positive"))
	}
	if c.Cache.TTL <= 0 {
		errs = append(errs, errors.New("cache.ttl: must be positive"))
	}
	if c.Cache.NegativeTTL <= 0 || c.Cache.NegativeTTL > c.Cache.TTL {
		errs = append(errs, errors.New("cache.negativeTTL: must be positive and not longer than cache.ttl"))
	}
	if c.Cache.Redis != nil {
		if err := c.Cache.Redis.Validate(); err != nil {
			errs = append(errs, prefixLines("cache.redis.", err))
		}
	}
	if err := c.Policy().Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Push.Validate(); err != nil {
		errs = append(errs, prefixLines("push.", err))
	}
	return errors.Join(errs...)
}

// prefixLines prefixes each error joined in err with prefix.
func prefixLines(prefix string, err error) error {
	var out []error
	for _, line := range strings.Split(err.Error(), "\n") {
		out = append(out, errors.New(prefix+line))
	}
	return errors.Join(out...)
}

// validateListen checks a listen address: [host]:port with a numeric port, the host empty
// (every address), an IP address or a name.
func validateListen(addr string) error {
	if addr == "" {
		return errors.New("must be set")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. :5000, 127.0.0.1:5000, [::1]:5000)", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if host != "" && net.ParseIP(host) == nil && !hostnameRE.MatchString(host) {
		return fmt.Errorf("%q: %q is not an IP address or host name", addr, host)
	}
	return nil
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)
