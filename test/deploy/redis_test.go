package deploy_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"
)

// redisComponent is deploy/kubernetes/redis, decoded.
type redisComponent struct {
	deployment *appsv1.Deployment
	service    *corev1.Service
	patch      []byte // the strategic merge patch of portcullis's Deployment, as JSON
}

func loadRedisComponent(t *testing.T) redisComponent {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "deploy", "kubernetes", "redis")
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
		Patches    []struct {
			Path string `json:"path"`
		} `json:"patches"`
	}
	if err := yamlStrict(b, &k); err != nil {
		t.Fatal(err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1alpha1" || k.Kind != "Component" || len(k.Patches) != 1 {
		t.Fatalf("deploy/kubernetes/redis/kustomization.yaml: %s %s with %d patches, want a kustomize Component with one patch", k.APIVersion, k.Kind, len(k.Patches))
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	var listed []string
	for _, f := range append(slices.Clone(k.Resources), k.Patches[0].Path) {
		listed = append(listed, filepath.Join(dir, f))
	}
	listed = append(listed, filepath.Join(dir, "kustomization.yaml"))
	if slices.Sort(listed); !slices.Equal(listed, files) {
		t.Errorf("the component lists %v, the directory holds %v", listed, files)
	}
	var c redisComponent
	for _, r := range k.Resources {
		b, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range splitDocs(t, "deploy/kubernetes/redis/"+r, b) {
			obj, err := decodeStrict(d.raw)
			if err != nil {
				t.Fatalf("%s: %v", d.source, err)
			}
			switch o := obj.(type) {
			case *appsv1.Deployment:
				c.deployment = o
			case *corev1.Service:
				c.service = o
			default:
				t.Fatalf("%s: a %s the component has no use for", d.source, d.kind)
			}
		}
	}
	if c.deployment == nil || c.service == nil {
		t.Fatal("deploy/kubernetes/redis: want a Deployment and a Service")
	}
	b, err = os.ReadFile(filepath.Join(dir, k.Patches[0].Path))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeStrict(b); err != nil { // the patch is a Deployment's fields, spelled right
		t.Fatalf("%s: %v", k.Patches[0].Path, err)
	}
	if c.patch, err = yaml.YAMLToJSONStrict(b); err != nil {
		t.Fatal(err)
	}
	return c
}

// withRedis is deploy/kubernetes with the component's patch applied, as kustomize applies a
// strategic merge patch.
func withRedis(t *testing.T, c redisComponent) deployed {
	t.Helper()
	d := decodeAll(t, manifests(t))
	var target struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(c.patch, &target); err != nil {
		t.Fatal(err)
	}
	if target.Kind != "Deployment" || target.Metadata.Name != d.deployment.Name {
		t.Fatalf("the patch targets %s %q, not portcullis's Deployment %q", target.Kind, target.Metadata.Name, d.deployment.Name)
	}
	orig, err := json.Marshal(d.deployment)
	if err != nil {
		t.Fatal(err)
	}
	out, err := strategicpatch.StrategicMergePatch(orig, c.patch, appsv1.Deployment{})
	if err != nil {
		t.Fatal(err)
	}
	patched := &appsv1.Deployment{}
	if err := json.Unmarshal(out, patched); err != nil {
		t.Fatal(err)
	}
	if n := len(patched.Spec.Template.Spec.Containers); n != len(d.deployment.Spec.Template.Spec.Containers) {
		t.Fatalf("the patch adds a container (%d, was %d): its container name is not portcullis's", n, len(d.deployment.Spec.Template.Spec.Containers))
	}
	d.deployment = patched
	return d
}

// TestRedisComponent: deploy/kubernetes/redis is a kustomize Component whose Redis is hardened
// as portcullis is, persists nothing, is reached through its Service at the address the patch
// gives portcullis (cache.redis.addr); redis-server accepts the container's arguments, and
// portcullis, run on what its pod then mounts and with its environment, serves and connects to
// that Redis.
func TestRedisComponent(t *testing.T) {
	c := loadRedisComponent(t)
	spec := c.deployment.Spec.Template.Spec
	checkHardened(t, "Deployment "+c.deployment.Name, spec)
	if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("redis does not run as non-root: %+v", sc)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("redis pod has %d containers, want 1", len(spec.Containers))
	}
	rc := spec.Containers[0]
	if rc.ReadinessProbe == nil || rc.LivenessProbe == nil {
		t.Error("redis has no readiness or liveness probe")
	}
	if !strings.Contains(rc.Image, "redis:") && !strings.Contains(rc.Image, "redis@sha256:") {
		t.Errorf("redis image %q is not pinned by tag or digest", rc.Image)
	}
	args := append(slices.Clone(rc.Command), rc.Args...)
	for _, want := range [][]string{{"--save", ""}, {"--appendonly", "no"}} {
		if i := slices.Index(args, want[0]); i < 0 || i+1 >= len(args) || args[i+1] != want[1] {
			t.Errorf("redis arguments %q lack %s %q: nothing is to be persisted", args, want[0], want[1])
		}
	}
	// The working directory redis-server writes to is a volume: the root filesystem is read-only.
	if i := slices.Index(args, "--dir"); i < 0 || i+1 >= len(args) || !mountedAt(spec, rc, args[i+1], false) {
		t.Errorf("redis arguments %q name no --dir on a writable volume", args)
	}
	if !labelsSelect(c.service.Spec.Selector, c.deployment.Spec.Template.Labels) || !labelsSelect(c.deployment.Spec.Selector.MatchLabels, c.deployment.Spec.Template.Labels) {
		t.Errorf("Service selector %v / Deployment selector %v do not select the pod's labels %v", c.service.Spec.Selector, c.deployment.Spec.Selector.MatchLabels, c.deployment.Spec.Template.Labels)
	}
	if len(c.service.Spec.Ports) != 1 || len(rc.Ports) != 1 {
		t.Fatalf("Service ports %v, container ports %v: want one each", c.service.Spec.Ports, rc.Ports)
	}
	sp := c.service.Spec.Ports[0]
	if tp := sp.TargetPort.String(); tp != rc.Ports[0].Name && tp != strconv.Itoa(int(rc.Ports[0].ContainerPort)) {
		t.Errorf("Service targetPort %s is not the container's port %v", tp, rc.Ports[0])
	}

	d := withRedis(t, c)
	pc := &d.deployment.Spec.Template.Spec.Containers[0]
	i := slices.IndexFunc(pc.Env, func(e corev1.EnvVar) bool { return e.Name == "PORTCULLIS_CACHE_REDIS_ADDR" })
	if i < 0 {
		t.Fatalf("the patched portcullis container has no PORTCULLIS_CACHE_REDIS_ADDR: %v", pc.Env)
	}
	if want := net.JoinHostPort(c.service.Name, strconv.Itoa(int(sp.Port))); pc.Env[i].Value != want {
		t.Errorf("cache.redis.addr %q, the Service is at %q", pc.Env[i].Value, want)
	}
	if slices.ContainsFunc(pc.Env, func(e corev1.EnvVar) bool { return e.Name == "GOMEMLIMIT" && e.ValueFrom != nil }) == false {
		t.Error("the patch dropped the base's environment (GOMEMLIMIT)")
	}

	// Only the ACL file's user may use Redis: the file comes from the Secret the operator
	// creates, as kustomization.yaml's commands make it.
	j := slices.Index(args, "--aclfile")
	if j < 0 || j+1 >= len(args) || !mountedAt(spec, rc, filepath.Dir(args[j+1]), true) {
		t.Fatalf("redis arguments %q name no --aclfile on a read-only volume: anyone who reaches the Service could plant decisions", args)
	}
	acl := aclFromDocs(t, operatorSecret)

	// redis-server on 127.0.0.1 with the container's arguments; portcullis pointed at it as
	// the Service name would resolve.
	addr := startRedis(t, args, acl)
	if reply := redisCommand(t, addr, "", "", "SET portcullis:planted x"); !strings.HasPrefix(reply, "-NOAUTH") {
		t.Errorf("a client without the password: SET answered %q, want NOAUTH", reply)
	}
	pc.Env[i].Value = addr
	before := redisClients(t, addr)
	p := startPod(t, d)
	if code, body := p.get(t, pc.ReadinessProbe.HTTPGet.Path); code != 200 {
		t.Errorf("GET %s with Redis: %d %q\n%s", pc.ReadinessProbe.HTTPGet.Path, code, body, p.logs)
	}
	deadline := time.Now().Add(10 * time.Second)
	for redisClients(t, addr) <= before {
		if time.Now().After(deadline) {
			t.Fatalf("portcullis did not connect to the Redis cache.redis.addr names\n%s", p.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// labelsSelect reports whether every key of sel has its value in labels (and sel is not empty).
func labelsSelect(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

// aclFromDocs is the ACL file that the commands in deploy/kubernetes/redis/kustomization.yaml
// make for password pw.
func aclFromDocs(t *testing.T, pw string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "kubernetes", "redis", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`printf '(user default off[^']*)'`).FindSubmatch(b)
	if m == nil {
		t.Fatal("kustomization.yaml shows no printf of the ACL file")
	}
	sum := sha256.Sum256([]byte(pw))
	return fmt.Sprintf(strings.ReplaceAll(string(m[1]), `\n`, "\n"), hex.EncodeToString(sum[:]))
}

// startRedis runs redis-server with args (args[0] the program, as in the container), on a
// free port of 127.0.0.1 with its --dir moved to a temporary directory and its --aclfile
// holding acl and a user of the test's own (observer, allowed INFO), and returns its address.
func startRedis(t *testing.T, args []string, acl string) string {
	t.Helper()
	if len(args) == 0 || args[0] != "redis-server" {
		t.Fatalf("redis container runs %q, want redis-server", args)
	}
	bin := tool(t, "redis-server")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	a := slices.Clone(args[1:])
	if i := slices.Index(a, "--dir"); i >= 0 {
		a[i+1] = t.TempDir()
	}
	if i := slices.Index(a, "--aclfile"); i >= 0 {
		a[i+1] = filepath.Join(t.TempDir(), "users.acl")
		// The test's own user, to count the clients: portcullis's may not run INFO.
		acl = strings.TrimSuffix(acl, "\n") + "\nuser observer on >" + observerPassword + " +info\n"
		if err := os.WriteFile(a[i+1], []byte(acl), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a = append(a, "--bind", "127.0.0.1", "--port", strconv.Itoa(port))
	cmd := exec.Command(bin, a...)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server %q did not start:\n%s", a, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// observerPassword is the password of the user startRedis adds to count clients.
const observerPassword = "observer-of-the-test"

// redisClients is the number of clients connected to the Redis at addr, this one (the test's
// user observer, which startRedis adds) excepted.
func redisClients(t *testing.T, addr string) int {
	t.Helper()
	for line := range strings.Lines(redisCommand(t, addr, "observer", observerPassword, "INFO clients")) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_clients:"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n - 1
		}
	}
	t.Fatal("INFO clients: no connected_clients")
	return 0
}

// redisCommand sends one inline command to the Redis at addr, after AUTH user pass unless user
// is empty, and returns its reply (a bulk reply's body, else the reply line).
func redisCommand(t *testing.T, addr, user, pass, cmd string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	if user != "" {
		fmt.Fprintf(c, "AUTH %s %s\r\n", user, pass)
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
			t.Fatalf("AUTH %s: %q %v", user, line, err)
		}
	}
	if _, err := fmt.Fprint(c, cmd+"\r\n"); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "$")))
	if !strings.HasPrefix(line, "$") || err != nil || n < 0 {
		return strings.TrimSpace(line)
	}
	body := make([]byte, n+2)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return string(body[:n])
}

// TestChartRedis: the chart's redis values render into cache.redis — the address of the
// Redis it deploys (whose Service selects that pod only, and which portcullis's own selectors
// leave out) or of an existing one, and a password file in a Secret the pod mounts — and the
// Redis it deploys is deploy/kubernetes/redis's.
func TestChartRedis(t *testing.T) {
	comp := loadRedisComponent(t)
	for _, tc := range []struct {
		chart        string
		addr         string // "" : the chart's Redis Service
		passwordFile string
	}{
		{"redis deployed by the chart", "", "/etc/portcullis/redis/password"},
		{"existing redis with a password", "redis.example.com:6380", "/etc/portcullis/redis/password"},
	} {
		t.Run(tc.chart, func(t *testing.T) {
			i := slices.IndexFunc(chartCases, func(c chartCase) bool { return c.name == tc.chart })
			if i < 0 {
				t.Fatalf("no chart case %q", tc.chart)
			}
			d := decodeAll(t, rendered(t, chartCases[i]))
			var cfg struct {
				Cache struct {
					Redis struct {
						Addr         string `json:"addr"`
						Username     string `json:"username"`
						PasswordFile string `json:"passwordFile"`
					} `json:"redis"`
				} `json:"cache"`
			}
			if err := yamlLoose([]byte(configMapOf(t, d).Data["portcullis.yaml"]), &cfg); err != nil {
				t.Fatal(err)
			}
			r := cfg.Cache.Redis
			want := tc.addr
			if want == "" {
				if d.redis == nil || d.redisSvc == nil {
					t.Fatal("redis.enabled rendered no Redis Deployment and Service")
				}
				want = net.JoinHostPort(d.redisSvc.Name, strconv.Itoa(int(d.redisSvc.Spec.Ports[0].Port)))
				pod := d.redis.Spec.Template.Labels
				if !labelsSelect(d.redisSvc.Spec.Selector, pod) {
					t.Errorf("the Redis Service %v does not select its pod %v", d.redisSvc.Spec.Selector, pod)
				}
				if labelsSelect(d.service.Spec.Selector, pod) || labelsSelect(d.deployment.Spec.Selector.MatchLabels, pod) || labelsSelect(d.pdb.Spec.Selector.MatchLabels, pod) {
					t.Errorf("portcullis's Service, Deployment or PodDisruptionBudget selects the Redis pod %v", pod)
				}
				got, wantC := d.redis.Spec.Template.Spec.Containers[0], comp.deployment.Spec.Template.Spec.Containers[0]
				if !slices.Equal(got.Args, wantC.Args) || got.Image != wantC.Image {
					t.Errorf("the chart's Redis runs %s %q, deploy/kubernetes/redis %s %q", got.Image, got.Args, wantC.Image, wantC.Args)
				}
				// The chart makes the Secret the operator makes for deploy/kubernetes/redis:
				// portcullis's password, and the ACL file that admits only it.
				sec := d.secrets[d.redisSvc.Name]
				if sec == nil {
					t.Fatalf("no Secret %s with the Redis password", d.redisSvc.Name)
				}
				pw := sec.StringData["password"]
				if len(pw) < 32 {
					t.Errorf("the Redis password has %d characters, want at least 32", len(pw))
				}
				if acl := sec.StringData["users.acl"]; strings.TrimSpace(acl) != strings.TrimSpace(aclFromDocs(t, pw)) {
					t.Errorf("users.acl %q, want %q", acl, aclFromDocs(t, pw))
				}
				if r.Username != "portcullis" {
					t.Errorf("cache.redis.username %q, want portcullis", r.Username)
				}
				rspec := d.redis.Spec.Template.Spec
				if !slices.ContainsFunc(rspec.Volumes, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == sec.Name }) ||
					!slices.ContainsFunc(d.deployment.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == sec.Name }) {
					t.Errorf("Redis or portcullis does not mount the Secret %s", sec.Name)
				}
			} else if d.redis != nil {
				t.Error("redis.addr also deployed a Redis")
			}
			if r.Addr != want {
				t.Errorf("cache.redis.addr %q, want %q", r.Addr, want)
			}
			if r.PasswordFile != tc.passwordFile {
				t.Errorf("cache.redis.passwordFile %q, want %q", r.PasswordFile, tc.passwordFile)
			}
			if tc.passwordFile != "" {
				spec := d.deployment.Spec.Template.Spec
				if !mountedAt(spec, spec.Containers[0], filepath.Dir(tc.passwordFile), true) {
					t.Errorf("no read-only Secret volume at %s", filepath.Dir(tc.passwordFile))
				}
			}
		})
	}
	// A Secret of the operator's (helm template cannot look one up, and would make a new
	// password each time): the chart makes none, and both pods mount that one.
	d := decodeAll(t, rendered(t, chartCases[slices.IndexFunc(chartCases, func(c chartCase) bool { return strings.HasSuffix(c.name, "its Secret the operator's") })]))
	if len(d.secrets) != 1 || d.redis == nil {
		t.Errorf("with redis.passwordSecret.name the chart renders %d Secrets (want only the credentials) and Redis %v", len(d.secrets), d.redis != nil)
	}
	for _, spec := range []corev1.PodSpec{d.deployment.Spec.Template.Spec, d.redis.Spec.Template.Spec} {
		if !slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == "redis-own" }) {
			t.Errorf("a pod does not mount the operator's Secret redis-own: %v", spec.Volumes)
		}
	}
	// Both at once is refused when rendering.
	if out, err := helmTemplate(t, "--set", "redis.enabled=true", "--set", "redis.addr=r:6379"); err == nil || !strings.Contains(out, "not both") {
		t.Errorf("redis.enabled with redis.addr rendered: %v\n%s", err, out)
	}
}

// TestChartNamesFitLongReleases renders the chart with its Redis for the longest release name
// helm takes (53 characters): every object's name, and the Redis address portcullis is given,
// must stay a DNS label (63 characters), which Services require.
func TestChartNamesFitLongReleases(t *testing.T) {
	release := strings.Repeat("r", 53)
	out, err := helmTemplateRelease(t, release, "--set", "redis.enabled=true")
	if err != nil {
		t.Fatal(err)
	}
	docs := splitDocs(t, "helm template (long release name)", []byte(out))
	if len(docs) == 0 {
		t.Fatal("the chart rendered nothing")
	}
	for _, d := range docs {
		if len(d.name) > 63 && d.kind != "Secret" && d.kind != "ConfigMap" {
			t.Errorf("%s %s: name of %d characters, longer than a DNS label", d.kind, d.name, len(d.name))
		}
	}
	addr := regexp.MustCompile(`addr: (\S+):6379`).FindStringSubmatch(out)
	if addr == nil {
		t.Fatalf("no Redis address in the rendered config:\n%s", out)
	}
	if len(addr[1]) > 63 || !slices.ContainsFunc(docs, func(d doc) bool { return d.kind == "Service" && d.name == addr[1] }) {
		t.Errorf("Redis address %q: not a Service of the chart within 63 characters", addr[1])
	}
}
