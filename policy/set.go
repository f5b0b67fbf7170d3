package policy

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/trustroot"
)

// Option configures Compile.
type Option func(*compileOptions)

type compileOptions struct {
	lookupEnv  func(string) (string, bool)
	trustRoots TrustRoots
}

// WithLookupEnv gives Compile the environment lookup (os.LookupEnv in main) used for keys
// with an env source. Without it such keys are refused: packages never read the environment
// themselves.
func WithLookupEnv(lookup func(name string) (value string, ok bool)) Option {
	return func(o *compileOptions) { o.lookupEnv = lookup }
}

// Set is a validated, compiled policy configuration with its keys loaded. It is immutable and
// safe for concurrent use.
type Set struct {
	policies      []*Policy
	defaultPolicy DefaultPolicy
	version       string
	trustRoots    []trustroot.Config
}

// Policy is one compiled policy. It is immutable.
type Policy struct {
	name        string
	globs       []glob
	mode        Mode
	require     int
	indexes     IndexMode
	authorities []verify.Authority
}

// Compile validates cfg (see Config.Validate), applies the defaults and loads every key: PEM
// from a file, inline data or an environment variable (through WithLookupEnv), or the public
// key of a KMS key through sigstore's kms.Get, which ctx bounds. Every error names the config
// key it is about, e.g. "policies[1].authorities[0].key.path: open /x.pub: no such file or
// directory"; all problems are reported together.
func Compile(ctx context.Context, cfg Config, opts ...Option) (*Set, error) {
	var o compileOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.trustRoots == nil {
		o.trustRoots = trustroot.NewManager()
	}
	roots := newRootResolver(o.trustRoots, cfg.TrustRoots)
	s := &Set{defaultPolicy: cmp.Or(cfg.DefaultPolicy, DefaultDeny)}
	doc := versionDoc{Format: versionFormat, DefaultPolicy: s.defaultPolicy}
	var errs []error
	for i, pc := range cfg.Policies {
		p := &Policy{
			name:    pc.Name,
			mode:    cmp.Or(pc.Mode, ModeEnforce),
			indexes: cmp.Or(pc.Indexes, IndexesSigned),
		}
		p.require, _ = required(pc.Require, len(pc.Authorities)) // validated above
		for _, g := range pc.Images {
			cg, _ := compileGlob(g) // validated above
			p.globs = append(p.globs, cg)
		}
		pd := versionPolicy{Name: p.name, Images: pc.Images, Mode: p.mode, Require: p.require, Indexes: p.indexes}
		for j, ac := range pc.Authorities {
			if ac.Keyless != nil || ac.Certificate != nil {
				kl, vk, err := o.keylessAuthority(ctx, fmt.Sprintf("policies[%d].authorities[%d]", i, j), ac, roots)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				p.authorities = append(p.authorities, verify.Authority{
					Name: ac.Name, Keyless: kl, Annotations: maps.Clone(ac.Annotations), SignaturesRepository: ac.SignaturesRepository,
				})
				pd.Authorities = append(pd.Authorities, versionAuthority{
					Name: ac.Name, Keyless: vk, Annotations: ac.Annotations, SignaturesRepository: ac.SignaturesRepository,
				})
				continue
			}
			k, err := o.loadKey(ctx, fmt.Sprintf("policies[%d].authorities[%d].key", i, j), ac.Key)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			p.authorities = append(p.authorities, verify.Authority{
				Name:                 ac.Name,
				Key:                  k.Verifier,
				Annotations:          maps.Clone(ac.Annotations),
				SignaturesRepository: ac.SignaturesRepository,
			})
			pd.Authorities = append(pd.Authorities, versionAuthority{
				Name: ac.Name, PublicKey: k.DER, Annotations: ac.Annotations, SignaturesRepository: ac.SignaturesRepository,
			})
		}
		s.policies = append(s.policies, p)
		doc.Policies = append(doc.Policies, pd)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("hash policy config: %w", err)
	}
	sum := sha256.Sum256(b)
	s.version = hex.EncodeToString(sum[:])
	s.trustRoots = roots.used()
	return s, nil
}

// versionFormat changes whenever the meaning of a compiled Set changes for the same input,
// so that decisions made by an older portcullis are never reused.
const versionFormat = "portcullis.policy/v1"

// versionDoc is what Set.Version hashes: the normalised config with keys replaced by their
// PKIX DER bytes. Where a key comes from (file, env, KMS) does not change the version; what
// it is does. encoding/json sorts map keys, so the encoding is stable.
type versionDoc struct {
	Format        string
	DefaultPolicy DefaultPolicy
	Policies      []versionPolicy
}

type versionPolicy struct {
	Name        string
	Images      []string
	Mode        Mode
	Require     int
	Indexes     IndexMode
	Authorities []versionAuthority
}

type versionAuthority struct {
	Name                 string
	PublicKey            []byte
	Keyless              *versionKeyless `json:",omitempty"`
	Annotations          map[string]string
	SignaturesRepository string
}

// Version identifies the set: a SHA-256 (hex) of the normalised configuration and the loaded
// public keys. Compiling the same configuration with the same keys gives the same version;
// any change, including a key file's content, gives a new one. Decisions are cached under it.
func (s *Set) Version() string { return s.version }

// DefaultPolicy is what applies to images no policy covers.
func (s *Set) DefaultPolicy() DefaultPolicy { return s.defaultPolicy }

// TrustRoots returns the configurations of the trust roots the set's authorities use, in
// the order they were first resolved (for trustroot.Manager.Keep).
func (s *Set) TrustRoots() []trustroot.Config { return slices.Clone(s.trustRoots) }

// Policies returns the policies in configuration order.
func (s *Set) Policies() []*Policy { return slices.Clone(s.policies) }

// Match returns the first policy, in configuration order, with a glob matching the normalised
// image name "upstream/repository" (no tag or digest), or nil when none does and the default
// policy applies.
func (s *Set) Match(image string) *Policy {
	for _, p := range s.policies {
		for _, g := range p.globs {
			if g.match(image) {
				return p
			}
		}
	}
	return nil
}

// Name is the policy's name.
func (p *Policy) Name() string { return p.name }

// Mode is the policy's mode, defaults applied.
func (p *Policy) Mode() Mode { return p.mode }

// Indexes is how the policy treats multi-platform indexes, defaults applied.
func (p *Policy) Indexes() IndexMode { return p.indexes }

// Required is how many authorities must verify a signature ("any" is 1, "all" is all).
func (p *Policy) Required() int { return p.require }

// Authorities returns the policy's authorities in configuration order, keys loaded.
func (p *Policy) Authorities() []verify.Authority { return slices.Clone(p.authorities) }
