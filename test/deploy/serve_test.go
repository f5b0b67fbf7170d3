package deploy_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// pod is a running portcullis started as the Deployment's pod would be.
type pod struct {
	base   string // scheme://host:port
	client *http.Client
	logs   *strings.Builder
}

// writeVolume writes files as the kubelet lays out a ConfigMap or Secret volume: each name a
// symlink to ..data/name, ..data a symlink to a timestamped directory.
func writeVolume(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	ts := filepath.Join(dir, "..2026_11_29_00_00_00.000000001")
	if err := os.MkdirAll(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(ts, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// selfSigned returns a certificate and key for 127.0.0.1, as a kubernetes.io/tls Secret holds.
func selfSigned(t *testing.T) map[string][]byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "portcullis.example"},
		DNSNames: []string{"portcullis.example"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	}
}

// operatorSecret is what startPod puts in each file of a Secret the operator creates.
const operatorSecret = "operator-secret"

// startPod lays out the Deployment's volumes under a temporary root — the ConfigMap and
// Secret it mounts from what the source ships (the TLS Secret, created by the operator, is a
// fresh self-signed certificate), empty directories for the rest — and runs the built
// portcullis with the container's arguments, every mount path in them and in the
// configuration moved under the root. Only the listen address is overridden (127.0.0.1:0).
func startPod(t *testing.T, d deployed) *pod {
	t.Helper()
	bin := portcullis(t)
	spec := d.deployment.Spec.Template.Spec
	c := spec.Containers[0]
	root := filepath.Join(t.TempDir(), "pod")
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	var mounts []string
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			t.Fatalf("mount %s names no volume", m.Name)
		}
		dir := filepath.Join(root, m.MountPath)
		mounts = append(mounts, m.MountPath)
		switch {
		case v.ConfigMap != nil:
			cm := d.configMaps[v.ConfigMap.Name]
			if cm == nil {
				t.Fatalf("volume %s: ConfigMap %s is not shipped", m.Name, v.ConfigMap.Name)
			}
			files := map[string][]byte{}
			for k, s := range cm.Data {
				files[k] = []byte(s)
			}
			writeVolume(t, dir, files)
		case v.Secret != nil:
			files := map[string][]byte{}
			if s := d.secrets[v.Secret.SecretName]; s != nil {
				for k, b := range s.Data {
					files[k] = b
				}
				for k, s := range s.StringData {
					files[k] = []byte(s)
				}
			} else if m.Name == "tls" {
				files = selfSigned(t)
			} else {
				// Created by the operator: it holds the files the configuration, or the
				// environment overriding it, names there.
				cfg := configMapOf(t, d).Data["portcullis.yaml"]
				for _, e := range c.Env {
					cfg += "\n" + e.Value
				}
				for _, f := range regexp.MustCompile(regexp.QuoteMeta(m.MountPath)+`/([^\s"',/]+)`).FindAllStringSubmatch(cfg, -1) {
					files[f[1]] = []byte(operatorSecret + "\n")
				}
				if len(files) == 0 {
					t.Fatalf("volume %s: Secret %s is neither shipped nor named by the configuration", m.Name, v.Secret.SecretName)
				}
			}
			writeVolume(t, dir, files)
		case v.EmptyDir != nil, v.Ephemeral != nil:
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("volume %s: a source this test cannot lay out", m.Name)
		}
	}
	// Longest first, through placeholders, so that no path is moved twice.
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	move := func(s string) string {
		for i, mp := range mounts {
			s = strings.ReplaceAll(s, mp, fmt.Sprintf("\x00%d\x00", i))
		}
		for i, mp := range mounts {
			s = strings.ReplaceAll(s, fmt.Sprintf("\x00%d\x00", i), filepath.Join(root, mp))
		}
		return s
	}
	var args []string
	for _, a := range append(append([]string{}, c.Command...), c.Args...) {
		args = append(args, move(a))
	}
	if len(args) < 3 || args[0] != "serve" || args[1] != "--config" {
		t.Fatalf("container arguments %q, want serve --config FILE", args)
	}
	cfgPath := args[2]
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatalf("the configuration the container names is not in its mounts: %v", err)
	}
	target, err := filepath.EvalSymlinks(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target, []byte(move(string(b))), 0o644); err != nil {
		t.Fatal(err)
	}

	home := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
	for _, e := range c.Env { // the container's literal variables (valueFrom: the kubelet's)
		if e.ValueFrom == nil {
			cmd.Env = append(cmd.Env, e.Name+"="+move(e.Value))
		}
	}
	cmd.Env = append(cmd.Env, "PORTCULLIS_LISTEN=127.0.0.1:0",
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=127.0.0.1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := &strings.Builder{}
	addr := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			logs.WriteString(line + "\n")
			var l struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if !sent && json.Unmarshal([]byte(line), &l) == nil && l.Msg == "portcullis listening" {
				addr <- l.Addr
				sent = true
			}
		}
		close(addr)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done; _ = cmd.Wait() })
	var host string
	select {
	case host = <-addr:
	case <-time.After(30 * time.Second):
	}
	if host == "" {
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("portcullis did not start with the shipped configuration:\n%s", logs.String())
	}
	scheme := "http"
	if pc := podConfig(t, d); pc.TLS.Cert != "" {
		scheme = "https"
	}
	// The kubelet's probes do not verify the certificate either.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // a test certificate, as the kubelet's probes
	}}
	t.Cleanup(client.CloseIdleConnections)
	return &pod{base: scheme + "://" + host, client: client, logs: logs}
}

func (p *pod) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := p.client.Get(p.base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := readAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// TestDeployedConfigServes runs portcullis on what each source mounts — its configuration,
// keys, credentials — and asks the endpoints its probes ask.
func TestDeployedConfigServes(t *testing.T) {
	for name, load := range sources(t) {
		t.Run(name, func(t *testing.T) {
			d := load(t)
			if podConfig(t, d).Storage.Driver == "s3" {
				s3Endpoint(t, d)
			}
			p := startPod(t, d)
			c := d.deployment.Spec.Template.Spec.Containers[0]
			for _, probe := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
				if code, body := p.get(t, probe.HTTPGet.Path); code != http.StatusOK || !strings.HasPrefix(body, "ok") {
					t.Errorf("GET %s: %d %q, want 200 ok\n%s", probe.HTTPGet.Path, code, body, p.logs)
				}
			}
			if code, body := p.get(t, "/v2/"); code != http.StatusOK {
				t.Errorf("GET /v2/: %d %q", code, body)
			}
		})
	}
}

// s3Endpoint starts MinIO on 127.0.0.1 with the pod configuration's bucket, access key and
// the secret key the credentials Secret holds at storage.params.secretkeyfile, and points
// storage.params.regionendpoint at it.
func s3Endpoint(t *testing.T, d deployed) {
	t.Helper()
	params := podConfig(t, d).Storage.Params
	bucket, _ := params["bucket"].(string)
	access, _ := params["accesskey"].(string)
	endpoint, _ := params["regionendpoint"].(string)
	file, _ := params["secretkeyfile"].(string)
	if bucket == "" || access == "" || endpoint == "" || file == "" {
		t.Fatalf("storage.params %v: want bucket, accesskey, regionendpoint and secretkeyfile", params)
	}
	var secret []byte
	for _, v := range d.deployment.Spec.Template.Spec.Volumes {
		if v.Secret == nil || d.secrets[v.Secret.SecretName] == nil {
			continue
		}
		for _, c := range d.deployment.Spec.Template.Spec.Containers[0].VolumeMounts {
			if c.Name == v.Name && filepath.Dir(file) == c.MountPath {
				sec := d.secrets[v.Secret.SecretName]
				if b, ok := sec.Data[filepath.Base(file)]; ok {
					secret = b
				} else if s, ok := sec.StringData[filepath.Base(file)]; ok {
					secret = []byte(s)
				}
			}
		}
	}
	if len(secret) == 0 {
		t.Fatalf("storage.params.secretkeyfile %s is in no Secret the pod mounts", file)
	}
	bin := tool(t, "minio")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	data := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(data, bucket), 0o755); err != nil { // MinIO takes it as a bucket
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "server", "--quiet", "--address", addr, data)
	cmd.Env = []string{"HOME=" + t.TempDir(), "MINIO_ROOT_USER=" + access, "MINIO_ROOT_PASSWORD=" + string(secret),
		"MINIO_BROWSER=off", "MINIO_UPDATE=off"}
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("minio not ready:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cm := configMapOf(t, d)
	cfg := cm.Data["portcullis.yaml"]
	if !strings.Contains(cfg, endpoint) {
		t.Fatalf("regionendpoint %s not found in the configuration as written", endpoint)
	}
	cm.Data["portcullis.yaml"] = strings.ReplaceAll(cfg, endpoint, "http://"+addr)
}

// TestNoSecretInConfigMaps: no value of a Secret the sources ship appears in a ConfigMap, and
// no ConfigMap's configuration holds a secret inline (storage.params.secretkey,
// cache.redis.password, upstreams' auth.password).
func TestNoSecretInConfigMaps(t *testing.T) {
	for name, load := range sources(t) {
		t.Run(name, func(t *testing.T) {
			d := load(t)
			var values []string
			for _, s := range d.secrets {
				for _, b := range s.Data {
					values = append(values, string(b))
				}
				for _, v := range s.StringData {
					values = append(values, v)
				}
			}
			for _, cm := range d.configMaps {
				for k, data := range cm.Data {
					for _, v := range values {
						if len(strings.TrimSpace(v)) >= 4 && strings.Contains(data, strings.TrimSpace(v)) {
							t.Errorf("ConfigMap %s, %s holds a value of a Secret", cm.Name, k)
						}
					}
				}
				var cfg struct {
					Storage struct {
						Params map[string]any `json:"params"`
					} `json:"storage"`
					Cache struct {
						Redis map[string]any `json:"redis"`
					} `json:"cache"`
					Upstreams []struct {
						Auth map[string]any `json:"auth"`
					} `json:"upstreams"`
				}
				if err := yamlLoose([]byte(cm.Data["portcullis.yaml"]), &cfg); err != nil {
					t.Fatal(err)
				}
				inline := map[string]bool{}
				for k := range cfg.Storage.Params {
					inline["storage.params."+k] = strings.EqualFold(k, "secretkey")
				}
				for k := range cfg.Cache.Redis {
					inline["cache.redis."+k] = strings.EqualFold(k, "password")
				}
				for _, u := range cfg.Upstreams {
					for k := range u.Auth {
						inline["upstreams[].auth."+k] = strings.EqualFold(k, "password")
					}
				}
				for k, bad := range inline {
					if bad {
						t.Errorf("ConfigMap %s: %s inline; name a file of a Secret instead", cm.Name, k)
					}
				}
			}
		})
	}
}
