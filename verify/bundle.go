package verify

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/internal/strictjson"
	"github.com/portcullis/portcullis/verify/oci"
)

// inTotoStatementTypes are the statement _type values accepted.
var inTotoStatementTypes = []string{cosign.StatementTypeInToto, cosign.StatementTypeInTotoV01}

// bundleCandidate is a signed DSSE envelope holding an in-toto statement: a sigstore bundle
// (a signature with cosign's signing predicate, or an attestation), or the layer of a legacy
// ".att" manifest with the material of its annotations.
type bundleCandidate struct {
	// key is the entity a key authority verifies, cert the one a keyless authority verifies;
	// for a bundle both are the bundle. cert is nil when the material holds no certificate,
	// certErr then says why.
	key, cert sgverify.SignedEntity
	certErr   string
	// payload is the DSSE payload, the statement as signed.
	payload []byte
	// statement is payload read strictly, before verification; it is only trusted once the
	// envelope is verified, and the envelope signs exactly these bytes.
	statement strictjson.Object
}

// newBundleCandidate is a bundle holding a DSSE envelope whose payload is statement.
func newBundleCandidate(b *bundle.Bundle, statement strictjson.Object) *bundleCandidate {
	return &bundleCandidate{key: b, cert: b, payload: b.GetDsseEnvelope().GetPayload(), statement: statement}
}

// isCandidateArtifactType reports whether a listed referrer may be a sigstore bundle: listed
// with the bundle type, or with no type or the empty-config type (GHCR, cosign v2
// --new-bundle-format), which only the manifest itself can settle.
func isCandidateArtifactType(t string) bool {
	return t == cosign.MediaTypeSigstoreBundle || t == "" || t == oci.MediaTypeEmptyJSON
}

// discoverBundles lists the referrers of dgst in repo and reads each sigstore bundle among
// them. It returns the signatures, the attestations (bundles whose statement has another
// predicate than cosign's signing one), notes about what is not a signature and lookup
// failures.
func (v *Verifier) discoverBundles(ctx context.Context, reg Registry, repo string, dgst digest.Digest) (sigs, atts []*candidate, notes []string, errs []error) {
	descs, err := reg.Referrers(ctx, repo, dgst)
	if errors.Is(err, oci.ErrNotFound) {
		return nil, nil, nil, nil
	}
	if err != nil {
		return nil, nil, nil, []error{&LookupError{Repository: repo, What: "referrers of " + dgst.String(), Err: err}}
	}
	var todo []ocispec.Descriptor
	for _, d := range descs {
		if isCandidateArtifactType(d.ArtifactType) && (d.MediaType == "" || d.MediaType == oci.MediaTypeOCIManifest) {
			todo = append(todo, d)
		}
	}
	if len(todo) > v.cfg.maxReferrers {
		notes = append(notes, fmt.Sprintf("only the first %d of %d bundle referrers were inspected", v.cfg.maxReferrers, len(todo)))
		todo = todo[:v.cfg.maxReferrers]
	}

	type outcome struct {
		c           *candidate
		attestation string // predicate type of an ignored attestation
		err         error
	}
	out := make([]outcome, len(todo))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(v.cfg.concurrency)
	for i, d := range todo {
		g.Go(func() error {
			out[i].c, out[i].attestation, out[i].err = v.inspectReferrer(gctx, reg, repo, dgst, d)
			return nil
		})
	}
	_ = g.Wait()

	var cands []*candidate
	attestations := map[string]int{}
	var order []string
	for _, o := range out {
		if o.err != nil {
			errs = append(errs, o.err)
		}
		switch {
		case o.c != nil && o.attestation != "":
			atts = append(atts, o.c)
		case o.c != nil:
			cands = append(cands, o.c)
		}
		if o.attestation != "" {
			if attestations[o.attestation] == 0 {
				order = append(order, o.attestation)
			}
			attestations[o.attestation]++
		}
	}
	for _, p := range order {
		notes = append(notes, fmt.Sprintf("ignored %d attestation(s) with predicate type %s (not a signature)", attestations[p], p))
	}
	return cands, atts, notes, errs
}

// inspectReferrer reads one listed referrer. It returns a candidate when the referrer is a
// sigstore bundle, with its predicate type too when it is an attestation, and nothing when it
// is some other artifact.
func (v *Verifier) inspectReferrer(ctx context.Context, reg Registry, repo string, dgst digest.Digest, d ocispec.Descriptor) (rc *candidate, rpt string, rerr error) {
	log := v.cfg.logger.With(slog.String("repository", repo), slog.String("referrer", d.Digest.String()))
	if err := d.Digest.Validate(); err != nil {
		log.DebugContext(ctx, "skip referrer with invalid digest", slog.Any("error", err))
		return nil, "", nil
	}
	m, err := reg.Manifest(ctx, repo, d.Digest.String())
	if errors.Is(err, oci.ErrNotFound) {
		log.DebugContext(ctx, "skip listed referrer that does not exist")
		return nil, "", nil
	}
	if err != nil {
		return nil, "", &LookupError{Repository: repo, What: "referrer " + d.Digest.String(), Err: err}
	}
	c := &candidate{format: FormatBundle, where: repo + "@" + d.Digest.String()}
	if m.Digest != d.Digest {
		c.broken = "bundle manifest digest does not match its listing"
		return c, "", nil
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(m.Bytes, &man); err != nil {
		log.DebugContext(ctx, "skip referrer that is not a manifest", slog.Any("error", err))
		return nil, "", nil
	}
	if man.ArtifactType != cosign.MediaTypeSigstoreBundle && man.Config.MediaType != cosign.MediaTypeSigstoreBundle {
		log.DebugContext(ctx, "skip referrer that is not a sigstore bundle",
			slog.String("artifactType", man.ArtifactType), slog.String("config", man.Config.MediaType))
		return nil, "", nil
	}
	// A bundle that cannot be read is reported where its manifest says it belongs: the
	// predicate type annotation is only a hint, used for nothing but that.
	if hint := man.Annotations[cosign.AnnotationBundlePredicateType]; hint != "" && hint != cosign.PredicateTypeSign {
		defer func() {
			if rc != nil && rc.broken != "" && rpt == "" {
				rc.predicateType, rpt = hint, hint
			}
		}()
	}

	if man.Subject == nil || man.Subject.Digest != dgst {
		got := "none"
		if man.Subject != nil {
			got = short(man.Subject.Digest.String())
		}
		c.broken = "bundle manifest subject mismatch: refers to " + got
		return c, "", nil
	}
	var layers []ocispec.Descriptor
	for _, l := range man.Layers {
		if l.MediaType == cosign.MediaTypeSigstoreBundle {
			layers = append(layers, l)
		}
	}
	if len(layers) != 1 {
		c.broken = fmt.Sprintf("bundle manifest has %d bundle layers, want 1", len(layers))
		return c, "", nil
	}
	l := layers[0]
	if err := l.Digest.Validate(); err != nil {
		c.broken = "invalid bundle digest in bundle manifest"
		return c, "", nil
	}
	if l.Size > v.cfg.maxBlobSize {
		c.broken = fmt.Sprintf("bundle of %d bytes exceeds the limit of %d", l.Size, v.cfg.maxBlobSize)
		return c, "", nil
	}
	c.blob = l.Digest
	raw, err := reg.Blob(ctx, repo, l.Digest, v.cfg.maxBlobSize)
	if errors.Is(err, oci.ErrNotFound) {
		c.broken = "bundle blob missing"
		return c, "", nil
	}
	if err != nil {
		c.broken = "bundle could not be fetched"
		return c, "", &LookupError{Repository: repo, What: "bundle " + l.Digest.String(), Err: err}
	}

	b, err := parseBundle(raw)
	if err != nil {
		c.broken = "invalid bundle: " + err.Error()
		return c, "", nil
	}
	if b.GetMessageSignature() != nil {
		c.broken = "bundle holds a bare message signature, not a signed cosign statement"
		return c, "", nil
	}
	env := b.GetDsseEnvelope()
	if env == nil {
		c.broken = "bundle holds no dsse envelope"
		return c, "", nil
	}
	if env.GetPayloadType() != cosign.PayloadTypeInToto {
		c.broken = fmt.Sprintf("bundle payload type %q is not an in-toto statement", env.GetPayloadType())
		return c, "", nil
	}
	st, err := strictjson.ParseObject(env.GetPayload())
	if err != nil {
		c.broken = "invalid statement: " + err.Error()
		return c, "", nil
	}
	pt, err := st.StringMember("predicateType")
	if err != nil {
		c.broken = "invalid statement: " + err.Error()
		return c, "", nil
	}
	c.bundle = newBundleCandidate(b, st)
	if pt != cosign.PredicateTypeSign {
		// An attestation, not a signature, whoever signed it: never counted as a signature.
		c.predicateType = pt
		return c, pt, nil
	}
	return c, "", nil
}

// parseBundle reads a sigstore bundle. Bundles from v0.3 on may hold a certificate chain
// (cosign sign --certificate-chain writes one): its intermediates are only ever used to build
// a path to a trusted root, never as anchors.
func parseBundle(raw []byte) (*bundle.Bundle, error) {
	var pb protobundle.Bundle
	if err := protojson.Unmarshal(raw, &pb); err != nil {
		return nil, err
	}
	var opts []bundle.Option
	if v := strings.TrimPrefix(pb.GetMediaType(), "application/vnd.dev.sigstore.bundle"); v == ".v0.3+json" || v == "+json;version=0.3" {
		opts = append(opts, bundle.AllowCertificateChain())
	}
	return bundle.NewBundle(&pb, opts...)
}

// checkBundle checks one bundle against a key authority; "" means verified.
func checkBundle(keys []signature.Verifier, want map[string]string, bc *bundleCandidate, dgst digest.Digest) string {
	vc, err := bc.key.VerificationContent()
	if err != nil {
		return "invalid bundle: " + err.Error()
	}
	if vc.Certificate() != nil {
		return "signed with a certificate, not a key"
	}
	if vc.PublicKey() == nil {
		return "bundle has no public key"
	}
	rawDigest, err := hex.DecodeString(dgst.Encoded())
	if err != nil {
		return "invalid digest"
	}

	verified, signatureOnly := false, false
	for _, k := range keys {
		sv, err := sgverify.NewVerifier(trustKey(k), sgverify.WithNoObserverTimestamps(), sgverify.WithoutStatementPredicate())
		if err != nil {
			return "cannot build bundle verifier: " + err.Error()
		}
		pol := sgverify.NewPolicy(sgverify.WithArtifactDigest(dgst.Algorithm().String(), rawDigest), sgverify.WithKey())
		if _, err := sv.Verify(bc.key, pol); err == nil {
			verified = true
			break
		}
		// Tell "someone else's key" from "this key, another image" for the reason.
		if _, err := sv.Verify(bc.key, sgverify.NewPolicy(sgverify.WithoutArtifactUnsafe(), sgverify.WithKey())); err == nil {
			signatureOnly = true
		}
	}
	if !verified {
		if signatureOnly {
			return "statement subject mismatch: signed " + short(subjectDigests(bc.statement, dgst.Algorithm().String()))
		}
		return "wrong key"
	}
	return checkStatement(want, bc, dgst)
}

// checkBundleKeyless checks one bundle against a keyless authority. It returns the signer
// (when the certificate could be read) and "" when verified, else a reason.
func checkBundleKeyless(k *Keyless, want map[string]string, bc *bundleCandidate, dgst digest.Digest) (string, string) {
	rawDigest, err := hex.DecodeString(dgst.Encoded())
	if err != nil {
		return "", "invalid digest"
	}
	if bc.cert == nil {
		return "", bc.certErr
	}
	signer, reason := checkCertificate(k, bc.cert, sgverify.WithArtifactDigest(dgst.Algorithm().String(), rawDigest))
	if reason != "" {
		return signer, reason
	}
	if r := checkStatement(want, bc, dgst); r != "" {
		return signer, signer + ": " + r
	}
	return signer, ""
}

// checkStatement checks the statement of a bundle whose envelope verified: its type, the one
// subject naming dgst, and the wanted annotations of that subject; "" means it satisfies.
func checkStatement(want map[string]string, bc *bundleCandidate, dgst digest.Digest) string {
	// The envelope is verified: bc.statement is what was signed. Read it strictly.
	typ, err := bc.statement.StringMember("_type")
	if err != nil {
		return "invalid statement: " + err.Error()
	}
	if !slices.Contains(inTotoStatementTypes, typ) {
		return fmt.Sprintf("unknown statement type %q", typ)
	}
	subjects, err := bc.statement.ArrayMember("subject")
	if err != nil {
		return "invalid statement: " + err.Error()
	}
	var match []strictjson.Object
	for _, raw := range subjects {
		sub, err := strictjson.ParseObject(raw)
		if err != nil {
			return "invalid statement subject: " + err.Error()
		}
		digests, err := sub.ObjectMember("digest", false)
		if err != nil {
			return "invalid statement subject: " + err.Error()
		}
		if _, ok, err := digests.Member(dgst.Algorithm().String()); err != nil || !ok {
			continue
		}
		got, err := digests.StringMember(dgst.Algorithm().String())
		if err != nil {
			return "invalid statement subject: " + err.Error()
		}
		if got == dgst.Encoded() {
			match = append(match, sub)
		}
	}
	switch len(match) {
	case 0:
		return "statement subject mismatch"
	case 1:
	default:
		return fmt.Sprintf("statement names the digest in %d subjects", len(match))
	}
	annotations, err := match[0].ObjectMember("annotations", true)
	if err != nil {
		return "invalid statement subject: " + err.Error()
	}
	reason, err := matchAnnotations(want, annotations)
	if err != nil {
		return "invalid statement subject annotations: " + err.Error()
	}
	return reason
}

// trustKey is trusted material holding only k, valid at all times, whatever key hint the
// bundle carries (the hint is a hint: the signature decides).
func trustKey(k signature.Verifier) root.TrustedMaterial {
	return root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
		return root.NewExpiringKey(k, time.Time{}, time.Time{}), nil
	})
}

// subjectDigests returns the first subject digest of algorithm alg in an unverified
// statement, for reasons only.
func subjectDigests(st strictjson.Object, alg string) string {
	subjects, err := st.ArrayMember("subject")
	if err != nil || len(subjects) == 0 {
		return "nothing"
	}
	sub, err := strictjson.ParseObject(subjects[0])
	if err != nil {
		return "nothing"
	}
	digests, err := sub.ObjectMember("digest", false)
	if err != nil {
		return "nothing"
	}
	d, err := digests.StringMember(alg)
	if err != nil {
		return "nothing"
	}
	return alg + ":" + d
}
