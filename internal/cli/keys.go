package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/portcullis/portcullis/internal/keys"
)

// KeyPairOptions are the flags of generate-key-pair.
type KeyPairOptions struct {
	// Prefix names the files: <Prefix>.key and <Prefix>.pub (default "cosign").
	Prefix string
	// KMS, when set, creates the key in a key management service; only the .pub is written.
	KMS string
	// Yes overwrites existing files without asking.
	Yes bool
}

// GenerateKeyPair writes an encrypted ECDSA P-256 key pair in cosign's format (or creates the
// key in a KMS and writes its public key), as cosign generate-key-pair does. The password
// comes from COSIGN_PASSWORD or the terminal.
func GenerateKeyPair(ctx context.Context, e Env, o KeyPairOptions) error {
	if o.Prefix == "" {
		o.Prefix = "cosign"
	}
	privPath, pubPath := o.Prefix+".key", o.Prefix+".pub"
	if o.KMS != "" {
		pub, err := keys.CreateKMSKey(ctx, o.KMS)
		if err != nil {
			return err
		}
		if err := e.checkOverwrite(o.Yes, pubPath); err != nil {
			return err
		}
		if err := os.WriteFile(pubPath, pub, 0o644); err != nil { //nolint:gosec // a public key
			return err
		}
		fmt.Fprintln(e.Stderr, "Public key written to", pubPath)
		return nil
	}
	if err := e.checkOverwrite(o.Yes, privPath, pubPath); err != nil {
		return err
	}
	pw, err := e.passFunc()(true)
	if err != nil {
		return err
	}
	priv, pub, err := keys.GenerateKeyPair(pw)
	if err != nil {
		return err
	}
	if err := os.WriteFile(privPath, priv, 0o600); err != nil {
		return err
	}
	fmt.Fprintln(e.Stderr, "Private key written to", privPath)
	if err := os.WriteFile(pubPath, pub, 0o644); err != nil { //nolint:gosec // a public key
		return err
	}
	fmt.Fprintln(e.Stderr, "Public key written to", pubPath)
	return nil
}

// checkOverwrite asks before replacing any of paths that exists.
func (e Env) checkOverwrite(yes bool, paths ...string) error {
	for _, p := range paths {
		_, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := e.confirm(yes, fmt.Sprintf("file %s already exists; overwrite?", p), "--yes to overwrite"); err != nil {
			return err
		}
	}
	return nil
}
