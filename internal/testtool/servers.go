package testtool

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

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

// ListenPort80 listens on ip:80 for the test, so that ip alone — a registry name without
// a port, as registries are named — reaches what is served there: a client that named the
// registry itself (a runtime falling back past a mirror) would get its content, which is
// what a test of a mirror configuration has to rule out. Each package uses a loopback
// address of its own (127.0.0.0/8 is all loopback), since packages' tests run at once.
// Port 80 needs root: without it the test fails under CI=true and is skipped otherwise.
func ListenPort80(t testing.TB, ip string) net.Listener {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("listening on %s:80 needs root", ip)
		}
		t.Skipf("listening on %s:80 needs root", ip)
	}
	var ln net.Listener
	var err error
	// The previous test's server may still be releasing the port.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if ln, err = net.Listen("tcp", ip+":80"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
