package main

import (
	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/internal/cli"
)

func newAttest() *cobra.Command {
	var o cli.AttestOptions
	cmd := &cobra.Command{
		Use:   "attest --predicate FILE|- [--type NAME|URI] [--key REF | keyless flags] [flags] IMAGE...",
		Short: "Attest images with an in-toto predicate and push the attestations (as cosign attest), with a key or keylessly",
		Long: `Resolves each IMAGE (tag or digest) to a digest and signs an in-toto statement about it
(subject: the repository and the digest) whose predicate is the --predicate file (or stdin for -),
of the --type given: one of cosign's names (slsaprovenance, slsaprovenance02, slsaprovenance1,
link, spdx, spdxjson, cyclonedx, vuln, openvex, custom) or a predicate type URI. The statement
is signed as a DSSE envelope and pushed as a sigstore bundle referrer (cosign v3's default)
or, with --new-bundle-format=false, as a layer of the legacy "sha256-<hex>.att" manifest
(cosign v2), where --replace drops the attestations of the same predicate type.
COSIGN_REPOSITORY stores attestations in another repository. Pushed through portcullis, an
attestation is a signature push: it needs a push user, and the decisions about the image are
made again at once.

With --key (a cosign key file, env://VAR, or a KMS URI) attesting is offline. Without it the
attestation is keyless, with the flags of "portcullis sign".`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cli.Attest(cmd.Context(), env(cmd), o, args)
		},
	}
	fs := cmd.Flags()
	addRegistryFlags(fs, &o.Registry)
	addKeylessSignFlags(fs, &o.Keyless)
	fs.StringVar(&o.Key, "key", "", "private key: a cosign key file, env://VAR holding the PEM, or awskms:// gcpkms:// azurekms:// hashivault:// URI")
	fs.StringVar(&o.Predicate, "predicate", "", "path to the predicate file, or - for stdin")
	fs.StringVar(&o.Type, "type", "custom", "predicate type (slsaprovenance|slsaprovenance02|slsaprovenance1|link|spdx|spdxjson|cyclonedx|vuln|openvex|custom) or a URI")
	fs.BoolVar(&o.Replace, "replace", false, "replace the attestations of the same predicate type in the legacy .att manifest (with --new-bundle-format=false)")
	fs.BoolVar(&o.NewBundleFormat, "new-bundle-format", true, "sigstore bundle as an OCI referrer (cosign v3); false: the legacy .att tag (cosign v2)")
	fs.StringSliceVarP(&o.Annotations, "annotations", "a", nil, "extra key=value pairs for the statement's subject")
	fs.BoolP("yes", "y", false, "skip confirmation prompts (there are none)")
	return cmd
}

func newVerifyAttestation() *cobra.Command {
	var o cli.VerifyAttestationOptions
	cmd := &cobra.Command{
		Use:   "verify-attestation [--type NAME|URI] [--policy FILE.cue|FILE.rego]... (--key REF --insecure-ignore-tlog | --certificate-identity[-regexp] X --certificate-oidc-issuer[-regexp] Y) IMAGE...",
		Short: "Verify the in-toto attestations of images and check them against CUE or Rego policies (as cosign verify-attestation, offline)",
		Long: `Resolves each IMAGE to a digest and checks its attestations of the --type given (cosign's
names or a URI; default custom) in both cosign formats (legacy .att and sigstore bundle
referrers) with portcullis's verifier, the one the mirror enforces: the DSSE signature, the
signer (--key, or the certificate flags of "portcullis verify"), and a statement whose subject
is exactly the image's digest. Each verified statement must then satisfy every --policy: CUE
(.cue) or Rego (.rego), over the whole statement, with sigstore policy-controller's
conventions (Rego: package sigstore, isCompliant). Prints each verified attestation as a
DSSE envelope JSON line on stdout (the statement base64 in "payload"), as cosign does, and a
summary on stderr. Exits non-zero, with the policy's message, unless every IMAGE has a
verified attestation of the type and all of them satisfy the policies.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cli.VerifyAttestation(cmd.Context(), env(cmd), o, args)
		},
	}
	fs := cmd.Flags()
	addRegistryFlags(fs, &o.Verify.Registry)
	fs.StringVar(&o.Verify.Key, "key", "", "public key: a PEM file, env://VAR holding the PEM, or awskms:// gcpkms:// azurekms:// hashivault:// URI")
	fs.BoolVar(&o.Verify.IgnoreTlog, "insecure-ignore-tlog", false, "do not require a transparency log entry (required with --key: key attestations are checked against the key alone)")
	addKeylessVerifyFlags(fs, &o.Verify.Keyless)
	fs.StringVar(&o.Type, "type", "custom", "predicate type (slsaprovenance|slsaprovenance02|slsaprovenance1|link|spdx|spdxjson|cyclonedx|vuln|openvex|custom) or a URI")
	fs.StringSliceVar(&o.Policies, "policy", nil, "CUE (.cue) or Rego (.rego) policy file every verified statement must satisfy (repeatable)")
	fs.StringP("output", "o", "json", "accepted for cosign compatibility; attestations are always printed as JSON envelopes")
	fs.Bool("new-bundle-format", false, "accepted for cosign compatibility; both formats are always read")
	fs.Bool("check-claims", true, "accepted for cosign compatibility; claims are always checked")
	return cmd
}
