package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/internal/keys"
)

func newGenerateKeyPair(e *cliEnv) *cobra.Command {
	var prefix, kmsRef string
	var yes bool
	cmd := &cobra.Command{
		Use:   "generate-key-pair",
		Short: "Generate an encrypted ECDSA P-256 key pair for signing (as cosign generate-key-pair)",
		Long: `Writes <prefix>.key, the private key encrypted with a password as cosign does
("ENCRYPTED SIGSTORE PRIVATE KEY"), and <prefix>.pub. The password comes from COSIGN_PASSWORD
(may be empty) or, on a terminal, a prompt. With --kms, the key is created in the key
management service and only <prefix>.pub is written.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			errw := cmd.ErrOrStderr()
			privPath, pubPath := prefix+".key", prefix+".pub"
			if kmsRef != "" {
				pub, err := keys.CreateKMSKey(cmd.Context(), kmsRef)
				if err != nil {
					return err
				}
				if err := checkOverwrite(e, cmd, yes, pubPath); err != nil {
					return err
				}
				if err := os.WriteFile(pubPath, pub, 0o644); err != nil { //nolint:gosec // a public key
					return err
				}
				fmt.Fprintln(errw, "Public key written to", pubPath)
				return nil
			}
			if err := checkOverwrite(e, cmd, yes, privPath, pubPath); err != nil {
				return err
			}
			pw, err := e.passFunc(errw)(true)
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
			fmt.Fprintln(errw, "Private key written to", privPath)
			if err := os.WriteFile(pubPath, pub, 0o644); err != nil { //nolint:gosec // a public key
				return err
			}
			fmt.Fprintln(errw, "Public key written to", pubPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&prefix, "output-key-prefix", "cosign", "name used for generated .pub and .key files")
	cmd.Flags().StringVar(&kmsRef, "kms", "", "create the key in a KMS: awskms://…, gcpkms://…, azurekms://…, hashivault://…")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "overwrite existing key files without asking")
	return cmd
}

// checkOverwrite asks before replacing any of paths that exists.
func checkOverwrite(e *cliEnv, cmd *cobra.Command, yes bool, paths ...string) error {
	for _, p := range paths {
		_, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := e.confirm(cmd.ErrOrStderr(), yes, fmt.Sprintf("file %s already exists; overwrite?", p), "--yes to overwrite"); err != nil {
			return err
		}
	}
	return nil
}
