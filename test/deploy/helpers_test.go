package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// repoRoot is the portcullis checkout this module lives in.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "portcullis")); err != nil {
		t.Fatalf("not in a portcullis checkout: %v", err)
	}
	return root
}

// doc is one YAML document of a manifest file or of helm's output.
type doc struct {
	source string // file, or "helm template (values)", and the document's index
	raw    []byte
	kind   string
	name   string
	obj    map[string]any
}

// splitDocs splits a multi-document YAML stream; empty documents are dropped.
func splitDocs(t testing.TB, source string, b []byte) []doc {
	t.Helper()
	var out []doc
	for i, part := range docSeparator.Split(string(b), -1) {
		if len(bytes.TrimSpace(stripComments([]byte(part)))) == 0 {
			continue
		}
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(part), &obj); err != nil {
			t.Fatalf("%s, document %d: %v", source, i, err)
		}
		d := doc{source: fmt.Sprintf("%s#%d", source, i), raw: []byte(part), obj: obj}
		d.kind, _ = obj["kind"].(string)
		if md, ok := obj["metadata"].(map[string]any); ok {
			d.name, _ = md["name"].(string)
		}
		out = append(out, d)
	}
	return out
}

// docSeparator is a line "---" (with what may follow it on the line), which ends a document
// without taking its last line break.
var docSeparator = regexp.MustCompile(`(?m)^---.*\n`)

func stripComments(b []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// manifests returns the documents of deploy/kubernetes, the kustomization excepted.
func manifests(t testing.TB) []doc {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "deploy", "kubernetes")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	var out []doc
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, splitDocs(t, "deploy/kubernetes/"+filepath.Base(f), b)...)
	}
	if len(out) == 0 {
		t.Fatal("no manifests in deploy/kubernetes")
	}
	return out
}

// find returns the one document of kind and name (name "" for the only one of its kind).
func find(t testing.TB, docs []doc, kind, name string) doc {
	t.Helper()
	var hits []doc
	for _, d := range docs {
		if d.kind == kind && (name == "" || d.name == name) {
			hits = append(hits, d)
		}
	}
	if len(hits) != 1 {
		t.Fatalf("want one %s %q, got %d", kind, name, len(hits))
	}
	return hits[0]
}

// tool returns the path of a tool hack/tools.sh installs: $NAME, bin/NAME, then PATH. It
// skips the test when missing, or fails it when CI=true.
func tool(t testing.TB, name string) string {
	t.Helper()
	env := strings.ToUpper(name)
	if p := os.Getenv(env); p != "" {
		return p
	}
	if p := filepath.Join(repoRoot(t), "bin", name); isExecutable(p) {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := fmt.Sprintf("tool %s not available: not in $%s, bin/ or PATH (run hack/tools.sh helm)", name, env)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; required when CI=true")
	}
	t.Skip(msg)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// run runs a command with a deadline and returns its combined output.
func run(t testing.TB, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = env
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// chartCase is one set of chart values.
type chartCase struct {
	name string
	set  []string // helm --set arguments
}

// chartCases are the value sets the chart is rendered with: the defaults, and the switches.
var chartCases = []chartCase{
	{"defaults", nil},
	{"node config", []string{"nodeConfig.enabled=true"}},
	{"plain http, existing secret, generic ephemeral store, 3 replicas", []string{
		"tls.secretName=", "credentials.create=false", "credentials.existingSecret=mirror-creds",
		"replicaCount=3", "storageVolume.emptyDir=null",
		"storageVolume.ephemeral.volumeClaimTemplate.spec.accessModes[0]=ReadWriteOnce",
		"storageVolume.ephemeral.volumeClaimTemplate.spec.resources.requests.storage=30Gi",
	}},
	{"redis deployed by the chart", []string{"redis.enabled=true"}},
	{"redis deployed by the chart, its Secret the operator's", []string{"redis.enabled=true", "redis.passwordSecret.name=redis-own"}},
	{"existing redis with a password", []string{"redis.addr=redis.example.com:6380", "redis.passwordSecret.name=redis-auth"}},
	{"s3 store, secret key from the credentials Secret", []string{
		"storage.driver=s3", "storage.params.rootdirectory=null", "storage.params.bucket=portcullis",
		"storage.params.region=us-east-1", "storage.params.regionendpoint=http://s3.example.com:9000",
		"storage.params.forcepathstyle=true", "storage.params.accesskey=AKIAEXAMPLE",
		"storage.params.secretkeyfile=/etc/portcullis/credentials/s3-secret-key",
		"credentials.files.s3-secret-key=s3-secret-value-not-for-configmaps",
	}},
}

// helmTemplate renders the chart with helm template and args, returning its output or the
// error with helm's message.
func helmTemplate(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return helmTemplateRelease(t, "portcullis", args...)
}

// helmTemplateRelease is helmTemplate for a release of another name.
func helmTemplateRelease(t testing.TB, release string, args ...string) (string, error) {
	t.Helper()
	helm := tool(t, "helm")
	root := repoRoot(t)
	home := t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "HELM_CACHE_HOME=" + filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME=" + filepath.Join(home, "config"), "HELM_DATA_HOME=" + filepath.Join(home, "data")}
	out, err := run(t, root, env, helm, append([]string{"template", release, "deploy/helm/portcullis"}, args...)...)
	if err != nil {
		return out, fmt.Errorf("helm template %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// rendered returns the chart's documents for c.
func rendered(t testing.TB, c chartCase) []doc {
	t.Helper()
	var args []string
	for _, s := range c.set {
		args = append(args, "--set", s)
	}
	out, err := helmTemplate(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return splitDocs(t, "helm template ("+c.name+")", []byte(out))
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// portcullis builds cmd/portcullis once per test binary.
func portcullis(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "portcullis-deploy-test")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "portcullis")
		out, err := run(t, repoRoot(t), nil, "go", "build", "-o", binPath, "./cmd/portcullis")
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/portcullis: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// TestMain removes the binary built by portcullis.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// readAll reads at most 1 MiB of r.
func readAll(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20+1))
	if len(b) > 1<<20 {
		return nil, errors.New("more than 1 MiB")
	}
	return b, err
}

// yamlStrict decodes YAML into v, refusing unknown (case-sensitively) and duplicate fields.
func yamlStrict(b []byte, v any) error {
	js, err := yaml.YAMLToJSONStrict(b)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(js, v, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// yamlLoose decodes YAML into v, ignoring fields v does not name.
func yamlLoose(b []byte, v any) error { return yaml.Unmarshal(b, v) }
