//go:build no_s3

package app_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/app"
)

// TestNoS3Build: a binary built with -tags no_s3 refuses an s3 store when it starts, saying
// why, instead of serving without the store the configuration names.
func TestNoS3Build(t *testing.T) {
	f := newFixture(t)
	f.write("portcullis.yaml", `listen: 127.0.0.1:0
storage: {driver: s3, params: {region: eu-west-1, bucket: b}}
defaultPolicy: allow
upstreams:
  - {name: registry.test, url: "http://127.0.0.1:1", insecure: true, default: true}
`)
	a, err := app.New(context.Background(), f.load(), app.Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		_ = a.Close(context.Background())
		t.Fatal("an s3 store was accepted by a build without the s3 driver")
	}
	if !strings.Contains(err.Error(), "no_s3") {
		t.Errorf("error %q does not say the build has no s3 driver", err)
	}
}
