package deploy_test

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// clientFiles returns deploy/clients' containerd hosts.toml files by registry directory and
// its containers registries.conf.
func clientFiles(t *testing.T) (map[string]string, string) {
	t.Helper()
	root := repoRoot(t)
	dirs, err := filepath.Glob(filepath.Join(root, "deploy", "clients", "containerd", "certs.d", "*", "hosts.toml"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no hosts.toml in deploy/clients: %v", err)
	}
	hosts := map[string]string{}
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		hosts[filepath.Base(filepath.Dir(p))] = string(b)
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "clients", "containers", "registries.conf"))
	if err != nil {
		t.Fatal(err)
	}
	return hosts, string(b)
}

var installLoop = regexp.MustCompile(`for r in ([^;]+); do\s+put /config/hosts.toml "/host/containerd/certs.d/\$r/hosts.toml"`)

// installed returns, for the node configuration DaemonSet of d, the files it writes on the
// host: containerd's by registry, and CRI-O's drop-in.
func installed(t *testing.T, d deployed) (map[string]string, string) {
	t.Helper()
	if len(d.daemonSets) != 1 {
		t.Fatalf("%d DaemonSets, want the node configuration's", len(d.daemonSets))
	}
	ds := d.daemonSets[0]
	spec := ds.Spec.Template.Spec
	var cm *corev1.ConfigMap
	for _, v := range spec.Volumes {
		if v.Name == "config" && v.ConfigMap != nil {
			cm = d.configMaps[v.ConfigMap.Name]
		}
	}
	if cm == nil || len(spec.InitContainers) != 1 {
		t.Fatalf("DaemonSet %s: want a config ConfigMap volume shipped beside it and one install container", ds.Name)
	}
	script := strings.Join(spec.InitContainers[0].Command, " ")
	m := installLoop.FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("the install script does not write hosts.toml per registry:\n%s", script)
	}
	hosts := map[string]string{}
	for _, r := range strings.Fields(m[1]) {
		hosts[r] = cm.Data["hosts.toml"]
	}
	if !strings.Contains(script, "put /config/registries.conf /host/containers/registries.conf.d/") {
		t.Fatalf("the install script does not write registries.conf:\n%s", script)
	}
	checkHostPaths(t, ds)
	return hosts, cm.Data["registries.conf"]
}

// checkHostPaths: the host directories the script writes to are the runtimes'.
func checkHostPaths(t *testing.T, ds *appsv1.DaemonSet) {
	t.Helper()
	want := map[string]string{"/host/containerd/certs.d": "/etc/containerd/certs.d", "/host/containers": "/etc/containers", "/host/portcullis": "/etc/portcullis"}
	vols := map[string]string{}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.HostPath != nil {
			vols[v.Name] = v.HostPath.Path
		}
	}
	got := map[string]string{}
	for _, m := range ds.Spec.Template.Spec.InitContainers[0].VolumeMounts {
		if p, ok := vols[m.Name]; ok {
			got[m.MountPath] = p
		}
	}
	for mount, host := range want {
		if got[mount] != host {
			t.Errorf("%s is host %q, want %q", mount, got[mount], host)
		}
	}
}

// TestNodeConfigIsDeployClients: the DaemonSets install exactly deploy/clients' files — the
// same hosts.toml for the same registries, the same registries.conf — so the files the
// runtime tests prove are the files the nodes get.
func TestNodeConfigIsDeployClients(t *testing.T) {
	wantHosts, wantRegs := clientFiles(t)
	check := func(t *testing.T, d deployed) {
		hosts, regs := installed(t, d)
		if got, want := slices.Sorted(maps.Keys(hosts)), slices.Sorted(maps.Keys(wantHosts)); !slices.Equal(got, want) {
			t.Errorf("hosts.toml for %v, deploy/clients has %v", got, want)
		}
		for r, content := range wantHosts {
			if hosts[r] != content {
				t.Errorf("hosts.toml of %s differs from deploy/clients/containerd/certs.d/%s/hosts.toml:\n%s", r, r, hosts[r])
			}
		}
		if regs != wantRegs {
			t.Errorf("registries.conf differs from deploy/clients/containers/registries.conf:\n%s", regs)
		}
	}
	t.Run("deploy/kubernetes", func(t *testing.T) { check(t, decodeAll(t, manifests(t))) })
	t.Run("chart", func(t *testing.T) {
		check(t, decodeAll(t, rendered(t, chartCase{"node config", []string{"nodeConfig.enabled=true"}})))
	})
	t.Run("chart with another address", func(t *testing.T) {
		d := decodeAll(t, rendered(t, chartCase{"address", []string{"nodeConfig.enabled=true", "nodeConfig.address=mirror.internal:443"}}))
		hosts, regs := installed(t, d)
		for r, content := range hosts {
			if want := strings.ReplaceAll(wantHosts[r], "portcullis.example:5000", "mirror.internal:443"); content != want {
				t.Errorf("hosts.toml of %s:\n%s\nwant:\n%s", r, content, want)
			}
		}
		if want := strings.ReplaceAll(wantRegs, "portcullis.example:5000", "mirror.internal:443"); regs != want {
			t.Errorf("registries.conf:\n%s\nwant:\n%s", regs, want)
		}
	})
	t.Run("chart files", func(t *testing.T) {
		dir := filepath.Join(repoRoot(t), "deploy", "helm", "portcullis", "files")
		for name, want := range map[string]string{"hosts.toml": wantHosts["docker.io"], "registries.conf": wantRegs} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != want {
				t.Errorf("deploy/helm/portcullis/files/%s differs from deploy/clients", name)
			}
		}
	})
}

// TestKustomizationListsEveryManifest: kubectl apply -k deploy/kubernetes applies every file.
func TestKustomizationListsEveryManifest(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "deploy", "kubernetes")
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Namespace  string   `json:"namespace,omitempty"`
		Resources  []string `json:"resources"`
	}
	if err := yamlStrict(b, &k); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	var want []string
	for _, f := range files {
		if n := filepath.Base(f); n != "kustomization.yaml" {
			want = append(want, n)
		}
	}
	if got := slices.Sorted(slices.Values(k.Resources)); !slices.Equal(got, want) {
		t.Errorf("kustomization resources %v, files %v", got, want)
	}
}
