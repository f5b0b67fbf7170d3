package cli_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/portcullis/portcullis/internal/cli"
	"github.com/portcullis/portcullis/internal/cosign"
)

// keylessSign signs img keylessly as subject with the virtual sigstore vs (a TSA timestamp,
// no log entry) and pushes the bundle as a referrer, as cosign v3 does.
func keylessSign(t *testing.T, vs *ca.VirtualSigstore, img name.Digest, subject string) {
	t.Helper()
	stmt := fmt.Appendf(nil, `{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":%q}}],"predicateType":%q,"predicate":{}}`,
		strings.TrimPrefix(img.DigestStr(), "sha256:"), cosign.PredicateTypeSign)
	e, err := vs.Attest(subject, "https://accounts.example.com", stmt)
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := e.VerificationContent()
	sc, _ := e.SignatureContent()
	ts, _ := e.Timestamps()
	env := sc.EnvelopeContent().RawEnvelope()
	sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	b, err := protojson.Marshal(&protobundle.Bundle{
		MediaType: cosign.MediaTypeSigstoreBundle,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content:                   &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
			TimestampVerificationData: &protobundle.TimestampVerificationData{Rfc3161Timestamps: []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: ts[0]}}},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{Payload: stmt, PayloadType: env.PayloadType, Signatures: []*protodsse.Signature{{Sig: sig}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	repo := img.Context()
	layer := static.NewLayer(b, types.MediaType(cosign.MediaTypeSigstoreBundle))
	empty := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	if err := remote.WriteLayer(repo, layer); err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(repo, empty); err != nil {
		t.Fatal(err)
	}
	ld, _ := layer.Digest()
	get, err := remote.Get(img)
	if err != nil {
		t.Fatal(err)
	}
	man, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": cosign.MediaTypeSigstoreBundle,
		"config":  map[string]any{"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
		"layers":  []any{map[string]any{"mediaType": cosign.MediaTypeSigstoreBundle, "size": len(b), "digest": ld.String()}},
		"subject": map[string]any{"mediaType": string(get.MediaType), "size": get.Size, "digest": img.DigestStr()},
	})
	if err := remote.Put(repo.Tag("bundle"), rawManifest(man)); err != nil {
		t.Fatal(err)
	}
}

type rawManifest []byte

func (m rawManifest) RawManifest() ([]byte, error)        { return m, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

func TestVerifyKeyless(t *testing.T) {
	ctx := context.Background()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), vs.CTLogs(), vs.TimestampingAuthorities(), vs.RekorLogs())
	if err != nil {
		t.Fatal(err)
	}
	trJSON, _ := tr.MarshalJSON()
	trFile := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(trFile, trJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	img := pushImage(t, newRegistry(t), "demo/app")
	keylessSign(t, vs, img, "alice@example.com")

	base := func(f func(*cli.VerifyOptions)) cli.VerifyOptions {
		o := cli.VerifyOptions{IgnoreTlog: true, Keyless: cli.KeylessVerifyOptions{
			TrustedRoot: trFile, CertIdentity: "alice@example.com", CertOIDCIssuer: "https://accounts.example.com",
			IgnoreSCT: true, UseSignedTimestamps: true,
		}}
		if f != nil {
			f(&o)
		}
		return o
	}
	for _, tc := range []struct {
		name string
		o    cli.VerifyOptions
		want string // "" for success
	}{
		{"identity and issuer", base(nil), ""},
		{"regexps", base(func(o *cli.VerifyOptions) {
			o.Keyless.CertIdentity, o.Keyless.CertIdentityRegexp = "", `^alice@example\.com$`
			o.Keyless.CertOIDCIssuer, o.Keyless.CertOIDCIssuerRegexp = "", `^https://accounts\.`
		}), ""},
		{"wrong identity", base(func(o *cli.VerifyOptions) { o.Keyless.CertIdentity = "bob@example.com" }), "subject alice@example.com is not bob@example.com"},
		{"wrong issuer", base(func(o *cli.VerifyOptions) { o.Keyless.CertOIDCIssuer = "https://github.com/login/oauth" }), "issuer https://accounts.example.com is not https://github.com/login/oauth"},
		{"SCT required", base(func(o *cli.VerifyOptions) { o.Keyless.IgnoreSCT = false }), "certificate has no SCT"},
		{"tlog required", base(func(o *cli.VerifyOptions) { o.IgnoreTlog = false }), "no Rekor entry"},
		{"no identity", base(func(o *cli.VerifyOptions) { o.Keyless.CertIdentity = "" }), "--certificate-identity or --certificate-identity-regexp is required"},
		{"no issuer", base(func(o *cli.VerifyOptions) { o.Keyless.CertOIDCIssuer = "" }), "--certificate-oidc-issuer or --certificate-oidc-issuer-regexp is required"},
		{"bad regexp", base(func(o *cli.VerifyOptions) { o.Keyless.CertIdentity, o.Keyless.CertIdentityRegexp = "", "(" }), "--certificate-identity-regexp"},
		{"key and identity", base(func(o *cli.VerifyOptions) { o.Key = "cosign.pub" }), "exclusive"},
		{"missing trusted root", base(func(o *cli.VerifyOptions) { o.Keyless.TrustedRoot = filepath.Join(t.TempDir(), "none.json") }), "--trusted-root"},
		{"its CA as --certificate-chain", base(func(o *cli.VerifyOptions) {
			fca := vs.FulcioCertificateAuthorities()[0].(*root.FulcioCertificateAuthority)
			p := filepath.Join(t.TempDir(), "chain.pem")
			var pemBuf bytes.Buffer
			for _, c := range append(fca.Intermediates, fca.Root) {
				fmt.Fprintf(&pemBuf, "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n", base64.StdEncoding.EncodeToString(c.Raw))
			}
			if err := os.WriteFile(p, pemBuf.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			o.Keyless.TrustedRoot, o.Keyless.CertChain, o.Keyless.UseSignedTimestamps = "", p, false
		}), ""},
		{"another CA", base(func(o *cli.VerifyOptions) {
			other, _, err := ca.GenerateRootCa()
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), "chain.pem")
			var pemBuf bytes.Buffer
			fmt.Fprintf(&pemBuf, "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n", base64.StdEncoding.EncodeToString(other.Raw))
			if err := os.WriteFile(p, pemBuf.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			o.Keyless.CertChain = p
		}), "certificate not issued by a CA of the given CA roots"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, out, errw := testEnv(nil)
			err := cli.Verify(ctx, e, tc.o, []string{img.String()})
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want one containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("verify: %v\n%s", err, errw)
			}
			var ps []map[string]any
			if err := json.Unmarshal(out.Bytes(), &ps); err != nil || len(ps) != 1 {
				t.Fatalf("verify printed %q (%v), want a JSON array of 1 payload", out, err)
			}
			if !strings.Contains(errw.String(), "Signed by alice@example.com (issuer https://accounts.example.com)") {
				t.Errorf("summary does not name the signer:\n%s", errw)
			}
		})
	}
}
