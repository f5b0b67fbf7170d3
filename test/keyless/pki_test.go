package keyless

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// ca is a certificate with its key, able to issue certificates.
type ca struct {
	cert *x509.Certificate
	key  crypto.Signer
}

type certSpec struct {
	cn       string
	isCA     bool
	pathLen0 bool
	ku       x509.KeyUsage
	eku      []x509.ExtKeyUsage
	critEKU  bool // the EKU extension marked critical (RFC 3161 wants it for a TSA)
	emails   []string
	validFor time.Duration
}

// issue makes a certificate for pub per spec, signed by parent (self-signed when parent is
// nil, then key must be pub's private key).
func issue(parent *ca, key crypto.Signer, spec certSpec) (*ca, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 96))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"portcullis-keyless-test"}, CommonName: spec.cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(spec.validFor),
		KeyUsage:              spec.ku,
		BasicConstraintsValid: true,
		IsCA:                  spec.isCA,
		MaxPathLenZero:        spec.pathLen0,
		EmailAddresses:        spec.emails,
	}
	if !spec.critEKU {
		tmpl.ExtKeyUsage = spec.eku
	} else {
		// Go writes ExtKeyUsage non-critical; a TSA's must be critical, so write it by hand.
		oids := map[x509.ExtKeyUsage]asn1.ObjectIdentifier{x509.ExtKeyUsageTimeStamping: {1, 3, 6, 1, 5, 5, 7, 3, 8}}
		var seq []asn1.ObjectIdentifier
		for _, u := range spec.eku {
			seq = append(seq, oids[u])
		}
		val, err := asn1.Marshal(seq)
		if err != nil {
			return nil, err
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Critical: true, Value: val})
	}
	parentCert, parentKey := tmpl, key
	if parent != nil {
		parentCert, parentKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), parentKey)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", spec.cn, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &ca{cert: c, key: key}, nil
}

// pki is every key and certificate the stack and the tests use, written as PEM files in dir.
type pki struct {
	dir string
	// Fulcio's CA: a P-384 root and intermediate, like the public-good instance's.
	fulcioRoot, fulcioInter *ca
	// Bring-your-own PKI (cosign sign --certificate --certificate-chain): a P-256 root,
	// intermediate and leaf; other is a leaf from another root, with the same identity.
	byoRoot, byoInter, byoLeaf, otherLeaf *ca
}

// Paths of the files newPKI writes, relative to pki.dir.
const (
	fulcioChainPEM = "fulcio-chain.pem" // intermediate, root (Fulcio's order)
	fulcioRootPEM  = "fulcio-root.pem"
	fulcioKeyPEM   = "fulcio-inter.key" // PKCS#8
	tsaChainPEM    = "tsa-chain.pem"    // leaf, root
	tsaKeyPEM      = "tsa-leaf.key"
	ctKeyPEM       = "ctlog.key" // SEC1: tesseract takes nothing else
	ctPubPEM       = "ctlog.pub"
	rekorKeyPEM    = "rekor2.key" // ed25519 PKCS#8
	rekorPubPEM    = "rekor2.pub"
	byoRootPEM     = "byo-root.pem"
	byoChainPEM    = "byo-chain.pem" // intermediate, root
	byoLeafPEM     = "byo-leaf.pem"
	byoLeafKeyPEM  = "byo-leaf.key" // PKCS#8; cosign --key wants it imported first
	otherRootPEM   = "other-root.pem"
	otherLeafPEM   = "other-leaf.pem"
	otherLeafKey   = "other-leaf.key"
	byoIdentity    = "builder@example.com"
)

func newPKI(dir string) (*pki, error) {
	p := &pki{dir: dir}
	files := map[string][]byte{}
	p384 := func() *ecdsa.PrivateKey { k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader); return k }
	p256 := func() *ecdsa.PrivateKey { k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader); return k }
	const year = 365 * 24 * time.Hour
	caKU := x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	codeSigning := []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}
	var err error
	must := func(c *ca, e error) *ca {
		if err == nil {
			err = e
		}
		return c
	}

	k := p384()
	p.fulcioRoot = must(issue(nil, k, certSpec{cn: "fulcio-root", isCA: true, ku: caKU, validFor: 10 * year}))
	// Fulcio checks that an intermediate of its chain may issue code-signing certificates.
	p.fulcioInter = must(issue(p.fulcioRoot, p384(), certSpec{cn: "fulcio-intermediate", isCA: true, pathLen0: true, ku: caKU, eku: codeSigning, validFor: 10 * year}))

	tsaRoot := must(issue(nil, p256(), certSpec{cn: "tsa-root", isCA: true, ku: caKU, validFor: 10 * year}))
	tsaLeaf := must(issue(tsaRoot, p256(), certSpec{cn: "tsa-signer", ku: x509.KeyUsageDigitalSignature, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}, critEKU: true, validFor: 10 * year}))

	p.byoRoot = must(issue(nil, p256(), certSpec{cn: "byo-root", isCA: true, ku: caKU, validFor: 10 * year}))
	p.byoInter = must(issue(p.byoRoot, p256(), certSpec{cn: "byo-intermediate", isCA: true, pathLen0: true, ku: caKU, eku: codeSigning, validFor: 10 * year}))
	// One SAN: sigstore-go matches a single SAN.
	p.byoLeaf = must(issue(p.byoInter, p256(), certSpec{cn: "byo-signer", ku: x509.KeyUsageDigitalSignature, eku: codeSigning, emails: []string{byoIdentity}, validFor: year}))
	otherRoot := must(issue(nil, p256(), certSpec{cn: "other-root", isCA: true, ku: caKU, validFor: 10 * year}))
	p.otherLeaf = must(issue(otherRoot, p256(), certSpec{cn: "other-signer", ku: x509.KeyUsageDigitalSignature, eku: codeSigning, emails: []string{byoIdentity}, validFor: year}))
	if err != nil {
		return nil, err
	}

	certs := func(cs ...*ca) []byte {
		var b []byte
		for _, c := range cs {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})...)
		}
		return b
	}
	pkcs8 := func(k crypto.Signer) []byte {
		der, e := x509.MarshalPKCS8PrivateKey(k)
		if err == nil {
			err = e
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	pub := func(k crypto.PublicKey) []byte {
		der, e := x509.MarshalPKIXPublicKey(k)
		if err == nil {
			err = e
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	ctKey := p256()
	ctDER, err := x509.MarshalECPrivateKey(ctKey)
	if err != nil {
		return nil, err
	}
	rekorPub, rekorKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	files[fulcioChainPEM] = certs(p.fulcioInter, p.fulcioRoot)
	files[fulcioRootPEM] = certs(p.fulcioRoot)
	files[fulcioKeyPEM] = pkcs8(p.fulcioInter.key)
	files[tsaChainPEM] = certs(tsaLeaf, tsaRoot)
	files[tsaKeyPEM] = pkcs8(tsaLeaf.key)
	files[ctKeyPEM] = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ctDER})
	files[ctPubPEM] = pub(ctKey.Public())
	files[rekorKeyPEM] = pkcs8(rekorKey)
	files[rekorPubPEM] = pub(rekorPub)
	files[byoRootPEM] = certs(p.byoRoot)
	files[byoChainPEM] = certs(p.byoInter, p.byoRoot)
	files[byoLeafPEM] = certs(p.byoLeaf)
	files[byoLeafKeyPEM] = pkcs8(p.byoLeaf.key)
	files[otherRootPEM] = certs(otherRoot)
	files[otherLeafPEM] = certs(p.otherLeaf)
	files[otherLeafKey] = pkcs8(p.otherLeaf.key)
	if err != nil {
		return nil, err
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// path is the absolute path of one of newPKI's files.
func (p *pki) path(name string) string { return filepath.Join(p.dir, name) }
