//go:build !no_kms

package main

// KMS providers for key references (--key awskms://…, gcpkms://…, azurekms://…,
// hashivault://… or openbao://…): each registers itself with sigstore/sigstore's kms package
// when imported. They are imported here, in main only, so that library packages carry no
// registrations. No other scheme is served: internal/keys refuses references no linked
// provider claims rather than let sigstore run a sigstore-kms-* plugin from PATH (the
// configuration's keys.allowKMSPlugins opts in for serve). Built with -tags no_kms, the
// binary links none: it idles about 6 MiB smaller, and every KMS reference is refused.
import (
	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/azure"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/gcp"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault"
)
