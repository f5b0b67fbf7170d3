package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/sign"
	"github.com/portcullis/portcullis/policy/predicate"
	"github.com/portcullis/portcullis/verify"
)

// VerifyAttestationOptions are the flags of verify-attestation.
type VerifyAttestationOptions struct {
	// Verify holds the flags verify-attestation shares with verify: the registry, --key or
	// the certificate flags, --insecure-ignore-tlog. Its Annotations are not used.
	Verify VerifyOptions
	// Type is the predicate type wanted: one of cosign's short names or a URI.
	Type string
	// Policies are CUE (.cue) or Rego (.rego) files each verified statement must satisfy.
	Policies []string
}

// VerifyAttestation checks the attestations of the predicate type of each image, with the
// key or the certificate flags, with the verifier the proxy enforces (both formats: the
// legacy ".att" tag and bundle referrers), evaluates the policies against each verified
// in-toto statement, and prints the verified attestations as cosign verify-attestation does:
// a summary on Stderr, one DSSE envelope JSON per line on Stdout. It fails unless every image
// has at least one verified attestation of the type and every one of them satisfies every
// policy; a policy's failure is reported with its CUE or Rego message.
func VerifyAttestation(ctx context.Context, e Env, o VerifyAttestationOptions, images []string) error {
	predicateType, err := cosign.PredicateType(o.Type)
	if err != nil {
		return err
	}
	policies, err := loadPredicatePolicies(o.Policies)
	if err != nil {
		return err
	}
	auth, err := e.verifyAuthority(ctx, o.Verify)
	if err != nil {
		return err
	}
	auth.Attestations = []string{predicateType}
	sigRepo, err := e.signaturesRepository(o.Verify.Registry)
	if err != nil {
		return err
	}
	if sigRepo.RepositoryStr() != "" {
		auth.SignaturesRepository = sigRepo.Name()
	}
	ropts, err := o.Verify.Registry.remoteOpts(ctx)
	if err != nil {
		return err
	}
	reg, err := NewRegistries(o.Verify.Registry)
	if err != nil {
		return err
	}
	v := verify.New()
	if o.Verify.IgnoreTlog {
		fmt.Fprintln(e.Stderr, "WARNING: Skipping tlog verification is an insecure practice that lacks transparency and auditability verification for the attestation.")
	}
	for _, a := range images {
		ref, err := o.Verify.Registry.ParseRef(a)
		if err != nil {
			return err
		}
		ts, err := sign.Resolve(ctx, ref, false, ropts...)
		if err != nil {
			return err
		}
		desc := ts[0].Descriptor
		subj := verify.Subject{Repository: ref.Context().Name(), Digest: digest.Digest(desc.Digest.String())}
		res, err := v.Verify(ctx, reg, subj, []verify.Authority{auth})
		if err != nil {
			return fmt.Errorf("verify %s: %w", a, err)
		}
		r := res.Authorities[0]
		var atts []verify.Attestation
		for _, att := range r.Attestations {
			if att.PredicateType == predicateType {
				atts = append(atts, att)
			}
		}
		if len(atts) == 0 {
			return noAttestations(ref.Context().Digest(desc.Digest.String()).String(), o.Type, predicateType, r.Examined)
		}
		if err := checkPredicatePolicies(ctx, policies, atts); err != nil {
			return err
		}
		fmt.Fprintf(e.Stderr, "\nVerification for %s --\n", ref)
		fmt.Fprintln(e.Stderr, "The following checks were performed on each of these signatures:")
		fmt.Fprintln(e.Stderr, "  - The cosign claims were validated")
		if len(policies) > 0 {
			fmt.Fprintln(e.Stderr, "  - The attestations satisfied the policies", strings.Join(o.Policies, ", "))
		}
		if auth.Keyless == nil {
			fmt.Fprintln(e.Stderr, "  - The signatures were verified against the specified public key")
		} else {
			if auth.Keyless.Tlog > 0 {
				fmt.Fprintln(e.Stderr, "  - Existence of the claims in the transparency log was verified offline")
			}
			fmt.Fprintln(e.Stderr, "  - The code-signing certificate was verified using trusted certificate authority certificates")
			fmt.Fprintf(e.Stderr, "  - Signed by %s\n", atts[0].Signer)
		}
		for _, att := range atts {
			if err := printEnvelope(e, att); err != nil {
				return err
			}
		}
	}
	return nil
}

// verifyAuthority is the authority --key or the certificate flags describe.
func (e Env) verifyAuthority(ctx context.Context, o VerifyOptions) (verify.Authority, error) {
	if o.Key != "" && o.Keyless.set() {
		return verify.Authority{}, errors.New("--key and the certificate flags (--certificate-identity, --certificate-chain, …) are exclusive")
	}
	if o.Key != "" && !o.IgnoreTlog {
		return verify.Authority{}, errors.New("transparency log verification of key signatures is not supported: pass --insecure-ignore-tlog to verify against the key alone")
	}
	if o.Key == "" {
		kl, err := e.keyless(ctx, o)
		if err != nil {
			return verify.Authority{}, err
		}
		return verify.Authority{Name: "keyless", Keyless: kl}, nil
	}
	key, err := keys.LoadPublicKey(ctx, o.Key, e.LookupEnv)
	if err != nil {
		return verify.Authority{}, err
	}
	return verify.Authority{Name: o.Key, Key: key.Verifier}, nil
}

// noAttestations is the error for an image without a verified attestation of the type: as
// cosign's when attestations of other types verified or were found, otherwise why each one
// examined did not count.
func noAttestations(image, typ, predicateType string, examined []verify.Examined) error {
	var found, reasons []string
	for _, x := range examined {
		if x.Kind != verify.KindAttestation {
			continue
		}
		if x.PredicateType != predicateType {
			if x.PredicateType != "" && !slices.Contains(found, x.PredicateType) {
				found = append(found, x.PredicateType)
			}
			continue
		}
		reasons = append(reasons, x.Where+": "+x.Reason)
	}
	switch {
	case len(reasons) > 0:
		return fmt.Errorf("no matching attestations of type %s for %s: %s", predicateType, image, strings.Join(reasons, "; "))
	case len(found) > 0:
		return fmt.Errorf("none of the attestations matched the predicate type: %s, found: %s", typ, strings.Join(found, ","))
	}
	return fmt.Errorf("no attestations found for %s", image)
}

// loadPredicatePolicies compiles the --policy files: CUE for .cue, Rego for .rego.
func loadPredicatePolicies(paths []string) ([]*predicate.Policy, error) {
	var out []*predicate.Policy
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("--policy: %w", err)
		}
		src := predicate.Source{Name: p}
		switch filepath.Ext(p) {
		case ".cue":
			src.CUE = string(b)
		case ".rego":
			src.Rego = string(b)
		default:
			return nil, fmt.Errorf("--policy %s: invalid policy format, expected .cue or .rego", p)
		}
		pol, err := predicate.Compile(src)
		if err != nil {
			return nil, fmt.Errorf("--policy %s: %w", p, err)
		}
		out = append(out, pol)
	}
	return out, nil
}

// checkPredicatePolicies evaluates every policy against every attestation's statement, as
// cosign verify-attestation does: any failure fails the command, each one reported.
func checkPredicatePolicies(ctx context.Context, policies []*predicate.Policy, atts []verify.Attestation) error {
	var failures []string
	for _, att := range atts {
		for _, p := range policies {
			err := p.Eval(ctx, att.Statement)
			if err == nil {
				continue
			}
			msg := err.Error()
			if v, ok := errors.AsType[*predicate.Violation](err); ok {
				msg = v.Message
			}
			failures = append(failures, fmt.Sprintf("%s: policy %s: %s", att.Where, p.Name(), msg))
		}
	}
	if len(failures) > 0 {
		return fmt.Errorf("%d validation errors occurred: %s", len(failures), strings.Join(failures, "; "))
	}
	return nil
}

// printEnvelope writes a verified attestation as cosign verify-attestation prints it: the
// DSSE envelope's JSON on one line, its payload the in-toto statement.
func printEnvelope(e Env, att verify.Attestation) error {
	b, err := json.Marshal(struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
	}{cosign.PayloadTypeInToto, base64.StdEncoding.EncodeToString(att.Statement)})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(e.Stdout, string(b))
	return err
}
