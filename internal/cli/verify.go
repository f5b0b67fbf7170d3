package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/sign"
	"github.com/portcullis/portcullis/verify"
)

// VerifyOptions are the flags of verify.
type VerifyOptions struct {
	Registry RegistryOptions
	// Key is the public key: a PEM file, env://VAR, or a KMS URI.
	Key string
	// Annotations are -a key=value pairs the signature must carry.
	Annotations []string
	// IgnoreTlog must be set (--insecure-ignore-tlog): there is no transparency log support.
	IgnoreTlog bool
	// Output is "json" (default: a JSON array of the payloads) or "text" (one per line).
	Output string
}

// Verify checks the signatures of each image with the key, with the verifier the proxy
// enforces, and prints the payloads of the signatures that verified, as cosign verify does:
// a summary on Stderr, the payloads on Stdout. It fails unless every image has at least one
// verified signature.
func Verify(ctx context.Context, e Env, o VerifyOptions, images []string) error {
	if o.Key == "" {
		return errors.New("--key is required: keyless verification (certificate identities) is not supported yet")
	}
	if !o.IgnoreTlog {
		return errors.New("transparency log verification is not supported yet: pass --insecure-ignore-tlog to verify against the key alone")
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
	key, err := keys.LoadPublicKey(ctx, o.Key, e.LookupEnv)
	if err != nil {
		return err
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
	fmt.Fprintln(e.Stderr, "WARNING: Skipping tlog verification is an insecure practice that lacks transparency and auditability verification for the signature.")
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
		auth := verify.Authority{Name: o.Key, Key: key.Verifier, Annotations: ann}
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
		fmt.Fprintln(e.Stderr, "  - The signatures were verified against the specified public key")
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
