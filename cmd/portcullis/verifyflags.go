package main

import (
	"github.com/spf13/pflag"

	"github.com/portcullis/portcullis/internal/cli"
)

// addKeylessVerifyFlags adds cosign verify's certificate flags (verification without --key).
func addKeylessVerifyFlags(fs *pflag.FlagSet, o *cli.KeylessVerifyOptions) {
	fs.StringVar(&o.CertIdentity, "certificate-identity", "", "the identity expected in a valid certificate's SAN (e-mail, URI); keyless verification needs it or --certificate-identity-regexp")
	fs.StringVar(&o.CertIdentityRegexp, "certificate-identity-regexp", "", "a regular expression (Go syntax, unanchored) the certificate's SAN must match")
	fs.StringVar(&o.CertOIDCIssuer, "certificate-oidc-issuer", "", "the OIDC issuer expected in a valid certificate, e.g. https://token.actions.githubusercontent.com")
	fs.StringVar(&o.CertOIDCIssuerRegexp, "certificate-oidc-issuer-regexp", "", "a regular expression the certificate's OIDC issuer must match")
	fs.StringVar(&o.GithubWorkflowTrigger, "certificate-github-workflow-trigger", "", "the GitHub workflow trigger expected in the certificate (e.g. push)")
	fs.StringVar(&o.GithubWorkflowSHA, "certificate-github-workflow-sha", "", "the GitHub workflow commit expected in the certificate")
	fs.StringVar(&o.GithubWorkflowName, "certificate-github-workflow-name", "", "the GitHub workflow name expected in the certificate")
	fs.StringVar(&o.GithubWorkflowRepository, "certificate-github-workflow-repository", "", "the GitHub repository expected in the certificate (owner/name)")
	fs.StringVar(&o.GithubWorkflowRef, "certificate-github-workflow-ref", "", "the GitHub workflow ref expected in the certificate (e.g. refs/heads/main)")
	fs.StringVar(&o.TrustedRoot, "trusted-root", "", "trusted_root.json (Fulcio CAs, Rekor logs, CT logs, TSAs); default: sigstore's public-good root over TUF")
	fs.StringVar(&o.CertChain, "certificate-chain", "", "PEM chain (intermediates … root) of your own CA that issued the signing certificate")
	fs.StringVar(&o.CARoots, "ca-roots", "", "PEM root certificates of your own CA")
	fs.StringVar(&o.CAIntermediates, "ca-intermediates", "", "PEM intermediate certificates of your own CA")
	fs.BoolVar(&o.UseSignedTimestamps, "use-signed-timestamps", false, "require an RFC 3161 timestamp from the trusted root's timestamp authorities")
	fs.BoolVar(&o.IgnoreSCT, "insecure-ignore-sct", false, "do not require an embedded SCT in the certificate")
}
