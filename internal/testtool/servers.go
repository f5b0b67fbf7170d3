package testtool

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	// Registers the in-memory storage driver distribution's app looks up by name: a blank
	// import outside main, tolerated here because this package serves tests only.
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/sirupsen/logrus"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/internal/app"
)

// Distribution returns distribution's registry app (v3.1.2: no referrers API) with
// in-memory storage, to serve as an in-process upstream. Its logs (through logrus's global
// logger) are discarded.
func Distribution(t testing.TB) http.Handler {
	t.Helper()
	logrus.SetOutput(io.Discard)
	cfg := &configuration.Configuration{}
	cfg.Storage = configuration.Storage{
		"inmemory":    configuration.Parameters{},
		"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
	}
	cfg.HTTP.Secret = "portcullis-test"
	cfg.Log.Level = "error"
	cfg.Log.AccessLog.Disabled = true
	return handlers.NewApp(context.Background(), cfg)
}

// Portcullis builds portcullis from the YAML configuration yml exactly as `portcullis
// serve` builds it (config.Load, then internal/app), with log as its logger (nil: logs are
// discarded). Relative paths in yml are relative to a temporary directory.
func Portcullis(t testing.TB, yml string, log *slog.Logger) *app.App {
	t.Helper()
	p := filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a, err := app.New(context.Background(), cfg, app.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the caller's TempDirs, so it runs before they are removed: the store
	// writes made behind requests finish first.
	t.Cleanup(func() {
		if err := a.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return a
}
