package policy

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/verify/trustroot"
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
	// TrustRoots are the named trust roots keyless authorities refer to. "public-good"
	// (sigstore's public instance through TUF) exists without being listed.
	TrustRoots []trustroot.Config `mapstructure:"trustRoots"`
	// Policies are tried in order; the first whose images match an image applies to it.
	Policies []PolicyConfig `mapstructure:"policies"`
	// DefaultPolicy applies to images no policy covers: "deny" (default) or "allow".
	DefaultPolicy DefaultPolicy `mapstructure:"defaultPolicy"`
	// PolicyFiles are paths or globs of policy-controller ClusterImagePolicy YAML files. The
	// config package reads them (through package policy/cip) and appends their policies to
	// Policies, after the inline ones; Compile does not read them.
	PolicyFiles []string `mapstructure:"policyFiles"`
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
	// Attestations are extra requirements: for each, an attestation with that predicate type,
	// signed by the named authority of this policy, whose statement satisfies the policy. All of
	// them must hold, in addition to the signature requirement (Require over Authorities).
	Attestations []AttestationConfig `mapstructure:"attestations"`
}

// Values of AuthorityConfig.Static.
const (
	// StaticPass is an authority that is always satisfied.
	StaticPass = "pass"
	// StaticFail is an authority that is never satisfied.
	StaticFail = "fail"
)

// AttestationConfig is one attestation requirement: an in-toto attestation of PredicateType
// about the exact digest served, signed by an authority, whose statement satisfies Policy.
type AttestationConfig struct {
	// Name identifies the requirement in decisions and messages. Required, unique within its
	// list.
	Name string `mapstructure:"name"`
	// PredicateType is the statement's predicate type: a URI, or one of cosign's short names
	// (slsaprovenance, slsaprovenance02, slsaprovenance1, link, spdx, spdxjson, cyclonedx,
	// vuln, openvex, custom). Required.
	PredicateType string `mapstructure:"predicateType"`
	// Authority names the authority of the policy that must have signed the attestation.
	// Required in a policy's attestations; must be empty in an authority's, whose authority
	// is the one it belongs to.
	Authority string `mapstructure:"authority"`
	// Policy is evaluated over the whole statement. Optional: without it a verified
	// attestation of the predicate type is enough.
	Policy *PredicatePolicyConfig `mapstructure:"policy"`
}

// PredicatePolicyConfig is a CUE or Rego policy over an attestation's in-toto statement (the
// whole statement: _type, subject, predicateType, predicate — as policy-controller evaluates
// it). Exactly one field is set.
type PredicatePolicyConfig struct {
	// CUE is CUE source the statement must unify with.
	CUE string `mapstructure:"cue"`
	// Rego is a Rego module of package sigstore whose isCompliant (or result) decides, as in
	// policy-controller.
	Rego string `mapstructure:"rego"`
	// CUEFile is a file holding CUE source. Relative paths are relative to the configuration
	// file.
	CUEFile string `mapstructure:"cueFile"`
	// RegoFile is a file holding a Rego module.
	RegoFile string `mapstructure:"regoFile"`
}

// sources lists the names of the fields that are set.
func (p PredicatePolicyConfig) sources() []string {
	var s []string
	for _, f := range []struct{ name, value string }{{"cue", p.CUE}, {"rego", p.Rego}, {"cueFile", p.CUEFile}, {"regoFile", p.RegoFile}} {
		if strings.TrimSpace(f.value) != "" {
			s = append(s, f.name)
		}
	}
	return s
}

// AuthorityConfig is one party whose signatures a policy accepts.
type AuthorityConfig struct {
	// Name identifies the authority in decisions and messages. Required, unique within the
	// policy.
	Name string `mapstructure:"name"`
	// Key is the public key signatures must verify with.
	Key KeyConfig `mapstructure:"key"`
	// Keyless accepts signatures made with a short-lived certificate from the Fulcio CA of a
	// trust root, naming one of the identities. Exclusive with Key and Certificate.
	Keyless *KeylessConfig `mapstructure:"keyless"`
	// Certificate accepts signatures made with a certificate of your own PKI (cosign sign
	// --certificate --certificate-chain). Exclusive with Key and Keyless.
	Certificate *CertificateConfig `mapstructure:"certificate"`
	// Tlog is how many transparency log (Rekor v1 or v2) entries a certificate signature
	// needs. Default 1 for keyless, 0 for certificate authorities.
	Tlog *ThresholdConfig `mapstructure:"tlog"`
	// Timestamps is how many RFC 3161 timestamps from the trust root's timestamp authorities a
	// certificate signature needs. Default 0.
	Timestamps *ThresholdConfig `mapstructure:"timestamps"`
	// CTLog is how many signed certificate timestamps (SCTs) of the trust root's CT logs the
	// certificate must embed. Default 1 for keyless, 0 for certificate authorities.
	CTLog *ThresholdConfig `mapstructure:"ctlog"`
	// Annotations must all be present, with these exact values, in the signed payload.
	Annotations map[string]string `mapstructure:"annotations"`
	// SignaturesRepository is the repository path, in the image's upstream, where the
	// signatures are stored (cosign's COSIGN_REPOSITORY); empty means the image's own.
	SignaturesRepository string `mapstructure:"signaturesRepository"`
	// Static, "pass" or "fail", is an authority satisfied (or never satisfied) without any
	// signature: policy-controller's static authority. Exclusive with key, keyless, certificate.
	Static string `mapstructure:"static"`
	// Attestations, when set, make this authority satisfied by these attestations — all of them,
	// each signed by this authority — instead of by a signature: policy-controller's semantics
	// for an authority with attestations. Their Authority field must be empty.
	Attestations []AttestationConfig `mapstructure:"attestations"`
}

// ThresholdConfig is a number of proofs required.
type ThresholdConfig struct {
	// Threshold is the number required; 0 means none. Unset means the authority's default.
	Threshold *int `mapstructure:"threshold"`
}

// value is the threshold, or def when unset.
func (t *ThresholdConfig) value(def int) int {
	if t == nil || t.Threshold == nil {
		return def
	}
	return *t.Threshold
}

// Defaults of the thresholds.
const (
	// DefaultKeylessTlog: a keyless signature needs one transparency log entry, as cosign
	// and policy-controller require with the public-good instance.
	DefaultKeylessTlog = 1
	// DefaultKeylessCTLog: a Fulcio certificate needs one SCT, as cosign requires unless
	// --insecure-ignore-sct.
	DefaultKeylessCTLog = 1
	// DefaultCertificateTlog: a certificate of your own PKI needs no transparency log entry,
	// as policy-controller's authorities without a ctlog setting.
	DefaultCertificateTlog = 0
	// DefaultCertificateCTLog: a certificate of your own PKI has no SCT.
	DefaultCertificateCTLog = 0
	// DefaultTimestamps: no RFC 3161 timestamp is required by default.
	DefaultTimestamps = 0
)

// KeylessConfig is a keyless authority: who may sign, vouched for by which OIDC issuer,
// certified by the Fulcio CA of which trust root.
type KeylessConfig struct {
	// TrustRoot names the trust root (trustRoots[].name) whose certificate authorities, logs
	// and timestamp authorities apply. Default "public-good".
	TrustRoot string `mapstructure:"trustRoot"`
	// Identities are the accepted signers; any one of them will do. At least one.
	Identities []IdentityConfig `mapstructure:"identities"`
	// GithubWorkflowRepository, when set, must equal the certificate's GitHub workflow
	// repository extension (e.g. "myorg/app"), as cosign's
	// --certificate-github-workflow-repository.
	GithubWorkflowRepository string `mapstructure:"githubWorkflowRepository"`
	// GithubWorkflowRef, when set, must equal the workflow ref extension (e.g.
	// "refs/heads/main").
	GithubWorkflowRef string `mapstructure:"githubWorkflowRef"`
	// GithubWorkflowTrigger, when set, must equal the workflow trigger extension (e.g. "push").
	GithubWorkflowTrigger string `mapstructure:"githubWorkflowTrigger"`
	// GithubWorkflowSHA, when set, must equal the workflow commit extension.
	GithubWorkflowSHA string `mapstructure:"githubWorkflowSha"`
	// GithubWorkflowName, when set, must equal the workflow name extension.
	GithubWorkflowName string `mapstructure:"githubWorkflowName"`
}

// IdentityConfig is one accepted signer, as in policy-controller: the certificate's subject
// (its SAN: an e-mail, a URI such as a workflow's) and OIDC issuer, each matched exactly or
// by a regular expression (Go syntax, unanchored as in cosign: anchor it with ^…$).
type IdentityConfig struct {
	// Issuer is the exact OIDC issuer. Exclusive with IssuerRegExp; one is required.
	Issuer string `mapstructure:"issuer"`
	// IssuerRegExp matches the OIDC issuer.
	IssuerRegExp string `mapstructure:"issuerRegExp"`
	// Subject is the exact subject. Exclusive with SubjectRegExp; one is required.
	Subject string `mapstructure:"subject"`
	// SubjectRegExp matches the subject.
	SubjectRegExp string `mapstructure:"subjectRegExp"`
}

// CertificateConfig is a bring-your-own-PKI authority: signatures made with a leaf certificate
// that chains to one of Roots (through Intermediates, or intermediates stored with the
// signature), whose subject and issuer match.
type CertificateConfig struct {
	// Roots is a PEM file (or PEM data) of the trusted root certificates. Required.
	Roots string `mapstructure:"roots"`
	// Intermediates is a PEM file (or PEM data) of intermediate certificates. Optional:
	// intermediates stored with a signature are used as well, never as trust anchors.
	Intermediates string `mapstructure:"intermediates"`
	// Subject is the exact subject (SAN). Exclusive with SubjectRegExp; one is required
	// (".*" accepts any leaf of the PKI).
	Subject string `mapstructure:"subject"`
	// SubjectRegExp matches the subject.
	SubjectRegExp string `mapstructure:"subjectRegExp"`
	// Issuer is the exact OIDC issuer extension (1.3.6.1.4.1.57264.1.8), as cosign's
	// --certificate-oidc-issuer. Optional: most PKIs do not write it.
	Issuer string `mapstructure:"issuer"`
	// IssuerRegExp matches the OIDC issuer extension.
	IssuerRegExp string `mapstructure:"issuerRegExp"`
	// TrustRoot names a trust root whose transparency logs and timestamp authorities (not
	// its CAs) are used when tlog, timestamps or ctlog are above 0. Optional.
	TrustRoot string `mapstructure:"trustRoot"`
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
	roots := map[string]bool{trustroot.PublicGood: true}
	seenRoots := map[string]int{}
	for i, tr := range c.TrustRoots {
		at := fmt.Sprintf("trustRoots[%d]", i)
		if err := tr.Validate(at); err != nil {
			errs = append(errs, err)
		}
		if prev, dup := seenRoots[tr.Name]; dup {
			add(at+".name", "%q is already the name of trustRoots[%d]", tr.Name, prev)
		}
		seenRoots[tr.Name] = i
		roots[tr.Name] = true
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
			errs = append(errs, a.validate(fmt.Sprintf("%s.authorities[%d]", at, j), authNames, j, roots)...)
		}
		errs = append(errs, validateAttestations(at+".attestations", p.Attestations, p.Authorities)...)
	}
	return errors.Join(errs...)
}

// validateAttestations checks a list of attestation requirements at path at. auths are the
// policy's authorities for a policy-level list (each requirement names one), nil for an
// authority's own list (whose requirements name none).
func validateAttestations(at string, list []AttestationConfig, auths []AuthorityConfig) []error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	names := map[string]int{}
	for j, ac := range list {
		aat := fmt.Sprintf("%s[%d]", at, j)
		switch prev, dup := names[ac.Name]; {
		case strings.TrimSpace(ac.Name) == "":
			add(aat+".name", "a name is required")
		case dup:
			add(aat+".name", "%q is already the name of %s[%d]", ac.Name, at, prev)
		default:
			names[ac.Name] = j
		}
		if strings.TrimSpace(ac.PredicateType) == "" {
			add(aat+".predicateType", "a predicate type is required (a URI or a cosign short name such as slsaprovenance1)")
		} else if uri, err := cosign.PredicateType(ac.PredicateType); err != nil {
			add(aat+".predicateType", "%v", err)
		} else if uri == cosign.PredicateTypeSign {
			add(aat+".predicateType", "%s is cosign's signature predicate: a signature is not an attestation (require it through the authorities)", uri)
		}
		switch {
		case auths == nil && ac.Authority != "":
			add(aat+".authority", "must be empty in an authority's attestations (they are signed by that authority)")
		case auths == nil:
		case ac.Authority == "":
			add(aat+".authority", "the name of the authority that signs the attestation is required")
		default:
			i := slices.IndexFunc(auths, func(a AuthorityConfig) bool { return a.Name == ac.Authority })
			switch {
			case i < 0:
				add(aat+".authority", "%q is not an authority of this policy", ac.Authority)
			case auths[i].Static != "":
				add(aat+".authority", "%q is a static authority, which signs nothing", ac.Authority)
			}
		}
		if p := ac.Policy; p != nil {
			switch src := p.sources(); len(src) {
			case 0:
				add(aat+".policy", "one of cue, rego, cueFile or regoFile is required")
			case 1:
			default:
				add(aat+".policy", "exactly one of cue, rego, cueFile or regoFile may be set, got %s", strings.Join(src, ", "))
			}
		}
	}
	return errs
}

// validate checks one authority; seen maps the names used so far in its policy to their index,
// roots holds the names of the trust roots.
func (a AuthorityConfig) validate(at string, seen map[string]int, index int, roots map[string]bool) []error {
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
	src := a.Key.sources()
	var kinds []string
	if a.Static != "" {
		kinds = append(kinds, "static")
		switch a.Static {
		case StaticPass, StaticFail:
		default:
			add(at+".static", "unknown value %q (want %q or %q)", a.Static, StaticPass, StaticFail)
		}
		if len(a.Attestations) > 0 {
			add(at+".attestations", "a static authority has no attestations")
		}
		if len(a.Annotations) > 0 {
			add(at+".annotations", "a static authority has no signatures to carry annotations")
		}
		if a.SignaturesRepository != "" {
			add(at+".signaturesRepository", "a static authority has no signatures to look up")
		}
	}
	if len(src) > 0 {
		kinds = append(kinds, "key")
	}
	if a.Keyless != nil {
		kinds = append(kinds, "keyless")
	}
	if a.Certificate != nil {
		kinds = append(kinds, "certificate")
	}
	switch {
	case len(kinds) == 0:
		add(at+".key", "one of path, data, kms or env is required (or a keyless, certificate or static authority)")
	case len(kinds) > 1:
		add(at, "key, keyless, certificate and static are exclusive, got %s", strings.Join(kinds, " and "))
	}
	switch {
	case len(src) > 1:
		add(at+".key", "exactly one of path, data, kms or env may be set, got %s", strings.Join(src, ", "))
	}
	if a.Key.KMS != "" && !kmsURI.MatchString(a.Key.KMS) {
		add(at+".key.kms", "%q is not a KMS key reference (want scheme://…, e.g. awskms://…)", a.Key.KMS)
	}
	if a.Key.Env != "" && !envName.MatchString(a.Key.Env) {
		add(at+".key.env", "%q is not an environment variable name", a.Key.Env)
	}
	if k := a.Keyless; k != nil {
		if k.TrustRoot != "" && !roots[k.TrustRoot] {
			add(at+".keyless.trustRoot", "%q is not a configured trust root", k.TrustRoot)
		}
		if len(k.Identities) == 0 {
			add(at+".keyless.identities", "at least one identity is required")
		}
		for i, id := range k.Identities {
			iat := fmt.Sprintf("%s.keyless.identities[%d]", at, i)
			errs = append(errs, matcherErrors(iat, "subject", id.Subject, id.SubjectRegExp, true)...)
			errs = append(errs, matcherErrors(iat, "issuer", id.Issuer, id.IssuerRegExp, true)...)
		}
	}
	if c := a.Certificate; c != nil {
		if strings.TrimSpace(c.Roots) == "" {
			add(at+".certificate.roots", "a PEM file of root certificates is required")
		}
		errs = append(errs, matcherErrors(at+".certificate", "subject", c.Subject, c.SubjectRegExp, true)...)
		errs = append(errs, matcherErrors(at+".certificate", "issuer", c.Issuer, c.IssuerRegExp, false)...)
		if c.TrustRoot != "" && !roots[c.TrustRoot] {
			add(at+".certificate.trustRoot", "%q is not a configured trust root", c.TrustRoot)
		}
		if c.TrustRoot == "" && (a.Tlog.value(0) > 0 || a.Timestamps.value(0) > 0 || a.CTLog.value(0) > 0) {
			add(at+".certificate.trustRoot", "tlog, timestamps or ctlog above 0 need a trust root holding the logs and timestamp authorities")
		}
	}
	for _, th := range []struct {
		name string
		t    *ThresholdConfig
	}{{"tlog", a.Tlog}, {"timestamps", a.Timestamps}, {"ctlog", a.CTLog}} {
		if th.t == nil {
			continue
		}
		if a.Keyless == nil && a.Certificate == nil {
			add(at+"."+th.name, "applies only to keyless and certificate authorities")
		}
		if th.t.Threshold != nil && *th.t.Threshold < 0 {
			add(at+"."+th.name+".threshold", "%d is negative", *th.t.Threshold)
		}
	}
	for k := range a.Annotations {
		if k == "" {
			add(at+".annotations", "annotation names must not be empty")
		}
	}
	if r := a.SignaturesRepository; r != "" && !repositoryPath.MatchString(r) {
		add(at+".signaturesRepository", "%q is not a repository path (lowercase components separated by /, e.g. myorg/signatures)", r)
	}
	errs = append(errs, validateAttestations(at+".attestations", a.Attestations, nil)...)
	return errs
}

// matcherErrors checks an exact/regexp pair named field (subject, issuer) at path at.
func matcherErrors(at, field, exact, re string, required bool) []error {
	switch {
	case exact != "" && re != "":
		return []error{fmt.Errorf("%s: %s and %sRegExp are exclusive", at, field, field)}
	case exact == "" && re == "" && required:
		return []error{fmt.Errorf("%s: one of %s or %sRegExp is required", at, field, field)}
	case re != "":
		if _, err := regexp.Compile(re); err != nil {
			return []error{fmt.Errorf("%s.%sRegExp: %v", at, field, err)}
		}
	}
	return nil
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
