package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// DefaultPolicy is what happens to an image that no policy covers.
type DefaultPolicy string

// Default policies.
const (
	// DefaultDeny refuses images no policy covers. It is the default.
	DefaultDeny DefaultPolicy = "deny"
	// DefaultAllow serves images no policy covers without checking signatures.
	DefaultAllow DefaultPolicy = "allow"
)

// Mode is what a policy does when its requirement is not met.
type Mode string

// Policy modes.
const (
	// ModeEnforce denies images that do not satisfy the policy. It is the default.
	ModeEnforce Mode = "enforce"
	// ModeWarn serves images that do not satisfy the policy, logging and counting each one.
	ModeWarn Mode = "warn"
	// ModeOff serves every image the policy covers without looking for signatures.
	ModeOff Mode = "off"
)

// IndexMode is how a policy treats multi-platform indexes.
type IndexMode string

// Index modes.
const (
	// IndexesSigned requires the index itself to be signed, like any manifest; a verified
	// index admits the platform manifests it lists. It is the default.
	IndexesSigned IndexMode = "signed"
	// IndexesPerPlatform serves an unsigned index and checks each platform manifest when it
	// is fetched. A signed index still admits its platform manifests.
	IndexesPerPlatform IndexMode = "perPlatform"
)

// Values of PolicyConfig.Require besides a number.
const (
	// RequireAny is satisfied by one verified authority. It is the default.
	RequireAny = "any"
	// RequireAll needs every authority of the policy.
	RequireAll = "all"
)

// Config is the policy part of the portcullis configuration.
type Config struct {
	// Policies are tried in order; the first whose images match an image applies to it.
	Policies []PolicyConfig `mapstructure:"policies"`
	// DefaultPolicy applies to images no policy covers: "deny" (default) or "allow".
	DefaultPolicy DefaultPolicy `mapstructure:"defaultPolicy"`
}

// PolicyConfig is one policy: which images it covers and whose signatures they need.
type PolicyConfig struct {
	// Name identifies the policy in decisions, logs and errors. Required, unique.
	Name string `mapstructure:"name"`
	// Images are globs over normalised image names "upstream/repository", e.g.
	// "docker.io/library/alpine": "*" matches within one path segment, "**" matches any
	// number of whole segments (including none), everything else is literal. At least one.
	Images []string `mapstructure:"images"`
	// Mode is "enforce" (default), "warn" or "off".
	Mode Mode `mapstructure:"mode"`
	// Require is how many authorities must verify a signature: "any" (default), "all", or a
	// number from 1 to the number of authorities.
	Require string `mapstructure:"require"`
	// Indexes is "signed" (default) or "perPlatform"; see IndexMode.
	Indexes IndexMode `mapstructure:"indexes"`
	// Authorities are the parties whose signatures the policy accepts. At least one unless
	// the mode is "off".
	Authorities []AuthorityConfig `mapstructure:"authorities"`
}

// AuthorityConfig is one party whose signatures a policy accepts.
type AuthorityConfig struct {
	// Name identifies the authority in decisions and messages. Required, unique within the
	// policy.
	Name string `mapstructure:"name"`
	// Key is the public key signatures must verify with.
	Key KeyConfig `mapstructure:"key"`
	// Keyless is reserved for keyless (Fulcio certificate identity) authorities, which will
	// sit here beside Key, exclusive with it. Any value is refused until they are supported.
	Keyless map[string]any `mapstructure:"keyless"`
	// Annotations must all be present, with these exact values, in the signed payload.
	Annotations map[string]string `mapstructure:"annotations"`
	// SignaturesRepository is the repository path, in the image's upstream, where the
	// signatures are stored (cosign's COSIGN_REPOSITORY); empty means the image's own.
	SignaturesRepository string `mapstructure:"signaturesRepository"`
}

// KeyConfig says where a public key comes from. Exactly one field is set.
type KeyConfig struct {
	// Path is a file holding the PEM public key.
	Path string `mapstructure:"path"`
	// Data is the PEM public key itself.
	Data string `mapstructure:"data"`
	// KMS is a key reference such as awskms://…, gcpkms://…, azurekms://… or hashivault://…,
	// resolved through sigstore's kms package; the binary must link the provider.
	KMS string `mapstructure:"kms"`
	// Env is the name of an environment variable holding the PEM public key.
	Env string `mapstructure:"env"`
}

// sources lists the names of the fields that are set.
func (k KeyConfig) sources() []string {
	var s []string
	for _, f := range []struct{ name, value string }{{"path", k.Path}, {"data", k.Data}, {"kms", k.KMS}, {"env", k.Env}} {
		if f.value != "" {
			s = append(s, f.name)
		}
	}
	return s
}

// Validate checks c without reading keys: every problem is reported, each prefixed with the
// path of the offending key, e.g. "policies[0].require: \"3\" exceeds the 2 authorities".
func (c Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	switch c.DefaultPolicy {
	case "", DefaultDeny, DefaultAllow:
	default:
		add("defaultPolicy", "unknown value %q (want %q or %q)", c.DefaultPolicy, DefaultDeny, DefaultAllow)
	}
	names := map[string]int{}
	for i, p := range c.Policies {
		at := fmt.Sprintf("policies[%d]", i)
		switch prev, dup := names[p.Name]; {
		case strings.TrimSpace(p.Name) == "":
			add(at+".name", "a name is required")
		case dup:
			add(at+".name", "%q is already the name of policies[%d]", p.Name, prev)
		default:
			names[p.Name] = i
		}
		if len(p.Images) == 0 {
			add(at+".images", "at least one image glob is required")
		}
		for j, g := range p.Images {
			if _, err := compileGlob(g); err != nil {
				add(fmt.Sprintf("%s.images[%d]", at, j), "%v", err)
			}
		}
		switch p.Mode {
		case "", ModeEnforce, ModeWarn, ModeOff:
		default:
			add(at+".mode", "unknown value %q (want %q, %q or %q)", p.Mode, ModeEnforce, ModeWarn, ModeOff)
		}
		if _, err := required(p.Require, len(p.Authorities)); err != nil {
			add(at+".require", "%v", err)
		}
		switch p.Indexes {
		case "", IndexesSigned, IndexesPerPlatform:
		default:
			add(at+".indexes", "unknown value %q (want %q or %q)", p.Indexes, IndexesSigned, IndexesPerPlatform)
		}
		if len(p.Authorities) == 0 && p.Mode != ModeOff {
			add(at+".authorities", "at least one authority is required unless mode is %q", ModeOff)
		}
		authNames := map[string]int{}
		for j, a := range p.Authorities {
			errs = append(errs, a.validate(fmt.Sprintf("%s.authorities[%d]", at, j), authNames, j)...)
		}
	}
	return errors.Join(errs...)
}

// validate checks one authority; seen maps the names used so far in its policy to their index.
func (a AuthorityConfig) validate(at string, seen map[string]int, index int) []error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	switch prev, dup := seen[a.Name]; {
	case strings.TrimSpace(a.Name) == "":
		add(at+".name", "a name is required")
	case dup:
		add(at+".name", "%q is already the name of authorities[%d]", a.Name, prev)
	default:
		seen[a.Name] = index
	}
	if a.Keyless != nil {
		add(at+".keyless", "keyless authorities are not supported yet; use key")
	}
	switch src := a.Key.sources(); {
	case len(src) == 0 && a.Keyless == nil:
		add(at+".key", "one of path, data, kms or env is required")
	case len(src) > 1:
		add(at+".key", "exactly one of path, data, kms or env may be set, got %s", strings.Join(src, ", "))
	}
	if a.Key.KMS != "" && !kmsURI.MatchString(a.Key.KMS) {
		add(at+".key.kms", "%q is not a KMS key reference (want scheme://…, e.g. awskms://…)", a.Key.KMS)
	}
	if a.Key.Env != "" && !envName.MatchString(a.Key.Env) {
		add(at+".key.env", "%q is not an environment variable name", a.Key.Env)
	}
	for k := range a.Annotations {
		if k == "" {
			add(at+".annotations", "annotation names must not be empty")
		}
	}
	if r := a.SignaturesRepository; r != "" && !repositoryPath.MatchString(r) {
		add(at+".signaturesRepository", "%q is not a repository path (lowercase components separated by /, e.g. myorg/signatures)", r)
	}
	return errs
}

// required resolves a Require value against the number of authorities n.
func required(spec string, n int) (int, error) {
	switch spec {
	case "", RequireAny:
		return min(1, n), nil
	case RequireAll:
		return n, nil
	}
	k, err := strconv.Atoi(spec)
	switch {
	case err != nil:
		return 0, fmt.Errorf("unknown value %q (want %q, %q or a number of authorities)", spec, RequireAny, RequireAll)
	case k < 1:
		return 0, fmt.Errorf("%q must be at least 1", spec)
	case k > n:
		return 0, fmt.Errorf("%q exceeds the %d authorities", spec, n)
	}
	return k, nil
}

var (
	kmsURI  = regexp.MustCompile(`^[a-z][a-z0-9+.-]*://.+$`)
	envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// repositoryPath is the distribution spec's repository name grammar.
	repositoryPath = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
)
