package keyless

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testtool"
)

// ctrClient is a private containerd daemon (root only) whose ctr pulls through portcullis,
// configured as deploy/clients configures a node: portcullis is the server and the only host
// of every registry (_default), so containerd has nothing to fall back to.
type ctrClient struct {
	ctr, sock, hostsDir string
}

func startContainerd(t *testing.T, mirror string) *ctrClient {
	t.Helper()
	daemon := testtool.Path(t, "containerd")
	ctr := testtool.Path(t, "ctr")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("containerd needs root")
		}
		t.Skip("containerd needs root")
	}
	dir, err := os.MkdirTemp("", "ctd") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	cfg := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = %[5]q
[metrics]
  address = ""
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "c.sock"), filepath.Join(dir, "t.sock"), filepath.Join(dir, "d.sock"))
	// deploy/clients/containerd/certs.d/_default/hosts.toml, with portcullis served over
	// plain http here (no ca).
	hd := filepath.Join(dir, "certs.d", "_default")
	toml := fmt.Sprintf("server = \"http://%s\"\ncapabilities = [\"pull\", \"resolve\"]\n[host]\n", mirror)
	for p, b := range map[string]string{filepath.Join(dir, "config.toml"): cfg, filepath.Join(hd, "hosts.toml"): toml} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(daemon, "--config", filepath.Join(dir, "config.toml"))
	cmd.Env = testtool.OfflineEnv(t)
	log, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); log.Close() })
	c := &ctrClient{ctr: ctr, sock: filepath.Join(dir, "c.sock"), hostsDir: filepath.Join(dir, "certs.d")}
	for deadline := time.Now().Add(20 * time.Second); ; {
		if _, err := c.run(t, "version"); err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not start:\n%s", tail(log.Name(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *ctrClient) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.ctr, append([]string{"--address", c.sock, "-n", "test"}, args...)...)
	cmd.Env = testtool.OfflineEnv(t)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// pull pulls the fully qualified ref; containerd asks portcullis with ?ns=<registry>.
func (c *ctrClient) pull(t *testing.T, ref string) (string, error) {
	t.Helper()
	return c.run(t, "images", "pull", "--hosts-dir", c.hostsDir, "--snapshotter", "native", ref)
}

// TestContainerdKeyless: containerd, with portcullis as its only host, pulls an image keylessly
// signed by the identity the policy names (cosign v3, both formats) from an upstream it could
// reach itself (plain http on 127.0.0.1), and is refused one signed by another identity — with
// no request of containerd's reaching the upstream, so the refusal is not undone by a fallback.
func TestContainerdKeyless(t *testing.T) {
	s := needStack(t)
	up := newUpstream(t)
	email := s.oidc.url("email")
	px := startProxy(t, up, fmt.Sprintf(`trustRoots: [{name: local, trustedRootFile: %s}]
defaultPolicy: deny
policies:
  - name: bundle
    images: ["%[2]s/ctr/bundle/**"]
    authorities: [{name: alice, keyless: {trustRoot: local, identities: [{issuer: %[3]q, subject: alice@example.com}]}}]
  - name: legacy
    images: ["%[2]s/ctr/legacy/**"]
    authorities: [{name: alice, keyless: {trustRoot: local, identities: [{issuer: %[3]q, subject: alice@example.com}]}, tlog: {threshold: 0}, timestamps: {threshold: 1}}]
`, s.trustedRoot, up.name, email))
	c := startContainerd(t, px.host)
	for _, tc := range []struct {
		repo, signer string
		bundle       bool
		admitted     bool
	}{
		{"ctr/bundle/alice", "alice@example.com", true, true},
		{"ctr/legacy/alice", "alice@example.com", false, true},
		{"ctr/bundle/mallory", "mallory@example.com", true, false},
	} {
		t.Run(tc.repo, func(t *testing.T) {
			s.cosignSignKeyless(t, s.oidc.emailToken(tc.signer), up.push(t, tc.repo), tc.bundle)
			out, err := c.pull(t, up.name+"/"+tc.repo+":v1")
			switch {
			case tc.admitted && err != nil:
				t.Fatalf("not admitted: %v\n%s", err, out)
			case !tc.admitted && err == nil:
				t.Fatalf("admitted, want denied:\n%s", out)
			case !tc.admitted && (!strings.Contains(out, "403") || !strings.Contains(out, "subject mallory@example.com is not alice@example.com")):
				t.Errorf("containerd's error is not portcullis's refusal with its reason:\n%s", out)
			}
			if !tc.admitted {
				t.Logf("denied: %s", strings.TrimSpace(out))
			}
		})
	}
	if n := up.runtimeRequests.Load(); n != 0 {
		t.Errorf("containerd sent %d requests to the upstream itself: it fell back past portcullis", n)
	}
}
