package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"golang.org/x/sync/singleflight"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/pushauth"
	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
)

// Gate decides, before any manifest is served, whether it may be. A *policy.DenyError is
// answered 403 DENIED with its message; any other error means the decision could not be made
// and is answered as an upstream failure. Either way nothing is served. *policy.Engine
// implements it.
type Gate interface {
	Admit(ctx context.Context, req policy.Request) (policy.Decision, error)
}

// signatureGate is a Gate that can tell whether deciding on an image may look up its
// signatures; a Gate without it is assumed to. *policy.Engine implements it.
type signatureGate interface {
	WantsSignatures(image string) bool
}

var _ signatureGate = (*policy.Engine)(nil)

// Options configure a Handler.
type Options struct {
	// Store is the content cache. Required.
	Store *store.Store
	// Upstreams are the registries the proxy may contact. Required.
	Upstreams *Upstreams
	// Gate decides on manifests. Required: there is no serving without a decision.
	Gate Gate
	// TagTTL is how long a tag's digest is trusted without asking the upstream. Default 0:
	// every tag request asks the upstream (a HEAD, and a GET only when the digest changed).
	TagTTL time.Duration
	// FillTimeout bounds the background completion of a blob download into the cache after
	// the client went away. Default 30m.
	FillTimeout time.Duration
	// ClientStall is how long one write of a blob to a client may block before the response
	// is cut; a live client at 10 KiB/s never hits it. Default 5m.
	ClientStall time.Duration
	// Logger receives one line per request. Default slog.Default().
	Logger *slog.Logger
	// Pushers authenticates and authorises signature pushes; nil makes the proxy read-only.
	Pushers *pushauth.Pushers
	// Artifacts checks that a pushed signature references nothing but signatures. Required
	// with Pushers.
	Artifacts ArtifactChecker
	// Decisions is told to forget its decisions about a digest when a signature for it is
	// pushed, so that a just-signed image is admitted at once. Optional.
	Decisions Forgetter
	// Meter records request counts and durations. Default: a no-op meter.
	Meter metric.Meter
	// ManifestMemory bounds the bytes of admitted manifests (each up to 64 KiB) kept in
	// memory, so that a GET by digest of one is answered without reading the store.
	// Default (0) DefaultManifestMemory; negative keeps none.
	ManifestMemory int64
	// MaxStale is how long, while an upstream fails, a tag keeps resolving to the digest the
	// upstream last gave it, and a stored manifest whose decision cannot be made again is
	// served on its last admission (see stale.go). Default 0: off, an upstream failure is
	// the answer.
	MaxStale time.Duration
	// MaxInFlight caps the requests served at once (see limits.go). Default (0)
	// DefaultMaxInFlight.
	MaxInFlight int
	// Now is the clock of tag ages and stale answers. Default time.Now.
	Now func() time.Time
}

// ArtifactChecker checks what a manifest shaped like a signature artifact references: nil
// when it is nothing but signatures, a *verify.ArtifactError when it is something else, any
// other error when that could not be found out. *verify.Verifier implements it.
type ArtifactChecker interface {
	CheckArtifact(ctx context.Context, reg verify.Registry, repo string, m oci.Manifest) error
}

var _ ArtifactChecker = (*verify.Verifier)(nil)

// Forgetter drops cached decisions about digest d (of every repository when repository is
// empty). *cache.Memory[policy.Decision] implements it.
type Forgetter interface {
	Forget(ctx context.Context, repository string, d digest.Digest)
}

// Handler serves the read side of the OCI distribution API as a pull-through mirror.
type Handler struct {
	opts     Options
	log      *slog.Logger
	tags     *expirable.LRU[string, tagEntry]
	uploads  *expirable.LRU[string, *upload]
	requests metric.Int64Counter
	duration metric.Float64Histogram
	flights  singleflight.Group // manifest resolutions in progress
	// downloads are the blob downloads in progress (see blobs.go).
	downloads downloads
	// background counts the store writes done behind requests; Close waits for them.
	background sync.WaitGroup
	// grants remembers which blobs each repository may serve (see grants.go).
	grants grants
	// memory keeps admitted manifests for GETs by digest (see manifestcache.go).
	memory *manifestMemory
	// metrics holds the measurement options of each combination of request attributes.
	metrics requestMetrics
	// apiVersion is the Docker-Distribution-API-Version header, built once (see memManifest).
	apiVersion []string
	// stale holds the stale-if-error state (see stale.go); nil when MaxStale is 0.
	stale *staleState
	// inFlight enforces MaxInFlight (see limits.go).
	inFlight *inFlight
}

type tagEntry struct {
	d  digest.Digest
	at time.Time
}

// New returns a Handler.
func New(opts Options) (*Handler, error) {
	if opts.Store == nil || opts.Upstreams == nil || opts.Gate == nil {
		return nil, errors.New("proxy: store, upstreams and gate are required")
	}
	if opts.Pushers != nil && opts.Artifacts == nil {
		return nil, errors.New("proxy: pushes need an artifact checker")
	}
	if opts.TagTTL < 0 {
		return nil, errors.New("proxy: tag TTL must not be negative")
	}
	if opts.MaxStale < 0 || opts.MaxInFlight < 0 {
		return nil, errors.New("proxy: max stale and max in flight must not be negative")
	}
	if opts.MaxInFlight == 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.FillTimeout == 0 {
		opts.FillTimeout = 30 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ClientStall == 0 {
		opts.ClientStall = defaultClientStall
	}
	if opts.Meter == nil {
		opts.Meter = noop.NewMeterProvider().Meter("")
	}
	if opts.ManifestMemory == 0 {
		opts.ManifestMemory = DefaultManifestMemory
	}
	h := &Handler{opts: opts, log: opts.Logger, tags: expirable.NewLRU[string, tagEntry](16384, nil, 0), grants: newGrants(),
		downloads: downloads{m: map[string]*download{}}, memory: newManifestMemory(opts.ManifestMemory),
		metrics: requestMetrics{m: map[metricKey]*metricOptions{}}, apiVersion: []string{"registry/2.0"}}
	h.uploads = newUploads(opts.Store, &h.background)
	var err error
	if h.requests, err = opts.Meter.Int64Counter("portcullis.requests",
		metric.WithDescription("Distribution API requests, by method, endpoint, status and source.")); err != nil {
		return nil, err
	}
	if h.duration, err = opts.Meter.Float64Histogram("portcullis.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to answer a distribution API request.")); err != nil {
		return nil, err
	}
	if h.inFlight, err = newInFlight(opts.MaxInFlight, opts.Meter); err != nil {
		return nil, err
	}
	if opts.MaxStale > 0 {
		if h.stale, err = newStaleState(opts.MaxStale, opts.Meter); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ex := &exchange{rec: recorder{ResponseWriter: w, status: http.StatusOK}}
	rec, info := &ex.rec, &ex.info
	defer func() {
		ctx := r.Context()
		elapsed := time.Since(start)
		if h.log.Enabled(ctx, slog.LevelInfo) {
			h.logRequest(ctx, r, rec, info, elapsed)
		}
		mo := h.metrics.options(r.Method, info.rt.kind, rec.status, info.source, errorClass(info.rt.kind, info.err))
		h.requests.Add(ctx, 1, mo.add...)
		h.duration.Record(ctx, elapsed.Seconds(), mo.record...)
		if info.err != nil {
			h.inFlight.count(ctx, info.err)
		}
	}()
	if err := h.serve(rec, r, info); err != nil {
		info.err = err
		writeError(rec, r, info.rt.kind, err)
	}
}

// exchange is what ServeHTTP keeps about one request, in one allocation.
type exchange struct {
	rec  recorder
	info requestInfo
}

// logRequest writes the request line (the caller checked that the level is enabled); its
// attributes live on the stack.
func (h *Handler) logRequest(ctx context.Context, r *http.Request, rec *recorder, info *requestInfo, elapsed time.Duration) {
	var buf [13]slog.Attr
	attrs := append(buf[:0],
		slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Int("status", rec.status), slog.Int64("bytes", rec.bytes),
		slog.Duration("duration", elapsed))
	if info.rt.upstream != nil {
		attrs = append(attrs, slog.String("upstream", info.rt.upstream.Name()), slog.String("repo", info.rt.repo), slog.String("ref", info.rt.ref))
	}
	if info.digest != "" {
		attrs = append(attrs, slog.String("digest", info.digest.String()))
	}
	if info.source != "" {
		attrs = append(attrs, slog.String("source", info.source))
	}
	if info.user != "" {
		attrs = append(attrs, slog.String("user", info.user))
	}
	if info.shared {
		attrs = append(attrs, slog.Bool("shared", true))
	}
	if info.err != nil {
		attrs = append(attrs, slog.String("error", info.err.Error()))
	}
	// Straight to the handler: Logger.LogAttrs would walk the stack for a source position
	// that is always this line (about a microsecond a request).
	line := slog.NewRecord(time.Now(), slog.LevelInfo, "request", 0)
	line.AddAttrs(attrs...)
	_ = h.log.Handler().Handle(ctx, line)
}

// requestMetrics holds the measurement options of each combination of request attributes,
// built once: a request records its count and duration without allocating. It keeps at
// most maxMetricOptions combinations (the method is the client's word); beyond that,
// options are built per request.
type requestMetrics struct {
	mu sync.RWMutex
	m  map[metricKey]*metricOptions
}

const maxMetricOptions = 1024

type metricKey struct {
	method, endpoint, source, class string
	status                          int
}

type metricOptions struct {
	add    []metric.AddOption
	record []metric.RecordOption
}

func (rm *requestMetrics) options(method, endpoint string, status int, source, class string) *metricOptions {
	k := metricKey{method: method, endpoint: endpoint, source: source, class: class, status: status}
	rm.mu.RLock()
	mo, ok := rm.m[k]
	rm.mu.RUnlock()
	if ok {
		return mo
	}
	o := metric.WithAttributes(attribute.String("method", method), attribute.String("endpoint", endpoint),
		attribute.Int("status", status), attribute.String("source", source), attribute.String("error", class))
	mo = &metricOptions{add: []metric.AddOption{o}, record: []metric.RecordOption{o}}
	rm.mu.Lock()
	if len(rm.m) < maxMetricOptions {
		rm.m[k] = mo
	}
	rm.mu.Unlock()
	return mo
}

type requestInfo struct {
	rt     route
	digest digest.Digest
	source string // "store" or "upstream"
	user   string // authenticated push user
	shared bool   // the manifest came from a resolution shared with concurrent requests
	err    error
	// pre is the signature lookup started with a cold manifest's fetch (see prefetch).
	pre *prefetch
	// tagAt is, for a manifest by tag, when the upstream last confirmed the tag's digest.
	tagAt time.Time
	// mm is the manifest by digest found in memory before the request was admitted to the
	// in-flight limit.
	mm *memManifest
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, info *requestInfo) error {
	w.Header()["Docker-Distribution-Api-Version"] = h.apiVersion
	if r.URL.Path == "/v2" || r.URL.Path == "/v2/" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return errcode.ErrorCodeUnsupported.WithMessage("method not allowed")
		}
		if p := h.opts.Pushers; p != nil {
			// Docker's convention: challenge so that clients send (and `login` checks)
			// credentials. Pulls stay anonymous. A request without credentials is answered
			// without hashing anything; a throttled address gets 429.
			user, err := p.Authenticate(r)
			if err != nil || user == "" {
				return loginFailed(w, p, err, "authentication required to push; pulls need none")
			}
			info.user = user
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, "{}")
		}
		return nil
	}
	if !strings.HasPrefix(r.URL.Path, "/v2/") {
		return errcode.ErrorCodeUnsupported.WithMessage(fmt.Sprintf("%s is not a distribution API endpoint", r.URL.Path))
	}
	rt, err := h.opts.Upstreams.parseRoute(r)
	info.rt = rt
	if err != nil {
		return err
	}
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	if rt.kind == kindManifests && read && strings.Contains(rt.ref, ":") { // a digest (parseRoute checked it)
		info.mm = h.memory.get(rt, digest.Digest(rt.ref))
	}
	if info.mm == nil {
		// Everything but a manifest answered from memory counts against MaxInFlight.
		if err := h.inFlight.acquire(); err != nil {
			return err
		}
		defer h.inFlight.release()
	}
	switch {
	case rt.kind == kindManifests && read:
		return h.serveManifest(w, r, rt, info)
	case rt.kind == kindBlobs && read:
		return h.serveBlob(w, r, rt, info)
	case rt.kind == kindTags && r.Method == http.MethodGet:
		return h.serveTags(w, r, rt)
	case rt.kind == kindReferrers && r.Method == http.MethodGet:
		return h.serveReferrers(w, r, rt)
	case !read || rt.kind == kindUploads:
		err := h.servePush(w, r, rt, info)
		if r.Method == http.MethodDelete && rt.kind == kindManifests {
			if d, perr := digest.Parse(rt.ref); perr == nil {
				h.memory.remove(rt, d) // deleted (or maybe deleted) upstream
			}
		}
		return err
	}
	return errcode.ErrorCodeUnsupported.WithMessage(fmt.Sprintf("%s %s is not supported: portcullis is a read-only mirror", r.Method, r.URL.Path))
}

// resolveShared collapses concurrent resolutions of one reference, so that N simultaneous
// cold requests make one upstream fetch. The shared work is detached from any one client's
// cancellation and bounded by the upstream timeouts.
func (h *Handler) resolveShared(ctx context.Context, rt route, info *requestInfo) (oci.Manifest, error) {
	type resolved struct {
		m      oci.Manifest
		source string
		pre    *prefetch
		tagAt  time.Time
	}
	ch := h.flights.DoChan(rt.upstream.Name()+"/"+rt.repo+":"+rt.ref, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*rt.upstream.Timeout())
		defer cancel()
		var ri requestInfo
		m, err := h.resolveManifest(fctx, rt, &ri)
		return resolved{m, ri.source, ri.pre, ri.tagAt}, err
	})
	select {
	case <-ctx.Done():
		return oci.Manifest{}, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return oci.Manifest{}, res.Err
		}
		r := res.Val.(resolved)
		info.source, info.pre, info.tagAt = r.source, r.pre, r.tagAt
		info.shared = res.Shared
		return r.m, nil
	}
}

// resolveManifest returns the manifest rt.ref names, from the store when possible.
func (h *Handler) resolveManifest(ctx context.Context, rt route, info *requestInfo) (oci.Manifest, error) {
	up, st := rt.upstream, h.opts.Store
	if d, err := digest.Parse(rt.ref); err == nil {
		m, err := h.storedManifest(ctx, rt, d)
		if err == nil {
			info.source = "store"
			return m, nil
		}
		if !errors.Is(err, oci.ErrNotFound) {
			h.log.WarnContext(ctx, "content store read failed", slog.String("error", err.Error()))
		}
		h.prefetch(ctx, rt, d, info) // cold: its decision will want its signatures
		if st.HasManifest(ctx, d) {
			// Stored for another repository: ask the upstream whether this one has it too.
			if hd, err := up.HeadManifest(ctx, rt.repo, d.String()); err == nil && hd == d {
				if err := st.LinkManifest(ctx, up.Name(), rt.repo, d); err == nil {
					if m, err := st.Manifest(ctx, up.Name(), rt.repo, d); err == nil {
						info.source = "store"
						return m, nil
					}
				}
			}
		}
		m, err = h.fetchManifest(ctx, rt, info)
		if err != nil {
			return m, h.staleManifest(ctx, rt, err)
		}
		return m, nil
	}

	key := up.Name() + "/" + rt.repo + ":" + rt.ref
	if e, ok := h.tags.Get(key); ok {
		fresh := h.opts.TagTTL > 0 && h.now().Sub(e.at) < h.opts.TagTTL
		if !fresh {
			// The HEAD answer only tells whether the tag still points where it did; the
			// bytes served are always the stored ones whose digest was computed here.
			hd, err := up.HeadManifest(ctx, rt.repo, rt.ref)
			switch {
			case err == nil && hd == e.d:
				fresh = true
				e.at = h.now()
				h.tags.Add(key, e)
			case err != nil && h.stale != nil && upstreamFailing(err):
				// No GET: it would fail the same way, after as long a wait.
				return h.staleTag(ctx, rt, key, err, info)
			case err == nil && hd.Validate() == nil:
				// The tag moved: the upstream's digest is a hint to start the new digest's
				// signature lookup with the GET; the decision is about the digest of the bytes
				// the GET returns, and the lookup is used only if that is the hinted one.
				h.prefetch(ctx, rt, hd, info)
			}
		}
		if fresh {
			if m, err := h.storedManifest(ctx, rt, e.d); err == nil {
				info.source, info.tagAt = "store", e.at
				return m, nil
			}
		}
	}
	m, err := h.fetchManifest(ctx, rt, info)
	if err != nil {
		return h.staleTag(ctx, rt, key, err, info)
	}
	info.tagAt = h.now()
	h.tags.Add(key, tagEntry{d: m.Digest, at: info.tagAt})
	return m, nil
}

// prefetch starts the signature lookup of d (see prefetch.go), unless the Gate says that
// deciding on rt's image looks up no signatures, or that d's decision is known in this
// process. When only the replicas' shared tier can tell, the lookup is started behind its
// answer, which is asked concurrently with the manifest's fetch: the fetch never waits for
// it, and a decision known there (or being made by another replica) starts no lookup.
func (h *Handler) prefetch(ctx context.Context, rt route, d digest.Digest, info *requestInfo) {
	image := rt.image()
	if sg, ok := h.opts.Gate.(signatureGate); ok && !sg.WantsSignatures(image) {
		return
	}
	var ask func(context.Context) bool
	if dg, ok := h.opts.Gate.(decidedGate); ok {
		var known bool
		if known, ask = dg.Decided(ctx, image, d); known {
			return // decided here: the decision looks nothing up
		}
	}
	info.pre = startPrefetch(ctx, rt, d, wantsAttestations(h.opts.Gate, image), ask)
}

// storedManifest returns manifest d of rt's repository from memory or the store.
func (h *Handler) storedManifest(ctx context.Context, rt route, d digest.Digest) (oci.Manifest, error) {
	if mm := h.memory.get(rt, d); mm != nil {
		return mm.m, nil
	}
	return h.opts.Store.Manifest(ctx, rt.upstream.Name(), rt.repo, d)
}

// fetchManifest fetches rt's manifest from the upstream and stores it behind the request. For
// a tag whose signature lookup has not started yet, the digest the upstream's answer names
// in its headers starts it before the body is read (see prefetch): a hint only, used when it
// is the digest of the bytes.
func (h *Handler) fetchManifest(ctx context.Context, rt route, info *requestInfo) (oci.Manifest, error) {
	var hint func(digest.Digest)
	if info.pre == nil && !strings.Contains(rt.ref, ":") { // a tag (parseRoute checked it)
		hint = func(d digest.Digest) { h.prefetch(ctx, rt, d, info) }
	}
	m, err := rt.upstream.ManifestHinted(ctx, rt.repo, rt.ref, hint)
	if err != nil {
		return m, err
	}
	info.source = "upstream"
	// Written behind: the store's writes (fsync'd files) are off the request's path, and
	// the store answers reads of the manifest from memory until they are done.
	done := h.opts.Store.PutPending(rt.upstream.Name(), rt.repo, m)
	h.background.Go(func() {
		defer done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := h.opts.Store.PutManifest(sctx, rt.upstream.Name(), rt.repo, m); err != nil {
			h.log.WarnContext(sctx, "caching manifest failed", slog.String("digest", m.Digest.String()), slog.String("error", err.Error()))
		}
	})
	return m, nil
}

// Close waits until the store writes made behind requests have finished, or ctx is done.
// Call it after the HTTP server has stopped taking requests.
func (h *Handler) Close(ctx context.Context) error {
	finished := make(chan struct{})
	go func() {
		h.background.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for store writes: %w", ctx.Err())
	}
}

// serveManifest answers a manifest request once the Gate admitted the manifest. A manifest
// by digest that was admitted before is taken from memory (see manifestMemory), with its
// response headers ready; it is decided all the same.
func (h *Handler) serveManifest(w http.ResponseWriter, r *http.Request, rt route, info *requestInfo) error {
	ctx := r.Context()
	mm := info.mm
	var m oci.Manifest
	if mm != nil {
		m = mm.m
		info.source = "store"
	} else {
		var err error
		if m, err = h.resolveShared(ctx, rt, info); err != nil {
			return err
		}
		mm = h.memory.get(rt, m.Digest)
	}
	info.digest = m.Digest
	image := ""
	if mm != nil {
		image = mm.image
	} else {
		image = rt.image()
	}
	var reg verify.Registry = rt.upstream
	if info.pre != nil && info.pre.d == m.Digest {
		reg = info.pre
	}
	dec, err := h.opts.Gate.Admit(ctx, policy.Request{Image: image, Repository: rt.repo, Manifest: m, Registry: reg})
	staleDecision, staleTag := false, info.source == staleSource
	if err != nil && h.stale != nil {
		// The decision could not be made (a denial is never overridden): its last admission?
		if err = h.staleDecision(ctx, rt, m, err); err == nil {
			staleDecision, info.source = true, staleSource
		}
	}
	if err == nil && staleTag {
		h.stale.count(ctx, "tag", "served")
	}
	// The store's records of this response are written once it is sent: on a cold
	// decision they are a few file creates, which would compete with sending it.
	var records []func(context.Context)
	if err == nil && !staleDecision && h.stale != nil {
		grant := ""
		if mm != nil {
			grant = mm.grantKey
		}
		tagAt := info.tagAt
		if staleTag {
			tagAt = time.Time{}
		}
		if write := h.remember(rt, m, dec, tagAt, grant); write != nil {
			records = append(records, write)
		}
	}
	if err != nil {
		if !h.pusherMaySee(r, rt, err, info) {
			return err
		}
	} else if mm == nil || !h.grants.manifests.Contains(mm.grantKey) {
		if write := h.grantReferences(rt, m); write != nil {
			records = append(records, write)
		}
		if mm == nil {
			h.memory.add(rt, m)
		}
	}
	if len(records) > 0 {
		// Counted before the response leaves, so that Close, once a client has it, waits
		// for them.
		h.background.Add(1)
	}
	hd := w.Header()
	if mm != nil {
		hd["Content-Type"], hd["Docker-Content-Digest"], hd["Content-Length"], hd["Etag"] = mm.contentType, mm.digest, mm.length, mm.etag
	} else {
		hd.Set("Content-Type", m.MediaType)
		hd.Set("Docker-Content-Digest", m.Digest.String())
		hd.Set("Content-Length", strconv.Itoa(len(m.Bytes)))
		hd.Set("Etag", `"`+m.Digest.String()+`"`)
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(m.Bytes)
	}
	if len(records) > 0 {
		_ = http.NewResponseController(w).Flush()
		go func() {
			defer h.background.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			for _, write := range records {
				write(sctx)
			}
		}()
	}
	return nil
}

// pusherMaySee lets a user who may push signatures for an image resolve it while it is
// still denied: signing needs the digest of an image that is not signed yet.
func (h *Handler) pusherMaySee(r *http.Request, rt route, err error, info *requestInfo) bool {
	var den *policy.DenyError
	if h.opts.Pushers == nil || !errors.As(err, &den) {
		return false
	}
	user, aerr := h.opts.Pushers.Authenticate(r)
	if aerr != nil || user == "" || !h.opts.Pushers.MayPush(user, rt.image()) {
		return false
	}
	info.user = user
	h.log.InfoContext(r.Context(), "denied manifest served to a push user for signing",
		slog.String("user", user), slog.String("image", rt.image()), slog.String("digest", den.Digest.String()))
	return true
}

func (h *Handler) serveTags(w http.ResponseWriter, r *http.Request, rt route) error {
	q := r.URL.Query()
	if n := q.Get("n"); n != "" {
		if v, err := strconv.Atoi(n); err != nil || v < 0 {
			return errcode.ErrorCodePaginationNumberInvalid.WithMessage(fmt.Sprintf("invalid n %q", n))
		}
	}
	tl, next, err := rt.upstream.Tags(r.Context(), rt.repo, q.Get("n"), q.Get("last"))
	if err != nil {
		return err
	}
	tl.Name = rt.name
	if tl.Tags == nil {
		tl.Tags = []string{}
	}
	if next != nil {
		if rt.ns != "" {
			next.Set("ns", rt.ns)
		}
		link := url.URL{Path: "/v2/" + rt.name + "/tags/list", RawQuery: next.Encode()}
		w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="next"`, link.String()))
	}
	return writeJSON(w, "application/json", tl)
}

func (h *Handler) serveReferrers(w http.ResponseWriter, r *http.Request, rt route) error {
	d := digest.Digest(rt.ref)
	descs, err := rt.upstream.Referrers(r.Context(), rt.repo, d)
	if err != nil {
		return err
	}
	if at := r.URL.Query().Get("artifactType"); at != "" {
		kept := []ocispec.Descriptor{}
		for _, desc := range descs {
			if desc.ArtifactType == at {
				kept = append(kept, desc)
			}
		}
		descs = kept
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	idx := ocispec.Index{MediaType: oci.MediaTypeOCIIndex, Manifests: descs}
	idx.SchemaVersion = 2
	return writeJSON(w, oci.MediaTypeOCIIndex, idx)
}

func writeJSON(w http.ResponseWriter, contentType string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
	return nil
}

// recorder remembers the status and size of a response for the request log.
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
