package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/pushauth"
	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/verify"
)

// DefaultRootDirectory is where the filesystem store keeps content when params say nothing.
const DefaultRootDirectory = "/var/lib/portcullis"

// App is a configured portcullis.
type App struct {
	// Handler serves the distribution API, /healthz and /readyz.
	Handler http.Handler
	// Engine is the policy engine every manifest passes through.
	Engine *policy.Engine
	// Cache holds the decisions.
	Cache  *cache.Memory[policy.Decision]
	driver storagedriver.StorageDriver
	proxy  *proxy.Handler
	opts   Options
	// stopSweeps ends the store's periodic sweeps; sweeps counts them for Close.
	stopSweeps context.CancelFunc
	sweeps     sync.WaitGroup
}

// Options are what the App takes from its environment.
type Options struct {
	// Logger receives request, audit and operational logs. Default slog.Default().
	Logger *slog.Logger
	// LookupEnv reads environment variables named by key sources (key.env). Default: none
	// are set.
	LookupEnv func(string) (string, bool)
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
	driver, err := newDriver(cfg.Storage)
	if err != nil {
		return nil, err
	}
	set, err := policy.Compile(ctx, cfg.Policy(), policy.WithLookupEnv(opts.LookupEnv))
	if err != nil {
		return nil, err
	}
	decisions, err := cache.NewMemory[policy.Decision](cache.WithSize(cfg.Cache.Size), cache.WithTTL(cfg.Cache.TTL), cache.WithNegativeTTL(cfg.Cache.NegativeTTL))
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	verifier := verify.New(verify.WithLogger(log))
	engine := policy.NewEngine(set, verifier, decisions, policy.WithLogger(log))
	var ups []*upstream.Client
	for i, uc := range cfg.Upstreams {
		up, err := upstream.New(uc, nil)
		if err != nil {
			return nil, fmt.Errorf("upstreams[%d].%w", i, err)
		}
		ups = append(ups, up)
	}
	routes, err := proxy.NewUpstreams(ups...)
	if err != nil {
		return nil, err
	}
	var pushers *pushauth.Pushers
	if cfg.Push.Htpasswd != "" {
		htpasswd, err := os.ReadFile(cfg.Push.Htpasswd)
		if err != nil {
			return nil, fmt.Errorf("push.htpasswd: %w", err)
		}
		if pushers, err = pushauth.New(cfg.Push, htpasswd); err != nil {
			return nil, fmt.Errorf("push.%w", err)
		}
	}
	metrics, err := telemetry.New()
	if err != nil {
		return nil, err
	}
	meter := metrics.Meter("github.com/portcullis/portcullis")
	if err := telemetry.ObserveDecisions(meter, func() map[string]uint64 { return engine.Stats().Outcomes() }, decisions.Len); err != nil {
		return nil, err
	}
	st := store.New(driver)
	if n, err := st.SweepUploads(ctx, time.Now(), true); err != nil {
		log.Warn("sweeping unfinished uploads failed", slog.String("error", err.Error()))
	} else if n > 0 {
		log.Info("removed unfinished uploads of a previous run", slog.Int("uploads", n))
	}
	if err := telemetry.ObserveStore(meter, st.Bytes, st.Evictions); err != nil {
		return nil, err
	}
	h, err := proxy.New(proxy.Options{
		Meter:     meter,
		Store:     st,
		Upstreams: routes,
		Gate:      engine,
		Pushers:   pushers,
		Artifacts: verifier,
		Decisions: decisions,
		TagTTL:    cfg.Cache.TagTTL,
		Logger:    log,
	})
	if err != nil {
		return nil, err
	}
	a := &App{Engine: engine, Cache: decisions, driver: driver, proxy: h, opts: opts}
	// The store is swept now and then periodically, until Close.
	sweepCtx, stopSweeps := context.WithCancel(context.WithoutCancel(ctx))
	a.stopSweeps = stopSweeps
	a.sweeps.Go(func() {
		st.RunSweeps(sweepCtx, cfg.Storage.Eviction(), cfg.Storage.SweepInterval, func(r store.SweepResult, err error) {
			switch {
			case err != nil && sweepCtx.Err() == nil:
				log.Warn("content store sweep failed", slog.String("error", err.Error()))
			case r.Evicted > 0 || r.Uploads > 0:
				log.Info("content store swept", slog.Int64("bytes", r.Bytes), slog.Int("evicted", r.Evicted),
					slog.Int64("evictedBytes", r.EvictedBytes), slog.Int("uploads", r.Uploads))
			}
		})
	})
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
	})
	mux.Handle("GET /metrics", metrics.Handler())
	mux.Handle("/v2/", h)
	mux.Handle("/v2", h)
	a.Handler = mux
	return a, nil
}

// Close waits for the work the App does behind requests (content written to the store) to
// finish, or for ctx to be done. Call it once the HTTP server has shut down.
func (a *App) Close(ctx context.Context) error {
	a.stopSweeps()
	a.sweeps.Wait()
	return a.proxy.Close(ctx)
}

// Reload compiles the policies of cfg and, if they are valid, swaps them in atomically;
// decisions made under the old policies are never served again (the policy version is part
// of every decision's key). Other settings need a restart. On error the old policies stay.
func (a *App) Reload(ctx context.Context, cfg *config.Config) error {
	set, err := policy.Compile(ctx, cfg.Policy(), policy.WithLookupEnv(a.opts.LookupEnv))
	if err != nil {
		return err
	}
	old := a.Engine.Set().Version()
	a.Engine.Swap(set)
	a.opts.Logger.Info("policies reloaded", slog.String("oldVersion", old), slog.String("version", set.Version()))
	return nil
}

// ready checks that the content store answers.
func (a *App) ready(ctx context.Context) error {
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
	driver, err := newDriver(cfg.Storage)
	if err != nil {
		return store.SweepResult{}, err
	}
	return store.New(driver).Sweep(ctx, cfg.Storage.Eviction())
}

func newDriver(s config.Storage) (storagedriver.StorageDriver, error) {
	switch s.Driver {
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
		return d, nil
	}
	return nil, fmt.Errorf("storage.driver: %q is not filesystem or inmemory", s.Driver)
}
