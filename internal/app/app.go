package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/pushauth"
	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/trustroot"
)

// DefaultRootDirectory is where the filesystem store keeps content when params say nothing.
const DefaultRootDirectory = "/var/lib/portcullis"

// DefaultKeyTimeout bounds loading the policies' keys when keys.timeout is 0.
const DefaultKeyTimeout = 30 * time.Second

// retiredCloseTimeout bounds how long a configuration replaced by Reload is waited for to
// finish the store writes its requests started (a blob fill takes at most 30m).
const retiredCloseTimeout = 35 * time.Minute

// App is a configured portcullis.
type App struct {
	// Handler serves the distribution API, /healthz, /readyz, /metrics and /debug/decision.
	Handler http.Handler

	opts     Options
	log      *slog.Logger
	driver   storagedriver.StorageDriver
	store    *store.Store
	verifier *verify.Verifier
	meter    metric.Meter
	tel      appTelemetry
	// roots resolves the policies' trust roots; its TUF roots are refreshed until Close.
	roots       *trustroot.Manager
	stopRefresh context.CancelFunc
	refreshes   sync.WaitGroup

	// cur is the configuration serving requests; Reload replaces it whole.
	cur atomic.Pointer[generation]
	// draining is set by Drain: /readyz answers 503 from then on.
	draining atomic.Bool

	mu sync.Mutex // serialises Reload and Close; guards the fields below
	// retired are generations replaced by Reload whose store writes may still run.
	retired map[*generation]struct{}
	// past holds the counters of retired generations, so that metrics never go backwards.
	pastDecisions policy.Stats
	pastLogins    telemetry.LoginCounts
	pastRedis     telemetry.RedisCounts
	// stopSweeps ends the store's periodic sweeps; sweeps counts them for Close.
	stopSweeps context.CancelFunc
	sweeps     sync.WaitGroup
	closing    sync.WaitGroup // retired generations being waited for
}

// generation is everything a configuration builds that requests use: a request runs
// entirely under the generation it started with.
type generation struct {
	cfg       *config.Config
	engine    *policy.Engine
	decisions decisionCache
	proxy     *proxy.Handler
	upstreams []*upstream.Client
	upConfigs []upstream.Config // as built, password files read
	pushers   *pushauth.Pushers
	htpasswd  []byte
	cert      *tls.Certificate

	// redis is the Redis tier (also decisions); nil without cache.redis.
	redis *sharedTier
	// redisPassword is cache.redis.passwordFile's content as built.
	redisPassword string
}

// Options are what the App takes from its environment.
type Options struct {
	// Logger receives request, audit and operational logs. Default slog.Default().
	Logger *slog.Logger
	// LogLevel, when set, is the level of Logger's handler: Reload sets it from log.level.
	LogLevel *slog.LevelVar
	// LookupEnv reads environment variables named by key sources (key.env). Default: none
	// are set.
	LookupEnv func(string) (string, bool)
	// TracerProvider, when set, traces requests, decisions, signature lookups, upstream
	// requests and content store reads and writes, and log lines within a sampled span
	// carry its trace_id (see telemetry.NewTracing). Default: no tracing, at no cost.
	TracerProvider trace.TracerProvider
}

// New builds the App for cfg, which must be valid.
func New(ctx context.Context, cfg *config.Config, opts Options) (*App, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.LookupEnv == nil {
		opts.LookupEnv = func(string) (string, bool) { return "", false }
	}
	log := opts.Logger
	if opts.TracerProvider != nil {
		log = slog.New(telemetry.LogHandler(log.Handler()))
	}
	driver, err := newDriver(ctx, cfg.Storage)
	if err != nil {
		return nil, err
	}
	driver = telemetry.TraceDriver(driver, opts.TracerProvider)
	metrics, err := telemetry.New()
	if err != nil {
		return nil, err
	}
	a := &App{
		opts: opts, log: log, driver: driver, store: store.New(driver),
		verifier: verify.New(verify.WithLogger(log), verify.WithTracerProvider(opts.TracerProvider)),
		roots:    trustroot.NewManager(trustroot.WithLogger(log)),
		meter:    metrics.Meter("github.com/portcullis/portcullis"),
		retired:  map[*generation]struct{}{},
	}
	if err := a.startTelemetry(); err != nil {
		return nil, err
	}
	g, err := a.build(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	a.cur.Store(g)
	a.roots.Keep(g.engine.Set().TrustRoots())
	if err := telemetry.ObserveLogins(a.meter, a.loginCounts); err != nil {
		return nil, err
	}
	// Before serving nothing of this process is in progress; in a store other replicas share
	// (s3), theirs may be: only what is old enough goes there.
	local := cfg.Storage.Driver == "filesystem" || cfg.Storage.Driver == "inmemory"
	if n, err := a.store.SweepUploads(ctx, time.Now(), local); err != nil {
		log.Warn("sweeping unfinished uploads failed", slog.String("error", err.Error()))
	} else if n > 0 {
		log.Info("removed unfinished uploads of a previous run", slog.Int("uploads", n))
	}
	if err := telemetry.ObserveStore(a.meter, a.store.Bytes, a.store.Evictions); err != nil {
		return nil, err
	}
	if err := telemetry.ObserveRedis(a.meter, a.redisCounts); err != nil {
		return nil, err
	}
	a.startSweeps(ctx, cfg.Storage)
	a.startTrustRootRefresh(ctx)
	if opts.LogLevel != nil {
		opts.LogLevel.Set(logLevel(cfg.Log.Level))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := a.ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
		// Ready, but a TUF trust root serves its last good root: say so.
		for _, p := range a.roots.Problems() {
			_, _ = w.Write([]byte("degraded: " + p + "\n"))
		}
	})
	mux.Handle("GET /metrics", metrics.Handler())
	mux.HandleFunc("GET /debug/decision", a.serveDecision)
	// Each request is served by the configuration current when it arrives.
	v2 := a.traceV2(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { a.cur.Load().proxy.ServeHTTP(w, r) }))
	mux.Handle("/v2/", v2)
	mux.Handle("/v2", v2)
	a.Handler = mux
	return a, nil
}

// build makes the generation of cfg. Parts whose configuration (and files) did not change
// since prev are reused: upstream clients keep their connections, the push users their
// login throttle, the decision cache its decisions (which are keyed by policy version, so
// none made under other policies is served).
func (a *App) build(ctx context.Context, cfg *config.Config, prev *generation) (_ *generation, err error) {
	g := &generation{cfg: cfg}
	defer func() {
		if err != nil && g.redis != nil && (prev == nil || g.redis != prev.redis) {
			_ = g.redis.Close()
		}
	}()
	timeout := cfg.Keys.Timeout
	if timeout == 0 {
		timeout = DefaultKeyTimeout
	}
	kctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pcfg, err := a.kmsPlugins(kctx, cfg)
	var set *policy.Set
	if err == nil {
		set, err = policy.Compile(kctx, pcfg, policy.WithLookupEnv(a.opts.LookupEnv), policy.WithTrustRoots(a.roots))
	}
	if err != nil {
		if kctx.Err() != nil {
			return nil, fmt.Errorf("loading keys took longer than keys.timeout (%s): %w", timeout, err)
		}
		return nil, err
	}
	if cfg.TLS.Cert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		g.cert = &cert
	}

	if err := a.buildDecisions(g, prev); err != nil {
		return nil, err
	}
	g.engine = policy.NewEngine(set, a.verifier, g.decisions, policy.WithLogger(a.log),
		policy.WithObserver(a.tel.observeDecision), policy.WithTracerProvider(a.opts.TracerProvider))

	for i, uc := range cfg.Upstreams {
		uc, err := readPasswordFile(uc)
		if err != nil {
			return nil, fmt.Errorf("upstreams[%d].%w", i, err)
		}
		g.upConfigs = append(g.upConfigs, uc)
		if prev != nil && i < len(prev.upConfigs) && reflect.DeepEqual(prev.upConfigs[i], uc) {
			g.upstreams = append(g.upstreams, prev.upstreams[i])
			continue
		}
		up, err := upstream.New(uc, nil, a.tel.upstreamOption(ctx, uc.Name))
		if err != nil {
			return nil, fmt.Errorf("upstreams[%d].%w", i, err)
		}
		g.upstreams = append(g.upstreams, up)
	}
	routes, err := proxy.NewUpstreams(g.upstreams...)
	if err != nil {
		return nil, err
	}

	if cfg.Push.Htpasswd != "" {
		if g.htpasswd, err = os.ReadFile(cfg.Push.Htpasswd); err != nil {
			return nil, fmt.Errorf("push.htpasswd: %w", err)
		}
		if prev != nil && prev.pushers != nil && reflect.DeepEqual(prev.cfg.Push, cfg.Push) && bytes.Equal(prev.htpasswd, g.htpasswd) {
			g.pushers = prev.pushers
		} else if g.pushers, err = pushauth.New(cfg.Push, g.htpasswd); err != nil {
			return nil, fmt.Errorf("push.%w", err)
		}
	}

	g.proxy, err = proxy.New(proxy.Options{
		Meter:       a.meter,
		Store:       a.store,
		Upstreams:   routes,
		Gate:        g.engine,
		Pushers:     g.pushers,
		Artifacts:   a.verifier,
		Decisions:   g.decisions,
		TagTTL:      cfg.Cache.TagTTL,
		MaxStale:    cfg.Cache.MaxStale,
		MaxInFlight: cfg.Server.MaxInFlight,
		Logger:      a.log,
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// kmsPlugins returns cfg's policy configuration. When keys.allowKMSPlugins is set, the public
// keys of its KMS authorities are fetched here, through sigstore's plugins where no linked
// provider serves them, and given to the policy as PEM data; otherwise the policy loads them
// and plugins are never run.
func (a *App) kmsPlugins(ctx context.Context, cfg *config.Config) (policy.Config, error) {
	pc := cfg.Policy()
	if !cfg.Keys.AllowKMSPlugins {
		return pc, nil
	}
	pc.Policies = append([]policy.PolicyConfig(nil), pc.Policies...)
	for i := range pc.Policies {
		p := &pc.Policies[i]
		p.Authorities = append([]policy.AuthorityConfig(nil), p.Authorities...)
		for j := range p.Authorities {
			k := &p.Authorities[j].Key
			if k.KMS == "" {
				continue
			}
			pub, err := keys.KMSPublicKey(ctx, k.KMS, keys.WithKMSPlugins())
			if err != nil {
				return pc, fmt.Errorf("policies[%d].authorities[%d].key.kms: %w", i, j, err)
			}
			pemKey, err := keys.PublicKeyPEM(pub.Verifier.PublicKey)
			if err != nil {
				return pc, fmt.Errorf("policies[%d].authorities[%d].key.kms: %w", i, j, err)
			}
			*k = policy.KeyConfig{Data: string(pemKey)}
		}
	}
	return pc, nil
}

// readPasswordFile returns uc with its auth.passwordFile read into auth.password (less one
// trailing newline, which files written by echo and editors end with).
func readPasswordFile(uc upstream.Config) (upstream.Config, error) {
	if uc.Auth == nil || uc.Auth.PasswordFile == "" {
		return uc, nil
	}
	b, err := keys.ReadFile(uc.Auth.PasswordFile)
	if err != nil {
		return uc, fmt.Errorf("auth.passwordFile: %w", err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	auth := *uc.Auth
	auth.Password, auth.PasswordFile = pw, ""
	uc.Auth = &auth
	return uc, nil
}

// Reload builds the whole of cfg — policies and their keys, upstreams and their
// credentials, push users and the htpasswd file, TTLs and limits, the TLS certificate — and,
// if all of it is valid, makes it serve every request that starts from then on, in one
// step; requests under way finish under the configuration they started with. Decisions made
// under the old policies are never served again (the policy version is part of every
// decision's key). Settings that need a restart (listen, turning TLS on or off, the storage
// driver and its params, log.format) are logged as such and otherwise ignored. On error
// the running configuration stays, untouched.
func (a *App) Reload(ctx context.Context, cfg *config.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	start := time.Now()
	old := a.cur.Load()
	g, err := a.build(ctx, cfg, old)
	if err != nil {
		return err
	}
	a.cur.Store(g)
	a.roots.Keep(g.engine.Set().TrustRoots())
	if a.opts.LogLevel != nil {
		a.opts.LogLevel.Set(logLevel(cfg.Log.Level))
	}
	if o, n := old.cfg.Storage, cfg.Storage; o.MaxSize != n.MaxSize || o.MaxAge != n.MaxAge || o.SweepInterval != n.SweepInterval {
		a.stopSweeps()
		a.sweeps.Wait()
		a.startSweeps(ctx, cfg.Storage)
	}
	a.retire(old)
	for _, key := range restartNeeded(old.cfg, cfg) {
		a.log.Warn("configuration changed a setting that needs a restart; the running value stays until then", slog.String("key", key))
	}
	a.log.Info("configuration reloaded", slog.String("oldPolicyVersion", old.engine.Set().Version()),
		slog.String("policyVersion", g.engine.Set().Version()), slog.Duration("took", time.Since(start)))
	return nil
}

// retire keeps old's counters and waits, in the background, for the store writes its
// requests started; Close waits for them too. a.mu is held.
func (a *App) retire(old *generation) {
	s := old.engine.Stats()
	p := &a.pastDecisions
	p.Allowed, p.Exempt, p.Warned, p.Denied, p.Failed, p.Cached = p.Allowed+s.Allowed, p.Exempt+s.Exempt,
		p.Warned+s.Warned, p.Denied+s.Denied, p.Failed+s.Failed, p.Cached+s.Cached
	if old.pushers != nil && old.pushers != a.cur.Load().pushers {
		ls := old.pushers.Stats()
		a.pastLogins.Hashes += ls.Hashes
		a.pastLogins.Failures += ls.Failures
		a.pastLogins.Throttled += ls.Throttled
	}
	cur := a.cur.Load()
	closeRedis := old.redis != nil && old.redis != cur.redis
	if closeRedis {
		rs := old.redis.Stats()
		a.pastRedis.Errors += rs.Errors
		a.pastRedis.Invalid += rs.Corrupt
	}
	a.retired[old] = struct{}{}
	a.closing.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), retiredCloseTimeout)
		defer cancel()
		if err := old.proxy.Close(ctx); err != nil {
			a.log.Warn("store writes of a replaced configuration did not finish", slog.String("error", err.Error()))
		}
		// Upstream clients the new configuration did not keep hold idle connections.
		for _, up := range old.upstreams {
			if !slices.Contains(cur.upstreams, up) {
				up.CloseIdleConnections()
			}
		}
		if closeRedis {
			_ = old.redis.Close()
		}
		a.mu.Lock()
		delete(a.retired, old)
		a.mu.Unlock()
	})
}

// restartNeeded lists the keys whose change Reload cannot apply.
func restartNeeded(old, cfg *config.Config) []string {
	var keys []string
	if old.Listen != cfg.Listen {
		keys = append(keys, "listen")
	}
	if (old.TLS.Cert == "") != (cfg.TLS.Cert == "") {
		keys = append(keys, "tls")
	}
	if old.Storage.Driver != cfg.Storage.Driver {
		keys = append(keys, "storage.driver")
	}
	if !reflect.DeepEqual(old.Storage.Params, cfg.Storage.Params) {
		keys = append(keys, "storage.params")
	}
	if old.Log.Format != cfg.Log.Format {
		keys = append(keys, "log.format")
	}
	return keys
}

// Config returns the configuration serving now; Reload(ctx, a.Config()) rebuilds it from the
// files it names (what a change of a TUF trust root needs).
func (a *App) Config() *config.Config { return a.cur.Load().cfg }

// Engine returns the policy engine of the configuration serving now.
func (a *App) Engine() *policy.Engine { return a.cur.Load().engine }

// Stats returns the decision counters since New, across reloads.
func (a *App) Stats() policy.Stats {
	a.mu.Lock()
	p := a.pastDecisions
	a.mu.Unlock()
	s := a.cur.Load().engine.Stats()
	return policy.Stats{Allowed: p.Allowed + s.Allowed, Exempt: p.Exempt + s.Exempt, Warned: p.Warned + s.Warned,
		Denied: p.Denied + s.Denied, Failed: p.Failed + s.Failed, Cached: p.Cached + s.Cached}
}

// loginCounts returns the push login counters since New, across reloads.
func (a *App) loginCounts() telemetry.LoginCounts {
	a.mu.Lock()
	c := a.pastLogins
	a.mu.Unlock()
	if p := a.cur.Load().pushers; p != nil {
		s := p.Stats()
		c.Hashes, c.Failures, c.Throttled = c.Hashes+s.Hashes, c.Failures+s.Failures, c.Throttled+s.Throttled
	}
	return c
}

// TLSConfig returns the server TLS configuration, whose certificate is the one of the
// configuration serving now (so a renewed certificate file applies on reload), or nil when
// TLS is not configured.
func (a *App) TLSConfig() *tls.Config {
	if a.cur.Load().cert == nil {
		return nil
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := a.cur.Load().cert; c != nil {
				return c, nil
			}
			return nil, errors.New("tls: no certificate configured")
		},
	}
}

// Close waits for the work the App does behind requests (content written to the store), of
// the current configuration and of those Reload replaced, to finish, or for ctx to be done.
// Call it once the HTTP server has shut down.
func (a *App) Close(ctx context.Context) error {
	a.mu.Lock()
	a.stopSweeps()
	a.stopRefresh()
	gens := []*generation{a.cur.Load()}
	for g := range a.retired {
		gens = append(gens, g)
	}
	a.mu.Unlock()
	a.sweeps.Wait()
	a.refreshes.Wait()
	var errs []error
	for _, g := range gens {
		errs = append(errs, g.proxy.Close(ctx))
	}
	for _, g := range gens {
		if g.redis != nil {
			_ = g.redis.Close() // once per tier, however many generations share it
		}
	}
	return errors.Join(errs...)
}

// startSweeps sweeps the store now and then periodically, until Close or the next change of
// its bounds.
func (a *App) startSweeps(ctx context.Context, s config.Storage) {
	sweepCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	a.stopSweeps = stop
	a.sweeps.Go(func() {
		a.store.RunSweeps(sweepCtx, s.Eviction(), s.SweepInterval, func(r store.SweepResult, err error) {
			switch {
			case err != nil && sweepCtx.Err() == nil:
				a.log.Warn("content store sweep failed", slog.String("error", err.Error()))
			case r.Evicted > 0 || r.Uploads > 0:
				a.log.Info("content store swept", slog.Int64("bytes", r.Bytes), slog.Int("evicted", r.Evicted),
					slog.Int64("evictedBytes", r.EvictedBytes), slog.Int("uploads", r.Uploads))
			}
		})
	})
}

// startTrustRootRefresh refreshes the TUF trust roots in the background until Close; a new
// root recompiles the running configuration, so that decisions are made under it.
func (a *App) startTrustRootRefresh(ctx context.Context) {
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	a.stopRefresh = stop
	a.refreshes.Go(func() {
		a.roots.Run(rctx, time.Minute, func(ctx context.Context) {
			if ctx.Err() != nil {
				return // closing
			}
			if err := a.Reload(ctx, a.cur.Load().cfg); err != nil {
				a.log.Error("a trusted root changed but the policies could not be recompiled; the previous ones stay", slog.Any("error", err))
			}
		})
	})
}

func logLevel(s string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(s))
	return l
}

// Drain makes /readyz answer 503 from now on, while requests are still served: the first
// step of a graceful shutdown, so that load balancers stop sending requests before the
// server stops taking them.
func (a *App) Drain() { a.draining.Store(true) }

// ready checks that the App is not draining and that the content store answers.
func (a *App) ready(ctx context.Context) error {
	if a.draining.Load() {
		return errors.New("shutting down")
	}
	if _, err := a.driver.List(ctx, "/"); err != nil {
		var pnf storagedriver.PathNotFoundError
		if !errors.As(err, &pnf) {
			return fmt.Errorf("content store: %w", err)
		}
	}
	return nil
}

// Sweep runs one sweep of the content store cfg names, as serve does periodically (portcullis
// gc): unfinished uploads older than two hours, content not served for storage.maxAge, then
// the least recently written content over storage.maxSize. It is safe beside a running
// portcullis, which protects what it is reading only in its own process: run it when none
// is serving, or accept that an evicted blob is fetched again.
func Sweep(ctx context.Context, cfg *config.Config) (store.SweepResult, error) {
	driver, err := newDriver(ctx, cfg.Storage)
	if err != nil {
		return store.SweepResult{}, err
	}
	return store.New(driver).Sweep(ctx, cfg.Storage.Eviction())
}

// newDriver builds the storage driver s names (s3: see newS3Driver).
func newDriver(ctx context.Context, s config.Storage) (storagedriver.StorageDriver, error) {
	switch s.Driver {
	case "s3":
		return newS3Driver(ctx, s.Params)
	case "inmemory":
		return inmemory.New(), nil
	case "filesystem":
		params := map[string]any{"rootdirectory": DefaultRootDirectory}
		for k, v := range s.Params {
			params[k] = v
		}
		d, err := filesystem.FromParameters(params)
		if err != nil {
			return nil, fmt.Errorf("storage.params: %w", err)
		}
		return store.Unsynced(d, fmt.Sprint(params["rootdirectory"])), nil
	}
	return nil, fmt.Errorf("storage.driver: %q is not filesystem, s3 or inmemory", s.Driver)
}
