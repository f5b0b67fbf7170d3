package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNodeConfigInstallScript runs the DaemonSets' install script with sh, its /config, /ca
// and /host mounts moved to a temporary directory, and checks the host files it leaves:
// deploy/clients' hosts.toml for each registry, registries.conf as CRI-O's drop-in, the CA
// where hosts.toml and containers/image look for it.
func TestNodeConfigInstallScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	wantHosts, wantRegs := clientFiles(t)
	for _, c := range []struct {
		name string
		d    func(t *testing.T) deployed
		addr string
	}{
		{"deploy/kubernetes", func(t *testing.T) deployed { return decodeAll(t, manifests(t)) }, "portcullis.example:5000"},
		{"chart", func(t *testing.T) deployed {
			return decodeAll(t, rendered(t, chartCase{"address", []string{"nodeConfig.enabled=true", "nodeConfig.address=mirror.internal:443"}}))
		}, "mirror.internal:443"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := c.d(t)
			hosts, regs := installed(t, d)
			cmd := d.daemonSets[0].Spec.Template.Spec.InitContainers[0].Command
			if len(cmd) != 3 || cmd[0] != "sh" || cmd[1] != "-euc" {
				t.Fatalf("command %q, want sh -euc SCRIPT", cmd)
			}
			tmp := t.TempDir()
			writeVolume(t, filepath.Join(tmp, "config"), map[string][]byte{"hosts.toml": []byte(hosts["docker.io"]), "registries.conf": []byte(regs)})
			writeVolume(t, filepath.Join(tmp, "ca"), map[string][]byte{"ca.crt": []byte("CA\n")})
			script := strings.NewReplacer("/config/", tmp+"/config/", "/ca/", tmp+"/ca/", "/host/", tmp+"/host/").Replace(cmd[2])
			if out, err := run(t, tmp, []string{"PATH=" + os.Getenv("PATH")}, sh, "-euc", script); err != nil {
				t.Fatalf("install script: %v\n%s", err, out)
			}
			want := map[string]string{
				"host/containers/registries.conf.d/50-portcullis.conf": strings.ReplaceAll(wantRegs, "portcullis.example:5000", c.addr),
				"host/portcullis/ca.crt":                               "CA\n",
				"host/containers/certs.d/" + c.addr + "/ca.crt":        "CA\n",
			}
			for r, content := range wantHosts {
				want["host/containerd/certs.d/"+r+"/hosts.toml"] = strings.ReplaceAll(content, "portcullis.example:5000", c.addr)
			}
			var got []string
			_ = filepath.WalkDir(filepath.Join(tmp, "host"), func(p string, e os.DirEntry, err error) error {
				if err == nil && !e.IsDir() {
					rel, _ := filepath.Rel(tmp, p)
					got = append(got, rel)
				}
				return err
			})
			if len(got) != len(want) {
				t.Errorf("files written %v, want %d files", got, len(want))
			}
			for p, content := range want {
				b, err := os.ReadFile(filepath.Join(tmp, p))
				if err != nil || string(b) != content {
					t.Errorf("%s: %v\n%s\nwant:\n%s", p, err, b, content)
				}
			}
			// hosts.toml names the CA file the script wrote.
			if !strings.Contains(wantHosts["docker.io"], `ca = "/etc/portcullis/ca.crt"`) {
				t.Error(`deploy/clients' hosts.toml no longer reads its CA from /etc/portcullis/ca.crt, where the DaemonSet writes it`)
			}
		})
	}
}
