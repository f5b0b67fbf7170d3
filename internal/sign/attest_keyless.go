package sign

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	sgsign "github.com/sigstore/sigstore-go/pkg/sign"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/portcullis/portcullis/internal/cosign"
)

// AttestationBundle signs att keylessly as cosign v3 attest does: a sigstore bundle v0.3
// holding the DSSE envelope of the statement, the Fulcio certificate, the timestamps and the
// log entries of the services.
func (k *Keyless) AttestationBundle(ctx context.Context, att Attestation) ([]byte, error) {
	b, err := k.sign(ctx, &sgsign.DSSEData{Data: att.Statement, PayloadType: cosign.PayloadTypeInToto}, k.services.Rekor)
	if err != nil {
		return nil, err
	}
	return protojson.Marshal(b)
}

// LegacyAttestation is a keyless attestation in cosign's legacy ".att" layout.
type LegacyAttestation struct {
	// Envelope is the DSSE envelope's JSON, the layer.
	Envelope []byte
	// Cert holds the PEM certificate, the chain when the trusted root names the CA, and the
	// RFC 3161 timestamp of the envelope's signature.
	Cert *Certificate
}

// AttestationEnvelope signs att keylessly for the legacy ".att" layout: the DSSE envelope,
// and the Fulcio certificate and an RFC 3161 timestamp of the envelope's signature for the
// layer's annotations, as cosign v3 attest --new-bundle-format=false writes them and as
// portcullis's verifier checks them. (cosign's verify-attestation checks a legacy
// attestation's timestamp over the layer instead, so it refuses these with
// --use-signed-timestamps, as it refuses cosign's own: the bundle format has no such gap.)
// As for Legacy, a Rekor log cannot be used.
func (k *Keyless) AttestationEnvelope(ctx context.Context, att Attestation) (LegacyAttestation, error) {
	if len(k.services.Rekor) > 0 {
		return LegacyAttestation{}, errors.New("a keyless attestation in the legacy layout is timestamped only: portcullis does not record it in Rekor (use the bundle format, or no Rekor log)")
	}
	b, err := k.sign(ctx, &sgsign.DSSEData{Data: att.Statement, PayloadType: cosign.PayloadTypeInToto}, nil)
	if err != nil {
		return LegacyAttestation{}, err
	}
	vm := b.GetVerificationMaterial()
	leaf := vm.GetCertificate().GetRawBytes()
	env := b.GetDsseEnvelope()
	tss := vm.GetTimestampVerificationData().GetRfc3161Timestamps()
	if len(leaf) == 0 || len(env.GetSignatures()) == 0 || len(tss) == 0 {
		return LegacyAttestation{}, errors.New("keyless signing: no certificate, signature or timestamp in what the services returned")
	}
	out := dsse.Envelope{PayloadType: env.GetPayloadType(), Payload: base64.StdEncoding.EncodeToString(env.GetPayload())}
	for _, s := range env.GetSignatures() {
		out.Signatures = append(out.Signatures, dsse.Signature{KeyID: s.GetKeyid(), Sig: base64.StdEncoding.EncodeToString(s.GetSig())})
	}
	envJSON, err := json.Marshal(out)
	if err != nil {
		return LegacyAttestation{}, err
	}
	ts, err := json.Marshal(struct{ SignedRFC3161Timestamp []byte }{tss[0].GetSignedTimestamp()})
	if err != nil {
		return LegacyAttestation{}, err
	}
	cert := &Certificate{Leaf: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf}), RFC3161Timestamp: ts}
	if cert.Chain, err = k.chain(leaf); err != nil {
		return LegacyAttestation{}, err
	}
	return LegacyAttestation{Envelope: envJSON, Cert: cert}, nil
}
