package trustroot

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// PublicGood is the name of sigstore's public instance, reached through its TUF repository
// with the root.json embedded in sigstore-go. Keyless authorities that name no trust root use
// it; a trust root configured under this name replaces it.
const PublicGood = "public-good"

// Defaults of a TUF trust root.
const (
	// DefaultMirror is sigstore's public TUF repository.
	DefaultMirror = "https://tuf-repo-cdn.sigstore.dev"
	// RootEmbedded selects the public-good root.json embedded in sigstore-go.
	RootEmbedded = "embedded"
	// DefaultCacheDir is where TUF metadata and targets are cached on disk, one directory per
	// mirror.
	DefaultCacheDir = "/var/lib/portcullis/tuf"
	// DefaultRefresh is how often a TUF trust root is refreshed in the background.
	DefaultRefresh = 24 * time.Hour
	// TrustedRootTarget is the TUF target holding the trusted root.
	TrustedRootTarget = "trusted_root.json"
)

// Config is one named trust root: the certificate authorities, transparency logs, CT logs
// and timestamp authorities that keyless signatures are checked against. Exactly one of TUF
// and TrustedRootFile is set.
type Config struct {
	// Name is how authorities refer to the trust root (keyless.trustRoot). Required, unique.
	Name string `mapstructure:"name"`
	// TUF fetches trusted_root.json from a TUF repository and refreshes it in the background.
	TUF *TUFConfig `mapstructure:"tuf"`
	// TrustedRootFile is a trusted_root.json file (cosign trusted-root create, or a copy of a
	// TUF target): the air-gapped choice. It is read when the policies are compiled.
	TrustedRootFile string `mapstructure:"trustedRootFile"`
}

// TUFConfig locates a TUF repository that serves trusted_root.json.
type TUFConfig struct {
	// Mirror is the repository's base URL. Default DefaultMirror.
	Mirror string `mapstructure:"mirror"`
	// Root is the initial root.json that anchors the repository: "embedded" (default: the
	// public-good root shipped with sigstore-go, only meaningful for the public-good mirror)
	// or the path of a root.json file.
	Root string `mapstructure:"root"`
	// CacheDir holds the metadata and targets fetched, so that a restart without the mirror
	// still has the last good root. Default DefaultCacheDir.
	CacheDir string `mapstructure:"cacheDir"`
	// Refresh is how often the repository is checked for a new root. Default DefaultRefresh.
	Refresh time.Duration `mapstructure:"refresh"`
}

// WithDefaults returns t with its defaults applied.
func (t TUFConfig) WithDefaults() TUFConfig {
	if t.Mirror == "" {
		t.Mirror = DefaultMirror
	}
	if t.Root == "" {
		t.Root = RootEmbedded
	}
	if t.CacheDir == "" {
		t.CacheDir = DefaultCacheDir
	}
	if t.Refresh == 0 {
		t.Refresh = DefaultRefresh
	}
	return t
}

// Implicit is the trust root used for PublicGood when none is configured under that name.
func Implicit() Config {
	return Config{Name: PublicGood, TUF: &TUFConfig{}}
}

var name = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Validate checks c without reading files or the network; at is the config path used as the
// prefix of every error, e.g. "trustRoots[0]".
func (c Config) Validate(at string) error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if !name.MatchString(c.Name) {
		add(at+".name", "%q is not a trust root name (letters, digits, '.', '_', '-')", c.Name)
	}
	switch {
	case c.TUF == nil && strings.TrimSpace(c.TrustedRootFile) == "":
		add(at, "one of tuf or trustedRootFile is required")
	case c.TUF != nil && c.TrustedRootFile != "":
		add(at, "tuf and trustedRootFile are exclusive")
	}
	if t := c.TUF; t != nil {
		if t.Mirror != "" {
			u, err := url.Parse(t.Mirror)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				add(at+".tuf.mirror", "%q is not an http(s) URL", t.Mirror)
			}
		}
		if t.Refresh < 0 {
			add(at+".tuf.refresh", "%s is negative", t.Refresh)
		}
		if t.Root == RootEmbedded || t.Root == "" {
			if m := t.Mirror; m != "" && strings.TrimSuffix(m, "/") != DefaultMirror {
				add(at+".tuf.root", "the embedded root anchors only %s; give the root.json of %s", DefaultMirror, m)
			}
		}
	}
	return errors.Join(errs...)
}
