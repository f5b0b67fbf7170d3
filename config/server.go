package config

import (
	"errors"
	"time"
)

// Server configures how `portcullis serve` serves: its overload limit and its shutdown.
type Server struct {
	// MaxInFlight caps the distribution API requests served at once; beyond it a request is
	// answered at once with 503 and Retry-After. A manifest by digest answered from memory
	// does not count. Default 1024.
	MaxInFlight int `mapstructure:"maxInFlight"`
	// ShutdownDelay is how long, after SIGTERM, /readyz answers 503 while requests are still
	// served, so that load balancers (a Kubernetes Service's endpoints) stop sending new ones
	// before the server stops taking them. Default 5s; 0 stops at once.
	ShutdownDelay time.Duration `mapstructure:"shutdownDelay"`
	// ShutdownGrace bounds, after the delay, the wait for requests in flight to finish, and
	// then again the wait for content still being written to the store. Default 25s
	// (with the delay, within Kubernetes' default 30s terminationGracePeriodSeconds).
	ShutdownGrace time.Duration `mapstructure:"shutdownGrace"`
}

// serverDefaults are the defaults of the server keys.
func serverDefaults() map[string]any {
	return map[string]any{"maxInFlight": 1024, "shutdownDelay": "5s", "shutdownGrace": "25s"}
}

func (s Server) validate() []error {
	var errs []error
	if s.MaxInFlight <= 0 {
		errs = append(errs, errors.New("server.maxInFlight: must be positive"))
	}
	if s.ShutdownDelay < 0 {
		errs = append(errs, errors.New("server.shutdownDelay: must not be negative"))
	}
	if s.ShutdownGrace <= 0 {
		errs = append(errs, errors.New("server.shutdownGrace: must be positive"))
	}
	return errs
}
