package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/internal/cli"
	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/sign"
	"github.com/portcullis/portcullis/verify"
)

type verifyOptions struct {
	reg         registryOptions
	key         string
	annotations []string
	ignoreTlog  bool
	output      string
}

func newVerify(e *cliEnv) *cobra.Command {
	o := &verifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify --key REF --insecure-ignore-tlog [-a key=value]... IMAGE...",
		Short: "Verify the cosign signatures of images (as cosign verify, offline)",
		Long: `Resolves each IMAGE to a digest and checks its signatures in both cosign formats (legacy
.sig and sigstore bundle referrers) with portcullis's verifier, the one the mirror enforces:
the signature, the signed digest, cosign's signing predicate for bundles, and each -a
annotation. Prints the verified payloads as a JSON array on stdout, as cosign does, and a
summary on stderr. Exits 0 only when every IMAGE has at least one verified signature.
Transparency log checks are not supported yet, so --insecure-ignore-tlog is required.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVerify(cmd.Context(), e, cmd, o, args)
		},
	}
	fs := cmd.Flags()
	o.reg.addFlags(fs)
	fs.StringVar(&o.key, "key", "", "public key: a PEM file, env://VAR holding the PEM, or awskms:// gcpkms:// azurekms:// hashivault:// URI")
	fs.StringSliceVarP(&o.annotations, "annotations", "a", nil, "extra key=value pairs the signature must carry")
	fs.BoolVar(&o.ignoreTlog, "insecure-ignore-tlog", false, "ignore transparency log verification (required: portcullis has no transparency log support yet)")
	fs.StringVarP(&o.output, "output", "o", "json", "output format for the signing image information (json|text)")
	fs.Bool("insecure-ignore-sct", false, "accepted for cosign compatibility; certificates are not verified yet")
	fs.Bool("new-bundle-format", false, "accepted for cosign compatibility; both formats are always read")
	fs.Bool("check-claims", true, "accepted for cosign compatibility; claims are always checked")
	return cmd
}

func runVerify(ctx context.Context, e *cliEnv, cmd *cobra.Command, o *verifyOptions, args []string) error {
	errw := cmd.ErrOrStderr()
	if o.key == "" {
		return errors.New("--key is required: keyless verification (certificate identities) is not supported yet")
	}
	if !o.ignoreTlog {
		return errors.New("transparency log verification is not supported yet: pass --insecure-ignore-tlog to verify against the key alone")
	}
	if o.output != "json" && o.output != "text" {
		return fmt.Errorf("--output %q: want json or text", o.output)
	}
	ann, err := parseAnnotations(o.annotations)
	if err != nil {
		return err
	}
	key, err := keys.LoadPublicKey(ctx, o.key, e.lookupEnv)
	if err != nil {
		return err
	}
	sigRepo, err := e.signaturesRepository(&o.reg)
	if err != nil {
		return err
	}
	ropts, err := o.reg.remoteOpts(ctx)
	if err != nil {
		return err
	}
	reg, err := cli.NewRegistries(cli.RegistryOptions{
		AllowHTTP: o.reg.allowHTTP, AllowInsecure: o.reg.allowInsecure,
		Username: o.reg.username, Password: o.reg.password, Token: o.reg.token,
	})
	if err != nil {
		return err
	}
	v := verify.New()
	fmt.Fprintln(errw, "WARNING: Skipping tlog verification is an insecure practice that lacks transparency and auditability verification for the signature.")
	for _, a := range args {
		ref, err := o.reg.parseRef(a)
		if err != nil {
			return err
		}
		ts, err := sign.Resolve(ctx, ref, false, ropts...)
		if err != nil {
			return err
		}
		desc := ts[0].Descriptor
		subj := verify.Subject{Repository: ref.Context().Name(), Digest: digest.Digest(desc.Digest.String())}
		auth := verify.Authority{Name: o.key, Key: key.Verifier, Annotations: ann}
		if sigRepo.RepositoryStr() != "" {
			auth.SignaturesRepository = sigRepo.Name()
		}
		res, err := v.Verify(ctx, reg, subj, []verify.Authority{auth})
		if err != nil {
			return fmt.Errorf("verify %s: %w", a, err)
		}
		if r := res.Authorities[0]; !r.Verified {
			return fmt.Errorf("no matching signatures for %s@%s: %s", ref.Context(), desc.Digest, r.Reason)
		}
		var payloads []json.RawMessage
		for _, sig := range res.Authorities[0].Signatures {
			payloads = append(payloads, sig.Payload)
		}
		fmt.Fprintf(errw, "\nVerification for %s --\n", ref)
		fmt.Fprintln(errw, "The following checks were performed on each of these signatures:")
		if len(ann) > 0 {
			fmt.Fprintln(errw, "  - The specified annotations were verified.")
		}
		fmt.Fprintln(errw, "  - The cosign claims were validated")
		fmt.Fprintln(errw, "  - The signatures were verified against the specified public key")
		if err := printPayloads(cmd.OutOrStdout(), o.output, payloads); err != nil {
			return err
		}
	}
	return nil
}

func printPayloads(w io.Writer, format string, payloads []json.RawMessage) error {
	if format == "text" {
		for _, p := range payloads {
			if _, err := fmt.Fprintln(w, string(p)); err != nil {
				return err
			}
		}
		return nil
	}
	b, err := json.Marshal(payloads)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}
