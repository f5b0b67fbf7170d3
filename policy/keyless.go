package policy

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"

	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/trustroot"
)

// TrustRoots resolves trust root configurations to their current roots.
// *trustroot.Manager implements it.
type TrustRoots interface {
	Root(ctx context.Context, c trustroot.Config) (*trustroot.Root, error)
}

var _ TrustRoots = (*trustroot.Manager)(nil)

// WithTrustRoots sets how Compile resolves trust roots: main passes the Manager whose TUF
// roots it refreshes in the background. Default: a new trustroot.Manager per Compile (files
// are read, TUF repositories fetched, nothing refreshed).
func WithTrustRoots(tr TrustRoots) Option {
	return func(o *compileOptions) { o.trustRoots = tr }
}

// rootResolver resolves the trust roots of one Compile, each at most once.
type rootResolver struct {
	src     TrustRoots
	configs map[string]trustroot.Config
	roots   map[string]*trustroot.Root
	order   []string
}

// used returns the configurations of the roots resolved, in order.
func (r *rootResolver) used() []trustroot.Config {
	var out []trustroot.Config
	for _, n := range r.order {
		out = append(out, r.configs[n])
	}
	return out
}

func newRootResolver(src TrustRoots, cfgs []trustroot.Config) *rootResolver {
	r := &rootResolver{src: src, configs: map[string]trustroot.Config{trustroot.PublicGood: trustroot.Implicit()}, roots: map[string]*trustroot.Root{}}
	for _, c := range cfgs {
		r.configs[c.Name] = c
	}
	return r
}

func (r *rootResolver) get(ctx context.Context, name string) (*trustroot.Root, error) {
	if tr, ok := r.roots[name]; ok {
		return tr, nil
	}
	c, ok := r.configs[name]
	if !ok {
		return nil, fmt.Errorf("%q is not a configured trust root", name)
	}
	tr, err := r.src.Root(ctx, c)
	if err != nil {
		return nil, err
	}
	r.roots[name] = tr
	r.order = append(r.order, name)
	return tr, nil
}

// keylessAuthority compiles a keyless or certificate authority; at is its config path. It
// returns the verify.Keyless and what the policy version hashes about it.
func (o *compileOptions) keylessAuthority(ctx context.Context, at string, ac AuthorityConfig, roots *rootResolver) (*verify.Keyless, *versionKeyless, error) {
	if k := ac.Keyless; k != nil {
		name := k.TrustRoot
		if name == "" {
			name = trustroot.PublicGood
		}
		tr, err := roots.get(ctx, name)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.keyless.trustRoot: %w", at, err)
		}
		kl := &verify.Keyless{
			TrustRoot: "trust root " + name,
			Material:  tr.Material(),
			Extensions: verify.WorkflowExtensions{
				Repository: k.GithubWorkflowRepository, Ref: k.GithubWorkflowRef, Trigger: k.GithubWorkflowTrigger,
				SHA: k.GithubWorkflowSHA, Name: k.GithubWorkflowName,
			},
			Tlog:       ac.Tlog.value(DefaultKeylessTlog),
			Timestamps: ac.Timestamps.value(DefaultTimestamps),
			CTLog:      ac.CTLog.value(DefaultKeylessCTLog),
		}
		for _, id := range k.Identities {
			kl.Identities = append(kl.Identities, identity(id.Subject, id.SubjectRegExp, id.Issuer, id.IssuerRegExp))
		}
		vk := &versionKeyless{
			Kind: "keyless", TrustRoot: name, TrustRootDigest: tr.Digest(), Identities: k.Identities, Extensions: kl.Extensions,
			Tlog: kl.Tlog, Timestamps: kl.Timestamps, CTLog: kl.CTLog,
		}
		return kl, vk, nil
	}

	c := ac.Certificate
	rootCerts, err := trustroot.ReadCertificates(c.Roots)
	if err != nil {
		return nil, nil, fmt.Errorf("%s.certificate.roots: %w", at, err)
	}
	var inter []*x509.Certificate
	if c.Intermediates != "" {
		if inter, err = trustroot.ReadCertificates(c.Intermediates); err != nil {
			return nil, nil, fmt.Errorf("%s.certificate.intermediates: %w", at, err)
		}
	}
	h := sha256.New()
	for _, rc := range append(slices.Clone(rootCerts), inter...) {
		h.Write(rc.Raw)
	}
	vk := &versionKeyless{Kind: "certificate", CertificatesDigest: hex.EncodeToString(h.Sum(nil))}
	var logs root.TrustedMaterial
	if c.TrustRoot != "" {
		tr, err := roots.get(ctx, c.TrustRoot)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.certificate.trustRoot: %w", at, err)
		}
		logs = tr.Material()
		vk.TrustRoot, vk.TrustRootDigest = c.TrustRoot, tr.Digest()
	}
	material, err := trustroot.PKI(rootCerts, inter, logs)
	if err != nil {
		return nil, nil, fmt.Errorf("%s.certificate.roots: %w", at, err)
	}
	kl := &verify.Keyless{
		TrustRoot:  fmt.Sprintf("the certificate roots of authority %s", ac.Name),
		Material:   material,
		Identities: []verify.Identity{identity(c.Subject, c.SubjectRegExp, c.Issuer, c.IssuerRegExp)},
		Tlog:       ac.Tlog.value(DefaultCertificateTlog),
		Timestamps: ac.Timestamps.value(DefaultTimestamps),
		CTLog:      ac.CTLog.value(DefaultCertificateCTLog),
	}
	vk.Identities = []IdentityConfig{{Subject: c.Subject, SubjectRegExp: c.SubjectRegExp, Issuer: c.Issuer, IssuerRegExp: c.IssuerRegExp}}
	vk.Tlog, vk.Timestamps, vk.CTLog = kl.Tlog, kl.Timestamps, kl.CTLog
	return kl, vk, nil
}

func identity(subject, subjectRE, issuer, issuerRE string) verify.Identity {
	id := verify.Identity{Subject: subject, Issuer: issuer}
	if subjectRE != "" {
		id.SubjectRegExp = regexp.MustCompile(subjectRE) // validated
	}
	if issuerRE != "" {
		id.IssuerRegExp = regexp.MustCompile(issuerRE) // validated
	}
	return id
}

// versionKeyless is what the policy version hashes about a keyless or certificate authority:
// the settings and the trust material's digests, so that a new root gives new decisions.
type versionKeyless struct {
	Kind               string
	TrustRoot          string
	TrustRootDigest    string
	CertificatesDigest string
	Identities         []IdentityConfig
	Extensions         verify.WorkflowExtensions
	Tlog               int
	Timestamps         int
	CTLog              int
}
