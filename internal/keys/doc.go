// Package keys reads and writes the key material of the cosign workflow: cosign's encrypted
// private key files, public key PEM files, and references to keys held elsewhere. It is the
// one public-key loader: the policy's authorities (policy.KeyConfig) and the CLI's --key
// both load keys here, so a key verifies the same way in the mirror and in
// "portcullis verify".
//
// # Public keys
//
// A public key is a PEM "PUBLIC KEY" (PKIX; "RSA PUBLIC KEY" is read too) or the public key
// of a KMS key. It is loaded as PublicKey: the verifier sigstore uses by default for its
// algorithm (what cosign uses: ECDSA P-256/384/521 with SHA-256/384/512, RSA PKCS#1 v1.5 with
// SHA-256, pure Ed25519; RSA under 2048 bits and other curves are refused) and its PKIX DER
// form, which is the same wherever the key came from. KMS keys verify locally with their
// public key, as file keys do. Key files are read up to MaxKeyFileSize (64 KiB), and only
// when they are regular files (a FIFO would block the reader).
//
// # Private key files
//
// A private key file is a PEM block of type "ENCRYPTED SIGSTORE PRIVATE KEY" (cosign ≥ 1.x;
// "ENCRYPTED COSIGN PRIVATE KEY" from older cosign is read too) whose body is the JSON that
// go-securesystemslib's encrypted.Encrypt makes of the PKCS#8 DER key: scrypt key derivation
// and NaCl secretbox. The password may be empty; an empty password still encrypts. Plain
// ("PRIVATE KEY", "EC PRIVATE KEY") keys are refused, as cosign refuses them: a key on disk is
// always encrypted. GenerateKeyPair makes ECDSA P-256 keys, as cosign generate-key-pair.
//
// # Key references
//
// Wherever the CLI takes --key, a reference is one of:
//
//   - "env://VAR": the variable VAR holds the PEM key itself;
//   - a KMS URI, "awskms://", "gcpkms://", "azurekms://", "hashivault://": the key is used
//     through sigstore/sigstore's kms package. Its providers register themselves when their
//     modules are blank-imported; that happens in package main only, so this package works
//     (and fails with an error naming the providers linked) without them. sigstore's kms.Get
//     would execute a "sigstore-kms-<scheme>" plugin from PATH for a reference no linked
//     provider claims; this package never lets it unless the caller passes WithKMSPlugins.
//     Opening a KMS key is bounded by the context's deadline (DefaultKMSTimeout without one);
//     a provider that does not answer is abandoned;
//   - anything else: a file path.
//
// The package reads no environment and no terminal by itself: callers pass a LookupEnv and a
// PassFunc, so that only main decides where passwords come from.
package keys
