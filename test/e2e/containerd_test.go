package e2e

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/portcullis/portcullis/internal/testtool"
)

// containerd is a private containerd daemon and the certs.d directory its ctr pulls with.
type containerd struct {
	ctr, sock, hostsDir string
}

// startContainerdHosts starts a private containerd daemon; hosts maps a directory under
// certs.d (a registry host, or _default) to the content of its hosts.toml.
func startContainerdHosts(t *testing.T, hosts map[string]string) *containerd {
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
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for host, toml := range hosts {
		hd := filepath.Join(dir, "certs.d", host)
		if err := os.MkdirAll(hd, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hd, "hosts.toml"), []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(daemon, "--config", filepath.Join(dir, "config.toml"))
	cmd.Env = testtool.OfflineEnv(t)
	log, _ := os.Create(filepath.Join(dir, "containerd.log"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); log.Close() })
	c := &containerd{ctr: ctr, sock: filepath.Join(dir, "c.sock"), hostsDir: filepath.Join(dir, "certs.d")}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := c.run(t, "version"); err == nil {
			return c
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
			t.Fatalf("containerd did not start:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *containerd) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.ctr, append([]string{"--address", c.sock, "-n", "test"}, args...)...)
	cmd.Env = testtool.OfflineEnv(t)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// pullRef pulls the fully qualified ref with the hosts.toml files of c.
func (c *containerd) pullRef(t *testing.T, ref string) (string, error) {
	t.Helper()
	return c.run(t, "images", "pull", "--all-platforms", "--hosts-dir", c.hostsDir, "--snapshotter", "native", ref)
}

// exportedRef returns the blobs of the fully qualified ref as containerd stored them.
func (c *containerd) exportedRef(t *testing.T, ref string) map[string][]byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "export.tar")
	if o, err := c.run(t, "images", "export", "--all-platforms", out, ref); err != nil {
		t.Fatalf("ctr export: %v\n%s", err, o)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	blobs := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return blobs
		}
		if err != nil {
			t.Fatal(err)
		}
		if name, ok := strings.CutPrefix(h.Name, "blobs/sha256/"); ok && h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			blobs["sha256:"+name] = b
		}
	}
}

// pushSignedIndex puts a two-platform index at 127.0.0.1/repo:v1, signs the index with the
// fixture's key and returns the tag reference and the index as the upstream has it.
func (f *clientsFixture) pushSignedIndex(t *testing.T, repo string) (ref string, blobs map[string][]byte) {
	t.Helper()
	idx := testIndex(t)
	ref = reachableName + "/" + repo + ":v1"
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	cosignSign(t, f.cosign3, f.keys, reachableName+"/"+repo+"@"+d.String())
	return ref, blobsOf(t, nil, idx)
}
