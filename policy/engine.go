package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
)

// Verifier checks the signatures of one image digest against authorities.
// *verify.Verifier implements it.
type Verifier interface {
	Verify(ctx context.Context, reg verify.Registry, s verify.Subject, auths []verify.Authority) (verify.Result, error)
	// CheckArtifact checks that what a manifest shaped like a signature artifact references
	// is what it claims to be: nil when it is, a *verify.ArtifactError when it is not, any
	// other error when that could not be found out.
	CheckArtifact(ctx context.Context, reg verify.Registry, repo string, m oci.Manifest) error
}

var _ Verifier = (*verify.Verifier)(nil)

// DecisionCache is where the Engine keeps decisions. Do must collapse concurrent fills of one
// key and must not store fill errors. *cache.Memory[policy.Decision] implements it.
type DecisionCache interface {
	Do(ctx context.Context, key cache.Key, fill func(ctx context.Context) (Decision, error)) (d Decision, cached bool, err error)
	Get(ctx context.Context, key cache.Key) (Decision, bool)
	Put(ctx context.Context, key cache.Key, d Decision)
}

var _ DecisionCache = (*cache.Memory[Decision])(nil)

// Request is one manifest the proxy is about to serve.
type Request struct {
	// Image is the normalised image name "upstream/repository", e.g.
	// "docker.io/library/alpine", matched against policy globs and used in messages.
	Image string
	// Repository is the repository path in the upstream registry, e.g. "library/alpine".
	Repository string
	// Manifest is exactly what is about to be served; its digest is checked against its
	// bytes.
	Manifest oci.Manifest
	// Registry reads the upstream the manifest comes from, to find its signatures.
	Registry verify.Registry
}

// DenyError is returned by Admit when policy refuses a manifest: the client asked for
// something it may not have (HTTP 403), as opposed to any other Admit error, which means
// portcullis could not decide (HTTP 502/503).
type DenyError struct {
	// Image is the normalised image name.
	Image string
	// Digest is the digest of the refused manifest.
	Digest digest.Digest
	// Policy is the name of the policy that refused it; empty when the default policy did.
	Policy string
	// Authorities names the authorities whose signatures were not verified, if that is why.
	Authorities []string
	// Reason says, for a person, why the manifest was refused.
	Reason string
}

// Error reads like `image docker.io/myorg/app@sha256:… denied by policy "prod": no signature
// verified by authority "release-key" (found 1 signature: wrong key)`.
func (e *DenyError) Error() string {
	if e.Policy == "" {
		return fmt.Sprintf("image %s@%s denied: %s", e.Image, e.Digest, e.Reason)
	}
	return fmt.Sprintf("image %s@%s denied by policy %q: %s", e.Image, e.Digest, e.Policy, e.Reason)
}

// EngineOption configures an Engine.
type EngineOption func(*engineOptions)

type engineOptions struct {
	logger  *slog.Logger
	now     func() time.Time
	observe func(context.Context, Outcome) // see WithObserver
	tracer  trace.Tracer                   // see WithTracerProvider; nil: no spans
}

// WithLogger sets where the audit lines go. Default (or nil): discarded.
func WithLogger(l *slog.Logger) EngineOption {
	return func(o *engineOptions) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithClock sets the clock that dates decisions. Default (or nil): time.Now.
func WithClock(now func() time.Time) EngineOption {
	return func(o *engineOptions) {
		if now != nil {
			o.now = now
		}
	}
}

// Stats counts Admit outcomes since the Engine was created.
type Stats struct {
	// Allowed counts manifests admitted, Warned and Exempt included.
	Allowed uint64
	// Exempt counts signature artifacts admitted without signatures of their own.
	Exempt uint64
	// Warned counts manifests admitted only because their policy is in warn mode.
	Warned uint64
	// Denied counts DenyErrors.
	Denied uint64
	// Failed counts Admit calls that could not decide.
	Failed uint64
	// Cached counts decisions served from the cache.
	Cached uint64
}

// Outcomes returns the counters by outcome name, as metrics label them.
func (s Stats) Outcomes() map[string]uint64 {
	return map[string]uint64{"allowed": s.Allowed, "exempt": s.Exempt, "warned": s.Warned, "denied": s.Denied, "failed": s.Failed, "cached": s.Cached}
}

// Engine decides, for every manifest the proxy is about to serve, whether policy allows it.
// It is safe for concurrent use; Swap replaces its policy set atomically.
type Engine struct {
	set      atomic.Pointer[Set]
	verifier Verifier
	cache    DecisionCache
	logger   *slog.Logger
	now      func() time.Time
	observe  func(context.Context, Outcome)
	tracer   trace.Tracer

	allowed, exempt, warned, denied, failed, cached atomic.Uint64
}

// NewEngine returns an Engine deciding with set, checking signatures with v and remembering
// decisions in c. set, v and c must not be nil.
func NewEngine(set *Set, v Verifier, c DecisionCache, opts ...EngineOption) *Engine {
	if set == nil || v == nil || c == nil {
		panic("policy.NewEngine: nil set, verifier or cache")
	}
	o := engineOptions{logger: slog.New(slog.DiscardHandler), now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	e := &Engine{verifier: v, cache: c, logger: o.logger, now: o.now, observe: o.observe, tracer: o.tracer}
	e.set.Store(set)
	return e
}

// Swap makes set the policy set of every Admit that starts from now on. Decisions are cached
// under the set's version, so none made under the previous set is served again.
func (e *Engine) Swap(set *Set) {
	if set == nil {
		panic("policy.Engine.Swap: nil set")
	}
	e.set.Store(set)
}

// Set returns the policy set in use.
func (e *Engine) Set() *Set { return e.set.Load() }

// Stats returns the outcome counters.
func (e *Engine) Stats() Stats {
	return Stats{
		Allowed: e.allowed.Load(), Exempt: e.exempt.Load(), Warned: e.warned.Load(), Denied: e.denied.Load(),
		Failed: e.failed.Load(), Cached: e.cached.Load(),
	}
}

// Admit decides whether req.Manifest may be served and writes one audit line about it. It
// returns the decision, a *DenyError with it when the manifest is refused, or another error
// (lookup failures, invalid requests) when no decision could be made.
//
// The decision is cached under (Set.Version, req.Image, digest): the full image name rather
// than the repository path, so the same path under two upstreams never shares a decision.
// Concurrent Admits of one cold digest run one verification. Verification errors are not
// cached. When a verified index is admitted, each manifest it lists is recorded as allowed
// (AdmittedBy the index), so the platform manifests fetched next are served.
func (e *Engine) Admit(ctx context.Context, req Request) (Decision, error) {
	ctx, span := e.startAdmit(ctx, req)
	d, tier, err := e.admit(ctx, req)
	outcome := e.audit(ctx, req, d, tier != "", err)
	e.observeAdmit(ctx, span, Outcome{Decision: outcome, Policy: d.Policy, Tier: tier}, err)
	return d, err
}

// admit decides; tier names the decision cache tier the decision came from ("" when it was
// made now).
func (e *Engine) admit(ctx context.Context, req Request) (Decision, string, error) {
	if err := checkRequest(req); err != nil {
		return Decision{}, "", err
	}
	set := e.set.Load()
	pol := set.Match(req.Image)
	key := cache.Key{PolicyVersion: set.Version(), Repository: req.Image, Digest: req.Manifest.Digest}
	d, tier, err := e.cacheDo(ctx, key, func(ctx context.Context) (Decision, error) {
		return e.decide(ctx, set, pol, req)
	})
	if err != nil {
		return Decision{}, "", fmt.Errorf("admit %s@%s: %w", req.Image, req.Manifest.Digest, err)
	}
	if !d.Allowed {
		return d, tier, &DenyError{
			Image: req.Image, Digest: req.Manifest.Digest, Policy: d.Policy,
			Authorities: d.Unsatisfied, Reason: d.Reason,
		}
	}
	if d.Verified && isIndexContent(req.Manifest) {
		// A decision this process held already was recorded with its children here: they
		// are read one after another from memory, without a goroutine each on this warm path.
		e.admitChildren(ctx, key, d, req.Manifest, tier != TierLocal)
	}
	return d, tier, nil
}

// checkRequest refuses requests the proxy should never make.
func checkRequest(req Request) error {
	if req.Image == "" || req.Repository == "" {
		return fmt.Errorf("admit: image %q or repository %q is empty", req.Image, req.Repository)
	}
	d := req.Manifest.Digest
	if _, err := oci.ParseDigest(string(d)); err != nil {
		return fmt.Errorf("admit %s: manifest digest %q: %w", req.Image, d, err)
	}
	if got := d.Algorithm().FromBytes(req.Manifest.Bytes); got != d {
		return fmt.Errorf("admit %s: manifest bytes have digest %s, not %s", req.Image, got, d)
	}
	return nil
}

// decide makes a fresh decision; it runs inside the cache's fill.
func (e *Engine) decide(ctx context.Context, set *Set, pol *Policy, req Request) (Decision, error) {
	return e.decideInto(ctx, set, pol, req, nil)
}

// decideInto makes a fresh decision. Explain passes x, which it fills with the details of
// every authority and attestation requirement; Admit passes nil.
func (e *Engine) decideInto(ctx context.Context, set *Set, pol *Policy, req Request, x *Explanation) (Decision, error) {
	d := Decision{DecidedAt: e.now()}
	if pol == nil {
		d.Mode = "default"
		d.Allowed = set.DefaultPolicy() == DefaultAllow
		d.Reason = fmt.Sprintf("no policy covers image %s and defaultPolicy is %q", req.Image, set.DefaultPolicy())
		return d, nil
	}
	d.Policy, d.Mode = pol.name, string(pol.mode)
	if pol.mode == ModeOff {
		d.Allowed, d.Reason = true, "policy mode is off"
		return d, nil
	}
	if req.Registry == nil {
		return Decision{}, errors.New("no upstream registry to look up signatures in")
	}
	var notExempt string
	if IsSignatureArtifact(req.Manifest) {
		err := e.verifier.CheckArtifact(ctx, req.Registry, req.Repository, req.Manifest)
		if err == nil {
			d.Allowed, d.Exempt, d.Reason = true, true, "signature artifact, served without signatures of its own"
			return d, nil
		}
		if _, ok := errors.AsType[*verify.ArtifactError](err); !ok {
			return Decision{}, fmt.Errorf("check signature artifact: %w", err)
		}
		// Shaped like a signature, but its content is not one: an image like any other.
		notExempt = err.Error()
	}
	ev, verr, err := e.evaluateRequest(ctx, pol, req, x)
	if err != nil {
		return Decision{}, err
	}
	if verr != nil && !ev.satisfied {
		// A lookup failed and the policy is not met without it: no verdict, nothing cached.
		return Decision{}, fmt.Errorf("verify signatures: %w", verr)
	}
	d.Signers, d.Reason = ev.signers, ev.reason
	if notExempt != "" {
		d.Reason += " (" + notExempt + ")"
	}
	switch {
	case ev.satisfied:
		d.Allowed, d.Verified = true, true
	case pol.indexes == IndexesPerPlatform && isIndexContent(req.Manifest):
		d.Allowed, d.Unsatisfied = true, ev.unsatisfied
		d.Reason = fmt.Sprintf("index served unverified (%s) because indexes is %q: each platform manifest is checked when fetched", ev.reason, IndexesPerPlatform)
	case pol.mode == ModeWarn:
		d.Allowed, d.Warning, d.Unsatisfied = true, true, ev.unsatisfied
	default:
		d.Unsatisfied = ev.unsatisfied
	}
	return d, nil
}

// childWriters bounds the children of one index that admitChildren records at once.
const childWriters = 16

// admitChildren records every manifest the verified index m lists as allowed by it, unless
// a verified decision for it is already cached. It returns once all are recorded: a child is
// asked for right after its index. With concurrent set the children are recorded at once (at
// most childWriters at a time): with a shared tier each is a Redis read and a write, which
// one child after another made an index of n platforms wait 2n round trips before its
// response.
func (e *Engine) admitChildren(ctx context.Context, key cache.Key, parent Decision, m oci.Manifest, concurrent bool) {
	var index struct {
		Manifests []struct {
			Digest digest.Digest `json:"digest"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(m.Bytes, &index); err != nil {
		return // isIndexContent parsed it already
	}
	admitted := Decision{
		Allowed: true, Verified: true, Policy: parent.Policy, Mode: parent.Mode,
		Reason:  fmt.Sprintf("listed by verified index %s", m.Digest),
		Signers: parent.Signers, AdmittedBy: m.Digest, DecidedAt: e.now(),
	}
	record := func(ck cache.Key) {
		if have, ok := e.cache.Get(ctx, ck); ok && have.Verified {
			return
		}
		e.cache.Put(ctx, ck, admitted)
	}
	var wg sync.WaitGroup
	slots := make(chan struct{}, childWriters)
	for _, child := range index.Manifests {
		if child.Digest.Validate() != nil || child.Digest == m.Digest {
			continue
		}
		ck := cache.Key{PolicyVersion: key.PolicyVersion, Repository: key.Repository, Digest: child.Digest}
		if !concurrent {
			record(ck)
			continue
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			record(ck)
		})
	}
	wg.Wait()
}

// audit writes the one line every Admit produces and counts its outcome. Clean admissions are
// logged at INFO, denials and warn-mode admissions at WARN, failures to decide at ERROR. It
// returns the line's decision.
func (e *Engine) audit(ctx context.Context, req Request, d Decision, cached bool, err error) string {
	level, outcome := slog.LevelInfo, "allow"
	_, denied := errors.AsType[*DenyError](err)
	switch {
	case denied:
		level, outcome = slog.LevelWarn, "deny"
		e.denied.Add(1)
	case err != nil:
		level, outcome = slog.LevelError, "error"
		e.failed.Add(1)
	case d.Warning:
		level, outcome = slog.LevelWarn, "warn"
		e.allowed.Add(1)
		e.warned.Add(1)
	case d.Exempt:
		outcome = "exempt"
		e.allowed.Add(1)
		e.exempt.Add(1)
	default:
		e.allowed.Add(1)
	}
	if cached {
		e.cached.Add(1)
	}
	if !e.logger.Enabled(ctx, level) {
		return outcome
	}
	attrs := []slog.Attr{
		slog.String("image", req.Image),
		slog.String("digest", string(req.Manifest.Digest)),
		slog.String("decision", outcome),
		slog.String("policy", d.Policy),
		slog.String("mode", d.Mode),
		slog.String("reason", d.Reason),
		slog.Any("signers", d.Signers),
		slog.Bool("cached", cached),
	}
	if d.AdmittedBy != "" {
		attrs = append(attrs, slog.String("admittedBy", string(d.AdmittedBy)))
	}
	if err != nil && !denied {
		attrs = append(attrs, slog.Any("error", err))
	}
	// Straight to the handler: Logger.LogAttrs would walk the stack for a source position
	// that is always this line, on every cached GET.
	r := slog.NewRecord(time.Now(), level, "admission", 0)
	r.AddAttrs(attrs...)
	_ = e.logger.Handler().Handle(ctx, r)
	return outcome
}
