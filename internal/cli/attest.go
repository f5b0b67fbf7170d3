package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/sign"
)

// AttestOptions are the flags of attest.
type AttestOptions struct {
	Registry RegistryOptions
	// Key is the private key: a cosign key file, env://VAR, or a KMS URI. Empty: keyless.
	Key string
	// Predicate is the predicate file, or "-" for Stdin.
	Predicate string
	// Type is the predicate type: one of cosign's short names or a URI.
	Type string
	// Replace drops the attestations of the same predicate type from the legacy ".att"
	// manifest instead of adding another one.
	Replace bool
	// NewBundleFormat writes a sigstore bundle referrer (cosign v3); false the legacy .att.
	NewBundleFormat bool
	// Annotations are key=value pairs for the statement's subject.
	Annotations []string
	// Keyless holds the flags of keyless signing (no Key).
	Keyless KeylessOptions
}

// Attest resolves each image to a digest, makes the in-toto statement of the predicate about
// it, signs it with the key or keylessly, and pushes it to the image's repository or
// COSIGN_REPOSITORY: a bundle referrer, or a layer of the legacy ".att" manifest, as cosign
// attest does.
func Attest(ctx context.Context, e Env, o AttestOptions, images []string) error {
	if o.Predicate == "" {
		return errors.New("--predicate is required: the predicate file, or - for stdin")
	}
	if o.Key != "" && o.Keyless.usesServices() {
		return errors.New("with --key, portcullis attests offline: no identity token, signing config, Fulcio, Rekor or timestamp server (drop --key to attest keylessly)")
	}
	if o.Replace && o.NewBundleFormat {
		return errors.New("--replace works with the legacy format only (bundles are separate referrers): add --new-bundle-format=false")
	}
	predicateType, err := cosign.PredicateType(o.Type)
	if err != nil {
		return err
	}
	ann, err := ParseAnnotations(o.Annotations)
	if err != nil {
		return err
	}
	predicate, err := readPredicate(o.Predicate, e.Stdin)
	if err != nil {
		return err
	}
	s, err := prepareSigning(ctx, e, o.Registry, o.Key, o.Keyless, images, false)
	if err != nil {
		return err
	}
	var signer *keys.Signer
	if s.keyless == nil {
		if signer, err = keys.LoadSigner(ctx, o.Key, e.passFunc(), e.LookupEnv); err != nil {
			return err
		}
	}
	for _, t := range s.targets {
		att, err := sign.NewAttestation(t.Ref, predicateType, predicate, ann, time.Now())
		if err != nil {
			return fmt.Errorf("attest %s: %w", t.Ref, err)
		}
		if err := attestOne(ctx, e.Stderr, o, s.repoFor(t), t, att, signer, s.keyless, s.ropts); err != nil {
			return fmt.Errorf("attest %s: %w", t.Ref, err)
		}
	}
	return nil
}

// attestOne signs att about t with signer or keyless and pushes it in the format asked for.
func attestOne(ctx context.Context, errw io.Writer, o AttestOptions, repo name.Repository, t sign.Target, att sign.Attestation, signer *keys.Signer, keyless *sign.Keyless, ropts []remote.Option) error {
	if o.NewBundleFormat {
		var b []byte
		var err error
		if keyless != nil {
			b, err = keyless.AttestationBundle(ctx, att)
		} else {
			b, err = att.Bundle(ctx, signer, signer.Public)
		}
		if err != nil {
			return err
		}
		h, err := sign.PushAttestationBundle(ctx, repo, t.Descriptor, b, att.PredicateType, ropts...)
		if err != nil {
			return err
		}
		fmt.Fprintln(errw, "Pushing attestation to:", repo.Digest(h.String()))
		return nil
	}
	var env []byte
	var cert *sign.Certificate
	if keyless != nil {
		la, err := keyless.AttestationEnvelope(ctx, att)
		if err != nil {
			return err
		}
		env, cert = la.Envelope, la.Cert
	} else {
		var err error
		if env, err = att.Envelope(ctx, signer); err != nil {
			return err
		}
	}
	tag, err := sign.AttachAttestation(ctx, t.Ref, repo, env, cert, o.Replace, ropts...)
	if err != nil {
		return err
	}
	fmt.Fprintln(errw, "Pushing attestation to:", tag)
	return nil
}

// readPredicate reads the predicate file, or Stdin for "-", up to sign.MaxPredicateSize.
func readPredicate(path string, stdin io.Reader) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("read predicate: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, sign.MaxPredicateSize+1))
	if err != nil {
		return nil, fmt.Errorf("read predicate: %w", err)
	}
	if len(b) > sign.MaxPredicateSize {
		return nil, fmt.Errorf("predicate %s is over the %d MiB limit", path, sign.MaxPredicateSize>>20)
	}
	return b, nil
}
