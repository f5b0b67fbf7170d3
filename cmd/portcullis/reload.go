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

// reloadDebounce gathers the events of one edit (editors and Kubernetes write several) into
// one reload.
const reloadDebounce = 200 * time.Millisecond

// watchConfig reloads the whole configuration on SIGHUP and, when watch is set, when the
// configuration file or a file it names (keys, htpasswd, password files, TLS certificate and
// key) changes. An invalid new configuration is logged and the running one keeps serving.
// cfg is the configuration serving now.
func watchConfig(ctx context.Context, path string, watch bool, cfg *config.Config, a *app.App, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	w := &fileWatcher{}
	if watch {
		w = newFileWatcher(log)
	}
	defer w.close()
	w.watch(path, cfg.Files())
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if next := reload(ctx, path, a, log, "SIGHUP"); next != nil {
				w.watch(path, next.Files())
			}
		case err := <-w.errors():
			log.Warn("file watching", slog.String("error", err.Error()))
		case ev := <-w.events():
			if w.relevant(ev) {
				log.Debug("watched file changed", slog.String("file", ev.Name), slog.String("op", ev.Op.String()))
				debounce = time.After(reloadDebounce)
			}
		case <-debounce:
			if next := reload(ctx, path, a, log, "file change"); next != nil {
				w.watch(path, next.Files())
			}
		}
	}
}

// reload loads and applies the file at path; it returns the configuration it loaded (even
// when applying it failed, so that the files it names are watched) or nil.
func reload(ctx context.Context, path string, a *app.App, log *slog.Logger, why string) *config.Config {
	cfg, err := config.Load(path, os.Environ())
	if err == nil {
		err = a.Reload(ctx, cfg)
	}
	if err != nil {
		log.Error("configuration rejected; the running configuration keeps serving", slog.String("trigger", why), slog.String("error", err.Error()))
	}
	return cfg
}

// fileWatcher watches a set of files through their directories, since editors and
// Kubernetes (ConfigMaps, Secrets: a "..data" link swapped in the directory) replace files
// rather than write them. One goroutine uses it.
type fileWatcher struct {
	log   *slog.Logger
	w     *fsnotify.Watcher
	dirs  map[string]bool
	files map[string]bool
}

func newFileWatcher(log *slog.Logger) *fileWatcher {
	fw := &fileWatcher{log: log, dirs: map[string]bool{}, files: map[string]bool{}}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Warn("file watching unavailable; reload with SIGHUP", slog.String("error", err.Error()))
		return fw
	}
	fw.w = w
	return fw
}

// events is the watcher's event channel, or nil (never ready) without a watcher.
func (fw *fileWatcher) events() <-chan fsnotify.Event {
	if fw.w == nil {
		return nil
	}
	return fw.w.Events
}

// errors is the watcher's error channel, or nil without a watcher.
func (fw *fileWatcher) errors() <-chan error {
	if fw.w == nil {
		return nil
	}
	return fw.w.Errors
}

// relevant reports whether ev changes a watched file.
func (fw *fileWatcher) relevant(ev fsnotify.Event) bool {
	abs, err := filepath.Abs(ev.Name)
	if err != nil {
		return false
	}
	return fw.files[abs] || (filepath.Base(abs) == "..data" && fw.dirs[filepath.Dir(abs)])
}

// watch makes the watched set the configuration file and files.
func (fw *fileWatcher) watch(path string, files []string) {
	if fw.w == nil {
		return
	}
	want := map[string]bool{}
	for _, f := range append([]string{path}, files...) {
		if abs, err := filepath.Abs(f); err == nil {
			want[abs] = true
		}
	}
	dirs := map[string]bool{}
	for f := range want {
		dirs[filepath.Dir(f)] = true
	}
	for d := range dirs {
		if fw.dirs[d] {
			continue
		}
		if err := fw.w.Add(d); err != nil {
			fw.log.Warn("cannot watch a directory of the configuration's files; reload with SIGHUP",
				slog.String("dir", d), slog.String("error", err.Error()))
			delete(dirs, d)
		}
	}
	for d := range fw.dirs {
		if !dirs[d] {
			_ = fw.w.Remove(d)
		}
	}
	fw.dirs, fw.files = dirs, want
}

func (fw *fileWatcher) close() {
	if fw.w != nil {
		_ = fw.w.Close()
	}
}
