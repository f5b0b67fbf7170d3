package cip

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verify/trustroot"
)

// NamePrefix starts the name of every policy converted from a ClusterImagePolicy, so that it
// cannot be confused with an inline policy: ClusterImagePolicy "image-policy" becomes the
// portcullis policy "ClusterImagePolicy/image-policy".
const NamePrefix = "ClusterImagePolicy/"

// The API versions read; their ClusterImagePolicy specs are the same.
var apiVersions = []string{"policy.sigstore.dev/v1alpha1", "policy.sigstore.dev/v1beta1"}

// The public instance's Fulcio and Rekor, which policy-controller uses without a trustRootRef.
const (
	publicFulcio = "https://fulcio.sigstore.dev"
	publicRekor  = "https://rekor.sigstore.dev"
)

// File is one file of ClusterImagePolicy documents (multi-document YAML).
type File struct {
	// Name is the file's name, for messages.
	Name string
	Data []byte
}

// Option configures Convert.
type Option func(*options)

type options struct {
	trustRoots map[string]bool
	inline     []policy.PolicyConfig
}

// WithTrustRoots names the configured trust roots (trustRoots[].name) that trustRootRef may
// refer to; "public-good" always exists.
func WithTrustRoots(names ...string) Option {
	return func(o *options) {
		for _, n := range names {
			o.trustRoots[n] = true
		}
	}
}

// WithInlinePolicies gives the policies configured inline, which come first: a
// ClusterImagePolicy may neither reuse their names nor cover an image they cover.
func WithInlinePolicies(ps []policy.PolicyConfig) Option {
	return func(o *options) { o.inline = ps }
}

// converted is one document's policy and where it came from.
type converted struct {
	where  string // `file: ClusterImagePolicy "name"`
	policy policy.PolicyConfig
}

// Convert reads the ClusterImagePolicy documents of files and returns the equivalent
// portcullis policies, in file and document order. Anything portcullis cannot honour exactly
// is refused, never ignored: every problem is reported, each naming the file, the document and
// the field, e.g. `policy.yaml: ClusterImagePolicy "image-policy":
// spec.authorities[0].key.secretRef: not supported (…)`.
//
// policy-controller admits an image only when every ClusterImagePolicy whose globs match it
// is satisfied; portcullis applies the first matching policy. So that the two agree,
// ClusterImagePolicies whose globs can match a common image are refused (naming both), and so
// is one whose globs can match an image an inline policy covers.
func Convert(files []File, opts ...Option) ([]policy.PolicyConfig, error) {
	o := options{trustRoots: map[string]bool{trustroot.PublicGood: true}}
	for _, opt := range opts {
		opt(&o)
	}
	var (
		errs []error
		docs []converted
	)
	names := map[string]string{} // metadata.name → where first seen
	for _, f := range files {
		dec := yaml.NewDecoder(bytes.NewReader(f.Data))
		dec.KnownFields(true)
		for n := 1; ; n++ {
			var d document
			err := dec.Decode(&d)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				// yaml.v3 lists type errors on lines of their own: keep one line per problem.
				msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " ;")), " ")
				errs = append(errs, fmt.Errorf("%s: document %d: %s", f.Name, n, strings.ReplaceAll(msg, ": ;", ":")))
				break // the decoder cannot resume after a syntax error
			}
			if reflect.ValueOf(d).IsZero() {
				continue // an empty document, e.g. a trailing "---"
			}
			where := fmt.Sprintf("%s: document %d", f.Name, n)
			if d.Metadata.Name != "" {
				where = fmt.Sprintf("%s: ClusterImagePolicy %q", f.Name, d.Metadata.Name)
			}
			p, derrs := o.convert(d)
			for _, e := range derrs {
				errs = append(errs, fmt.Errorf("%s: %w", where, e))
			}
			if d.Metadata.Name != "" {
				if prev, dup := names[d.Metadata.Name]; dup {
					errs = append(errs, fmt.Errorf("%s: metadata.name: %q is already the name of a ClusterImagePolicy in %s", where, d.Metadata.Name, prev))
				} else {
					names[d.Metadata.Name] = f.Name
				}
			}
			if len(derrs) == 0 {
				docs = append(docs, converted{where: where, policy: p})
			}
		}
	}
	errs = append(errs, o.overlaps(docs)...)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := make([]policy.PolicyConfig, 0, len(docs))
	for _, d := range docs {
		out = append(out, d.policy)
	}
	return out, nil
}

// overlaps refuses ClusterImagePolicies that can match a common image, between themselves or
// with an inline policy.
func (o *options) overlaps(docs []converted) []error {
	var errs []error
	for i, a := range docs {
		for _, in := range o.inline {
			if in.Name == a.policy.Name {
				errs = append(errs, fmt.Errorf("%s: metadata.name: %q is also the name of an inline policy", a.where, in.Name))
			}
			if g, h, ok := overlap(a.policy.Images, in.Images); ok {
				errs = append(errs, fmt.Errorf("%s: spec.images: %q can match the same images as %q of the inline policy %q, which portcullis would apply instead (it applies the first matching policy; policy-controller would require both): make the globs disjoint", a.where, g, h, in.Name))
			}
		}
		for _, b := range docs[:i] {
			if g, h, ok := overlap(a.policy.Images, b.policy.Images); ok {
				errs = append(errs, fmt.Errorf("%s: spec.images: %q can match the same images as %q of %s (policy-controller requires every matching ClusterImagePolicy; portcullis applies one policy per image): make the globs disjoint or merge the policies", a.where, g, h, b.where))
			}
		}
	}
	return errs
}

// overlap returns a pair of globs, one of each list, that can match a common image name.
func overlap(a, b []string) (string, string, bool) {
	for _, g := range a {
		for _, h := range b {
			if globsOverlap(g, h) {
				return g, h, true
			}
		}
	}
	return "", "", false
}

// problems collects a document's errors, each prefixed with its field path.
type problems []error

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

// unsupported records a field portcullis refuses, with why and what to do instead.
func (p *problems) unsupported(path, why string) {
	p.add(path, "not supported (%s)", why)
}

// convert converts one document.
func (o *options) convert(d document) (policy.PolicyConfig, []error) {
	var p problems
	if !slices.Contains(apiVersions, d.APIVersion) {
		p.add("apiVersion", "%q is not %s", d.APIVersion, strings.Join(apiVersions, " or "))
	}
	if d.Kind != "ClusterImagePolicy" {
		p.add("kind", "%q is not ClusterImagePolicy", d.Kind)
	}
	if strings.TrimSpace(d.Metadata.Name) == "" {
		p.add("metadata.name", "a name is required")
	}
	pc := policy.PolicyConfig{Name: NamePrefix + d.Metadata.Name, Require: policy.RequireAny}
	s := d.Spec

	if len(s.Images) == 0 {
		p.add("spec.images", "at least one image glob is required")
	}
	for i, im := range s.Images {
		at := fmt.Sprintf("spec.images[%d]", i)
		if im.Regex != "" {
			p.unsupported(at+".regex", "policy-controller no longer reads regex; portcullis matches globs only: write a glob")
		}
		if im.Glob == "" {
			if im.Regex == "" {
				p.add(at+".glob", "a glob is required")
			}
			continue
		}
		globs, err := TranslateGlob(im.Glob)
		if err != nil {
			p.add(at+".glob", "%q: %v", im.Glob, err)
			continue
		}
		for _, g := range globs {
			if !slices.Contains(pc.Images, g) {
				pc.Images = append(pc.Images, g)
			}
		}
	}

	switch s.Mode {
	case "", "enforce":
		pc.Mode = policy.ModeEnforce
	case "warn":
		pc.Mode = policy.ModeWarn
	default:
		p.add("spec.mode", "%q is not enforce or warn", s.Mode)
	}
	if len(s.Match) > 0 {
		p.unsupported("spec.match", "it selects Kubernetes resources; portcullis enforces at pull time, where there is no resource: remove it, or keep this policy in policy-controller")
	}
	if s.Policy != nil {
		p.unsupported("spec.policy", "a ClusterImagePolicy-level policy is evaluated over the results of all authorities (and the resource or the image's config file); portcullis evaluates policies over each attestation: move the checks into spec.authorities[].attestations[].policy")
	}
	if len(s.Authorities) == 0 {
		p.add("spec.authorities", "at least one authority is required (policy-controller refuses an empty list by default; for no check at all use a static pass authority)")
	}
	names := map[string]int{}
	for i, a := range s.Authorities {
		at := fmt.Sprintf("spec.authorities[%d]", i)
		ac := o.authority(at, i, a, pc.Images, &p)
		if prev, dup := names[ac.Name]; dup {
			p.add(at+".name", "%q is already the name of spec.authorities[%d]", ac.Name, prev)
		}
		names[ac.Name] = i
		pc.Authorities = append(pc.Authorities, ac)
	}
	if len(p) == 0 {
		p = append(p, validate(pc)...)
	}
	return pc, p
}

// validate checks a converted policy as portcullis checks its own, a safety net for anything
// the conversion let through that portcullis would refuse; trust root names were checked
// against the configured ones.
func validate(pc policy.PolicyConfig) []error {
	pc.Authorities = slices.Clone(pc.Authorities)
	for i, a := range pc.Authorities {
		if a.Keyless != nil {
			k := *a.Keyless
			k.TrustRoot = ""
			pc.Authorities[i].Keyless = &k
		}
	}
	err := policy.Config{Policies: []policy.PolicyConfig{pc}}.Validate()
	if err == nil {
		return nil
	}
	var errs []error
	for line := range strings.Lines(err.Error()) {
		errs = append(errs, fmt.Errorf("as a portcullis policy: %s", strings.TrimPrefix(strings.TrimSpace(line), "policies[0].")))
	}
	return errs
}

// authority converts one authority; images are the policy's translated globs.
func (o *options) authority(at string, index int, a authority, images []string, p *problems) policy.AuthorityConfig {
	ac := policy.AuthorityConfig{Name: a.Name}
	if ac.Name == "" {
		ac.Name = fmt.Sprintf("authority-%d", index) // policy-controller's default
	}
	kinds := 0
	for _, set := range []bool{a.Key != nil, a.Keyless != nil, a.Static != nil} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		p.add(at, "exactly one of key, keyless or static is required")
		return ac
	}
	switch a.SignatureFormat {
	case "", "legacy", "bundle":
	default:
		p.add(at+".signatureFormat", "%q is not legacy or bundle", a.SignatureFormat)
	}
	bundle := a.SignatureFormat == "bundle"

	switch {
	case a.Static != nil:
		switch a.Static.Action {
		case policy.StaticPass, policy.StaticFail:
			ac.Static = a.Static.Action
		case "":
			p.add(at+".static.action", "an action, pass or fail, is required")
		default:
			p.add(at+".static.action", "%q is not pass or fail", a.Static.Action)
		}
		if a.Static.Message != "" {
			p.unsupported(at+".static.message", "portcullis's denial names the policy and the authority; remove the message")
		}
		for _, f := range []struct {
			name string
			set  bool
		}{{"attestations", len(a.Attestations) > 0}, {"source", len(a.Sources) > 0}, {"ctlog", a.CTLog != nil}, {"rfc3161timestamp", a.RFC3161Timestamp != nil}} {
			if f.set {
				p.add(at+"."+f.name, "a static authority checks no signature, so %s does not apply (policy-controller refuses it too)", f.name)
			}
		}
		return ac
	case a.Key != nil:
		o.key(at, a, bundle, &ac, p)
	default:
		o.keyless(at, a, bundle, &ac, p)
	}
	o.source(at, a.Sources, images, &ac, p)
	for j, att := range a.Attestations {
		ac.Attestations = append(ac.Attestations, o.attestation(fmt.Sprintf("%s.attestations[%d]", at, j), att, p))
	}
	return ac
}

// key converts a key authority.
func (o *options) key(at string, a authority, bundle bool, ac *policy.AuthorityConfig, p *problems) {
	k := a.Key
	kat := at + ".key"
	if k.SecretRef != nil {
		p.unsupported(kat+".secretRef", "portcullis reads keys from data, a file or KMS; put the key in data")
	}
	switch {
	case k.Data != "" && k.KMS != "":
		p.add(kat, "data and kms are exclusive")
	case k.Data != "":
		if _, err := keys.ParsePublicKey([]byte(k.Data)); err != nil {
			p.add(kat+".data", "%v", err)
		}
		ac.Key.Data = k.Data
	case k.KMS != "":
		ac.Key.KMS = k.KMS
	case k.SecretRef == nil:
		p.add(kat, "one of data or kms is required")
	}
	switch k.HashAlgorithm {
	case "", "sha256":
	default:
		p.unsupported(kat+".hashAlgorithm", fmt.Sprintf("portcullis verifies key signatures over SHA-256, as cosign signs them by default; %q is not", k.HashAlgorithm))
	}
	if bundle {
		p.unsupported(at+".signatureFormat", "policy-controller verifies the bundle format only for keyless authorities and fails this authority; portcullis reads both formats for every authority: remove signatureFormat")
	}
	if a.CTLog != nil {
		p.unsupported(at+".ctlog", "portcullis does not require transparency-log entries for key signatures; remove ctlog to accept the key's signatures without one")
	}
	if a.RFC3161Timestamp != nil {
		p.unsupported(at+".rfc3161timestamp", "portcullis does not require timestamps for key signatures; remove rfc3161timestamp to accept the key's signatures without one")
	}
}

// keyless converts a keyless authority: trust root, identities and the thresholds that
// policy-controller's verification options (checkOptsFromAuthority) amount to.
func (o *options) keyless(at string, a authority, bundle bool, ac *policy.AuthorityConfig, p *problems) {
	k := a.Keyless
	kat := at + ".keyless"
	kl := &policy.KeylessConfig{TrustRoot: k.TrustRootRef}
	ac.Keyless = kl
	if k.CACert != nil {
		p.unsupported(kat+".ca-cert", "policy-controller verifies keyless signatures only with a Fulcio url, which ca-cert excludes (\"no Keyless URL specified\"), so it never admits with it; use a portcullis certificate authority (policies[].authorities[].certificate) for your own PKI")
	}
	if k.TrustRootRef != "" && !o.trustRoots[k.TrustRootRef] {
		p.add(kat+".trustRootRef", "%q is not a configured trust root (trustRoots[].name)", k.TrustRootRef)
	}
	if k.URL != "" && k.TrustRootRef == "" && strings.TrimSuffix(k.URL, "/") != publicFulcio {
		p.unsupported(kat+".url", fmt.Sprintf("without trustRootRef policy-controller verifies against the public-good roots whatever the url; portcullis takes certificate authorities from a trust root: name yours with trustRootRef (a trustRoots[] entry), or use %s", publicFulcio))
	}
	if len(k.Identities) == 0 {
		p.add(kat+".identities", "at least one identity is required")
	}
	for i, id := range k.Identities {
		kl.Identities = append(kl.Identities, policy.IdentityConfig{
			Issuer: id.Issuer, IssuerRegExp: id.IssuerRegExp, Subject: id.Subject, SubjectRegExp: id.SubjectRegExp,
		})
		iat := fmt.Sprintf("%s.identities[%d]", kat, i)
		if id.Issuer == "" && id.IssuerRegExp == "" {
			p.add(iat, "one of issuer or issuerRegExp is required")
		}
		if id.Subject == "" && id.SubjectRegExp == "" {
			p.add(iat, "one of subject or subjectRegExp is required")
		}
		for _, re := range []struct{ field, expr string }{{"issuerRegExp", id.IssuerRegExp}, {"subjectRegExp", id.SubjectRegExp}} {
			if _, err := regexp.Compile(re.expr); err != nil {
				p.add(iat+"."+re.field, "%v", err)
			}
		}
	}
	if k.InsecureIgnoreSCT != nil && *k.InsecureIgnoreSCT {
		ac.CTLog = threshold(0)
	}

	// The transparency log and timestamps, as policy-controller's checkOptsFromAuthority.
	root := k.TrustRootRef
	sameRoot := func(field, ref string) bool {
		if ref != root {
			p.unsupported(at+"."+field+".trustRootRef", fmt.Sprintf("portcullis takes an authority's certificate authorities, logs and timestamp authorities from one trust root; %q differs from keyless.trustRootRef %q", ref, root))
			return false
		}
		return true
	}
	switch tsa := a.RFC3161Timestamp; {
	case tsa != nil:
		if tsa.TrustRootRef == "" {
			p.add(at+".rfc3161timestamp.trustRootRef", "a trust root is required (policy-controller ignores an rfc3161timestamp without one)")
		} else if sameRoot("rfc3161timestamp", tsa.TrustRootRef) {
			// Signed timestamps replace the transparency log.
			ac.Timestamps, ac.Tlog = threshold(1), threshold(0)
		}
		if a.CTLog != nil && a.CTLog.TrustRootRef != "" {
			sameRoot("ctlog", a.CTLog.TrustRootRef)
		}
	case a.CTLog != nil:
		c := a.CTLog
		if c.TrustRootRef != "" {
			sameRoot("ctlog", c.TrustRootRef)
		} else if root != "" && !bundle {
			p.unsupported(at+".ctlog", fmt.Sprintf("without its own trustRootRef policy-controller checks the log with the public-good keys, while the certificates come from trust root %q; portcullis takes both from one trust root: set ctlog.trustRootRef to %q", root, root))
		}
		if c.URL != "" && c.TrustRootRef == "" && root == "" && strings.TrimSuffix(c.URL, "/") != publicRekor {
			p.unsupported(at+".ctlog.url", fmt.Sprintf("portcullis checks log entries offline with a trust root's log keys; without trustRootRef that is public-good's %s", publicRekor))
		}
		ac.Tlog = threshold(1)
	case root != "" && !bundle:
		// The legacy format with a trust root and no ctlog: policy-controller sets no Rekor
		// client nor keys, and so ignores the log.
		ac.Tlog = threshold(0)
	}
}

// source converts source[] into signaturesRepository.
func (o *options) source(at string, sources []source, images []string, ac *policy.AuthorityConfig, p *problems) {
	if len(sources) == 0 {
		return
	}
	if len(sources) > 1 {
		p.add(at+".source", "only one source is supported (policy-controller refuses more too)")
		return
	}
	s, sat := sources[0], at+".source[0]"
	if len(s.SignaturePullSecrets) > 0 {
		p.unsupported(sat+".signaturePullSecrets", "portcullis reads signatures with the upstream's own credentials (upstreams[].auth)")
	}
	if s.TagPrefix != nil {
		p.unsupported(sat+".tagPrefix", "portcullis finds signatures under cosign's own tag names")
	}
	if s.OCI == "" {
		return
	}
	host, repo, ok := strings.Cut(s.OCI, "/")
	if !ok || repo == "" {
		p.add(sat+".oci", "%q is not registry/repository", s.OCI)
		return
	}
	if host == dockerHubCIP {
		host = dockerHubPortcullis
	}
	for _, g := range images {
		if gh, _, _ := strings.Cut(g, "/"); gh != host {
			p.unsupported(sat+".oci", fmt.Sprintf("portcullis reads signatures from a repository of the image's own upstream, and the glob %q is not confined to %s", g, host))
			return
		}
	}
	ac.SignaturesRepository = repo
}

// attestation converts one attestation requirement of an authority.
func (o *options) attestation(at string, a attestation, p *problems) policy.AttestationConfig {
	ac := policy.AttestationConfig{Name: a.Name, PredicateType: a.PredicateType}
	if a.Name == "" {
		p.add(at+".name", "a name is required")
	}
	if a.PredicateType == "" {
		p.add(at+".predicateType", "a predicate type is required")
	} else if _, err := cosign.PredicateType(a.PredicateType); err != nil {
		p.add(at+".predicateType", "%v", err)
	}
	if a.Policy == nil {
		return ac
	}
	pat := at + ".policy"
	pol := a.Policy
	if pol.Remote != nil || pol.URL != nil {
		field := "remote"
		if pol.URL != nil {
			field = "url"
		}
		p.unsupported(pat+"."+field, "portcullis fetches nothing to decide; put the policy in data")
	}
	if pol.ConfigMapRef != nil {
		p.unsupported(pat+".configMapRef", "portcullis reads no ConfigMaps; put the policy in data")
	}
	for _, f := range []struct {
		name string
		set  bool
	}{{"fetchConfigFile", pol.FetchConfigFile != nil}, {"includeSpec", pol.IncludeSpec != nil}, {"includeObjectMeta", pol.IncludeObjectMeta != nil}, {"includeTypeMeta", pol.IncludeTypeMeta != nil}} {
		if f.set {
			p.add(pat+"."+f.name, "applies only to spec.policy (policy-controller refuses it here too)")
		}
	}
	if pol.Data == "" {
		if pol.Remote == nil && pol.URL == nil && pol.ConfigMapRef == nil {
			p.add(pat+".data", "the policy is required")
		}
		return ac
	}
	switch pol.Type {
	case "cue":
		ac.Policy = &policy.PredicatePolicyConfig{CUE: pol.Data}
	case "rego":
		ac.Policy = &policy.PredicatePolicyConfig{Rego: pol.Data}
	default:
		p.add(pat+".type", "%q is not cue or rego", pol.Type)
	}
	return ac
}

func threshold(n int) *policy.ThresholdConfig { return &policy.ThresholdConfig{Threshold: &n} }
