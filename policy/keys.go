package policy

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/kms"
)

// maxKeyFileSize caps a public key file; PEM public keys are a few kilobytes at most.
const maxKeyFileSize = 64 << 10

// loadedKey is a public key ready to verify with, and its PKIX DER form for versioning.
type loadedKey struct {
	verifier signature.Verifier
	der      []byte
}

// loadKey loads the public key k describes; at is the key's config path for errors, e.g.
// "policies[0].authorities[1].key". k has passed validation: exactly one source is set.
func (o *compileOptions) loadKey(ctx context.Context, at string, k KeyConfig) (loadedKey, error) {
	var (
		pemBytes []byte
		field    string
	)
	switch {
	case k.Path != "":
		field = at + ".path"
		b, err := readKeyFile(k.Path)
		if err != nil {
			return loadedKey{}, fmt.Errorf("%s: %w", field, err)
		}
		pemBytes = b
	case k.Data != "":
		field, pemBytes = at+".data", []byte(k.Data)
	case k.Env != "":
		field = at + ".env"
		if o.lookupEnv == nil {
			return loadedKey{}, fmt.Errorf("%s: cannot read environment variable %s: no environment lookup was given (policy.WithLookupEnv)", field, k.Env)
		}
		v, ok := o.lookupEnv(k.Env)
		if !ok || v == "" {
			return loadedKey{}, fmt.Errorf("%s: environment variable %s is not set", field, k.Env)
		}
		pemBytes = []byte(v)
	case k.KMS != "":
		field = at + ".kms"
		pub, err := kmsPublicKey(ctx, k.KMS)
		if err != nil {
			return loadedKey{}, fmt.Errorf("%s: %w", field, err)
		}
		return newLoadedKey(field, pub)
	default:
		return loadedKey{}, fmt.Errorf("%s: no key source", at)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		return loadedKey{}, fmt.Errorf("%s: parse PEM public key: %w", field, err)
	}
	return newLoadedKey(field, pub)
}

// newLoadedKey builds the verifier sigstore uses by default for pub's algorithm, so ECDSA
// P-256/P-384/P-521 get SHA-256/384/512, RSA gets PKCS#1 v1.5 with SHA-256 and Ed25519 is
// pure Ed25519. Keys outside sigstore's algorithm registry (RSA < 2048 bits, P-224…) are
// refused.
func newLoadedKey(field string, pub crypto.PublicKey) (loadedKey, error) {
	v, err := signature.LoadDefaultVerifier(pub)
	if err != nil {
		return loadedKey{}, fmt.Errorf("%s: unsupported public key: %w", field, err)
	}
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return loadedKey{}, fmt.Errorf("%s: encode public key: %w", field, err)
	}
	return loadedKey{verifier: v, der: der}, nil
}

// readKeyFile reads a key file of at most maxKeyFileSize bytes.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxKeyFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes, too large for a public key", path, maxKeyFileSize)
	}
	return b, nil
}

// kmsPublicKey fetches the public key of a KMS key through sigstore's kms registry. Providers
// register themselves when main imports them; this package imports none.
func kmsPublicKey(ctx context.Context, ref string) (crypto.PublicKey, error) {
	sv, err := kms.Get(ctx, ref, crypto.SHA256)
	if err != nil {
		if _, ok := errors.AsType[*kms.ProviderNotFoundError](err); ok {
			providers := kms.SupportedProviders()
			slices.Sort(providers)
			return nil, fmt.Errorf("no KMS provider for %q in this build (linked: %v): %w", ref, providers, err)
		}
		return nil, fmt.Errorf("open KMS key %s: %w", ref, err)
	}
	pub, err := sv.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("get public key of KMS key %s: %w", ref, err)
	}
	return pub, nil
}
