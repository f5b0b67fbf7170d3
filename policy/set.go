package policy

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/policy/predicate"
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
	name    string
	globs   []glob
	mode    Mode
	require int
	indexes IndexMode
	// authorities are the authorities signatures and attestations are verified against (not
	// the static ones), in configuration order.
	authorities []verify.Authority
	// rules are all the authorities, in configuration order, with how each is satisfied.
	rules []authorityRule
	// attestations are the policy-level attestation requirements.
	attestations []attestationRule
}

// authorityRule is how one authority of a policy is satisfied: statically, by its
// attestations (all of them) when it has some, else by a signature.
type authorityRule struct {
	name string
	// static is StaticPass or StaticFail for a static authority, else "".
	static string
	// verify is the index of the authority in Policy.authorities; -1 when static.
	verify int
	// attestations, when set, satisfy the authority instead of a signature.
	attestations []attestationRule
}

// attestationRule is one compiled attestation requirement.
type attestationRule struct {
	name          string
	predicateType string
	authority     string
	// verify is the index of the signing authority in Policy.authorities.
	verify int
	// policy is evaluated over the statement; nil: a verified attestation is enough.
	policy *predicate.Policy
	// language is "cue" or "rego" when policy is set.
	language string
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
		// Which predicate types each authority must be asked for: its own requirements' and
		// those of the policy-level requirements naming it.
		wanted := map[string][]string{}
		for j, ac := range pc.Attestations {
			at := fmt.Sprintf("policies[%d].attestations[%d]", i, j)
			r, vr, err := compileAttestation(at, ac)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			p.attestations = append(p.attestations, r)
			pd.Attestations = append(pd.Attestations, vr)
			wanted[ac.Authority] = appendNew(wanted[ac.Authority], r.predicateType)
		}
		for j, ac := range pc.Authorities {
			rule := authorityRule{name: ac.Name, static: ac.Static, verify: -1}
			if ac.Static != "" {
				p.rules = append(p.rules, rule)
				pd.Authorities = append(pd.Authorities, versionAuthority{Name: ac.Name, Static: ac.Static})
				continue
			}
			var va []versionAttestation
			for k, atc := range ac.Attestations {
				r, vr, err := compileAttestation(fmt.Sprintf("policies[%d].authorities[%d].attestations[%d]", i, j, k), atc)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				r.authority = ac.Name
				rule.attestations = append(rule.attestations, r)
				va = append(va, vr)
				wanted[ac.Name] = appendNew(wanted[ac.Name], r.predicateType)
			}
			rule.verify = len(p.authorities)
			p.rules = append(p.rules, rule)
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
					Name: ac.Name, Keyless: vk, Annotations: ac.Annotations, SignaturesRepository: ac.SignaturesRepository, Attestations: va,
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
				Name: ac.Name, PublicKey: k.DER, Annotations: ac.Annotations, SignaturesRepository: ac.SignaturesRepository, Attestations: va,
			})
		}
		for k := range p.authorities {
			p.authorities[k].Attestations = wanted[p.authorities[k].Name]
		}
		for k := range p.attestations {
			p.attestations[k].verify = slices.IndexFunc(p.authorities, func(a verify.Authority) bool { return a.Name == p.attestations[k].authority })
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
	Name         string
	Images       []string
	Mode         Mode
	Require      int
	Indexes      IndexMode
	Authorities  []versionAuthority
	Attestations []versionAttestation `json:",omitempty"`
}

type versionAuthority struct {
	Name                 string
	PublicKey            []byte
	Keyless              *versionKeyless `json:",omitempty"`
	Annotations          map[string]string
	SignaturesRepository string
	Static               string               `json:",omitempty"`
	Attestations         []versionAttestation `json:",omitempty"`
}

// versionAttestation is an attestation requirement as the version hashes it: the predicate
// type resolved, the predicate policy by its source text (a file's content, not its path).
type versionAttestation struct {
	Name          string
	PredicateType string
	Authority     string `json:",omitempty"`
	Language      string `json:",omitempty"`
	Source        string `json:",omitempty"`
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

// maxPredicatePolicyFile bounds the cueFile and regoFile read.
const maxPredicatePolicyFile = 1 << 20

// compileAttestation resolves the predicate type of one requirement, validated, at config
// path at, and compiles its predicate policy (reading cueFile or regoFile). Errors name
// at.policy.
func compileAttestation(at string, ac AttestationConfig) (attestationRule, versionAttestation, error) {
	pt, err := cosign.PredicateType(ac.PredicateType)
	if err != nil {
		return attestationRule{}, versionAttestation{}, fmt.Errorf("%s.predicateType: %w", at, err)
	}
	r := attestationRule{name: ac.Name, predicateType: pt, authority: ac.Authority}
	vr := versionAttestation{Name: ac.Name, PredicateType: pt, Authority: ac.Authority}
	pc := ac.Policy
	if pc == nil {
		return r, vr, nil
	}
	src := predicate.Source{CUE: pc.CUE, Rego: pc.Rego, Name: at + ".policy"}
	for _, f := range []struct {
		path  string
		field string
		into  *string
	}{{pc.CUEFile, "cueFile", &src.CUE}, {pc.RegoFile, "regoFile", &src.Rego}} {
		if f.path == "" {
			continue
		}
		b, err := readFileLimited(f.path, maxPredicatePolicyFile)
		if err != nil {
			return attestationRule{}, versionAttestation{}, fmt.Errorf("%s.policy.%s: %w", at, f.field, err)
		}
		*f.into, src.Name = string(b), f.path
	}
	r.language, vr.Source = "cue", src.CUE
	if src.Rego != "" {
		r.language, vr.Source = "rego", src.Rego
	}
	vr.Language = r.language
	if r.policy, err = predicate.Compile(src); err != nil {
		return attestationRule{}, versionAttestation{}, fmt.Errorf("%s.policy: %w", at, err)
	}
	return r, vr, nil
}

// readFileLimited reads a file of at most limit bytes.
func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// WantsAttestations reports whether the policy asks any authority for attestations.
func (p *Policy) WantsAttestations() bool {
	for _, a := range p.authorities {
		if len(a.Attestations) > 0 {
			return true
		}
	}
	return false
}
