package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature/options"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/sign"
)

type signOptions struct {
	reg              registryOptions
	key              string
	annotations      []string
	cert, certChain  string
	payload          string
	upload           bool
	outSignature     string
	outPayload       string
	outCertificate   string
	outBundle        string
	recursive        bool
	newBundleFormat  bool
	yes              bool
	cosignRepository name.Repository
}

func newSign(e *cliEnv) *cobra.Command {
	o := &signOptions{}
	cmd := &cobra.Command{
		Use:   "sign --key REF [flags] IMAGE...",
		Short: "Sign images and push the signatures (as cosign sign, offline: no transparency log)",
		Long: `Resolves each IMAGE (tag or digest) to a digest, signs it with --key (a cosign key file,
env://VAR, or a KMS URI) and pushes the signature: a sigstore bundle as an OCI referrer (cosign
v3's default) or, with --new-bundle-format=false, a layer of the legacy "sha256-<hex>.sig"
manifest. Existing signatures stay. COSIGN_REPOSITORY stores signatures in another repository.
Registry credentials come from the docker config.json keychain or --registry-username/password.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := refuseTlog(cmd.Flags()); err != nil {
				return err
			}
			if o.key == "" {
				return errors.New("--key is required: keyless signing (Fulcio) is not supported yet")
			}
			return runSign(cmd.Context(), e, cmd, o, args)
		},
	}
	fs := cmd.Flags()
	fs.SetNormalizeFunc(certAliases)
	o.reg.addFlags(fs)
	addTlogFlags(fs)
	fs.StringVar(&o.key, "key", "", "private key: a cosign key file, env://VAR holding the PEM, or awskms:// gcpkms:// azurekms:// hashivault:// URI")
	fs.StringSliceVarP(&o.annotations, "annotations", "a", nil, "extra key=value pairs to sign")
	fs.StringVar(&o.cert, "certificate", "", "PEM certificate of the signing key to store with the signature (alias --cert)")
	fs.StringVar(&o.certChain, "certificate-chain", "", "PEM chain (intermediates … root) to store with a legacy signature (alias --cert-chain)")
	fs.StringVar(&o.payload, "payload", "", "sign this simple signing payload file instead of generating one (legacy format only)")
	fs.BoolVar(&o.upload, "upload", true, "whether to upload the signature")
	fs.StringVar(&o.outSignature, "output-signature", "", "write the base64 signature to this file")
	fs.StringVar(&o.outPayload, "output-payload", "", "write the signed payload (legacy) or statement (bundle) to this file")
	fs.StringVar(&o.outCertificate, "output-certificate", "", "write the certificate to this file")
	fs.StringVar(&o.outBundle, "bundle", "", "write the sigstore bundle to this file (bundle format)")
	fs.BoolVarP(&o.recursive, "recursive", "r", false, "if a multi-arch image is specified, additionally sign each discrete image")
	fs.BoolVar(&o.newBundleFormat, "new-bundle-format", true, "sigstore bundle as an OCI referrer (cosign v3); false: the legacy .sig tag (cosign v2)")
	fs.BoolVarP(&o.yes, "yes", "y", false, "skip confirmation prompts (there are none without a transparency log)")
	return cmd
}

func runSign(ctx context.Context, e *cliEnv, cmd *cobra.Command, o *signOptions, args []string) error {
	errw := cmd.ErrOrStderr()
	ann, err := parseAnnotations(o.annotations)
	if err != nil {
		return err
	}
	if o.payload != "" && o.newBundleFormat {
		return errors.New("--payload works with the legacy format only: add --new-bundle-format=false")
	}
	if o.certChain != "" && o.cert == "" {
		return errors.New("--certificate-chain needs --certificate")
	}
	if o.cosignRepository, err = e.signaturesRepository(&o.reg); err != nil {
		return err
	}
	ropts, err := o.reg.remoteOpts(ctx)
	if err != nil {
		return err
	}
	var targets []sign.Target
	for _, a := range args {
		ref, err := o.reg.parseRef(a)
		if err != nil {
			return err
		}
		ts, err := sign.Resolve(ctx, ref, o.recursive, ropts...)
		if err != nil {
			return err
		}
		targets = append(targets, ts...)
	}
	outputs := o.outSignature != "" || o.outPayload != "" || o.outCertificate != "" || o.outBundle != ""
	if outputs && len(targets) > 1 {
		return fmt.Errorf("--output-* and --bundle write one signature, but %d manifests are to be signed", len(targets))
	}
	signer, err := keys.LoadSigner(ctx, o.key, e.passFunc(errw), e.lookupEnv)
	if err != nil {
		return err
	}
	var cert *sign.Certificate
	if o.cert != "" {
		if cert, err = loadCertificate(o.cert, o.certChain, signer); err != nil {
			return err
		}
	}
	for _, t := range targets {
		if err := signOne(ctx, errw, o, t, signer, cert, ann, ropts); err != nil {
			return err
		}
	}
	return nil
}

func signOne(ctx context.Context, errw io.Writer, o *signOptions, t sign.Target, signer *keys.Signer, cert *sign.Certificate, ann map[string]string, ropts []remote.Option) error {
	sigRepo := o.cosignRepository
	if sigRepo.RepositoryStr() == "" {
		sigRepo = t.Ref.Context()
	}
	if !o.newBundleFormat {
		pl, err := legacyPayload(o.payload, t.Ref, ann)
		if err != nil {
			return err
		}
		sig, err := signer.SignMessage(bytes.NewReader(pl), options.WithContext(ctx))
		if err != nil {
			return fmt.Errorf("sign %s: %w", t.Ref, err)
		}
		if err := writeOutputs(o, sig, pl, cert, nil); err != nil {
			return err
		}
		if !o.upload {
			return nil
		}
		fmt.Fprintln(errw, "Pushing signature to:", sigRepo)
		if _, err := sign.AttachLegacy(ctx, t.Ref, sigRepo, pl, sig, cert, ropts...); err != nil {
			return fmt.Errorf("sign %s: %w", t.Ref, err)
		}
		return nil
	}

	var b []byte
	var err error
	if cert != nil {
		blk, _ := pem.Decode(cert.Leaf)
		b, err = sign.NewCertificateBundle(ctx, t.Descriptor.Digest, signer, blk.Bytes, ann)
	} else {
		b, err = sign.NewBundle(ctx, t.Descriptor.Digest, signer, signer.Public, ann)
	}
	if err != nil {
		return fmt.Errorf("sign %s: %w", t.Ref, err)
	}
	if outputsWanted(o) {
		var pb protobundle.Bundle
		if err := protojson.Unmarshal(b, &pb); err != nil {
			return err
		}
		env := pb.GetDsseEnvelope()
		if err := writeOutputs(o, env.GetSignatures()[0].GetSig(), env.GetPayload(), cert, b); err != nil {
			return err
		}
	}
	if !o.upload {
		return nil
	}
	fmt.Fprintln(errw, "Pushing signature to:", sigRepo)
	if _, err := sign.PushBundle(ctx, sigRepo, t.Descriptor, b, ropts...); err != nil {
		return fmt.Errorf("sign %s: %w", t.Ref, err)
	}
	return nil
}

func outputsWanted(o *signOptions) bool {
	return o.outSignature != "" || o.outPayload != "" || o.outCertificate != "" || o.outBundle != ""
}

func writeOutputs(o *signOptions, sig, pl []byte, cert *sign.Certificate, bundle []byte) error {
	write := func(path string, b []byte) error {
		if path == "" {
			return nil
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	}
	if err := write(o.outSignature, []byte(base64.StdEncoding.EncodeToString(sig))); err != nil {
		return err
	}
	if err := write(o.outPayload, pl); err != nil {
		return err
	}
	if cert != nil {
		if err := write(o.outCertificate, cert.Leaf); err != nil {
			return err
		}
	} else if o.outCertificate != "" {
		return errors.New("--output-certificate: there is no certificate (pass --certificate)")
	}
	if o.outBundle != "" && bundle == nil {
		return errors.New("--bundle writes a sigstore bundle: not with --new-bundle-format=false")
	}
	return write(o.outBundle, bundle)
}

// legacyPayload reads the payload file given with --payload, or generates cosign's.
func legacyPayload(path string, img name.Digest, ann map[string]string) ([]byte, error) {
	if path == "" {
		return sign.LegacyPayload(img, ann)
	}
	if len(ann) > 0 {
		return nil, errors.New("-a annotations go into a generated payload: not with --payload")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read payload: %w", err)
	}
	return b, nil
}

// loadCertificate reads the PEM certificate (and chain) to store with a signature and checks
// that it holds the signer's public key.
func loadCertificate(certPath, chainPath string, signer *keys.Signer) (*sign.Certificate, error) {
	leaf, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM(leaf)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("certificate %s: not a PEM certificate", certPath)
	}
	if err := cryptoutils.EqualKeys(certs[0].PublicKey, signer.Public); err != nil {
		return nil, fmt.Errorf("certificate %s does not hold the public key of %s", certPath, signer.Ref)
	}
	c := &sign.Certificate{Leaf: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certs[0].Raw})}
	if chainPath != "" {
		chain, err := os.ReadFile(chainPath)
		if err != nil {
			return nil, fmt.Errorf("read certificate chain: %w", err)
		}
		if _, err := cryptoutils.UnmarshalCertificatesFromPEM(chain); err != nil {
			return nil, fmt.Errorf("certificate chain %s: %w", chainPath, err)
		}
		c.Chain = chain
	}
	return c, nil
}

func newGenerate(e *cliEnv) *cobra.Command {
	var reg registryOptions
	var annotations []string
	cmd := &cobra.Command{
		Use:   "generate [-a key=value]... IMAGE",
		Short: "Print the simple signing payload of an image, to sign with another tool (as cosign generate)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ann, err := parseAnnotations(annotations)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			t, _, err := reg.resolveOne(ctx, args[0])
			if err != nil {
				return err
			}
			pl, err := sign.LegacyPayload(t.Ref, ann)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(pl)
			return err
		},
	}
	reg.addFlags(cmd.Flags())
	cmd.Flags().StringSliceVarP(&annotations, "annotations", "a", nil, "extra key=value pairs to sign")
	return cmd
}

func newAttach(e *cliEnv) *cobra.Command {
	attach := &cobra.Command{
		Use:   "attach",
		Short: "Attach a signature made elsewhere to an image (as cosign attach)",
	}
	var reg registryOptions
	var payloadPath, sigRef, certPath, chainPath string
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
			ctx := cmd.Context()
			if sigRef == "" {
				return errors.New("--signature is required")
			}
			sigRepo, err := e.signaturesRepository(&reg)
			if err != nil {
				return err
			}
			t, ropts, err := reg.resolveOne(ctx, args[0])
			if err != nil {
				return err
			}
			pl, err := legacyPayload(payloadPath, t.Ref, nil)
			if err != nil {
				return err
			}
			sig, err := readSignature(sigRef, e.stdin)
			if err != nil {
				return err
			}
			var cert *sign.Certificate
			if certPath != "" {
				leaf, err := os.ReadFile(certPath)
				if err != nil {
					return err
				}
				cert = &sign.Certificate{Leaf: leaf}
				if chainPath != "" {
					if cert.Chain, err = os.ReadFile(chainPath); err != nil {
						return err
					}
				}
			}
			tag, err := sign.AttachLegacy(ctx, t.Ref, sigRepo, pl, sig, cert, ropts...)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "Pushing signature to:", tag)
			return nil
		},
	}
	fs := sig.Flags()
	fs.SetNormalizeFunc(certAliases)
	reg.addFlags(fs)
	fs.StringVar(&payloadPath, "payload", "", "the signed simple signing payload file (default: generated as by portcullis generate)")
	fs.StringVar(&sigRef, "signature", "", "the signature: a file or - for stdin, base64 or raw bytes")
	fs.StringVar(&certPath, "certificate", "", "PEM certificate of the signing key")
	fs.StringVar(&chainPath, "certificate-chain", "", "PEM certificate chain")
	attach.AddCommand(sig)
	return attach
}

// readSignature reads --signature: a file or "-" for stdin, holding base64 (as cosign
// writes) or the raw signature bytes (as openssl dgst -sign writes).
func readSignature(ref string, stdin io.Reader) ([]byte, error) {
	var b []byte
	var err error
	if ref == "-" {
		b, err = io.ReadAll(io.LimitReader(stdin, 1<<20))
	} else {
		b, err = os.ReadFile(ref)
	}
	if err != nil {
		return nil, fmt.Errorf("read signature: %w", err)
	}
	if s := strings.TrimSpace(string(b)); s != "" {
		if dec, err := base64.StdEncoding.DecodeString(s); err == nil {
			return dec, nil
		}
	}
	if len(b) == 0 {
		return nil, errors.New("signature is empty")
	}
	return b, nil
}
