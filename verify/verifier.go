package verify

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/sync/errgroup"

	"github.com/portcullis/portcullis/internal/strictjson"
)

// Formats reported in AuthorityResult.Format.
const (
	FormatLegacy = "legacy"
	FormatBundle = "bundle"
)

// ReasonNoSignatures is the Reason of every authority when the digest has no signatures.
const ReasonNoSignatures = "no signatures found"

// LookupError reports that the signatures of a digest could not be looked up in a repository
// (upstream unreachable, 5xx, timeout, cancelled context). It is distinct from "not signed":
// the outcome is unknown, so it must not be cached for long.
type LookupError struct {
	// Repository is the repository whose signatures could not be read.
	Repository string
	// What names the lookup, e.g. "legacy signature tag sha256-….sig".
	What string
	Err  error
}

func (e *LookupError) Error() string {
	return fmt.Sprintf("look up %s in %s: %v", e.What, e.Repository, e.Err)
}

func (e *LookupError) Unwrap() error { return e.Err }

// Verifier finds and checks cosign signatures. It holds only its configuration and is safe
// for concurrent use.
type Verifier struct {
	cfg config
}

// New returns a Verifier configured by opts (see the With… functions for defaults). An
// invalid option (a nil logger, a limit below 1) is a programming error and panics, so that it
// shows at startup rather than on the first pull.
func New(opts ...Option) *Verifier {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		panic("verify.New: " + err.Error())
	}
	return &Verifier{cfg: cfg}
}

// Verify looks up the signatures of s in reg and checks them against each authority.
//
// The Result always has one AuthorityResult per authority, in order; each lists every
// signature that verified for it (AuthorityResult.Signatures), so a caller can show what was
// signed without verifying again. The error is non-nil
// only for invalid arguments or when some authority is not satisfied and some lookup failed
// (so that the failure, which might have hidden its signature, is not taken for a verdict); it
// then wraps a *LookupError (and the context's error when ctx ended). The Result returned with
// an error still describes what was found, for logging; the digest must be treated as not
// verified. An authority that wants attestations counts as satisfied here only when it also
// has a verified attestation of each predicate type it wants, so that a failed lookup is
// never taken for "no attestation".
func (v *Verifier) Verify(ctx context.Context, reg Registry, s Subject, auths []Authority) (Result, error) {
	if err := s.Digest.Validate(); err != nil {
		return Result{}, fmt.Errorf("verify %s@%s: invalid digest: %w", s.Repository, s.Digest, err)
	}
	if s.Repository == "" {
		return Result{}, fmt.Errorf("verify %s: empty repository", s.Digest)
	}

	// One discovery per distinct signatures repository the authorities use (the image's own
	// when there are no authorities, to count its signatures), all in parallel.
	var repos []string
	wantAtt := map[string]bool{}
	for _, a := range auths {
		r := signaturesRepository(s, a)
		if !slices.Contains(repos, r) {
			repos = append(repos, r)
		}
		wantAtt[r] = wantAtt[r] || len(a.Attestations) > 0
	}
	if len(repos) == 0 {
		repos = []string{s.Repository}
	}
	found := make(map[string]*discovery, len(repos))
	var mu sync.Mutex
	var g errgroup.Group
	for _, repo := range repos {
		g.Go(func() error {
			d := v.discover(ctx, reg, repo, s.Digest, wantAtt[repo])
			mu.Lock()
			found[repo] = d
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait() // discover records failures in the discovery; it never returns one

	res := Result{Authorities: make([]AuthorityResult, len(auths))}
	for _, repo := range repos {
		res.Signatures += len(found[repo].candidates)
		res.Attestations += len(found[repo].attestations)
	}
	allSatisfied := true
	for i, a := range auths {
		d := found[signaturesRepository(s, a)]
		res.Authorities[i] = v.check(ctx, a, d, s)
		allSatisfied = allSatisfied && res.Authorities[i].Verified && hasAttestations(res.Authorities[i], a.Attestations)
	}

	if !allSatisfied {
		var errs []error
		for _, repo := range repos {
			errs = append(errs, found[repo].errs...)
		}
		if len(errs) > 0 {
			return res, fmt.Errorf("verify signatures of %s@%s: %w", s.Repository, s.Digest, errors.Join(errs...))
		}
	}
	return res, nil
}

// hasAttestations reports whether r has a verified attestation of each predicate type.
func hasAttestations(r AuthorityResult, types []string) bool {
	for _, t := range types {
		if !slices.ContainsFunc(r.Attestations, func(a Attestation) bool { return a.PredicateType == t }) {
			return false
		}
	}
	return true
}

func signaturesRepository(s Subject, a Authority) string {
	if a.SignaturesRepository != "" {
		return a.SignaturesRepository
	}
	return s.Repository
}

// discovery is what one repository holds for one digest.
type discovery struct {
	repo string
	// candidates are the signatures found, legacy first, each in registry order.
	candidates []*candidate
	// attestations are the attestations found (legacy ".att" layers first, then bundles),
	// looked for only when an authority of the repository wants some; bundle attestations
	// are kept whenever the referrers listing finds them.
	attestations []*candidate
	// notes are facts about things that are not signatures, for the reasons: ignored
	// attestations, truncated lists.
	notes []string
	// errs are lookup failures (*LookupError).
	errs []error
}

// candidate is one signature found, in either format. broken, when set, is why it cannot
// satisfy any authority (corrupt, oversized, missing blob, unsupported content).
type candidate struct {
	format string
	where  string
	broken string
	// blob is the payload, bundle or envelope blob.
	blob digest.Digest
	// predicateType is the predicate type an attestation's statement claims (unverified).
	predicateType string

	// legacy
	payload []byte
	sig     []byte
	legacy  legacyMaterial

	// bundle, and every attestation
	bundle *bundleCandidate
}

// check decides one authority against the signatures of its repository: every candidate is
// checked, and each that verifies is listed in the result's Signatures.
func (v *Verifier) check(ctx context.Context, a Authority, d *discovery, s Subject) AuthorityResult {
	ctx, end := v.checkSpan(ctx, a.Name)
	defer end()
	dgst := s.Digest
	r := AuthorityResult{Authority: a.Name}
	var (
		keys      []signature.Verifier
		keySigner string
	)
	switch {
	case a.Key != nil && a.Keyless != nil:
		r.Reason = "authority has both a key and a keyless identity"
		return r
	case a.Key != nil:
		var err error
		if keys, keySigner, err = keyVariants(a.Key); err != nil {
			r.Reason = fmt.Sprintf("unusable authority key: %v", err)
			return r
		}
	case a.Keyless == nil:
		r.Reason = "authority has no key and no keyless identity"
		return r
	}

	if len(a.Attestations) > 0 {
		checkAttestations(a, keys, keySigner, d, dgst, &r)
	}
	var reasons []string
	for _, c := range d.candidates {
		var reason string
		signer := keySigner
		switch {
		case c.broken != "":
			reason = c.broken
		case a.Keyless != nil && c.format == FormatLegacy:
			signer, reason = checkLegacyKeyless(a.Keyless, a.Annotations, c, dgst)
		case a.Keyless != nil:
			signer, reason = checkBundleKeyless(a.Keyless, a.Annotations, c.bundle, dgst)
		case c.format == FormatLegacy:
			reason = checkLegacy(keys, a.Annotations, c, dgst)
		default:
			reason = checkBundle(keys, a.Annotations, c.bundle, dgst)
		}
		if reason == "" {
			sig, err := verifiedSignature(c, d.repo, s, signer)
			if err != nil {
				reason = "unreadable verified signature: " + err.Error()
			} else {
				if !r.Verified {
					r.Verified, r.Signer, r.Format = true, signer, c.format
				}
				r.Signatures = append(r.Signatures, sig)
				r.Examined = append(r.Examined, Examined{Kind: KindSignature, Format: c.format, Where: c.where, Signer: signer, Counted: true})
				v.cfg.logger.DebugContext(ctx, "signature verified",
					slog.String("authority", a.Name), slog.String("repository", d.repo),
					slog.String("signature", c.where), slog.String("digest", dgst.String()))
				continue
			}
		}
		v.cfg.logger.DebugContext(ctx, "signature rejected",
			slog.String("authority", a.Name), slog.String("repository", d.repo),
			slog.String("signature", c.where), slog.String("reason", reason))
		reasons = append(reasons, reason)
		e := Examined{Kind: KindSignature, Format: c.format, Where: c.where, Reason: reason}
		if a.Keyless != nil {
			e.Signer = signer // the certificate's identity, when it could be read
		}
		r.Examined = append(r.Examined, e)
	}
	if !r.Verified {
		r.Reason = summarize(reasons, d)
	}
	return r
}

// maxReasons bounds the distinct reasons a summary lists, so that a denial stays readable
// (and small) whatever the number of signatures found.
const maxReasons = 5

// summarize turns the per-signature reasons into one sentence:
// "found 3 signatures: wrong key (2 signatures), payload digest mismatch".
func summarize(reasons []string, d *discovery) string {
	var b strings.Builder
	if len(reasons) == 0 {
		b.WriteString(ReasonNoSignatures)
	} else {
		fmt.Fprintf(&b, "found %d signature", len(reasons))
		if len(reasons) > 1 {
			b.WriteString("s")
		}
		b.WriteString(": ")
		counts := map[string]int{}
		var order []string
		for _, r := range reasons {
			if counts[r] == 0 {
				order = append(order, r)
			}
			counts[r]++
		}
		for i, r := range order {
			if i == maxReasons {
				fmt.Fprintf(&b, ", and %d other reasons", len(order)-maxReasons)
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(r)
			if counts[r] > 1 {
				fmt.Fprintf(&b, " (%d signatures)", counts[r])
			}
		}
	}
	for _, n := range d.notes {
		b.WriteString("; ")
		b.WriteString(n)
	}
	for _, err := range d.errs {
		b.WriteString("; ")
		b.WriteString(err.Error())
	}
	return b.String()
}

// keyVariants returns the verifiers to try for an authority's key and the signer description
// "key sha256:<hex of the PKIX DER public key>". An Ed25519 key gets both the pure and the
// prehashed (Ed25519ph, cosign ≥ v2.6 for legacy signatures) verifier: their signatures are
// domain-separated, so accepting both cannot confuse one for the other.
func keyVariants(key signature.Verifier) ([]signature.Verifier, string, error) {
	pub, err := key.PublicKey()
	if err != nil {
		return nil, "", fmt.Errorf("read public key: %w", err)
	}
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return nil, "", fmt.Errorf("encode public key: %w", err)
	}
	sum := sha256.Sum256(der)
	signer := "key sha256:" + hex.EncodeToString(sum[:])

	keys := []signature.Verifier{key}
	if ed, ok := pub.(ed25519.PublicKey); ok {
		var other signature.Verifier
		if _, isPH := key.(*signature.ED25519phVerifier); isPH {
			other, err = signature.LoadED25519Verifier(ed)
		} else {
			other, err = signature.LoadED25519phVerifier(ed)
		}
		if err != nil {
			return nil, "", fmt.Errorf("load ed25519 verifier: %w", err)
		}
		keys = append(keys, other)
	}
	return keys, signer, nil
}

// short abbreviates a digest for reasons: "sha256:0123456789ab…".
func short(d string) string {
	alg, hexPart, ok := strings.Cut(d, ":")
	if !ok || len(hexPart) <= 12 {
		return d
	}
	return alg + ":" + hexPart[:12] + "…"
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

// matchAnnotations checks that every wanted annotation is a string member of have with
// exactly the wanted value. It returns "" when all match, else a reason naming the first
// mismatch in key order.
func matchAnnotations(want map[string]string, have strictjson.Object) (string, error) {
	for _, k := range sortedKeys(want) {
		raw, ok, err := have.Member(k)
		if err != nil {
			return "", err
		}
		if !ok {
			return fmt.Sprintf("annotation %q missing", k), nil
		}
		var got string
		if err := json.Unmarshal(raw, &got); err != nil {
			return fmt.Sprintf("annotation %q is not a string", k), nil
		}
		if got != want[k] {
			return fmt.Sprintf("annotation %q is %q, want %q", k, got, want[k]), nil
		}
	}
	return "", nil
}

// discover looks up both formats in repo in parallel: the ".sig" tag, the referrers and,
// when attestations are wanted, the ".att" tag. Failures are recorded in the discovery, never
// returned, so that what one lookup found survives the other's failure.
func (v *Verifier) discover(ctx context.Context, reg Registry, repo string, dgst digest.Digest, attestations bool) *discovery {
	ctx, end := v.discoverSpan(ctx, repo)
	defer end()
	d := &discovery{repo: repo}
	var (
		legacy, bundles, legacyAtt, bundleAtt []*candidate
		notes, attNotes                       []string
		legacyErrs, bundleErr, attErrs        []error
	)
	var g errgroup.Group
	g.Go(func() error {
		legacy, legacyErrs = v.discoverLegacy(ctx, reg, repo, dgst)
		return nil
	})
	g.Go(func() error {
		bundles, bundleAtt, notes, bundleErr = v.discoverBundles(ctx, reg, repo, dgst)
		return nil
	})
	if attestations {
		g.Go(func() error {
			legacyAtt, attNotes, attErrs = v.discoverAttestations(ctx, reg, repo, dgst)
			return nil
		})
	}
	_ = g.Wait()
	d.candidates = append(legacy, bundles...)
	d.attestations = append(legacyAtt, bundleAtt...)
	d.notes = append(notes, attNotes...)
	d.errs = append(append(legacyErrs, bundleErr...), attErrs...)
	for _, err := range d.errs {
		v.cfg.logger.WarnContext(ctx, "signature lookup failed", slog.String("repository", repo),
			slog.String("digest", dgst.String()), slog.Any("error", err))
	}
	return d
}
