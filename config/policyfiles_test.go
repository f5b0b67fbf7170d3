package config_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/config"
)

// cipDoc is a ClusterImagePolicy with a static authority.
func cipDoc(name, glob, action string) string {
	return "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: " + name +
		"\nspec:\n  images: [{glob: \"" + glob + "\"}]\n  authorities: [{static: {action: " + action + "}}]\n"
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestPolicyFiles(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "portcullis.yaml")
	writeFile(t, filepath.Join(dir, "cips", "b.yaml"), cipDoc("b", "ghcr.io/org/b*", "fail"))
	writeFile(t, filepath.Join(dir, "cips", "a.yaml"), cipDoc("a", "ghcr.io/org/a*", "pass")+"---\n"+cipDoc("c", "quay.io/**", "pass"))
	writeFile(t, filepath.Join(dir, "one.yaml"), cipDoc("one", "registry.local:5000/x*", "pass"))
	writeFile(t, cfgPath, good+`
policies:
  - name: inline
    images: ["docker.io/library/*"]
    authorities: [{name: s, static: pass}]
policyFiles: ["cips/*.yaml", one.yaml, "cips/a.yaml"]
`)
	c, err := config.Load(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range c.Policy().Policies {
		names = append(names, p.Name)
	}
	want := []string{"inline", "ClusterImagePolicy/a", "ClusterImagePolicy/c", "ClusterImagePolicy/b", "ClusterImagePolicy/one"}
	if !slices.Equal(names, want) {
		t.Errorf("policies %q, want %q (inline first, then the files in order, a glob's files sorted, each file once)", names, want)
	}
	if len(c.Policies) != 1 {
		t.Errorf("Policies holds %d policies; the files' belong to Policy() only", len(c.Policies))
	}
	for _, f := range []string{"cips/a.yaml", "cips/b.yaml", "one.yaml"} {
		if !slices.Contains(c.Files(), filepath.Join(dir, f)) {
			t.Errorf("Files() = %q lacks %s: a change to it would not reload", c.Files(), f)
		}
	}

	// The environment replaces the list, resolved against the configuration's directory too.
	c, err = config.Load(cfgPath, []string{"PORTCULLIS_POLICYFILES=one.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Policy().Policies; len(got) != 2 || got[1].Name != "ClusterImagePolicy/one" {
		t.Errorf("with PORTCULLIS_POLICYFILES=one.yaml: %+v", got)
	}
}

func TestPolicyFilesRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		list  string
		want  string
	}{
		{"missing file", nil, `["nope.yaml"]`, "policyFiles[0]: stat "},
		{"glob matching nothing", nil, `["cips/*.yaml"]`, `policyFiles[0]: "`},
		{"unsupported field", map[string]string{"p.yaml": strings.Replace(cipDoc("x", "**", "pass"), "{static: {action: pass}}", "{key: {secretRef: {name: k}}}", 1)},
			`["p.yaml"]`, `p.yaml: ClusterImagePolicy "x": spec.authorities[0].key.secretRef: not supported`},
		{"overlaps the inline policy", map[string]string{"p.yaml": cipDoc("x", "index.docker.io/**", "pass")},
			`["p.yaml"]`, `of the inline policy "inline"`},
		{"directory", map[string]string{"d/p.yaml": cipDoc("x", "quay.io/**", "pass")}, `["d"]`, "is a directory"},
		{"not a regular file", nil, `["/dev/null"]`, "is not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, s := range tc.files {
				writeFile(t, filepath.Join(dir, name), s)
			}
			cfgPath := filepath.Join(dir, "portcullis.yaml")
			writeFile(t, cfgPath, good+`
policies:
  - name: inline
    images: ["docker.io/library/*"]
    authorities: [{name: s, static: pass}]
policyFiles: `+tc.list+"\n")
			_, err := config.Load(cfgPath, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
