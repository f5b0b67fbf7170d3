package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/internal/app"
)

// watchConfig reloads the policies when the configuration file changes or on SIGHUP. An
// invalid new configuration is logged and the running one keeps serving.
func watchConfig(ctx context.Context, path string, a *app.App, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var events <-chan fsnotify.Event
	if w, err := fsnotify.NewWatcher(); err != nil {
		log.Warn("config file watching unavailable; reload with SIGHUP", slog.String("error", err.Error()))
	} else {
		defer w.Close()
		// Watch the directory: editors and Kubernetes ConfigMaps replace the file.
		if err := w.Add(filepath.Dir(path)); err != nil {
			log.Warn("config file watching unavailable; reload with SIGHUP", slog.String("error", err.Error()))
		} else {
			events = w.Events
		}
	}
	abs, _ := filepath.Abs(path)
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			reload(ctx, path, a, log, "SIGHUP")
		case ev := <-events:
			if p, _ := filepath.Abs(ev.Name); p == abs || filepath.Base(ev.Name) == "..data" {
				debounce = time.After(200 * time.Millisecond)
			}
		case <-debounce:
			reload(ctx, path, a, log, "file change")
		}
	}
}

func reload(ctx context.Context, path string, a *app.App, log *slog.Logger, why string) {
	cfg, err := config.Load(path, os.Environ())
	if err == nil {
		err = a.Reload(ctx, cfg)
	}
	if err != nil {
		log.Error("configuration rejected; the running policies keep serving", slog.String("trigger", why), slog.String("error", err.Error()))
	}
}
