package verify

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
)

// validate reports a Keyless that cannot verify anything; the authority is then never
// satisfied and its reason says why.
func (k *Keyless) validate() error {
	switch {
	case k.Material == nil:
		return errors.New("no trusted material")
	case len(k.Identities) == 0:
		return errors.New("no identities")
	case k.Tlog < 0 || k.Timestamps < 0 || k.CTLog < 0:
		return errors.New("negative threshold")
	}
	return nil
}

// verifier builds the sigstore-go verifier for k. The signing time must be proven by a
// transparency log entry's integrated time or a timestamp authority when either is required;
// when neither is, the certificate must be valid now.
func (k *Keyless) verifier() (*sgverify.Verifier, error) {
	opts := []sgverify.VerifierOption{sgverify.WithoutStatementPredicate()}
	if k.Tlog > 0 {
		opts = append(opts, sgverify.WithTransparencyLog(k.Tlog))
	}
	if k.Timestamps > 0 {
		opts = append(opts, sgverify.WithSignedTimestamps(k.Timestamps))
	}
	if k.CTLog > 0 {
		opts = append(opts, sgverify.WithSignedCertificateTimestamps(k.CTLog))
	}
	if k.Tlog > 0 || k.Timestamps > 0 {
		opts = append(opts, sgverify.WithObserverTimestamps(1))
	} else {
		opts = append(opts, sgverify.WithCurrentTime())
	}
	return sgverify.NewVerifier(k.Material, opts...)
}

// checkCertificate verifies a certificate-signed entity against k with sigstore-go and
// matches the signer. It returns the signer description and "" when the entity verifies,
// else a reason that names the signer when it is known.
func checkCertificate(k *Keyless, entity sgverify.SignedEntity, artifact sgverify.ArtifactPolicyOption) (signer, reason string) {
	if err := k.validate(); err != nil {
		return "", "unusable keyless authority: " + err.Error()
	}
	vc, err := entity.VerificationContent()
	if err != nil {
		return "", "invalid verification material: " + err.Error()
	}
	cert := vc.Certificate()
	if cert == nil {
		return "", "signed with a key, not a certificate"
	}
	sum, err := certificate.SummarizeCertificate(cert)
	if err != nil {
		return "", "unreadable certificate: " + err.Error()
	}
	signer = describeSigner(sum)
	sv, err := k.verifier()
	if err != nil {
		return signer, "cannot build verifier: " + err.Error()
	}
	// Identities are matched below, by portcullis, so that a denial says what did not match;
	// everything else (chain, SCTs, log entries, timestamps, signature) is sigstore-go's.
	res, err := sv.Verify(entity, sgverify.NewPolicy(artifact, sgverify.WithoutIdentitiesUnsafe()))
	if err != nil {
		return signer, signer + ": " + explain(k, entity, cert, err)
	}
	if res.Signature == nil || res.Signature.Certificate == nil {
		return signer, signer + ": verified without a certificate"
	}
	if why := k.match(*res.Signature.Certificate); why != "" {
		return signer, signer + ": " + why
	}
	return signer, ""
}

// describeSigner names the signer of a certificate for decisions and reasons:
// "alice@example.com (issuer https://accounts.google.com, workflow myorg/app@refs/heads/main)".
func describeSigner(s certificate.Summary) string {
	var b strings.Builder
	b.WriteString(cmpOr(s.SubjectAlternativeName, "(no subject)"))
	b.WriteString(" (issuer ")
	b.WriteString(cmpOr(s.Issuer, "none"))
	switch {
	case s.GithubWorkflowRepository != "":
		fmt.Fprintf(&b, ", workflow %s", s.GithubWorkflowRepository)
		if s.GithubWorkflowRef != "" {
			b.WriteString("@" + s.GithubWorkflowRef)
		}
	case s.SourceRepositoryURI != "":
		// CI providers other than GitHub's deprecated extensions (GitLab, Buildkite, …).
		fmt.Fprintf(&b, ", source %s", s.SourceRepositoryURI)
		if s.SourceRepositoryRef != "" {
			b.WriteString("@" + s.SourceRepositoryRef)
		}
	}
	b.WriteString(")")
	return b.String()
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// match checks the verified certificate summary against the identities and extensions; ""
// means it matches. With several identities, the reason names the mismatch of the first.
func (k *Keyless) match(s certificate.Summary) string {
	first := ""
	for _, id := range k.Identities {
		why := id.match(s)
		if why == "" {
			first = ""
			break
		}
		if first == "" {
			first = why
		}
	}
	if first != "" {
		if len(k.Identities) > 1 {
			return fmt.Sprintf("matches none of the %d identities (first: %s)", len(k.Identities), first)
		}
		return first
	}
	for _, e := range []struct{ name, want, got string }{
		{"GitHub workflow repository", k.Extensions.Repository, s.GithubWorkflowRepository},
		{"GitHub workflow ref", k.Extensions.Ref, s.GithubWorkflowRef},
		{"GitHub workflow trigger", k.Extensions.Trigger, s.GithubWorkflowTrigger},
		{"GitHub workflow sha", k.Extensions.SHA, s.GithubWorkflowSHA},
		{"GitHub workflow name", k.Extensions.Name, s.GithubWorkflowName},
	} {
		if e.want != "" && e.got != e.want {
			return fmt.Sprintf("%s %q is not %q", e.name, e.got, e.want)
		}
	}
	return ""
}

func (id Identity) match(s certificate.Summary) string {
	switch {
	case id.Subject != "" && s.SubjectAlternativeName != id.Subject:
		return fmt.Sprintf("subject %s is not %s", quoteEmpty(s.SubjectAlternativeName), id.Subject)
	case id.SubjectRegExp != nil && !id.SubjectRegExp.MatchString(s.SubjectAlternativeName):
		return fmt.Sprintf("subject %s does not match %s", quoteEmpty(s.SubjectAlternativeName), id.SubjectRegExp)
	case id.Issuer != "" && s.Issuer != id.Issuer:
		return fmt.Sprintf("issuer %s is not %s", quoteEmpty(s.Issuer), id.Issuer)
	case id.IssuerRegExp != nil && !id.IssuerRegExp.MatchString(s.Issuer):
		return fmt.Sprintf("issuer %s does not match %s", quoteEmpty(s.Issuer), id.IssuerRegExp)
	}
	return ""
}

func quoteEmpty(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

// explain turns a sigstore-go verification error into a reason a person can act on. The
// error decides the outcome; this only chooses the words, looking at the entity and the trust
// material to tell the usual causes apart.
func explain(k *Keyless, entity sgverify.SignedEntity, cert *x509.Certificate, err error) string {
	msg := err.Error()
	entries, _ := entity.TlogEntries()
	timestamps, _ := entity.Timestamps()
	switch {
	case strings.Contains(msg, "integrated time outside certificate validity"):
		return fmt.Sprintf("certificate expired before the signing time proven: the Rekor entry's integrated time is outside its validity (%s to %s)",
			cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	case strings.Contains(msg, "failed to verify log inclusion"):
		if len(entries) == 0 {
			return fmt.Sprintf("no Rekor entry (tlog threshold %d)", k.Tlog)
		}
		return fmt.Sprintf("Rekor entry does not verify with %s (%d present, %d required): %s", k.TrustRoot, len(entries), k.Tlog, detail(msg))
	case strings.Contains(msg, "failed to verify timestamps"):
		switch {
		case k.Timestamps > 0 && len(timestamps) < k.Timestamps:
			return fmt.Sprintf("%d RFC 3161 timestamps, %d required", len(timestamps), k.Timestamps)
		case len(timestamps) == 0 && allRekorV2(entries):
			return "no proof of signing time: Rekor v2 entries carry no time and there is no RFC 3161 timestamp"
		case k.Timestamps > 0:
			return fmt.Sprintf("timestamps do not verify with %s: %s", k.TrustRoot, detail(msg))
		}
		return "no proof of signing time: " + detail(msg)
	case strings.Contains(msg, "failed to verify leaf certificate"):
		var inter []*x509.Certificate
		if vc, err := entity.VerificationContent(); err == nil {
			inter = vc.Intermediates()
		}
		return explainChain(k, cert, inter)
	case strings.Contains(msg, "failed to verify signed certificate timestamp"):
		if len(cert.Extensions) > 0 && !hasSCTExtension(cert) {
			return fmt.Sprintf("certificate has no SCT (ctlog threshold %d)", k.CTLog)
		}
		return fmt.Sprintf("certificate SCT does not verify with the CT logs of %s: %s", k.TrustRoot, detail(msg))
	case strings.Contains(msg, "artifact digest does not match") || strings.Contains(msg, "failed to verify artifact"):
		return "signed another artifact: " + detail(msg)
	case strings.Contains(msg, "failed to verify signature"):
		return "signature does not verify: " + detail(msg)
	}
	return detail(msg)
}

// explainChain says why the certificate did not chain at the proven signing time: it chains
// to a CA of the material at some time within its validity (so the time is the problem), or
// it does not (the CA is not trusted).
func explainChain(k *Keyless, cert *x509.Certificate, intermediates []*x509.Certificate) string {
	for _, ca := range k.Material.FulcioCertificateAuthorities() {
		fca, ok := ca.(*root.FulcioCertificateAuthority)
		if !ok {
			continue
		}
		with := *fca
		with.Intermediates = append(slices.Clone(fca.Intermediates), intermediates...)
		if _, err := with.Verify(cert, cert.NotBefore); err == nil || func() bool { _, err := with.Verify(cert, cert.NotAfter); return err == nil }() {
			valid := fmt.Sprintf("valid %s to %s", cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
			if k.Tlog == 0 && k.Timestamps == 0 {
				return fmt.Sprintf("certificate expired (%s) and no signing time is proven: with tlog and timestamps 0 it must be valid now", valid)
			}
			return fmt.Sprintf("certificate expired before the signing time proven (%s)", valid)
		}
	}
	return fmt.Sprintf("certificate not issued by a CA of %s (issuer %q)", k.TrustRoot, cert.Issuer.String())
}

var oidSCTList = []int{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}

func hasSCTExtension(cert *x509.Certificate) bool {
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidSCTList) {
			return true
		}
	}
	return false
}

func allRekorV2(entries []*tlog.Entry) bool {
	if len(entries) == 0 {
		return false
	}
	for _, e := range entries {
		if !e.IsRekorV2() {
			return false
		}
	}
	return true
}

// detail keeps the innermost, most specific part of a wrapped sigstore-go error.
func detail(msg string) string {
	const max = 200
	if i := strings.LastIndex(msg, "failed to "); i > 0 {
		msg = msg[i:]
	}
	if len(msg) > max {
		msg = msg[:max] + "…"
	}
	return msg
}
