package trustroot

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// MaxCertificates bounds the certificates read from one PEM file.
const MaxCertificates = 100

// PKI returns trusted material for a PKI of your own: its certificate authorities are roots
// (each a trust anchor, without validity window beyond the certificates' own) with the
// intermediates; its transparency logs, CT logs and timestamp authorities are those of logs,
// none when logs is nil.
func PKI(roots, intermediates []*x509.Certificate, logs root.TrustedMaterial) (root.TrustedMaterial, error) {
	if len(roots) == 0 {
		return nil, errors.New("no root certificate")
	}
	m := &pki{TrustedMaterial: logs}
	if logs == nil {
		m.TrustedMaterial = &root.BaseTrustedMaterial{}
	}
	for _, rc := range roots {
		if !rc.IsCA {
			return nil, fmt.Errorf("%q is not a CA certificate", rc.Subject)
		}
		m.cas = append(m.cas, &root.FulcioCertificateAuthority{Root: rc, Intermediates: intermediates})
	}
	return m, nil
}

type pki struct {
	root.TrustedMaterial
	cas []root.CertificateAuthority
}

func (m *pki) FulcioCertificateAuthorities() []root.CertificateAuthority { return m.cas }

// ReadCertificates reads PEM certificates from the file src or, when src is PEM data itself,
// from src; at least one, at most MaxCertificates.
func ReadCertificates(src string) ([]*x509.Certificate, error) {
	b := []byte(src)
	if !strings.HasPrefix(strings.TrimSpace(src), "-----BEGIN") {
		f, err := os.Open(src)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if b, err = io.ReadAll(io.LimitReader(f, MaxTrustedRootSize)); err != nil {
			return nil, err
		}
	}
	certs, err := cryptoutils.UnmarshalCertificatesFromPEMLimited(bytes.TrimSpace(b), MaxCertificates)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}

// SplitChain separates a PEM chain as cosign's --certificate-chain gives it (intermediates …
// root) into the self-signed roots and the intermediates.
func SplitChain(chain []*x509.Certificate) (roots, intermediates []*x509.Certificate) {
	for _, c := range chain {
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			roots = append(roots, c)
		} else {
			intermediates = append(intermediates, c)
		}
	}
	return roots, intermediates
}
