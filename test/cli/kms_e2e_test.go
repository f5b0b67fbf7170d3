package cli_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testtool"
)

// TestAWSKMS exercises one real KMS API end to end: local-kms (an AWS KMS emulator that
// implements KMS's JSON API, keys held in its own store) on 127.0.0.1, reached through the
// AWS SDK's standard AWS_ENDPOINT_URL_KMS; a key created by `portcullis generate-key-pair
// --kms awskms:///alias/…`, an image signed by `portcullis sign --key awskms:///…`, verified
// by `portcullis verify` and the real cosign v3 with the same KMS reference, and `portcullis
// serve` with a `kms: awskms:///…` authority that admits it and denies an unsigned one.
// The local-kms binary comes from hack/tools.sh (bin/local-kms, or $LOCAL_KMS). It listens on
// every interface (it has no address setting); the test only connects to 127.0.0.1.
func TestAWSKMS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a KMS server")
	}
	kms := testtool.Path(t, "local-kms")
	pc := portcullis(t)
	start := time.Now()
	addr := startLocalKMS(t, kms)
	env := []string{
		"AWS_ENDPOINT_URL_KMS=http://" + addr, "AWS_REGION=eu-west-2",
		"AWS_ACCESS_KEY_ID=portcullis-test", "AWS_SECRET_ACCESS_KEY=portcullis-test",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	}
	dir := t.TempDir()
	const key = "awskms:///alias/portcullis-release"
	r := must(t, dir, pc, env, "generate-key-pair", "--kms", key)
	if _, err := os.Stat(filepath.Join(dir, "cosign.pub")); err != nil {
		t.Fatalf("generate-key-pair --kms wrote no cosign.pub: %v\n%s%s", err, r.stdout, r.stderr)
	}
	host := newRegistry(t)
	signed := pushImage(t, host, "demo/signed")
	unsigned := pushImage(t, host, "demo/unsigned")
	must(t, dir, pc, env, "sign", "--key", key, signed)
	// The CLI verifies with the KMS key's public key fetched from the KMS, and so does cosign.
	must(t, dir, pc, env, "verify", "--key", key, "--insecure-ignore-tlog", signed)
	mustFail(t, dir, pc, env, "no signature", "verify", "--key", key, "--insecure-ignore-tlog", unsigned)
	cosign := testtool.Path(t, "cosign3")
	must(t, dir, cosign, env, "verify", "--key", key, "--insecure-ignore-tlog", "--allow-http-registry", signed)

	cfg := filepath.Join(dir, "portcullis.yaml")
	yml := fmt.Sprintf(`listen: 127.0.0.1:0
storage: {driver: inmemory}
upstreams:
  - {name: %[1]s, url: "http://%[1]s", insecure: true, default: true}
policies:
  - name: release
    images: ["%[1]s/demo/**"]
    authorities:
      - {name: aws, key: {kms: "%[2]s"}}
`, host, key)
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	px := startServe(t, pc, cfg, env)
	for _, tc := range []struct {
		ref  string
		want int
	}{{signed, http.StatusOK}, {unsigned, http.StatusForbidden}} {
		_, path, _ := strings.Cut(tc.ref, "/")
		repo, d, _ := strings.Cut(path, "@")
		resp, err := http.Get("http://" + px + "/v2/" + repo + "/manifests/" + d)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("serve with a kms: %s authority, GET %s: %d, want %d", key, tc.ref, resp.StatusCode, tc.want)
		}
	}
	t.Logf("AWS KMS (local-kms) end to end in %s", time.Since(start).Round(time.Millisecond))
}

// startLocalKMS runs local-kms on a free port with its key store in a temporary directory.
func startLocalKMS(t *testing.T, kms string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln.Close()
	cmd := exec.Command(kms)
	dir := t.TempDir()
	cmd.Env = append(os.Environ(), "PORT="+port, "KMS_DATA_PATH="+dir, "KMS_SEED_PATH="+filepath.Join(dir, "no-seed.yaml"),
		"KMS_REGION=eu-west-2", "KMS_ACCOUNT_ID=111122223333")
	logs := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("local-kms log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("local-kms not listening on %s after 30s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startServe runs `portcullis serve --config cfg` with env added and returns its address.
func startServe(t *testing.T, pc, cfg string, env []string) string {
	t.Helper()
	cmd := exec.Command(pc, "serve", "--config", cfg)
	cmd.Env = append(os.Environ(), env...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := make(chan string, 1)
	var logs strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			logs.WriteString(line + "\n")
			if i := strings.Index(line, `"addr":"`); i >= 0 && strings.Contains(line, "listening") {
				addr <- strings.SplitN(line[i+8:], `"`, 2)[0]
			}
		}
		close(addr)
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			t.Fatal("portcullis serve exited before listening (see its log)")
		}
		return a
	case <-time.After(30 * time.Second):
		t.Fatal("portcullis serve did not start in 30s")
	}
	return ""
}
