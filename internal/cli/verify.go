package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/sign"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/trustroot"
)

// VerifyOptions are the flags of verify.
type VerifyOptions struct {
	Registry RegistryOptions
	// Key is the public key: a PEM file, env://VAR, or a KMS URI.
	Key string
	// Annotations are -a key=value pairs the signature must carry.
	Annotations []string
	// IgnoreTlog (--insecure-ignore-tlog) requires no transparency log entry. With --key it
	// must be set: key signatures are checked offline against the key alone.
	IgnoreTlog bool
	// Keyless are the certificate flags (verification without --key).
	Keyless KeylessVerifyOptions
	// Output is "json" (default: a JSON array of the payloads) or "text" (one per line).
	Output string
}

// KeylessVerifyOptions are cosign verify's certificate flags.
type KeylessVerifyOptions struct {
	// CertIdentity and CertIdentityRegexp match the certificate's subject (SAN); one is
	// required.
	CertIdentity, CertIdentityRegexp string
	// CertOIDCIssuer and CertOIDCIssuerRegexp match its OIDC issuer; one is required.
	CertOIDCIssuer, CertOIDCIssuerRegexp string
	// GithubWorkflow* must equal the certificate's GitHub workflow extensions when set.
	GithubWorkflowTrigger, GithubWorkflowSHA, GithubWorkflowName, GithubWorkflowRepository, GithubWorkflowRef string
	// TrustedRoot is a trusted_root.json; without it (and without CertChain and CARoots)
	// sigstore's public-good root is fetched over TUF into TUFCacheDir.
	TrustedRoot string
	// CertChain is a PEM chain (intermediates … root) of your own PKI; CARoots and
	// CAIntermediates give roots and intermediates separately. The logs and timestamp
	// authorities then come from TrustedRoot, if given.
	CertChain, CARoots, CAIntermediates string
	// UseSignedTimestamps requires an RFC 3161 timestamp of the trusted root's TSAs.
	UseSignedTimestamps bool
	// IgnoreSCT requires no SCT in the certificate.
	IgnoreSCT bool
	// TUFCacheDir caches the public-good TUF repository. Default $HOME/.sigstore/portcullis.
	TUFCacheDir string
}

func (k KeylessVerifyOptions) set() bool {
	return k.CertIdentity != "" || k.CertIdentityRegexp != "" || k.CertOIDCIssuer != "" || k.CertOIDCIssuerRegexp != "" ||
		k.CertChain != "" || k.CARoots != "" || k.CAIntermediates != ""
}

// keyless builds the keyless authority the flags describe.
func (e Env) keyless(ctx context.Context, o VerifyOptions) (*verify.Keyless, error) {
	k := o.Keyless
	switch {
	case k.CertIdentity == "" && k.CertIdentityRegexp == "":
		return nil, errors.New("--certificate-identity or --certificate-identity-regexp is required for verification in keyless mode (or --key)")
	case k.CertOIDCIssuer == "" && k.CertOIDCIssuerRegexp == "":
		return nil, errors.New("--certificate-oidc-issuer or --certificate-oidc-issuer-regexp is required for verification in keyless mode")
	case k.CertIdentity != "" && k.CertIdentityRegexp != "":
		return nil, errors.New("--certificate-identity and --certificate-identity-regexp are exclusive")
	case k.CertOIDCIssuer != "" && k.CertOIDCIssuerRegexp != "":
		return nil, errors.New("--certificate-oidc-issuer and --certificate-oidc-issuer-regexp are exclusive")
	case k.CertChain != "" && k.CARoots != "":
		return nil, errors.New("--certificate-chain and --ca-roots are exclusive")
	}
	id := verify.Identity{Subject: k.CertIdentity, Issuer: k.CertOIDCIssuer}
	for _, re := range []struct {
		flag, expr string
		dst        **regexp.Regexp
	}{{"--certificate-identity-regexp", k.CertIdentityRegexp, &id.SubjectRegExp}, {"--certificate-oidc-issuer-regexp", k.CertOIDCIssuerRegexp, &id.IssuerRegExp}} {
		if re.expr == "" {
			continue
		}
		c, err := regexp.Compile(re.expr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", re.flag, err)
		}
		*re.dst = c
	}
	kl := &verify.Keyless{
		Identities: []verify.Identity{id},
		Extensions: verify.WorkflowExtensions{
			Repository: k.GithubWorkflowRepository, Ref: k.GithubWorkflowRef, Trigger: k.GithubWorkflowTrigger,
			SHA: k.GithubWorkflowSHA, Name: k.GithubWorkflowName,
		},
		Tlog: 1, CTLog: 1,
	}
	if o.IgnoreTlog {
		kl.Tlog = 0
	}
	if k.IgnoreSCT {
		kl.CTLog = 0
	}
	if k.UseSignedTimestamps {
		kl.Timestamps = 1
	}

	var tr *trustroot.Root
	var err error
	switch {
	case k.TrustedRoot != "":
		if tr, err = trustroot.LoadFile("trusted-root", k.TrustedRoot, time.Now()); err != nil {
			return nil, fmt.Errorf("--trusted-root: %w", err)
		}
	case k.CertChain == "" && k.CARoots == "":
		cache := k.TUFCacheDir
		if cache == "" {
			home, _ := e.LookupEnv("HOME")
			cache = filepath.Join(home, ".sigstore", "portcullis")
		}
		cfg := trustroot.Implicit()
		cfg.TUF.CacheDir = cache
		if tr, err = trustroot.NewManager().Root(ctx, cfg); err != nil {
			return nil, fmt.Errorf("sigstore public-good trusted root (give --trusted-root offline): %w", err)
		}
	}
	if k.CertChain == "" && k.CARoots == "" {
		kl.TrustRoot, kl.Material = "the trusted root ("+tr.Source()+")", tr.Material()
		return kl, nil
	}

	var roots, inter []*x509.Certificate
	if k.CertChain != "" {
		chain, err := trustroot.ReadCertificates(k.CertChain)
		if err != nil {
			return nil, fmt.Errorf("--certificate-chain: %w", err)
		}
		roots, inter = trustroot.SplitChain(chain)
		if len(roots) == 0 {
			return nil, errors.New("--certificate-chain: no self-signed root certificate at its end")
		}
	} else {
		if roots, err = trustroot.ReadCertificates(k.CARoots); err != nil {
			return nil, fmt.Errorf("--ca-roots: %w", err)
		}
	}
	if k.CAIntermediates != "" {
		more, err := trustroot.ReadCertificates(k.CAIntermediates)
		if err != nil {
			return nil, fmt.Errorf("--ca-intermediates: %w", err)
		}
		inter = append(inter, more...)
	}
	var logs root.TrustedMaterial
	if tr != nil {
		logs = tr.Material()
	}
	if kl.Material, err = trustroot.PKI(roots, inter, logs); err != nil {
		return nil, err
	}
	kl.TrustRoot = "the given CA roots"
	return kl, nil
}

// Verify checks the signatures of each image, with the key or the certificate flags, with the
// verifier the proxy enforces, and prints the payloads of the signatures that verified, as
// cosign verify does: a summary on Stderr, the payloads on Stdout. It fails unless every image
// has at least one verified signature.
func Verify(ctx context.Context, e Env, o VerifyOptions, images []string) error {
	if o.Key != "" && o.Keyless.set() {
		return errors.New("--key and the certificate flags (--certificate-identity, --certificate-chain, …) are exclusive")
	}
	if o.Key != "" && !o.IgnoreTlog {
		return errors.New("transparency log verification of key signatures is not supported: pass --insecure-ignore-tlog to verify against the key alone")
	}
	if o.Output == "" {
		o.Output = "json"
	}
	if o.Output != "json" && o.Output != "text" {
		return fmt.Errorf("--output %q: want json or text", o.Output)
	}
	ann, err := ParseAnnotations(o.Annotations)
	if err != nil {
		return err
	}
	auth := verify.Authority{Name: o.Key, Annotations: ann}
	if o.Key != "" {
		key, err := keys.LoadPublicKey(ctx, o.Key, e.LookupEnv)
		if err != nil {
			return err
		}
		auth.Key = key.Verifier
	} else {
		if auth.Keyless, err = e.keyless(ctx, o); err != nil {
			return err
		}
		auth.Name = "keyless"
	}
	sigRepo, err := e.signaturesRepository(o.Registry)
	if err != nil {
		return err
	}
	ropts, err := o.Registry.remoteOpts(ctx)
	if err != nil {
		return err
	}
	reg, err := NewRegistries(o.Registry)
	if err != nil {
		return err
	}
	v := verify.New()
	if o.IgnoreTlog {
		fmt.Fprintln(e.Stderr, "WARNING: Skipping tlog verification is an insecure practice that lacks transparency and auditability verification for the signature.")
	}
	for _, a := range images {
		ref, err := o.Registry.ParseRef(a)
		if err != nil {
			return err
		}
		ts, err := sign.Resolve(ctx, ref, false, ropts...)
		if err != nil {
			return err
		}
		desc := ts[0].Descriptor
		subj := verify.Subject{Repository: ref.Context().Name(), Digest: digest.Digest(desc.Digest.String())}
		if sigRepo.RepositoryStr() != "" {
			auth.SignaturesRepository = sigRepo.Name()
		}
		res, err := v.Verify(ctx, reg, subj, []verify.Authority{auth})
		if err != nil {
			return fmt.Errorf("verify %s: %w", a, err)
		}
		r := res.Authorities[0]
		if !r.Verified {
			return fmt.Errorf("no matching signatures for %s@%s: %s", ref.Context(), desc.Digest, r.Reason)
		}
		fmt.Fprintf(e.Stderr, "\nVerification for %s --\n", ref)
		fmt.Fprintln(e.Stderr, "The following checks were performed on each of these signatures:")
		if len(ann) > 0 {
			fmt.Fprintln(e.Stderr, "  - The specified annotations were verified.")
		}
		fmt.Fprintln(e.Stderr, "  - The cosign claims were validated")
		if auth.Keyless == nil {
			fmt.Fprintln(e.Stderr, "  - The signatures were verified against the specified public key")
		} else {
			if auth.Keyless.Tlog > 0 {
				fmt.Fprintln(e.Stderr, "  - Existence of the claims in the transparency log was verified offline")
			}
			fmt.Fprintln(e.Stderr, "  - The code-signing certificate was verified using trusted certificate authority certificates")
			fmt.Fprintf(e.Stderr, "  - Signed by %s\n", r.Signer)
		}
		if err := PrintSignatures(e.Stdout, o.Output, r.Signatures); err != nil {
			return err
		}
	}
	return nil
}

// PrintSignatures writes the payloads of sigs as cosign verify does: format "json" is one
// JSON array on one line, "text" one payload per line.
func PrintSignatures(w io.Writer, format string, sigs []verify.Signature) error {
	payloads := make([]json.RawMessage, 0, len(sigs))
	for _, s := range sigs {
		payloads = append(payloads, s.Payload)
	}
	if format == "text" {
		for _, p := range payloads {
			if _, err := fmt.Fprintln(w, string(p)); err != nil {
				return err
			}
		}
		return nil
	}
	if len(payloads) == 0 {
		payloads = nil
	}
	b, err := json.Marshal(payloads)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}
