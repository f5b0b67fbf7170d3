package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/opencontainers/go-digest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/verify/oci"
)

// Stale-if-error: while an upstream fails (unreachable, timing out, answering 5xx or 429, or
// at portcullis's own concurrency limit for it), what portcullis verified and stored before
// keeps being served for Options.MaxStale:
//
//   - a tag resolves to the digest the upstream last gave it, if that was at most MaxStale
//     ago and the manifest is stored;
//   - a stored manifest whose decision expired from the cache and cannot be made again (its
//     signatures are upstream) is served if the Gate admitted it for this repository, under
//     the same policy version, at most MaxStale ago. A denial is never overridden: only a
//     decision that could not be made falls back, and only to an admission;
//   - stored blobs never needed the upstream.
//
// What was never verified is refused with 503 UNAVAILABLE and Retry-After. Both records are
// kept in the store (store.TagRecord, store.Admission), written behind the requests that
// verified them, so that every replica sharing the store, and a restarted one, has them.

// staleRetryAfter is the Retry-After of a 503 answered because the upstream fails.
const staleRetryAfter = 10 * time.Second

// staleSource is the request source (log and metrics) of a manifest served stale.
const staleSource = "stale"

// staleState is what the handler keeps for stale-if-error.
type staleState struct {
	// refresh is how often a record that did not change is written again.
	refresh time.Duration
	// written remembers what was last written, by tag key or grant key, so that a record is
	// written when it changes or ages, not on every request.
	written *lru.Cache[string, writtenRecord]
	// counter counts stale answers by kind (tag: a tag's last digest; manifest: a manifest
	// by digest not stored; decision: a last admission) and outcome (served, refused).
	counter metric.Int64Counter
	attrs   map[[2]string]metric.AddOption
}

type writtenRecord struct {
	d       digest.Digest
	version string
	at      time.Time
}

func newStaleState(maxStale time.Duration, meter metric.Meter) (*staleState, error) {
	c, err := meter.Int64Counter("portcullis.stale",
		metric.WithDescription("Answers while an upstream failed: stale tags and decisions served, and refused (never verified, or verified longer than cache.maxStale ago), by kind and outcome."))
	if err != nil {
		return nil, err
	}
	written, _ := lru.New[string, writtenRecord](1 << 16)
	s := &staleState{refresh: min(maxStale/10, 10*time.Minute), written: written, counter: c, attrs: map[[2]string]metric.AddOption{}}
	for _, kind := range []string{"tag", "manifest", "decision"} {
		for _, outcome := range []string{"served", "refused"} {
			o := metric.WithAttributes(attribute.String("kind", kind), attribute.String("outcome", outcome))
			s.attrs[[2]string{kind, outcome}] = o
			c.Add(context.Background(), 0, o) // the series exist before the first stale answer
		}
	}
	return s, nil
}

func (s *staleState) count(ctx context.Context, kind, outcome string) {
	s.counter.Add(ctx, 1, s.attrs[[2]string{kind, outcome}])
}

// upstreamFailing reports whether err means that the upstream could not give an answer (as
// opposed to an answer: a 404, a denial, invalid content).
func upstreamFailing(err error) bool {
	var (
		un  *upstream.UnavailableError
		ov  *upstream.OverloadError
		ue  *upstream.Error
		den *policy.DenyError
	)
	switch {
	case errors.As(err, &den):
		return false
	case errors.As(err, &un), errors.As(err, &ov):
		return true
	case errors.As(err, &ue):
		return ue.Status >= 500 || ue.Status == http.StatusTooManyRequests
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// staleError is an upstream failure with nothing stale to stand in: 503 UNAVAILABLE.
type staleError struct {
	err    error  // the upstream's failure
	reason string // why nothing stale may be served
}

func (e *staleError) Error() string { return e.err.Error() + "; " + e.reason }
func (e *staleError) Unwrap() error { return e.err }

// now is the handler's clock.
func (h *Handler) now() time.Time { return h.opts.Now() }

// staleTag returns the manifest tag rt.ref last resolved to, when cause (the upstream's
// failure to resolve it) allows stale answers and that was at most MaxStale ago; otherwise
// an error to answer.
func (h *Handler) staleTag(ctx context.Context, rt route, key string, cause error, info *requestInfo) (oci.Manifest, error) {
	if h.stale == nil || !upstreamFailing(cause) {
		return oci.Manifest{}, cause
	}
	var (
		d  digest.Digest
		at time.Time
	)
	if e, ok := h.tags.Peek(key); ok {
		d, at = e.d, e.at
	}
	rec, err := h.opts.Store.Tag(ctx, rt.upstream.Name(), rt.repo, rt.ref)
	switch {
	case err == nil && rec.VerifiedAt.After(at):
		d, at = rec.Digest, rec.VerifiedAt
	case err != nil && !errors.Is(err, oci.ErrNotFound):
		h.log.WarnContext(ctx, "content store read failed", slog.String("error", err.Error()))
	}
	age := h.now().Sub(at)
	var reason string
	switch {
	case d == "":
		reason = fmt.Sprintf("portcullis never verified tag %s of %s, so it has nothing to serve until the upstream answers", rt.ref, rt.image())
	case age > h.opts.MaxStale:
		reason = fmt.Sprintf("portcullis last verified tag %s of %s %s ago, longer than cache.maxStale (%s) allows it to serve without the upstream",
			rt.ref, rt.image(), age.Round(time.Second), h.opts.MaxStale)
	}
	if reason == "" {
		m, err := h.storedManifest(ctx, rt, d)
		if err == nil {
			// Counted as served once admitted (serveManifest).
			h.log.WarnContext(ctx, "upstream failing: serving the digest a tag last had",
				slog.String("upstream", rt.upstream.Name()), slog.String("repo", rt.repo), slog.String("tag", rt.ref),
				slog.String("digest", d.String()), slog.Duration("age", age), slog.String("error", cause.Error()))
			info.source = staleSource
			return m, nil
		}
		reason = fmt.Sprintf("manifest %s, which tag %s had, is no longer stored", d, rt.ref)
	}
	h.stale.count(ctx, "tag", "refused")
	return oci.Manifest{}, &staleError{err: cause, reason: reason}
}

// staleManifest is the answer for a manifest by digest that is not stored, when the upstream
// fails.
func (h *Handler) staleManifest(ctx context.Context, rt route, cause error) error {
	if h.stale == nil || !upstreamFailing(cause) {
		return cause
	}
	h.stale.count(ctx, "manifest", "refused")
	return &staleError{err: cause, reason: fmt.Sprintf("portcullis does not have manifest %s of %s, so it cannot serve it until the upstream answers", rt.ref, rt.image())}
}

// staleDecision returns nil when manifest m may be served although its decision could not be
// made (cause): the Gate admitted it for rt's repository under the policies in force now at
// most MaxStale ago. Otherwise it returns the error to answer.
func (h *Handler) staleDecision(ctx context.Context, rt route, m oci.Manifest, cause error) error {
	if h.stale == nil || !upstreamFailing(cause) {
		return cause
	}
	version := h.policyVersion()
	a, err := h.opts.Store.Admission(ctx, rt.upstream.Name(), rt.repo, m.Digest)
	var reason string
	switch {
	case errors.Is(err, oci.ErrNotFound):
		reason = fmt.Sprintf("portcullis never admitted %s@%s, so it cannot serve it until the upstream answers", rt.image(), m.Digest)
	case err != nil:
		h.log.WarnContext(ctx, "content store read failed", slog.String("error", err.Error()))
		reason = fmt.Sprintf("portcullis could not read whether it admitted %s@%s before", rt.image(), m.Digest)
	case a.PolicyVersion != version:
		reason = fmt.Sprintf("%s@%s was admitted under other policies than those in force", rt.image(), m.Digest)
	case h.now().Sub(a.DecidedAt) > h.opts.MaxStale:
		reason = fmt.Sprintf("%s@%s was last admitted %s ago, longer than cache.maxStale (%s) allows it to serve without the upstream",
			rt.image(), m.Digest, h.now().Sub(a.DecidedAt).Round(time.Second), h.opts.MaxStale)
	}
	if reason != "" {
		h.stale.count(ctx, "decision", "refused")
		return &staleError{err: cause, reason: reason}
	}
	h.stale.count(ctx, "decision", "served")
	h.log.WarnContext(ctx, "upstream failing: serving a manifest on its last admission",
		slog.String("image", rt.image()), slog.String("digest", m.Digest.String()),
		slog.Time("decidedAt", a.DecidedAt), slog.String("error", cause.Error()))
	return nil
}

// policyVersion is the version of the Gate's policies, when it has versions.
func (h *Handler) policyVersion() string {
	if g, ok := h.opts.Gate.(interface{ Set() *policy.Set }); ok {
		if s := g.Set(); s != nil {
			return s.Version()
		}
	}
	return ""
}

// remember returns the store's writes (nil if none) recording what serving m for rt
// verified: the digest of the tag rt.ref (when it is a tag the upstream confirmed at tagAt)
// and m's admission by dec; the caller runs them once its response is sent. A record is
// written when it changed or is older than the refresh period.
func (h *Handler) remember(rt route, m oci.Manifest, dec policy.Decision, tagAt time.Time, grantKey string) func(context.Context) {
	now := h.now()
	s := h.stale
	var (
		tag     *store.TagRecord
		adm     *store.Admission
		tagKey  string
		version = h.policyVersion()
	)
	if !tagAt.IsZero() {
		tagKey = "tag\x00" + rt.upstream.Name() + "/" + rt.repo + ":" + rt.ref
		if w, ok := s.written.Get(tagKey); !ok || w.d != m.Digest || tagAt.Sub(w.at) >= s.refresh {
			tag = &store.TagRecord{Digest: m.Digest, VerifiedAt: tagAt}
			s.written.Add(tagKey, writtenRecord{d: m.Digest, at: tagAt})
		}
	}
	decided := dec.DecidedAt
	if decided.IsZero() {
		decided = now
	}
	if grantKey == "" {
		grantKey = rt.upstream.Name() + "/" + rt.repo + "@" + m.Digest.String()
	}
	if w, ok := s.written.Get(grantKey); !ok || w.version != version || (decided.After(w.at) && now.Sub(w.at) >= s.refresh) {
		adm = &store.Admission{PolicyVersion: version, DecidedAt: decided}
		s.written.Add(grantKey, writtenRecord{version: version, at: decided})
	}
	if tag == nil && adm == nil {
		return nil
	}
	return func(sctx context.Context) {
		// The admission first: a tag record is only useful with it.
		if adm != nil {
			if err := h.opts.Store.PutAdmission(sctx, rt.upstream.Name(), rt.repo, m.Digest, *adm); err != nil {
				s.written.Remove(grantKey)
				h.log.WarnContext(sctx, "recording an admission failed", slog.String("digest", m.Digest.String()), slog.String("error", err.Error()))
			}
		}
		if tag != nil {
			if err := h.opts.Store.PutTag(sctx, rt.upstream.Name(), rt.repo, rt.ref, *tag); err != nil {
				s.written.Remove(tagKey)
				h.log.WarnContext(sctx, "recording a tag failed", slog.String("tag", rt.ref), slog.String("error", err.Error()))
			}
		}
	}
}
