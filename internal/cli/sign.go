package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature/options"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/sign"
)

// SignOptions are the flags of sign.
type SignOptions struct {
	Registry RegistryOptions
	// Key is the private key: a cosign key file, env://VAR, or a KMS URI.
	Key         string
	Annotations []string
	// Cert and CertChain are PEM files stored with the signature.
	Cert, CertChain string
	// Payload is a simple signing payload file to sign instead of a generated one (legacy).
	Payload string
	// Upload pushes the signature (cosign's default: true).
	Upload bool
	// OutSignature, OutPayload, OutCertificate and OutBundle are files to write.
	OutSignature, OutPayload, OutCertificate, OutBundle string
	// Recursive signs each manifest of an index too.
	Recursive bool
	// NewBundleFormat writes a sigstore bundle referrer (cosign v3); false the legacy .sig.
	NewBundleFormat bool
	// Keyless holds the flags of keyless signing (no Key).
	Keyless KeylessOptions
}

// KeylessOptions are cosign's keyless signing flags: the identity token and the sigstore
// services, from a signing config or from URLs.
type KeylessOptions struct {
	// IdentityToken is the OIDC token, or a file holding it (default: SIGSTORE_ID_TOKEN, then
	// GitHub Actions' ambient token).
	IdentityToken string
	// SigningConfig is a cosign v3 signing_config.json naming Fulcio, Rekor and the TSAs.
	SigningConfig string
	// UseSigningConfig asks for sigstore's signing config over TUF: refused (offline), but
	// accepted as false for cosign's command lines.
	UseSigningConfig bool
	// FulcioURL, RekorURL (a Rekor v1 API) and TimestampServerURL are the services without a
	// signing config. The signature is logged only with RekorURL.
	FulcioURL, RekorURL, TimestampServerURL string
	// TlogUpload asks for a Rekor entry: it needs RekorURL or a signing config naming a log.
	TlogUpload bool
	// TrustedRoot is a trusted_root.json the new signature must verify against.
	TrustedRoot string
}

// usesServices says whether any keyless flag was given.
func (k KeylessOptions) usesServices() bool {
	return k.IdentityToken != "" || k.SigningConfig != "" || k.UseSigningConfig || k.FulcioURL != "" ||
		k.RekorURL != "" || k.TimestampServerURL != "" || k.TlogUpload || k.TrustedRoot != ""
}

// services are the sigstore services the flags name.
func (k KeylessOptions) services(now time.Time) (sign.Services, error) {
	urls := k.FulcioURL != "" || k.RekorURL != "" || k.TimestampServerURL != ""
	switch {
	case k.SigningConfig != "" && urls:
		return sign.Services{}, errors.New("cannot specify service URLs and use signing config: pass --signing-config or --fulcio-url/--rekor-url/--timestamp-server-url")
	case k.SigningConfig != "":
		b, err := os.ReadFile(k.SigningConfig)
		if err != nil {
			return sign.Services{}, fmt.Errorf("read signing config: %w", err)
		}
		s, err := sign.ServicesFromSigningConfig(b, now)
		if err != nil {
			return sign.Services{}, fmt.Errorf("%s: %w", k.SigningConfig, err)
		}
		return s, nil
	case k.UseSigningConfig:
		return sign.Services{}, errors.New("--use-signing-config=true: portcullis does not fetch sigstore's signing config over TUF; pass --signing-config FILE, or --fulcio-url with --timestamp-server-url and/or --rekor-url")
	}
	if k.TlogUpload && k.RekorURL == "" {
		return sign.Services{}, errors.New("--tlog-upload=true needs --rekor-url (or a --signing-config naming a Rekor log)")
	}
	s := sign.Services{Fulcio: k.FulcioURL}
	if k.RekorURL != "" {
		s.Rekor = []sign.Rekor{{URL: k.RekorURL, Version: 1}}
	}
	if k.TimestampServerURL != "" {
		s.TSA = []string{k.TimestampServerURL}
	}
	return s, s.Validate()
}

// signer builds the keyless signer the flags describe.
func (k KeylessOptions) signer(ctx context.Context, e Env) (*sign.Keyless, error) {
	s, err := k.services(time.Now())
	if err != nil {
		return nil, err
	}
	var opts []sign.KeylessOption
	if k.TrustedRoot != "" {
		tr, err := root.NewTrustedRootFromPath(k.TrustedRoot)
		if err != nil {
			return nil, fmt.Errorf("trusted root %s: %w", k.TrustedRoot, err)
		}
		opts = append(opts, sign.WithTrustedRoot(tr))
	}
	tok, err := sign.IdentityToken(ctx, k.IdentityToken, e.LookupEnv, &http.Client{Timeout: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	return sign.NewKeyless(tok, s, opts...)
}

func (o SignOptions) outputsWanted() bool {
	return o.OutSignature != "" || o.OutPayload != "" || o.OutCertificate != "" || o.OutBundle != ""
}

// Sign resolves each image to a digest (each manifest of an index with Recursive), signs it
// with the key and pushes the signature (unless !Upload) to the image's repository or
// COSIGN_REPOSITORY, as cosign sign does offline.
func Sign(ctx context.Context, e Env, o SignOptions, images []string) error {
	if o.Key != "" && o.Keyless.usesServices() {
		return errors.New("with --key, portcullis signs offline: no identity token, signing config, Fulcio, Rekor or timestamp server (drop --key to sign keylessly)")
	}
	if o.Key == "" && o.Cert != "" {
		return errors.New("--certificate needs --key: the key the certificate certifies")
	}
	ann, err := ParseAnnotations(o.Annotations)
	if err != nil {
		return err
	}
	if o.Payload != "" && o.NewBundleFormat {
		return errors.New("--payload works with the legacy format only: add --new-bundle-format=false")
	}
	if o.CertChain != "" && o.Cert == "" {
		return errors.New("--certificate-chain needs --certificate")
	}
	s, err := prepareSigning(ctx, e, o.Registry, o.Key, o.Keyless, images, o.Recursive)
	if err != nil {
		return err
	}
	if o.outputsWanted() && len(s.targets) > 1 {
		return fmt.Errorf("--output-* and --bundle write one signature, but %d manifests are to be signed", len(s.targets))
	}
	if s.keyless != nil {
		for _, t := range s.targets {
			if err := signKeylessOne(ctx, e.Stderr, o, s.repoFor(t), t, s.keyless, ann, s.ropts); err != nil {
				return err
			}
		}
		return nil
	}
	signer, err := keys.LoadSigner(ctx, o.Key, e.passFunc(), e.LookupEnv)
	if err != nil {
		return err
	}
	var cert *sign.Certificate
	if o.Cert != "" {
		if cert, err = loadCertificate(o.Cert, o.CertChain, signer); err != nil {
			return err
		}
	}
	for _, t := range s.targets {
		if err := signOne(ctx, e.Stderr, o, s.repoFor(t), t, signer, cert, ann, s.ropts); err != nil {
			return err
		}
	}
	return nil
}

// signOne signs one target with the key and pushes the signature to repo in the format
// asked for.
func signOne(ctx context.Context, errw io.Writer, o SignOptions, repo name.Repository, t sign.Target, signer *keys.Signer, cert *sign.Certificate, ann map[string]string, ropts []remote.Option) error {
	if !o.NewBundleFormat {
		pl, err := legacyPayload(o.Payload, t.Ref, ann)
		if err != nil {
			return err
		}
		sig, err := signer.SignMessage(bytes.NewReader(pl), options.WithContext(ctx))
		if err != nil {
			return fmt.Errorf("sign %s: %w", t.Ref, err)
		}
		return emitLegacy(ctx, errw, o, repo, t, pl, sig, cert, ropts)
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
	return emitBundle(ctx, errw, o, repo, t, b, cert, ropts)
}

// signKeylessOne signs one target keylessly: a fresh key, its Fulcio certificate, the
// timestamps and log entries the services give, in the format asked for.
func signKeylessOne(ctx context.Context, errw io.Writer, o SignOptions, repo name.Repository, t sign.Target, k *sign.Keyless, ann map[string]string, ropts []remote.Option) error {
	if !o.NewBundleFormat {
		pl, err := legacyPayload(o.Payload, t.Ref, ann)
		if err != nil {
			return err
		}
		ls, err := k.Legacy(ctx, pl)
		if err != nil {
			return fmt.Errorf("sign %s: %w", t.Ref, err)
		}
		return emitLegacy(ctx, errw, o, repo, t, pl, ls.Sig, ls.Cert, ropts)
	}
	b, err := k.Bundle(ctx, t.Descriptor.Digest, ann)
	if err != nil {
		return fmt.Errorf("sign %s: %w", t.Ref, err)
	}
	return emitBundle(ctx, errw, o, repo, t, b, nil, ropts)
}

// emitLegacy writes the outputs asked for and, unless --upload=false, attaches the legacy
// signature of pl to the target.
func emitLegacy(ctx context.Context, errw io.Writer, o SignOptions, sigRepo name.Repository, t sign.Target, pl, sig []byte, cert *sign.Certificate, ropts []remote.Option) error {
	if err := writeOutputs(o, sig, pl, cert, nil); err != nil {
		return err
	}
	if !o.Upload {
		return nil
	}
	fmt.Fprintln(errw, "Pushing signature to:", sigRepo)
	if _, err := sign.AttachLegacy(ctx, t.Ref, sigRepo, pl, sig, cert, ropts...); err != nil {
		return fmt.Errorf("sign %s: %w", t.Ref, err)
	}
	return nil
}

// emitBundle writes the outputs asked for and, unless --upload=false, pushes the bundle b as
// a referrer of the target. A nil cert means the bundle's own certificate, if it holds one
// (keyless); a key bundle holds none.
func emitBundle(ctx context.Context, errw io.Writer, o SignOptions, sigRepo name.Repository, t sign.Target, b []byte, cert *sign.Certificate, ropts []remote.Option) error {
	if o.outputsWanted() {
		var pb protobundle.Bundle
		if err := protojson.Unmarshal(b, &pb); err != nil {
			return err
		}
		if raw := pb.GetVerificationMaterial().GetCertificate().GetRawBytes(); cert == nil && raw != nil {
			cert = &sign.Certificate{Leaf: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: raw})}
		}
		env := pb.GetDsseEnvelope()
		if err := writeOutputs(o, env.GetSignatures()[0].GetSig(), env.GetPayload(), cert, b); err != nil {
			return err
		}
	}
	if !o.Upload {
		return nil
	}
	fmt.Fprintln(errw, "Pushing signature to:", sigRepo)
	if _, err := sign.PushBundle(ctx, sigRepo, t.Descriptor, b, ropts...); err != nil {
		return fmt.Errorf("sign %s: %w", t.Ref, err)
	}
	return nil
}

func writeOutputs(o SignOptions, sig, pl []byte, cert *sign.Certificate, bundle []byte) error {
	write := func(path string, b []byte) error {
		if path == "" {
			return nil
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	}
	if err := write(o.OutSignature, []byte(base64.StdEncoding.EncodeToString(sig))); err != nil {
		return err
	}
	if err := write(o.OutPayload, pl); err != nil {
		return err
	}
	if cert != nil {
		if err := write(o.OutCertificate, cert.Leaf); err != nil {
			return err
		}
	} else if o.OutCertificate != "" {
		return errors.New("--output-certificate: there is no certificate (pass --certificate, or sign keylessly)")
	}
	if o.OutBundle != "" && bundle == nil {
		return errors.New("--bundle writes a sigstore bundle: not with --new-bundle-format=false")
	}
	return write(o.OutBundle, bundle)
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

// resolveOne parses arg and resolves it to the digest it names now, for commands that act
// on one image; it returns the go-containerregistry options it used.
func (o RegistryOptions) resolveOne(ctx context.Context, arg string) (sign.Target, []remote.Option, error) {
	ref, err := o.ParseRef(arg)
	if err != nil {
		return sign.Target{}, nil, err
	}
	ropts, err := o.remoteOpts(ctx)
	if err != nil {
		return sign.Target{}, nil, err
	}
	ts, err := sign.Resolve(ctx, ref, false, ropts...)
	if err != nil {
		return sign.Target{}, nil, err
	}
	return ts[0], ropts, nil
}

// Generate prints the simple signing payload of image, with annotations, to Stdout, to be
// signed by another tool (as cosign generate).
func Generate(ctx context.Context, e Env, reg RegistryOptions, annotations []string, image string) error {
	ann, err := ParseAnnotations(annotations)
	if err != nil {
		return err
	}
	t, _, err := reg.resolveOne(ctx, image)
	if err != nil {
		return err
	}
	pl, err := sign.LegacyPayload(t.Ref, ann)
	if err != nil {
		return err
	}
	_, err = e.Stdout.Write(pl)
	return err
}

// AttachOptions are the flags of attach signature.
type AttachOptions struct {
	Registry RegistryOptions
	// Payload is the signed payload file; empty means the one Generate prints.
	Payload string
	// Signature is a file, or "-" for Stdin, holding the signature in base64 or raw.
	Signature string
	// Cert and CertChain are PEM files stored with the signature.
	Cert, CertChain string
}

// AttachSignature adds a signature made elsewhere to image's legacy ".sig" manifest (as
// cosign attach signature).
func AttachSignature(ctx context.Context, e Env, o AttachOptions, image string) error {
	if o.Signature == "" {
		return errors.New("--signature is required")
	}
	sigRepo, err := e.signaturesRepository(o.Registry)
	if err != nil {
		return err
	}
	t, ropts, err := o.Registry.resolveOne(ctx, image)
	if err != nil {
		return err
	}
	pl, err := legacyPayload(o.Payload, t.Ref, nil)
	if err != nil {
		return err
	}
	sig, err := readSignature(o.Signature, e.Stdin)
	if err != nil {
		return err
	}
	var cert *sign.Certificate
	if o.Cert != "" {
		leaf, err := os.ReadFile(o.Cert)
		if err != nil {
			return err
		}
		cert = &sign.Certificate{Leaf: leaf}
		if o.CertChain != "" {
			if cert.Chain, err = os.ReadFile(o.CertChain); err != nil {
				return err
			}
		}
	}
	tag, err := sign.AttachLegacy(ctx, t.Ref, sigRepo, pl, sig, cert, ropts...)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.Stderr, "Pushing signature to:", tag)
	return nil
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
