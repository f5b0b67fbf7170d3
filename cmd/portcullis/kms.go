package main

// KMS providers for key references (--key awskms://…, gcpkms://…, azurekms://…,
// hashivault://…): each registers itself with sigstore/sigstore's kms package when imported.
// They are imported here, in main only, so that library packages carry no registrations.
import (
	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/azure"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/gcp"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault"
)
