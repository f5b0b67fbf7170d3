package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/portcullis/portcullis/internal/testtool"
)

// The client tests pull with containerd, skopeo and podman configured by the files in
// deploy/clients/ (the ones the README shows) from an upstream the runtimes can reach
// directly, and check that portcullis's denial is final: the unsigned image is not obtained
// and no request of the runtime's own reaches the upstream. The control tests configure
// portcullis as a mirror beside the upstream, as operators used to, and show the fallback
// that configuration allows: the same unsigned image is pulled from the upstream.

// TestClientFilesAgree checks that deploy/clients/ gives every registry the same treatment:
// one identical hosts.toml per containerd directory, one path-prefix [[registry]] each in
// registries.conf, and no mirror anywhere.
func TestClientFilesAgree(t *testing.T) {
	root, err := testtool.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	clients := filepath.Join(root, "deploy", "clients")
	want := string(mustRead(t, filepath.Join(clients, "containerd", "certs.d", "docker.io", "hosts.toml")))
	conf := string(mustRead(t, filepath.Join(clients, "containers", "registries.conf")))
	for _, reg := range []string{"docker.io", "ghcr.io", "quay.io", "registry.example.com", "_default"} {
		if got := string(mustRead(t, filepath.Join(clients, "containerd", "certs.d", reg, "hosts.toml"))); got != want {
			t.Errorf("certs.d/%s/hosts.toml differs from certs.d/docker.io/hosts.toml", reg)
		}
		if reg == "_default" {
			continue
		}
		entry := fmt.Sprintf("[[registry]]\nprefix = %q\nlocation = \"portcullis.example:5000/%s\"\n", reg, reg)
		if !strings.Contains(conf, entry) {
			t.Errorf("registries.conf lacks\n%s", entry)
		}
	}
	for line := range strings.Lines(conf + want) {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "[[registry.mirror]]") || strings.HasPrefix(l, "[host.") {
			t.Errorf("a client file configures a mirror (%s): a denial would not be final", l)
		}
	}
}

// TestContainerdDenialIsFinal pulls with containerd configured by
// deploy/clients/containerd/certs.d/docker.io/hosts.toml, installed as the registry's own
// directory and as _default: a signed image and a signed two-platform index (all platforms)
// arrive as the upstream has them, and the unsigned image is denied without containerd
// turning to the upstream it can reach.
func TestContainerdDenialIsFinal(t *testing.T) {
	f := newClientsFixture(t)
	toml := f.clientFile(t, "containerd/certs.d/docker.io/hosts.toml", "portcullis.example:5000", "/etc/portcullis/ca.crt")
	signedIndex, signedIndexBlobs := f.pushSignedIndex(t, "clients/multi")
	signed := []struct {
		ref  string
		want map[string][]byte
	}{{f.signed, f.signedBlobs}, {signedIndex, signedIndexBlobs}}
	for _, dir := range []string{reachableName, "_default"} {
		t.Run("certs.d/"+dir, func(t *testing.T) {
			c := startContainerdHosts(t, map[string]string{dir: toml})
			for _, p := range signed {
				m := f.up.mark()
				if out, err := c.pullRef(t, p.ref); err != nil {
					t.Fatalf("signed %s: %v\n%s", p.ref, err, out)
				}
				sameContent(t, c.exportedRef(t, p.ref), p.want)
				// portcullis has no default upstream and the paths name none, so it could
				// route these requests only by the ?ns=127.0.0.1 containerd added to them.
				noRuntimeRequests(t, f.up, m)
			}

			m := f.up.mark()
			out, err := c.pullRef(t, f.unsigned)
			if err == nil {
				t.Fatalf("unsigned image pulled:\n%s", out)
			}
			// containerd resolves with HEAD, whose 403 has no body, and reports only the
			// status line: portcullis puts its reason there.
			if !strings.Contains(out, "403 Forbidden: image "+reachableName+"/clients/unsigned@"+f.unsignedDigest+" denied by policy \"prod\"") ||
				!strings.Contains(out, "no signatures found") || !strings.Contains(out, f.px.host) {
				t.Errorf("ctr's error does not show portcullis's 403 and its reason:\n%s", out)
			}
			t.Logf("ctr's error: %s", strings.TrimSpace(out))
			containerdLacks(t, c, f.unsigned, f.unsignedDigest)
			noRuntimeRequests(t, f.up, m)
			// The upstream, which containerd could have turned to, serves the image.
			ref, err := name.ParseReference(f.unsigned, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			if d, err := remote.Head(ref); err != nil || d.Digest.String() != f.unsignedDigest {
				t.Fatalf("the upstream does not serve %s itself (%v, %v): the denial proves nothing", f.unsigned, d, err)
			}
		})
	}
}

// containerdLacks fails t if containerd has the image ref or any content of digest.
func containerdLacks(t *testing.T, c *containerd, ref, digest string) {
	t.Helper()
	images, err := c.run(t, "images", "ls", "-q")
	if err != nil {
		t.Fatalf("ctr images ls: %v\n%s", err, images)
	}
	if strings.Contains(images, ref) {
		t.Errorf("containerd lists %s:\n%s", ref, images)
	}
	content, err := c.run(t, "content", "ls", "-q")
	if err != nil {
		t.Fatalf("ctr content ls: %v\n%s", err, content)
	}
	if strings.Contains(content, digest) {
		t.Errorf("containerd stored %s", digest)
	}
}

// TestContainerdMirrorFailsOpen is the control: hosts.toml files with which a denial is not
// final, because containerd then pulls from the registry itself.
func TestContainerdMirrorFailsOpen(t *testing.T) {
	f := newClientsFixture(t)
	for _, tc := range []struct {
		name, toml string
		only1x     bool
	}{
		// What the README used to show: portcullis as a [host] mirror beside the registry.
		{"mirror beside the registry", fmt.Sprintf("server = \"http://%s\"\n[host.\"https://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = %q\n",
			reachableName, f.px.host, f.px.caPath), false},
		// The deploy file without its [host] table: containerd 1.6 and 1.7 reject the file and
		// use the registry itself (remotes/docker/config/hosts.go, getSortedHosts).
		{"server without a [host] table", strings.Replace(
			f.clientFile(t, "containerd/certs.d/docker.io/hosts.toml", "\n[host]\n"), "\n[host]\n", "\n", 1), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.only1x {
				v, _ := exec.Command(testtool.Path(t, "containerd"), "--version").Output()
				if !strings.Contains(string(v), " 1.6") && !strings.Contains(string(v), " 1.7") {
					t.Skipf("containerd 2 reads a hosts.toml without [host]: %s", v)
				}
			}
			c := startContainerdHosts(t, map[string]string{reachableName: tc.toml})
			m := f.up.mark()
			if out, err := c.pullRef(t, f.unsigned); err != nil {
				t.Fatalf("the unsigned image was not pulled, so this control shows nothing: %v\n%s", err, out)
			}
			sameContent(t, c.exportedRef(t, f.unsigned), f.unsignedBlobs)
			t.Logf("containerd's own requests at the upstream: %v", someRuntimeRequests(t, f.up, m))
		})
	}
}

// containersClient runs a containers/image client (skopeo or podman) with a registries.conf.
type containersClient struct {
	name string
	// get obtains ref with the configuration conf and the CA directory certDir; it returns
	// the output and error of the command.
	get func(t *testing.T, conf, certDir, ref string) (string, error)
	// has reports whether the client's store holds anything of ref or the manifest digest.
	has func(t *testing.T, ref, digest string) bool
	// same checks that the client stored ref as the upstream has it: the manifest digest
	// and, by digest, every blob of want.
	same func(t *testing.T, ref, digest string, want map[string][]byte)
}

// skopeoClient copies into a dir: per reference (dir: keeps the manifest as pulled; oci:
// would convert a Docker manifest to OCI).
func skopeoClient(t *testing.T) *containersClient {
	t.Helper()
	skopeo := tool(t, "skopeo")
	dest := t.TempDir()
	dirOf := func(ref string) string {
		return filepath.Join(dest, strings.NewReplacer("/", "_", ":", "_").Replace(ref))
	}
	return &containersClient{
		name: "skopeo",
		get: func(t *testing.T, conf, certDir, ref string) (string, error) {
			return testtool.Run(t, "", skopeo, nil, "--registries-conf", conf, "copy", "--retry-times", "0",
				"--src-cert-dir", certDir, "docker://"+ref, "dir:"+dirOf(ref))
		},
		has: func(t *testing.T, ref, digest string) bool {
			ents, err := os.ReadDir(dirOf(ref))
			if err != nil {
				return false
			}
			for _, e := range ents {
				if e.Name() != "version" { // skopeo may have begun writing before failing
					return true
				}
			}
			return false
		},
		same: func(t *testing.T, ref, _ string, want map[string][]byte) {
			sameContent(t, readDirTransport(t, dirOf(ref)), want)
		},
	}
}

// podmanClient pulls into a private podman store (root, vfs).
func podmanClient(t *testing.T) *containersClient {
	t.Helper()
	podman := tool(t, "podman")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("podman with a private store needs root here")
		}
		t.Skip("podman with a private store needs root here")
	}
	dir, err := os.MkdirTemp("", "pod") // short: podman puts sockets under runroot
	if err != nil {
		t.Fatal(err)
	}
	global := []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"), "--tmpdir", filepath.Join(dir, "tmp"),
		"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return &containersClient{
		name: "podman",
		get: func(t *testing.T, conf, certDir, ref string) (string, error) {
			return testtool.Run(t, "", podman, []string{"CONTAINERS_REGISTRIES_CONF=" + conf},
				append(global, "pull", "--cert-dir", certDir, ref)...)
		},
		has: func(t *testing.T, ref, digest string) bool {
			out, err := testtool.Run(t, "", podman, nil, append(global, "images", "--no-trunc", "--digests", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}")...)
			if err != nil {
				t.Fatalf("podman images: %v\n%s", err, out)
			}
			return strings.Contains(out, ref) || strings.Contains(out, digest)
		},
		// podman stores layers unpacked, so it is compared by digests: the manifest's it
		// pulled and the image ID (the config's digest); containers/image verified every
		// blob's digest as it pulled it.
		same: func(t *testing.T, ref, digest string, want map[string][]byte) {
			out := run(t, podman, append(global, "image", "inspect", "--format", "{{.Digest}} {{.Id}}", ref)...)
			gotDigest, gotID, _ := strings.Cut(strings.TrimSpace(out), " ")
			if gotDigest != digest {
				t.Errorf("podman's manifest digest = %s, want %s", gotDigest, digest)
			}
			if _, ok := want["sha256:"+gotID]; !ok {
				t.Errorf("podman's image ID %s is not the config of the upstream's image", gotID)
			}
		},
	}
}

// containersClients are the containers/image clients the tests drive, by name.
func containersClients() []struct {
	name  string
	start func(*testing.T) *containersClient
} {
	return []struct {
		name  string
		start func(*testing.T) *containersClient
	}{{"skopeo", skopeoClient}, {"podman", podmanClient}}
}

// TestContainersDenialIsFinal pulls with skopeo and podman configured by
// deploy/clients/containers/registries.conf.
func TestContainersDenialIsFinal(t *testing.T) {
	f := newClientsFixture(t)
	conf := writeFile(t, "registries.conf", f.clientFile(t, "containers/registries.conf", "portcullis.example:5000/docker.io", `prefix = "docker.io"`))
	for _, cc := range containersClients() {
		t.Run(cc.name, func(t *testing.T) {
			c := cc.start(t)
			m := f.up.mark()
			if out, err := c.get(t, conf, f.px.caDir, f.signed); err != nil {
				t.Fatalf("signed image: %v\n%s", err, out)
			}
			c.same(t, f.signed, f.signedDigest, f.signedBlobs)
			noRuntimeRequests(t, f.up, m)

			m = f.up.mark()
			out, err := c.get(t, conf, f.px.caDir, f.unsigned)
			if err == nil {
				t.Fatalf("unsigned image obtained:\n%s", out)
			}
			if !strings.Contains(out, "denied by policy") || !strings.Contains(out, "no signatures found") {
				t.Errorf("%s's error does not carry portcullis's reason:\n%s", c.name, out)
			}
			t.Logf("%s's error: %s", c.name, strings.TrimSpace(out))
			if c.has(t, f.unsigned, f.unsignedDigest) {
				t.Errorf("%s stored the unsigned image", c.name)
			}
			noRuntimeRequests(t, f.up, m)
		})
	}
	// Both outcomes are counted for Prometheus.
	resp, err := tlsClient(t, f.px.caPath).Get("https://" + f.px.host + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`portcullis_decisions_total{`, `outcome="denied"`, `outcome="allowed"`, `outcome="exempt"`, `portcullis_requests_total{`, `endpoint="manifests"`, `status="403"`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestContainersMirrorFailsOpen is the control: portcullis as a [[registry.mirror]] of the
// registry, as the README used to show; containers/image then tries the registry itself and
// obtains the unsigned image.
func TestContainersMirrorFailsOpen(t *testing.T) {
	f := newClientsFixture(t)
	conf := writeFile(t, "registries.conf", fmt.Sprintf(`unqualified-search-registries = []
short-name-mode = "disabled"
[[registry]]
prefix = %[1]q
location = %[1]q
insecure = true
[[registry.mirror]]
location = %[2]q
`, reachableName, f.px.host+"/"+reachableName))
	for _, cc := range containersClients() {
		t.Run(cc.name, func(t *testing.T) {
			c := cc.start(t)
			m := f.up.mark()
			out, err := c.get(t, conf, f.px.caDir, f.unsigned)
			if err != nil {
				t.Fatalf("the unsigned image was not obtained, so this control shows nothing: %v\n%s", err, out)
			}
			c.same(t, f.unsigned, f.unsignedDigest, f.unsignedBlobs)
			t.Logf("%s's own requests at the upstream: %v", c.name, someRuntimeRequests(t, f.up, m))
		})
	}
}
