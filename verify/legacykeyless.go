package verify

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// legacyMaterial is what a legacy signature layer carries beside its signature, from its
// annotations: the certificate, chain, Rekor bundle (SET) and RFC 3161 timestamp. Key
// authorities ignore it; keyless authorities need the certificate.
type legacyMaterial struct {
	cert, chain, rekorBundle, timestamp string
}

// maxChain bounds the certificates read from a chain annotation.
const maxChain = 10

// legacyEntity is a legacy keyless signature as sigstore-go sees it: a message signature
// over the simple signing payload, with its certificate, tlog entries and timestamps. It is
// what a v0.1 bundle would hold (inclusion promise, no proof).
type legacyEntity struct {
	content    sgverify.VerificationContent
	sig        sgverify.SignatureContent
	entries    []*tlog.Entry
	timestamps [][]byte
}

var _ sgverify.SignedEntity = (*legacyEntity)(nil)

func (e *legacyEntity) HasInclusionPromise() bool { return len(e.entries) > 0 }
func (e *legacyEntity) HasInclusionProof() bool   { return false }
func (e *legacyEntity) Version() (string, error)  { return "v0.1", nil }
func (e *legacyEntity) Timestamps() ([][]byte, error) {
	return e.timestamps, nil
}
func (e *legacyEntity) TlogEntries() ([]*tlog.Entry, error) { return e.entries, nil }
func (e *legacyEntity) VerificationContent() (sgverify.VerificationContent, error) {
	return e.content, nil
}
func (e *legacyEntity) SignatureContent() (sgverify.SignatureContent, error) {
	return e.sig, nil
}

// legacyCertificate is the leaf of a legacy signature and the intermediates of its chain
// annotation (never trust anchors: roots come from the trusted material).
type legacyCertificate struct {
	leaf          *x509.Certificate
	intermediates []*x509.Certificate
}

func (c *legacyCertificate) CompareKey(key any, _ root.TrustedMaterial) bool {
	x, ok := key.(*x509.Certificate)
	return ok && c.leaf.Equal(x)
}
func (c *legacyCertificate) ValidAtTime(t time.Time, _ root.TrustedMaterial) bool {
	return !c.leaf.NotAfter.Before(t) && !c.leaf.NotBefore.After(t)
}
func (c *legacyCertificate) Certificate() *x509.Certificate        { return c.leaf }
func (c *legacyCertificate) Intermediates() []*x509.Certificate    { return c.intermediates }
func (c *legacyCertificate) PublicKey() sgverify.PublicKeyProvider { return nil }

// newLegacyEntity reads the annotations of a legacy signature. An error is the reason the
// signature cannot satisfy a keyless authority.
func newLegacyEntity(c *candidate) (*legacyEntity, error) {
	sum := sha256.Sum256(c.payload)
	return newCertEntity(c.legacy, bundle.NewMessageSignature(sum[:], "SHA2_256", c.sig))
}

// newCertEntity is the certificate-signed entity of a legacy layer: sig (a message signature
// or a DSSE envelope) with the certificate, chain, Rekor bundle and timestamp of its
// annotations m. An error is the reason it cannot satisfy a keyless authority.
func newCertEntity(m legacyMaterial, sig sgverify.SignatureContent) (*legacyEntity, error) {
	if m.cert == "" {
		return nil, errors.New("signed with a key, not a certificate")
	}
	certs, err := cryptoutils.UnmarshalCertificatesFromPEMLimited([]byte(m.cert), 1)
	if err != nil || len(certs) != 1 {
		return nil, errors.New("certificate annotation is not one PEM certificate")
	}
	lc := &legacyCertificate{leaf: certs[0]}
	e := &legacyEntity{content: lc, sig: sig}
	if m.chain != "" {
		chain, err := cryptoutils.UnmarshalCertificatesFromPEMLimited([]byte(m.chain), maxChain)
		if err != nil {
			return nil, fmt.Errorf("chain annotation: %v", err)
		}
		for _, ca := range chain {
			// Self-signed certificates are roots: only the trusted material provides those.
			if ca.IsCA && !bytes.Equal(ca.RawIssuer, ca.RawSubject) {
				lc.intermediates = append(lc.intermediates, ca)
			}
		}
	}
	if m.rekorBundle != "" {
		entry, err := parseRekorBundle(m.rekorBundle)
		if err != nil {
			return nil, fmt.Errorf("rekor bundle annotation: %v", err)
		}
		e.entries = []*tlog.Entry{entry}
	}
	if m.timestamp != "" {
		var ts struct {
			SignedRFC3161Timestamp []byte `json:"SignedRFC3161Timestamp"`
		}
		if err := json.Unmarshal([]byte(m.timestamp), &ts); err != nil || len(ts.SignedRFC3161Timestamp) == 0 {
			return nil, errors.New("rfc3161timestamp annotation is not a timestamp")
		}
		e.timestamps = [][]byte{ts.SignedRFC3161Timestamp}
	}
	return e, nil
}

// parseRekorBundle reads cosign's Rekor bundle annotation into a tlog entry with its signed
// entry timestamp (the SET, verified by sigstore-go against the trusted root's logs).
func parseRekorBundle(s string) (*tlog.Entry, error) {
	var rb struct {
		SignedEntryTimestamp []byte `json:"SignedEntryTimestamp"`
		Payload              struct {
			Body           string `json:"body"`
			IntegratedTime int64  `json:"integratedTime"`
			LogIndex       int64  `json:"logIndex"`
			LogID          string `json:"logID"`
		} `json:"Payload"`
	}
	if err := json.Unmarshal([]byte(s), &rb); err != nil {
		return nil, err
	}
	body, err := base64.StdEncoding.DecodeString(rb.Payload.Body)
	if err != nil {
		return nil, fmt.Errorf("body: %v", err)
	}
	logID, err := hex.DecodeString(rb.Payload.LogID)
	if err != nil {
		return nil, fmt.Errorf("logID: %v", err)
	}
	if len(rb.SignedEntryTimestamp) == 0 {
		return nil, errors.New("no signed entry timestamp")
	}
	return tlog.NewEntry(body, rb.Payload.IntegratedTime, rb.Payload.LogIndex, logID, rb.SignedEntryTimestamp, nil) //nolint:staticcheck // Rekor v1 bundles are what the annotation holds
}

// checkLegacyKeyless checks one legacy signature against a keyless authority; it returns the
// signer and "" when verified, else a reason.
func checkLegacyKeyless(k *Keyless, want map[string]string, c *candidate, dgst digest.Digest) (string, string) {
	e, err := newLegacyEntity(c)
	if err != nil {
		return "", err.Error()
	}
	signer, reason := checkCertificate(k, e, sgverify.WithArtifact(bytes.NewReader(c.payload)))
	if reason != "" {
		return signer, reason
	}
	if r := checkLegacyClaims(want, c, dgst); r != "" {
		return signer, signer + ": " + r
	}
	return signer, ""
}
