// Command portcullis is an OCI registry pull-through proxy that serves only what cosign
// signatures admit.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/internal/app"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "portcullis:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "portcullis",
		Short:         "OCI registry mirror that serves only images whose cosign signatures verify",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServe(), newGC(), newDemo())
	addCosignCommands(root)
	root.AddCommand(newAttest(), newVerifyAttestation())
	root.AddCommand(newPolicy())
	return root
}

func newServe() *cobra.Command {
	var (
		path  string
		watch bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the registry mirror",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path, os.Environ())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			level := new(slog.LevelVar)
			log := newLogger(cmd.ErrOrStderr(), cfg.Log, level)
			tp, stopTracing, err := startTracing(ctx, log)
			if err != nil {
				return err
			}
			defer stopTracing()
			a, err := app.New(ctx, cfg, app.Options{Logger: log, LogLevel: level, LookupEnv: os.LookupEnv, TracerProvider: tp})
			if err != nil {
				return err
			}
			if path != "" {
				go watchConfig(ctx, path, watch, cfg, a, log)
			}
			return serve(ctx, cfg, a, log, nil)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	cmd.Flags().BoolVar(&watch, "watch", true, "reload when the configuration file or a file it names changes (SIGHUP reloads either way)")
	return cmd
}

func newGC() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Sweep the content store once: unfinished uploads, content past storage.maxAge, then over storage.maxSize",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path, os.Environ())
			if err != nil {
				return err
			}
			r, err := app.Sweep(cmd.Context(), cfg)
			fmt.Fprintf(cmd.OutOrStdout(), "store: %d bytes kept, %d evicted (%d bytes), %d unfinished uploads removed\n",
				r.Bytes, r.Evicted, r.EvictedBytes, r.Uploads)
			return err
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	return cmd
}

// newLogger returns the process logger; level (set from c.Level, and by reloads) is its
// level.
func newLogger(w io.Writer, c config.Log, level *slog.LevelVar) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	level.Set(lvl)
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// serve runs the proxy until ctx ends, then shuts down gracefully (see shutdown). If ready is
// not nil it receives the listening address.
func serve(ctx context.Context, cfg *config.Config, a *app.App, log *slog.Logger, ready chan<- string) error {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	// No WriteTimeout: a slow but live client may take long over a large blob; the handler
	// bounds each write instead (a stall cuts the response) and downloads never wait for it.
	srv := &http.Server{
		Handler:           a.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// The certificate is the current configuration's: a renewed one applies on reload.
		TLSConfig: a.TLSConfig(),
	}
	errc := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	log.Info("portcullis listening", slog.String("addr", ln.Addr().String()), slog.Bool("tls", srv.TLSConfig != nil))
	if ready != nil {
		ready <- ln.Addr().String()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	return shutdown(ctx, cfg.Server, srv, errc, a, log)
}

// shutdown stops serving without failing a request a load balancer sends: /readyz turns
// unready while requests are still served for s.ShutdownDelay (keep-alives off, so that
// clients reconnect elsewhere); then the server stops taking requests and those in flight
// have s.ShutdownGrace to finish (those still running are cut); then the content still being
// written to the store (blob fills) has s.ShutdownGrace again.
func shutdown(ctx context.Context, s config.Server, srv *http.Server, errc <-chan error, a *app.App, log *slog.Logger) error {
	a.Drain()
	srv.SetKeepAlivesEnabled(false)
	log.Info("shutting down: unready, still serving until load balancers notice", slog.Duration("shutdownDelay", s.ShutdownDelay))
	time.Sleep(s.ShutdownDelay)

	log.Info("shutting down: no new requests, waiting for those in flight", slog.Duration("shutdownGrace", s.ShutdownGrace))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.ShutdownGrace)
	defer cancel()
	var errs []error
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("requests still in flight after shutdownGrace are cut", slog.String("error", err.Error()))
		errs = append(errs, srv.Close())
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, err)
	}
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), s.ShutdownGrace)
	defer wcancel()
	if err := a.Close(wctx); err != nil {
		errs = append(errs, fmt.Errorf("shutdown: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Info("shut down")
	return nil
}
