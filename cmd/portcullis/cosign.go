package main

import (
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/portcullis/portcullis/internal/cli"
)

// addCosignCommands adds the cosign-compatible signing workflow: generate-key-pair, sign,
// verify, generate, attach, triangulate, clean. Flags and environment variables are cosign's;
// what the commands do is internal/cli's.
func addCosignCommands(root *cobra.Command) {
	root.AddCommand(newGenerateKeyPair(), newSign(), newVerify(), newGenerate(), newAttach(), newTriangulate(), newClean())
}

// env is the process's side of a command: its streams, environment and terminal.
func env(cmd *cobra.Command) cli.Env {
	return cli.Env{
		LookupEnv:    os.LookupEnv,
		Stdin:        os.Stdin,
		Stdout:       cmd.OutOrStdout(),
		Stderr:       cmd.ErrOrStderr(),
		IsTerminal:   func() bool { return term.IsTerminal(int(os.Stdin.Fd())) },
		ReadPassword: func() ([]byte, error) { return term.ReadPassword(int(os.Stdin.Fd())) },
	}
}

func addRegistryFlags(fs *pflag.FlagSet, o *cli.RegistryOptions) {
	fs.BoolVar(&o.AllowHTTP, "allow-http-registry", false, "whether to allow using HTTP protocol while connecting to registries (loopback registries always may)")
	fs.BoolVar(&o.AllowInsecure, "allow-insecure-registry", false, "whether to allow insecure connections to registries (e.g., with expired or self-signed TLS certificates); implies --allow-http-registry")
	fs.StringVar(&o.Username, "registry-username", "", "registry basic auth username (default: the docker config.json keychain)")
	fs.StringVar(&o.Password, "registry-password", "", "registry basic auth password")
	fs.StringVar(&o.Token, "registry-token", "", "registry bearer auth token")
}

// certAliases lets --cert and --cert-chain stand for cosign's --certificate and
// --certificate-chain.
func certAliases(_ *pflag.FlagSet, n string) pflag.NormalizedName {
	switch n {
	case "cert":
		n = "certificate"
	case "cert-chain":
		n = "certificate-chain"
	}
	return pflag.NormalizedName(n)
}

func newGenerateKeyPair() *cobra.Command {
	var o cli.KeyPairOptions
	cmd := &cobra.Command{
		Use:   "generate-key-pair",
		Short: "Generate an encrypted ECDSA P-256 key pair for signing (as cosign generate-key-pair)",
		Long: `Writes <prefix>.key, the private key encrypted with a password as cosign does
("ENCRYPTED SIGSTORE PRIVATE KEY"), and <prefix>.pub. The password comes from COSIGN_PASSWORD
(may be empty) or, on a terminal, a prompt. With --kms, the key is created in the key
management service and only <prefix>.pub is written.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cli.GenerateKeyPair(cmd.Context(), env(cmd), o)
		},
	}
	cmd.Flags().StringVar(&o.Prefix, "output-key-prefix", "cosign", "name used for generated .pub and .key files")
	cmd.Flags().StringVar(&o.KMS, "kms", "", "create the key in a KMS: awskms://…, gcpkms://…, azurekms://…, hashivault://…")
	cmd.Flags().BoolVarP(&o.Yes, "yes", "y", false, "overwrite existing key files without asking")
	return cmd
}

func newSign() *cobra.Command {
	var o cli.SignOptions
	cmd := &cobra.Command{
		Use:   "sign [--key REF | --identity-token TOKEN --signing-config FILE] [flags] IMAGE...",
		Short: "Sign images and push the signatures (as cosign sign), with a key or keylessly",
		Long: `Resolves each IMAGE (tag or digest) to a digest, signs it and pushes the signature: a
sigstore bundle as an OCI referrer (cosign v3's default) or, with --new-bundle-format=false, a
layer of the legacy "sha256-<hex>.sig" manifest. Existing signatures stay. COSIGN_REPOSITORY
stores signatures in another repository. Registry credentials come from the docker
config.json keychain or --registry-username/password.

With --key (a cosign key file, env://VAR, or a KMS URI) signing is offline. Without it the
signature is keyless: a fresh key, certified by Fulcio for the OIDC identity token
(--identity-token, $SIGSTORE_ID_TOKEN or GitHub Actions' ambient token), timestamped by the
timestamp authorities and logged in the Rekor logs of --signing-config (or --fulcio-url,
--timestamp-server-url, --rekor-url). The legacy format is timestamped, not logged.
--trusted-root checks the result before it is pushed.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cli.Sign(cmd.Context(), env(cmd), o, args)
		},
	}
	fs := cmd.Flags()
	fs.SetNormalizeFunc(certAliases)
	addRegistryFlags(fs, &o.Registry)
	addKeylessSignFlags(fs, &o.Keyless)
	fs.StringVar(&o.Key, "key", "", "private key: a cosign key file, env://VAR holding the PEM, or awskms:// gcpkms:// azurekms:// hashivault:// URI")
	fs.StringSliceVarP(&o.Annotations, "annotations", "a", nil, "extra key=value pairs to sign")
	fs.StringVar(&o.Cert, "certificate", "", "PEM certificate of the signing key to store with the signature (alias --cert)")
	fs.StringVar(&o.CertChain, "certificate-chain", "", "PEM chain (intermediates … root) to store with a legacy signature (alias --cert-chain)")
	fs.StringVar(&o.Payload, "payload", "", "sign this simple signing payload file instead of generating one (legacy format only)")
	fs.BoolVar(&o.Upload, "upload", true, "whether to upload the signature")
	fs.StringVar(&o.OutSignature, "output-signature", "", "write the base64 signature to this file")
	fs.StringVar(&o.OutPayload, "output-payload", "", "write the signed payload (legacy) or statement (bundle) to this file")
	fs.StringVar(&o.OutCertificate, "output-certificate", "", "write the certificate to this file")
	fs.StringVar(&o.OutBundle, "bundle", "", "write the sigstore bundle to this file (bundle format)")
	fs.BoolVarP(&o.Recursive, "recursive", "r", false, "if a multi-arch image is specified, additionally sign each discrete image")
	fs.BoolVar(&o.NewBundleFormat, "new-bundle-format", true, "sigstore bundle as an OCI referrer (cosign v3); false: the legacy .sig tag (cosign v2)")
	fs.BoolP("yes", "y", false, "skip confirmation prompts (there are none)")
	return cmd
}

func newVerify() *cobra.Command {
	var o cli.VerifyOptions
	cmd := &cobra.Command{
		Use:   "verify (--key REF --insecure-ignore-tlog | --certificate-identity[-regexp] X --certificate-oidc-issuer[-regexp] Y) [-a key=value]... IMAGE...",
		Short: "Verify the cosign signatures of images, with a key or keylessly (as cosign verify, offline)",
		Long: `Resolves each IMAGE to a digest and checks its signatures in both cosign formats (legacy
.sig and sigstore bundle referrers) with portcullis's verifier, the one the mirror enforces:
the signature, the signed digest, cosign's signing predicate for bundles, and each -a
annotation. Prints the verified payloads as a JSON array on stdout, as cosign does, and a
summary on stderr. Exits 0 only when every IMAGE has at least one verified signature.
With --key, signatures are checked against the key alone (--insecure-ignore-tlog is required).
Without it, the signing certificate must chain to a CA of --trusted-root (default: sigstore's
public-good root over TUF) or of --certificate-chain/--ca-roots, name the identity and
issuer given, embed an SCT (unless --insecure-ignore-sct) and have a Rekor entry (unless
--insecure-ignore-tlog) or an RFC 3161 timestamp (--use-signed-timestamps) proving when it
was used.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cli.Verify(cmd.Context(), env(cmd), o, args)
		},
	}
	fs := cmd.Flags()
	addRegistryFlags(fs, &o.Registry)
	fs.StringVar(&o.Key, "key", "", "public key: a PEM file, env://VAR holding the PEM, or awskms:// gcpkms:// azurekms:// hashivault:// URI")
	fs.StringSliceVarP(&o.Annotations, "annotations", "a", nil, "extra key=value pairs the signature must carry")
	fs.BoolVar(&o.IgnoreTlog, "insecure-ignore-tlog", false, "do not require a transparency log entry (required with --key: key signatures are checked against the key alone)")
	fs.StringVarP(&o.Output, "output", "o", "json", "output format for the signing image information (json|text)")
	addKeylessVerifyFlags(fs, &o.Keyless)
	fs.Bool("new-bundle-format", false, "accepted for cosign compatibility; both formats are always read")
	fs.Bool("check-claims", true, "accepted for cosign compatibility; claims are always checked")
	return cmd
}

func newGenerate() *cobra.Command {
	var reg cli.RegistryOptions
	var annotations []string
	cmd := &cobra.Command{
		Use:   "generate [-a key=value]... IMAGE",
		Short: "Print the simple signing payload of an image, to sign with another tool (as cosign generate)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cli.Generate(cmd.Context(), env(cmd), reg, annotations, args[0])
		},
	}
	addRegistryFlags(cmd.Flags(), &reg)
	cmd.Flags().StringSliceVarP(&annotations, "annotations", "a", nil, "extra key=value pairs to sign")
	return cmd
}

func newAttach() *cobra.Command {
	attach := &cobra.Command{
		Use:   "attach",
		Short: "Attach a signature made elsewhere to an image (as cosign attach)",
	}
	var o cli.AttachOptions
	sig := &cobra.Command{
		Use:   "signature --signature FILE|- [--payload FILE] IMAGE",
		Short: "Attach a signature over a simple signing payload (legacy .sig format)",
		Long: `Adds a signature made with another tool (e.g. openssl dgst -sha256 -sign key.pem over the
output of "portcullis generate") to the image's "sha256-<hex>.sig" manifest. --signature is a
file or - for stdin, holding the signature base64-encoded or raw (DER); --payload is the signed
file (default: the payload "portcullis generate" prints). The payload must name the image's
digest.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cli.AttachSignature(cmd.Context(), env(cmd), o, args[0])
		},
	}
	fs := sig.Flags()
	fs.SetNormalizeFunc(certAliases)
	addRegistryFlags(fs, &o.Registry)
	fs.StringVar(&o.Payload, "payload", "", "the signed simple signing payload file (default: generated as by portcullis generate)")
	fs.StringVar(&o.Signature, "signature", "", "the signature: a file or - for stdin, base64 or raw bytes")
	fs.StringVar(&o.Cert, "certificate", "", "PEM certificate of the signing key")
	fs.StringVar(&o.CertChain, "certificate-chain", "", "PEM certificate chain")
	attach.AddCommand(sig)
	return attach
}

func newTriangulate() *cobra.Command {
	var reg cli.RegistryOptions
	var typ string
	cmd := &cobra.Command{
		Use:   "triangulate [--type signature|attestation|sbom|digest|bundle] IMAGE",
		Short: "Print where an image's signatures are stored (as cosign triangulate)",
		Long: `Prints the location of IMAGE's cosign attachment: the legacy tag
"<repo>:sha256-<hex>.sig" (signature), ".att" (attestation), ".sbom" (sbom), the image by
digest (digest), or, for bundle, each sigstore bundle referrer as "<repo>@sha256:…" (an error
when there is none). COSIGN_REPOSITORY changes the repository.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cli.Triangulate(cmd.Context(), env(cmd), reg, typ, args[0])
		},
	}
	addRegistryFlags(cmd.Flags(), &reg)
	cmd.Flags().StringVar(&typ, "type", "signature", "related attachment to triangulate (signature|attestation|sbom|digest|bundle)")
	return cmd
}

func newClean() *cobra.Command {
	var o cli.CleanOptions
	cmd := &cobra.Command{
		Use:   "clean [--type all|signature|attestation|sbom|referrer] [-f] IMAGE",
		Short: "Delete an image's signatures and other cosign attachments (as cosign clean)",
		Long: `Deletes the legacy tags (.sig, .att, .sbom) and the sigstore bundle referrers of IMAGE
where the registry allows it, reporting each removal on stderr. Exits non-zero when something
found could not be deleted. Asks for confirmation unless -f.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cli.Clean(cmd.Context(), env(cmd), o, args[0])
		},
	}
	addRegistryFlags(cmd.Flags(), &o.Registry)
	cmd.Flags().StringVar(&o.Type, "type", "all", "type of attachment to clean (all|signature|attestation|sbom|referrer)")
	cmd.Flags().BoolVarP(&o.Force, "force", "f", false, "do not prompt for confirmation")
	return cmd
}

func newDemo() *cobra.Command {
	var listen string
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run portcullis offline against an in-process registry: a signed image is admitted, an unsigned one denied",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cli.Demo(cmd.Context(), cmd.OutOrStdout(), listen, keep)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "address for the demo proxy")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep serving after the demo pulls, until interrupted")
	return cmd
}
