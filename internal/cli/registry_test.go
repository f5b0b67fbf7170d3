package cli_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/cli"
	"github.com/portcullis/portcullis/internal/testtool"
	"github.com/portcullis/portcullis/verify/oci"
)

// newRegistry starts an in-process registry and returns its host:port.
func newRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true)))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// pushImage pushes a random image to host/repo:v1 and returns its reference by digest.
func pushImage(t *testing.T, host, repo string) name.Digest {
	t.Helper()
	img := testtool.RandomImage(t, 256, 1)
	ref, err := name.ParseReference(host+"/"+repo+":v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return ref.Context().Digest(d.String())
}

// TestRegistriesRoute: full repository names are routed to the client of their host, each
// host gets one client, and absence is oci.ErrNotFound.
func TestRegistriesRoute(t *testing.T) {
	ctx := context.Background()
	a, b := newRegistry(t), newRegistry(t)
	imgA, imgB := pushImage(t, a, "demo/app"), pushImage(t, b, "sigs/app")
	regs, err := cli.NewRegistries(cli.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range []name.Digest{imgA, imgB} {
		m, err := regs.Manifest(ctx, img.Context().Name(), "v1")
		if err != nil {
			t.Fatalf("manifest of %s: %v", img, err)
		}
		if m.Digest.String() != img.DigestStr() {
			t.Errorf("manifest of %s has digest %s", img, m.Digest)
		}
		refs, err := regs.Referrers(ctx, img.Context().Name(), m.Digest)
		if err != nil || len(refs) != 0 {
			t.Errorf("referrers of %s: %v, %v; want none", img, refs, err)
		}
	}
	if _, err := regs.Manifest(ctx, b+"/demo/app", imgA.DigestStr()); !errors.Is(err, oci.ErrNotFound) {
		t.Errorf("manifest of %s in the other registry: %v, want oci.ErrNotFound", imgA.DigestStr(), err)
	}
	if _, err := regs.Blob(ctx, a+"/demo/app", digest.FromString("nothing"), 10); !errors.Is(err, oci.ErrNotFound) {
		t.Errorf("missing blob: %v, want oci.ErrNotFound", err)
	}
	ca, err := regs.Client(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := regs.Client(ctx, a); again != ca {
		t.Error("a second client for the same host")
	}
	if _, err := regs.Manifest(ctx, "Not A Repo", "v1"); err == nil {
		t.Error("an invalid repository name was accepted")
	}
}

func TestNewRegistriesRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    cli.RegistryOptions
		want string
	}{
		{"token and user", cli.RegistryOptions{Token: "t", Username: "u"}, "exclusive"},
		{"password alone", cli.RegistryOptions{Password: "p"}, "needs --registry-username"},
		{"token for reads", cli.RegistryOptions{Token: "t"}, "bearer token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cli.NewRegistries(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
