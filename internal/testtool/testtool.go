package testtool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Timeout bounds one tool run.
const Timeout = 2 * time.Minute

// Path returns the path of the executable tool name, e.g. "cosign3". When it cannot be found
// the test is skipped, or fails when the environment has CI=true.
func Path(t testing.TB, name string) string {
	t.Helper()
	env := strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(name))
	if p := os.Getenv(env); p != "" {
		if isExecutable(p) {
			return p
		}
		missing(t, name, env+"="+p+" is not an executable file")
	}
	if root, err := ModuleRoot(); err == nil {
		if p := filepath.Join(root, "bin", name); isExecutable(p) {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	missing(t, name, "not in $"+env+", bin/ or PATH (run hack/tools.sh)")
	return ""
}

func missing(t testing.TB, name, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("tool %s is required when CI=true: %s", name, why)
	}
	t.Skipf("tool %s not available: %s", name, why)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// ModuleRoot returns the directory of the go.mod enclosing the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// OfflineEnv returns the environment tools run with: PATH from the test process, a fresh
// HOME, an empty COSIGN_PASSWORD, proxies that fail fast for anything but loopback, then
// extra ("KEY=value") which override.
func OfflineEnv(t testing.TB, extra ...string) []string {
	t.Helper()
	home := t.TempDir()
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"TMPDIR=" + os.TempDir(),
		"COSIGN_PASSWORD=",
		"HTTPS_PROXY=http://127.0.0.1:9",
		"HTTP_PROXY=http://127.0.0.1:9",
		"NO_PROXY=127.0.0.1,localhost",
		"TUF_ROOT=" + filepath.Join(home, ".sigstore", "root"),
		"OTEL_TRACES_EXPORTER=none",
	}
	return append(env, extra...)
}

// Run runs the tool at path with args in dir (the test's temporary directory when empty)
// and the offline environment plus env. It returns the combined output and the error of the
// run, for tests that expect a failure.
func Run(t testing.TB, dir, path string, env []string, args ...string) (string, error) {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = dir
	cmd.Env = OfflineEnv(t, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	return out.String(), err
}

// Cosign runs cosign at path with args (see Run) and fails the test when it fails. It
// returns the combined output.
func Cosign(t testing.TB, path string, env []string, args ...string) string {
	t.Helper()
	out, err := Run(t, "", path, env, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(path), strings.Join(args, " "), err, out)
	}
	return out
}

// CosignKeyPair generates an encrypted cosign key pair with an empty password in dir and
// returns the paths of the private and the public key.
func CosignKeyPair(t testing.TB, path, dir string) (priv, pub string) {
	t.Helper()
	prefix := filepath.Join(dir, "cosign")
	Cosign(t, path, nil, "generate-key-pair", "--output-key-prefix", prefix)
	return prefix + ".key", prefix + ".pub"
}

// CosignMajor returns the major version of the cosign at path, from "cosign version".
func CosignMajor(t testing.TB, path string) int {
	t.Helper()
	out := Cosign(t, path, nil, "version")
	for line := range strings.Lines(out) {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "GitVersion:")
		if !ok {
			continue
		}
		v = strings.TrimPrefix(strings.TrimSpace(v), "v")
		major, _, _ := strings.Cut(v, ".")
		n, err := strconv.Atoi(major)
		if err != nil {
			t.Fatalf("cosign version %q: %v", v, err)
		}
		return n
	}
	t.Fatalf("no GitVersion in the output of %s version:\n%s", path, out)
	return 0
}

// CosignSignArgs returns the arguments of an offline "cosign sign" for cosign major version
// major: no transparency log, HTTP registries allowed, no prompt. Append options (e.g.
// "-a", "k=v", "--new-bundle-format=false") and the image reference.
func CosignSignArgs(major int, key string) []string {
	args := []string{"sign", "--key", key, "--tlog-upload=false", "--allow-http-registry", "-y"}
	if major >= 3 {
		args = append(args, "--use-signing-config=false")
	}
	return args
}

// CosignAttestArgs is CosignSignArgs for "cosign attest".
func CosignAttestArgs(major int, key string) []string {
	args := CosignSignArgs(major, key)
	args[0] = "attest"
	return args
}
