package trustroot_test

import (
	"testing"
	"time"

	"github.com/portcullis/portcullis/verify/trustroot"
)

// FuzzParse feeds arbitrary bytes as a trusted_root.json: an error or a root, never a panic,
// and a root always has a digest and material.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[{"baseUrl":"x","hashAlgorithm":"SHA2_256","publicKey":{"rawBytes":"AAAA","keyDetails":"PKIX_ECDSA_P256_SHA_256"},"logId":{"keyId":"AA=="}}]}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","certificateAuthorities":[{"certChain":{"certificates":[{"rawBytes":"MIIB"}]}}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := trustroot.Parse("fuzz", "fuzz", b, time.Time{})
		if err != nil {
			return
		}
		if r.Digest() == "" || r.Material() == nil {
			t.Fatalf("root without digest or material: %+v", r)
		}
	})
}

// FuzzReadCertificates feeds arbitrary PEM data as certificate roots: no panic.
func FuzzReadCertificates(f *testing.F) {
	f.Add("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	f.Add("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\n")
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) == 0 || s[0] != '-' {
			s = "-----BEGIN" + s // never a file name
		}
		certs, err := trustroot.ReadCertificates(s)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
	})
}
