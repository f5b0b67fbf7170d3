package main

import (
	"github.com/spf13/pflag"

	"github.com/portcullis/portcullis/internal/cli"
)

// addKeylessSignFlags adds cosign's keyless signing flags (sign without --key) to fs.
func addKeylessSignFlags(fs *pflag.FlagSet, o *cli.KeylessOptions) {
	fs.StringVar(&o.IdentityToken, "identity-token", "", "OIDC identity token (audience sigstore) for the Fulcio certificate, or a file holding it (default: $SIGSTORE_ID_TOKEN, then GitHub Actions' ambient token)")
	fs.StringVar(&o.SigningConfig, "signing-config", "", "cosign v3 signing config (signing_config.json) naming Fulcio, Rekor and the timestamp authorities")
	fs.BoolVar(&o.UseSigningConfig, "use-signing-config", false, "fetch sigstore's signing config over TUF: not supported (offline), only false is accepted; use --signing-config")
	fs.StringVar(&o.FulcioURL, "fulcio-url", "", "Fulcio URL, without --signing-config")
	fs.StringVar(&o.RekorURL, "rekor-url", "", "Rekor (v1 API) URL to log the signature in, without --signing-config; Rekor v2 logs come from a signing config")
	fs.StringVar(&o.TimestampServerURL, "timestamp-server-url", "", "RFC 3161 timestamp authority URL (…/api/v1/timestamp), without --signing-config")
	fs.BoolVar(&o.TlogUpload, "tlog-upload", false, "log the signature in Rekor (needs --rekor-url; with --key only false is accepted)")
	fs.StringVar(&o.TrustedRoot, "trusted-root", "", "trusted_root.json the new keyless signature must verify against before it is pushed")
}
