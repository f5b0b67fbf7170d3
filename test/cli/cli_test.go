// Package cli_test drives the portcullis binary's cosign-compatible commands (generate-key-pair,
// sign, verify, generate, attach, triangulate, clean) against an in-process registry and
// checks them against the real cosign v2 and v3 and openssl.
package cli_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/portcullis/portcullis/internal/testtool"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// portcullis returns the path of the portcullis binary, built once per test run.
func portcullis(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := testtool.ModuleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "portcullis-cli-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "portcullis")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/portcullis")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v", buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// result is one run of a tool.
type result struct {
	stdout, stderr string
	err            error
}

// run runs the tool at path in dir with the offline environment plus env ("K=V" sets, "-K"
// removes), stdin not a terminal.
func run(t *testing.T, dir, path string, env []string, args ...string) result {
	t.Helper()
	var set []string
	var unset []string
	for _, e := range env {
		if k, ok := strings.CutPrefix(e, "-"); ok {
			unset = append(unset, k+"=")
		} else {
			set = append(set, e)
		}
	}
	var full []string
	for _, e := range testtool.OfflineEnv(t, set...) {
		drop := false
		for _, u := range unset {
			drop = drop || strings.HasPrefix(e, u)
		}
		if !drop {
			full = append(full, e)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testtool.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = dir
	cmd.Env = full
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	return result{stdout: so.String(), stderr: se.String(), err: err}
}

// must runs and fails the test when the run fails.
func must(t *testing.T, dir, path string, env []string, args ...string) result {
	t.Helper()
	r := run(t, dir, path, env, args...)
	if r.err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", filepath.Base(path), strings.Join(args, " "), r.err, r.stdout, r.stderr)
	}
	return r
}

// mustFail runs and fails the test unless the run fails with a message containing want.
func mustFail(t *testing.T, dir, path string, env []string, want string, args ...string) result {
	t.Helper()
	r := run(t, dir, path, env, args...)
	if r.err == nil {
		t.Fatalf("%s %s succeeded, want failure containing %q\nstdout: %s\nstderr: %s", filepath.Base(path), strings.Join(args, " "), want, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr+r.stdout, want) {
		t.Fatalf("%s %s: got output\n%s%s\nwant it to contain %q", filepath.Base(path), strings.Join(args, " "), r.stdout, r.stderr, want)
	}
	return r
}

// newRegistry starts an in-process registry without the referrers API (like distribution
// v3.1.2: writers fall back to the referrers tag schema) and returns its host:port.
func newRegistry(t *testing.T) string {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/referrers/") {
			http.NotFound(w, r)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// pushImage pushes a random image to host/repo:v1 and returns its reference by digest.
func pushImage(t *testing.T, host, repo string) string {
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
	return ref.Context().Digest(d.String()).String()
}

// pushIndex pushes a random two-image index to host/repo:v1 and returns the index and the
// children by digest.
func pushIndex(t *testing.T, host, repo string) (string, []string) {
	t.Helper()
	idx, err := random.Index(256, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/"+repo+":v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	im, _ := idx.IndexManifest()
	var children []string
	for _, m := range im.Manifests {
		children = append(children, ref.Context().Digest(m.Digest.String()).String())
	}
	return ref.Context().Digest(d.String()).String(), children
}

// payloads parses portcullis verify's (and cosign verify's) JSON output.
func payloads(t *testing.T, out string) []map[string]any {
	t.Helper()
	var ps []map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &ps); err != nil {
		t.Fatalf("verify output is not a JSON array: %v\n%s", err, out)
	}
	return ps
}

// cosignVerifyArgs returns the arguments of an offline cosign verify for a key; bundle with
// cosign v2 needs a trusted root and --new-bundle-format.
func cosignVerifyArgs(t *testing.T, cosign string, major int, pub string, bundle bool) []string {
	t.Helper()
	args := []string{"verify", "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry"}
	if bundle && major == 2 {
		root := filepath.Join(t.TempDir(), "trusted_root.json")
		testtool.Cosign(t, cosign, nil, "trusted-root", "create", "--out", root)
		args = append(args, "--trusted-root", root, "--new-bundle-format")
	}
	return args
}

func decodeB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
