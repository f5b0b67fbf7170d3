package sign_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	cosignname "github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/internal/sign"
	"github.com/portcullis/portcullis/internal/testtool"
)

// newRegistry starts an in-process registry; without referrers it answers 404 on the
// referrers API, like distribution v3.1.2, so writers fall back to the tag schema.
func newRegistry(t *testing.T, referrers bool) string {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(referrers))
	h := http.Handler(reg)
	if !referrers {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/referrers/") {
				http.NotFound(w, r)
				return
			}
			reg.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func keyPair(t *testing.T, dir string) (signature.SignerVerifier, crypto.PublicKey, string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "cosign.pub")
	if err := os.WriteFile(p, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return sv, priv.Public(), p
}

// sigLayers checks that the legacy signature manifest at tag has want layers.
func sigLayers(t *testing.T, tag name.Tag, want int) {
	t.Helper()
	img, err := remote.Image(tag)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != want {
		t.Fatalf("%s has %d signature layers, want %d", tag, len(layers), want)
	}
}

// TestCosignVerifiesWhatWeSign signs with this package and checks the result with the real
// cosign v2 and v3, in both formats, with and without the referrers API upstream.
func TestCosignVerifiesWhatWeSign(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		cosign    string
		bundle    bool
		referrers bool
	}{
		{"v3 legacy", "cosign3", false, false},
		{"v3 bundle, referrers tag schema", "cosign3", true, false},
		{"v3 bundle, referrers API", "cosign3", true, true},
		{"v2 legacy", "cosign2", false, false},
		{"v2 bundle", "cosign2", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cosign := testtool.Path(t, tc.cosign)
			dir := t.TempDir()
			host := newRegistry(t, tc.referrers)
			img, _ := random.Image(512, 1)
			ref, _ := name.ParseReference(host+"/demo/app:v1", name.Insecure)
			if err := remote.Write(ref, img); err != nil {
				t.Fatal(err)
			}
			d, _ := img.Digest()
			dref := ref.Context().Digest(d.String())
			sv, pub, pubPath := keyPair(t, dir)
			ann := map[string]string{"env": "prod"}
			if tc.bundle {
				mt, _ := img.MediaType()
				raw, _ := img.RawManifest()
				if _, err := sign.Bundle(ctx, ref.Context(), v1.Descriptor{MediaType: mt, Digest: d, Size: int64(len(raw))}, sv, pub, ann); err != nil {
					t.Fatal(err)
				}
			} else {
				if _, err := sign.Legacy(ctx, dref, name.Repository{}, sv, ann); err != nil {
					t.Fatal(err)
				}
				// Signing again with the same key adds nothing; another key adds a layer.
				if _, err := sign.Legacy(ctx, dref, name.Repository{}, sv, ann); err != nil {
					t.Fatal(err)
				}
				sigLayers(t, ref.Context().Tag(cosignname.AttachmentTag(digest.Digest(d.String()), cosignname.SuffixSignature)), 1)
				other, _, _ := keyPair(t, t.TempDir())
				if _, err := sign.Legacy(ctx, dref, name.Repository{}, other, ann); err != nil {
					t.Fatal(err)
				}
				sigLayers(t, ref.Context().Tag(cosignname.AttachmentTag(digest.Digest(d.String()), cosignname.SuffixSignature)), 2)
			}
			args := []string{"verify", "--key", pubPath, "--insecure-ignore-tlog", "--allow-http-registry"}
			if tc.bundle && tc.cosign == "cosign2" {
				root := filepath.Join(dir, "trusted_root.json")
				testtool.Cosign(t, cosign, nil, "trusted-root", "create", "--out", root)
				args = append(args, "--trusted-root", root, "--new-bundle-format")
			}
			if tc.cosign == "cosign3" || !tc.bundle {
				args = append(args, "-a", "env=prod")
			}
			testtool.Cosign(t, cosign, nil, append(args, dref.String())...)
			if tc.cosign == "cosign3" || !tc.bundle {
				out, err := testtool.Run(t, "", cosign, nil, append(args[:len(args)-2], "-a", "env=dev", dref.String())...)
				if err == nil {
					t.Errorf("cosign accepted a wrong annotation:\n%s", out)
				}
			}
		})
	}
}

// TestAttachLegacyAppends attaches signatures one after another to one image's ".sig" tag:
// each new signature is a layer added after the others, with the certificate material it
// came with; the same payload with the same signature is not added again.
func TestAttachLegacyAppends(t *testing.T) {
	ctx := context.Background()
	host := newRegistry(t, false)
	ref, _ := name.ParseReference(host + "/app:v1")
	img := testtool.RandomImage(t, 64, 1)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	target := ref.Context().Digest(d.String())
	pl, err := sign.LegacyPayload(target, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert := &sign.Certificate{Leaf: []byte("leaf"), Chain: []byte("chain"), RFC3161Timestamp: []byte(`{"SignedRFC3161Timestamp":"ts"}`)}
	for _, step := range []struct {
		name string
		sig  string
		cert *sign.Certificate
		// want is the signature annotation of each layer, in order, and the certificate
		// annotation of each ("" for none).
		want, wantCert []string
	}{
		{"first, with a certificate", "c2lnLTE=", cert, []string{"c2lnLTE="}, []string{"leaf"}},
		{"the same again", "c2lnLTE=", cert, []string{"c2lnLTE="}, []string{"leaf"}},
		{"another, without", "c2lnLTI=", nil, []string{"c2lnLTE=", "c2lnLTI="}, []string{"leaf", ""}},
	} {
		t.Run(step.name, func(t *testing.T) {
			sig, _ := base64.StdEncoding.DecodeString(step.sig)
			tag, err := sign.AttachLegacy(ctx, target, name.Repository{}, pl, sig, step.cert)
			if err != nil {
				t.Fatal(err)
			}
			got, err := remote.Image(tag)
			if err != nil {
				t.Fatal(err)
			}
			mf, err := got.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			var sigs, certs []string
			for _, l := range mf.Layers {
				sigs = append(sigs, l.Annotations[cosignname.AnnotationSignature])
				certs = append(certs, l.Annotations[cosignname.AnnotationCertificate])
				if l.Annotations[cosignname.AnnotationCertificate] != "" &&
					(l.Annotations[cosignname.AnnotationChain] != "chain" || l.Annotations[cosignname.AnnotationRFC3161Timestamp] != string(cert.RFC3161Timestamp)) {
					t.Errorf("layer %s has a certificate without its chain or timestamp: %v", l.Digest, l.Annotations)
				}
			}
			if !slices.Equal(sigs, step.want) || !slices.Equal(certs, step.wantCert) {
				t.Errorf("signatures %q with certificates %q, want %q with %q", sigs, certs, step.want, step.wantCert)
			}
		})
	}
}
