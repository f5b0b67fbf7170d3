package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/kms"
	"github.com/sigstore/sigstore/pkg/signature/options"
)

// PEM block types of cosign's encrypted private keys.
const (
	PEMTypeEncrypted       = "ENCRYPTED SIGSTORE PRIVATE KEY"
	PEMTypeEncryptedCosign = "ENCRYPTED COSIGN PRIVATE KEY"
)

// KMSSchemes are the URI schemes of the key management services sigstore/sigstore supports.
var KMSSchemes = []string{"awskms://", "gcpkms://", "azurekms://", "hashivault://"}

// DefaultKMSTimeout bounds opening a KMS key and fetching its public key when the caller's
// context has no deadline of its own.
const DefaultKMSTimeout = 30 * time.Second

// KMSOption configures how KMS keys are opened.
type KMSOption func(*kmsOptions)

type kmsOptions struct {
	plugins bool
}

// WithKMSPlugins lets a KMS reference that no linked provider serves run sigstore's plugin
// protocol: the program "sigstore-kms-<scheme>" found on PATH is executed with the key
// reference. Off by default: without it only the providers linked into the binary (and
// registered with sigstore's kms package) are used, and nothing is executed.
func WithKMSPlugins() KMSOption {
	return func(o *kmsOptions) { o.plugins = true }
}

// envScheme prefixes a reference to an environment variable holding a PEM key.
const envScheme = "env://"

// PassFunc returns the password of an encrypted private key. confirm asks for it twice (when
// a new key is written); the CLI prompts or reads COSIGN_PASSWORD.
type PassFunc func(confirm bool) ([]byte, error)

// LookupEnv reads an environment variable, as os.LookupEnv.
type LookupEnv func(string) (string, bool)

// ErrWrongPassword is returned when an encrypted private key does not decrypt with the
// password given.
var ErrWrongPassword = errors.New("incorrect password for the private key (or the key is corrupt)")

// IsKMS reports whether ref is a KMS URI: scheme://… other than env://. Whether a provider
// serves the scheme is decided when the key is opened (only the linked ones, KMSSchemes in
// portcullis, unless plugins are allowed); a reference with an unknown scheme is never
// mistaken for a file path.
func IsKMS(ref string) bool {
	return kmsRefRE.MatchString(ref) && !strings.HasPrefix(ref, envScheme)
}

var kmsRefRE = regexp.MustCompile(`^[a-z][a-z0-9+.-]*://.`)

// GenerateKeyPair returns a new ECDSA P-256 key pair: the private key encrypted with password
// (which may be empty) as a PEM "ENCRYPTED SIGSTORE PRIVATE KEY", and the public key as a PEM
// "PUBLIC KEY".
func GenerateKeyPair(password []byte) (privPEM, pubPEM []byte, err error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	privPEM, err = EncryptPrivateKey(priv, password)
	if err != nil {
		return nil, nil, err
	}
	pubPEM, err = cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("encode public key: %w", err)
	}
	return privPEM, pubPEM, nil
}

// EncryptPrivateKey encodes priv as cosign does: PKCS#8 DER encrypted with password (scrypt,
// secretbox) in a PEM "ENCRYPTED SIGSTORE PRIVATE KEY" block.
func EncryptPrivateKey(priv crypto.PrivateKey, password []byte) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	if password == nil {
		password = []byte{}
	}
	enc, err := encrypted.Encrypt(der, password)
	if err != nil {
		return nil, fmt.Errorf("encrypt private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: PEMTypeEncrypted, Bytes: enc}), nil
}

// DecryptPrivateKey reads a cosign encrypted private key PEM. A password that does not
// decrypt it gives an error wrapping ErrWrongPassword.
func DecryptPrivateKey(pemBytes, password []byte) (crypto.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("not a PEM private key")
	}
	switch block.Type {
	case PEMTypeEncrypted, PEMTypeEncryptedCosign:
	default:
		return nil, fmt.Errorf("unsupported private key type %q: want %q as written by generate-key-pair (cosign refuses unencrypted keys too; convert with cosign import-key-pair)", block.Type, PEMTypeEncrypted)
	}
	if password == nil {
		password = []byte{}
	}
	der, err := encrypted.Decrypt(block.Bytes, password)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrWrongPassword, err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse decrypted private key: %w", err)
	}
	return priv, nil
}

// Signer is a loaded signing key.
type Signer struct {
	signature.SignerVerifier
	// Public is the signer's public key.
	Public crypto.PublicKey
	// Ref is the reference it was loaded from, for messages.
	Ref string
}

// LoadSigner loads the private key ref names (a file, "env://VAR" or a KMS URI). pass is asked
// for the password of an encrypted key; it is not called for KMS keys. The hash function is
// cosign's default for the key type (SHA-256 for P-256 and RSA, SHA-384 for P-384, SHA-512
// for P-521, pure Ed25519).
func LoadSigner(ctx context.Context, ref string, pass PassFunc, env LookupEnv, opts ...KMSOption) (*Signer, error) {
	if ref == "" {
		return nil, errors.New("no key given")
	}
	if IsKMS(ref) {
		sv, pub, err := openKMS(ctx, ref, opts)
		if err != nil {
			return nil, err
		}
		return &Signer{SignerVerifier: sv, Public: pub, Ref: ref}, nil
	}
	raw, err := readRef(ref, env)
	if err != nil {
		return nil, err
	}
	if pass == nil {
		return nil, errors.New("no password function")
	}
	pw, err := pass(false)
	if err != nil {
		return nil, err
	}
	priv, err := DecryptPrivateKey(raw, pw)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", ref, err)
	}
	sv, err := signature.LoadDefaultSignerVerifier(priv)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", ref, err)
	}
	pub, err := sv.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", ref, err)
	}
	return &Signer{SignerVerifier: sv, Public: pub, Ref: ref}, nil
}

// PublicKey is a public key ready to verify with.
type PublicKey struct {
	// Verifier checks signatures with sigstore's default for the key's algorithm, as cosign
	// does: ECDSA P-256/P-384/P-521 with SHA-256/384/512, RSA PKCS#1 v1.5 with SHA-256, pure
	// Ed25519.
	Verifier signature.Verifier
	// DER is the key's PKIX DER encoding: the same key gives the same bytes wherever it was
	// loaded from.
	DER []byte
}

// NewPublicKey returns pub ready to verify with. Keys outside sigstore's algorithm registry
// (RSA under 2048 bits, P-224, …) are refused.
func NewPublicKey(pub crypto.PublicKey) (*PublicKey, error) {
	v, err := signature.LoadDefaultVerifier(pub)
	if err != nil {
		return nil, fmt.Errorf("unsupported public key: %w", err)
	}
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return &PublicKey{Verifier: v, DER: der}, nil
}

// ParsePublicKey reads a PEM public key (PKIX "PUBLIC KEY", as cosign writes it, or an RSA
// "RSA PUBLIC KEY") and returns it ready to verify with.
func ParsePublicKey(pemBytes []byte) (*PublicKey, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("parse PEM public key: %w", err)
	}
	return NewPublicKey(pub)
}

// KMSPublicKey fetches the public key of the KMS key ref names through sigstore's kms
// registry. Providers register themselves when main imports them; without the provider the
// error names the ones linked (and nothing is executed unless WithKMSPlugins is given).
// ctx bounds the lookup; without a deadline DefaultKMSTimeout does.
func KMSPublicKey(ctx context.Context, ref string, opts ...KMSOption) (*PublicKey, error) {
	_, pub, err := openKMS(ctx, ref, opts)
	if err != nil {
		return nil, err
	}
	return NewPublicKey(pub)
}

// LoadPublicKey loads the public key ref names: a PEM file, "env://VAR" or a KMS URI.
func LoadPublicKey(ctx context.Context, ref string, env LookupEnv, opts ...KMSOption) (*PublicKey, error) {
	if ref == "" {
		return nil, errors.New("no key given")
	}
	if IsKMS(ref) {
		return KMSPublicKey(ctx, ref, opts...)
	}
	raw, err := readRef(ref, env)
	if err != nil {
		return nil, err
	}
	k, err := ParsePublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", ref, err)
	}
	return k, nil
}

// MaxKeyFileSize caps a key file; PEM keys are a few kilobytes at most.
const MaxKeyFileSize = 64 << 10

// ReadFile reads a key file of at most MaxKeyFileSize bytes. Only regular files (or links
// to them, as Kubernetes mounts Secrets) are read: a FIFO or device would block or never end.
func ReadFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > MaxKeyFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes, too large for a key", path, MaxKeyFileSize)
	}
	return b, nil
}

// getKMS opens the KMS key ref names with a linked provider, or a plugin when allowed.
func getKMS(ctx context.Context, ref string, opts []KMSOption) (kms.SignerVerifier, error) {
	var o kmsOptions
	for _, opt := range opts {
		opt(&o)
	}
	// sigstore's kms.Get falls back to executing "sigstore-kms-<scheme>" from PATH for any
	// reference no registered provider claims; decide here, before it can.
	providers := kms.SupportedProviders()
	slices.Sort(providers)
	if len(providers) == 0 {
		providers = []string{"none"} // built with -tags no_kms
	}
	linked := slices.ContainsFunc(providers, func(p string) bool { return strings.HasPrefix(ref, p) })
	if !linked && !o.plugins {
		return nil, fmt.Errorf("no KMS provider for %q in this build (linked: %v); sigstore-kms-* plugins are not run unless allowed (keys.allowKMSPlugins)",
			ref, providers)
	}
	sv, err := kms.Get(ctx, ref, crypto.SHA256)
	if err != nil {
		if _, ok := errors.AsType[*kms.ProviderNotFoundError](err); ok {
			return nil, fmt.Errorf("no KMS provider for %q in this build (linked: %v): %w", ref, providers, err)
		}
		return nil, fmt.Errorf("kms key %s: %w", ref, err)
	}
	return sv, nil
}

// openKMS opens the KMS key ref names and fetches its public key within ctx's deadline
// (DefaultKMSTimeout when it has none): providers do network I/O that does not always
// honour ctx, so a provider that hangs is left behind rather than waited for.
func openKMS(ctx context.Context, ref string, opts []KMSOption) (kms.SignerVerifier, crypto.PublicKey, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultKMSTimeout)
		defer cancel()
	}
	type opened struct {
		sv  kms.SignerVerifier
		pub crypto.PublicKey
		err error
	}
	done := make(chan opened, 1)
	go func() {
		sv, err := getKMS(ctx, ref, opts)
		if err != nil {
			done <- opened{err: err}
			return
		}
		pub, err := sv.PublicKey(options.WithContext(ctx))
		if err != nil {
			err = fmt.Errorf("kms key %s: public key: %w", ref, err)
		}
		done <- opened{sv, pub, err}
	}()
	select {
	case o := <-done:
		return o.sv, o.pub, o.err
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("kms key %s: %w", ref, ctx.Err())
	}
}

// CreateKMSKey creates a key in the KMS ref names with the provider's default algorithm and
// returns its public key as PEM.
func CreateKMSKey(ctx context.Context, ref string, opts ...KMSOption) ([]byte, error) {
	if !IsKMS(ref) {
		return nil, fmt.Errorf("%q is not a KMS URI (%s)", ref, strings.Join(KMSSchemes, ", "))
	}
	sv, err := getKMS(ctx, ref, opts)
	if err != nil {
		return nil, err
	}
	pub, err := sv.CreateKey(ctx, sv.DefaultAlgorithm())
	if err != nil {
		return nil, fmt.Errorf("create kms key %s: %w", ref, err)
	}
	return cryptoutils.MarshalPublicKeyToPEM(pub)
}

// PublicKeyPEM returns the PEM "PUBLIC KEY" of pub.
func PublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	return cryptoutils.MarshalPublicKeyToPEM(pub)
}

func readRef(ref string, env LookupEnv) ([]byte, error) {
	if name, ok := strings.CutPrefix(ref, envScheme); ok {
		if env == nil {
			return nil, fmt.Errorf("key %s: no environment", ref)
		}
		v, ok := env(name)
		if !ok || v == "" {
			return nil, fmt.Errorf("key %s: environment variable %s is not set", ref, name)
		}
		return []byte(v), nil
	}
	b, err := ReadFile(ref)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	return b, nil
}
