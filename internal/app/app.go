// Package app builds a running portcullis from a configuration: storage driver, upstream
// clients, the proxy handler and its operational endpoints. The CLI and the end-to-end tests
// share it, so what is tested is what runs.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/proxy"
)

// DefaultRootDirectory is where the filesystem store keeps content when params say nothing.
const DefaultRootDirectory = "/var/lib/portcullis"

// App is a configured portcullis.
type App struct {
	Handler http.Handler
	store   *proxy.Store
	driver  storagedriver.StorageDriver
}

// New builds the App for cfg, which must be valid.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (*App, error) {
	driver, err := newDriver(cfg.Storage)
	if err != nil {
		return nil, err
	}
	var ups []*proxy.Upstream
	for i, uc := range cfg.Upstreams {
		up, err := proxy.NewUpstream(uc, nil)
		if err != nil {
			return nil, fmt.Errorf("upstreams[%d].%w", i, err)
		}
		ups = append(ups, up)
	}
	routes, err := proxy.NewUpstreams(ups...)
	if err != nil {
		return nil, err
	}
	store := proxy.NewStore(driver)
	h, err := proxy.New(proxy.Options{
		Store:     store,
		Upstreams: routes,
		TagTTL:    cfg.Cache.TagTTL,
		Logger:    log,
	})
	if err != nil {
		return nil, err
	}
	a := &App{store: store, driver: driver}
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
	mux.Handle("/v2/", h)
	mux.Handle("/v2", h)
	a.Handler = mux
	return a, nil
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
