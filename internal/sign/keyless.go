package sign

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgsign "github.com/sigstore/sigstore-go/pkg/sign"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/portcullis/portcullis/internal/cosign"
)

// Rekor is a transparency log to record keyless signatures in.
type Rekor struct {
	URL string
	// Version is the Rekor API's major version: 1 (rekor) or 2 (rekor-tiles).
	Version uint32
}

// Services are the sigstore services a keyless signature is made with.
type Services struct {
	// Fulcio is the certificate authority's URL (required).
	Fulcio string
	// Rekor are the transparency logs that record the signature (none: no log entry).
	Rekor []Rekor
	// TSA are RFC 3161 timestamp authorities' URLs (…/api/v1/timestamp) that timestamp it.
	TSA []string
}

// Validate checks that the services can make a signature that verifies after the 10-minute
// certificate expired: a CA, and a proof of the signing time (a timestamp or a log entry).
func (s Services) Validate() error {
	if s.Fulcio == "" {
		return errors.New("keyless signing needs a Fulcio URL")
	}
	if len(s.Rekor) == 0 && len(s.TSA) == 0 {
		return errors.New("keyless signing needs a timestamp authority or a Rekor log: without a proof of the signing time the signature stops verifying when its 10-minute certificate expires")
	}
	for _, r := range s.Rekor {
		if r.Version != 1 && r.Version != 2 {
			return fmt.Errorf("rekor %s: API version %d (want 1 or 2)", r.URL, r.Version)
		}
	}
	return nil
}

// ServicesFromSigningConfig selects the services of a cosign v3 signing config
// (signing_config.json, media type application/vnd.dev.sigstore.signingconfig.v0.2+json)
// valid at now, as cosign does: one Fulcio, the Rekor logs and TSAs its selectors name.
func ServicesFromSigningConfig(b []byte, now time.Time) (Services, error) {
	sc, err := root.NewSigningConfigFromJSON(b)
	if err != nil {
		return Services{}, fmt.Errorf("signing config: %w", err)
	}
	var s Services
	ca, err := root.SelectService(sc.FulcioCertificateAuthorityURLs(), sgsign.FulcioAPIVersions, now)
	if err != nil {
		return Services{}, fmt.Errorf("signing config: fulcio: %w", err)
	}
	s.Fulcio = ca.URL
	if len(sc.RekorLogURLs()) > 0 {
		logs, err := root.SelectServices(sc.RekorLogURLs(), sc.RekorLogURLsConfig(), sgsign.RekorAPIVersions, now)
		if err != nil {
			return Services{}, fmt.Errorf("signing config: rekor: %w", err)
		}
		for _, l := range logs {
			s.Rekor = append(s.Rekor, Rekor{URL: l.URL, Version: l.MajorAPIVersion})
		}
	}
	if len(sc.TimestampAuthorityURLs()) > 0 {
		tsas, err := root.SelectServices(sc.TimestampAuthorityURLs(), sc.TimestampAuthorityURLsConfig(), sgsign.TimestampAuthorityAPIVersions, now)
		if err != nil {
			return Services{}, fmt.Errorf("signing config: tsa: %w", err)
		}
		for _, t := range tsas {
			s.TSA = append(s.TSA, t.URL)
		}
	}
	return s, s.Validate()
}

// Keyless signs with a fresh key for each signature, certified for an OIDC identity by Fulcio,
// timestamped and logged by the services' TSAs and Rekor logs (sigstore-go's sign package
// speaks to them).
type Keyless struct {
	token     string
	services  Services
	trusted   root.TrustedMaterial
	transport http.RoundTripper
}

// KeylessOption configures NewKeyless.
type KeylessOption func(*Keyless)

// WithTrustedRoot verifies each signature against tm (the CA, the SCT, the log entries and the
// timestamps) before it is returned. Without it what the services returned is not checked.
func WithTrustedRoot(tm root.TrustedMaterial) KeylessOption {
	return func(k *Keyless) { k.trusted = tm }
}

// WithTransport is the HTTP transport to Fulcio and the TSAs (default: http.DefaultTransport).
func WithTransport(rt http.RoundTripper) KeylessOption {
	return func(k *Keyless) { k.transport = rt }
}

// NewKeyless returns a keyless signer for the OIDC identity token (a JWT whose audience is
// "sigstore") and the services.
func NewKeyless(token string, s Services, opts ...KeylessOption) (*Keyless, error) {
	if token == "" {
		return nil, errors.New("keyless signing needs an OIDC identity token")
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	k := &Keyless{token: token, services: s}
	for _, o := range opts {
		o(k)
	}
	return k, nil
}

func (k *Keyless) sign(ctx context.Context, content sgsign.Content, rekor []Rekor) (*protobundle.Bundle, error) {
	kp, err := sgsign.NewEphemeralKeypair(nil)
	if err != nil {
		return nil, fmt.Errorf("ephemeral key: %w", err)
	}
	opts := sgsign.BundleOptions{
		CertificateProvider:        sgsign.NewFulcio(&sgsign.FulcioOptions{BaseURL: k.services.Fulcio, Transport: k.transport, Retries: 1}),
		CertificateProviderOptions: &sgsign.CertificateProviderOptions{IDToken: k.token},
		Context:                    ctx,
	}
	for _, u := range k.services.TSA {
		opts.TimestampAuthorities = append(opts.TimestampAuthorities, sgsign.NewTimestampAuthority(&sgsign.TimestampAuthorityOptions{URL: u, Transport: k.transport, Retries: 1}))
	}
	for _, r := range rekor {
		opts.TransparencyLogs = append(opts.TransparencyLogs, sgsign.NewRekor(&sgsign.RekorOptions{BaseURL: r.URL, Version: r.Version, Retries: 1}))
	}
	if k.trusted != nil {
		opts.TrustedRoot = k.trusted
	}
	b, err := sgsign.Bundle(content, kp, opts)
	if err != nil {
		return nil, fmt.Errorf("keyless signing: %w", err)
	}
	return b, nil
}

// Bundle signs digest d as cosign v3 signs keylessly: a sigstore bundle v0.3 holding a DSSE
// envelope over the in-toto statement with cosign's signing predicate (annotations as subject
// annotations), the Fulcio certificate, the timestamps and the log entries.
func (k *Keyless) Bundle(ctx context.Context, d v1.Hash, annotations map[string]string) ([]byte, error) {
	stmt, err := Statement(d, annotations)
	if err != nil {
		return nil, err
	}
	b, err := k.sign(ctx, &sgsign.DSSEData{Data: stmt, PayloadType: cosign.PayloadTypeInToto}, k.services.Rekor)
	if err != nil {
		return nil, err
	}
	return protojson.Marshal(b)
}

// LegacySignature is a keyless signature in cosign's legacy layout.
type LegacySignature struct {
	// Sig is the raw signature over the payload.
	Sig []byte
	// Cert holds the PEM certificate, the chain when the trusted root names the CA, and the
	// timestamp.
	Cert *Certificate
}

// Legacy signs the simple-signing payload pl for cosign's legacy layout: the Fulcio
// certificate and an RFC 3161 timestamp of the signature go into the layer's annotations.
// A Rekor log cannot be used: the layout records only a Rekor v1 entry's signed entry
// timestamp, which portcullis does not write; use Bundle for logged signatures.
func (k *Keyless) Legacy(ctx context.Context, pl []byte) (LegacySignature, error) {
	if len(k.services.Rekor) > 0 {
		return LegacySignature{}, errors.New("a keyless signature in the legacy layout is timestamped only: portcullis does not record it in Rekor (use the bundle format, or no Rekor log)")
	}
	b, err := k.sign(ctx, &sgsign.PlainData{Data: pl}, nil)
	if err != nil {
		return LegacySignature{}, err
	}
	vm := b.GetVerificationMaterial()
	leaf := vm.GetCertificate().GetRawBytes()
	sig := b.GetMessageSignature().GetSignature()
	tss := vm.GetTimestampVerificationData().GetRfc3161Timestamps()
	if len(leaf) == 0 || len(sig) == 0 || len(tss) == 0 {
		return LegacySignature{}, errors.New("keyless signing: no certificate, signature or timestamp in what the services returned")
	}
	ts, err := json.Marshal(struct{ SignedRFC3161Timestamp []byte }{tss[0].GetSignedTimestamp()})
	if err != nil {
		return LegacySignature{}, err
	}
	cert := &Certificate{Leaf: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf}), RFC3161Timestamp: ts}
	cert.Chain, err = k.chain(leaf)
	if err != nil {
		return LegacySignature{}, err
	}
	return LegacySignature{Sig: sig, Cert: cert}, nil
}

// chain is the PEM chain (intermediates, root) of the trusted root's Fulcio CA that issued
// leaf, for verifiers that take it from the signature (cosign v2); nil without a trusted root.
func (k *Keyless) chain(leafDER []byte) ([]byte, error) {
	if k.trusted == nil {
		return nil, nil
	}
	leaf, err := x509.ParseCertificate(leafDER)
	if err != nil {
		return nil, fmt.Errorf("fulcio certificate: %w", err)
	}
	for _, ca := range k.trusted.FulcioCertificateAuthorities() {
		f, ok := ca.(*root.FulcioCertificateAuthority)
		if !ok || f.Root == nil {
			continue
		}
		roots, inters := x509.NewCertPool(), x509.NewCertPool()
		roots.AddCert(f.Root)
		for _, c := range f.Intermediates {
			inters.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: leaf.NotBefore,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}); err != nil {
			continue
		}
		var out []byte
		for _, c := range append(append([]*x509.Certificate{}, f.Intermediates...), f.Root) {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		return out, nil
	}
	return nil, errors.New("the certificate Fulcio issued does not chain to a CA of the trusted root")
}
