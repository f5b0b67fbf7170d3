package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// tektonTask is Tekton's v1 Task as far as deploy/ci uses it, with the fields of
// tekton.dev/v1 (github.com/tektoncd/pipeline/pkg/apis/pipeline/v1, not imported: it brings
// knative); decoded strictly, a misspelled field fails.
type tektonTask struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		DisplayName string `json:"displayName,omitempty"`
		Description string `json:"description,omitempty"`
		Params      []struct {
			Name        string `json:"name"`
			Type        string `json:"type,omitempty"`
			Description string `json:"description,omitempty"`
			Default     any    `json:"default,omitempty"`
		} `json:"params,omitempty"`
		Workspaces []struct {
			Name        string `json:"name"`
			Description string `json:"description,omitempty"`
			MountPath   string `json:"mountPath,omitempty"`
			ReadOnly    bool   `json:"readOnly,omitempty"`
			Optional    bool   `json:"optional,omitempty"`
		} `json:"workspaces,omitempty"`
		Volumes []corev1.Volume `json:"volumes,omitempty"`
		Steps   []tektonStep    `json:"steps"`
		Results []struct {
			Name        string `json:"name"`
			Type        string `json:"type,omitempty"`
			Description string `json:"description,omitempty"`
		} `json:"results,omitempty"`
	} `json:"spec"`
}

type tektonStep struct {
	Name             string                      `json:"name"`
	Image            string                      `json:"image,omitempty"`
	Command          []string                    `json:"command,omitempty"`
	Args             []string                    `json:"args,omitempty"`
	Script           string                      `json:"script,omitempty"`
	WorkingDir       string                      `json:"workingDir,omitempty"`
	Env              []corev1.EnvVar             `json:"env,omitempty"`
	EnvFrom          []corev1.EnvFromSource      `json:"envFrom,omitempty"`
	ComputeResources corev1.ResourceRequirements `json:"computeResources,omitempty"`
	VolumeMounts     []corev1.VolumeMount        `json:"volumeMounts,omitempty"`
	ImagePullPolicy  corev1.PullPolicy           `json:"imagePullPolicy,omitempty"`
	SecurityContext  *corev1.SecurityContext     `json:"securityContext,omitempty"`
	Timeout          *metav1.Duration            `json:"timeout,omitempty"`
	OnError          string                      `json:"onError,omitempty"`
}

// githubWorkflow is the part of a GitHub Actions workflow the test reads.
type githubWorkflow struct {
	Permissions map[string]string `json:"permissions"`
	Jobs        map[string]struct {
		Permissions map[string]string `json:"permissions"`
		Steps       []struct {
			Name string            `json:"name"`
			Uses string            `json:"uses"`
			Run  string            `json:"run"`
			Env  map[string]string `json:"env"`
		} `json:"steps"`
	} `json:"jobs"`
}

// invocation is one portcullis command line in a CI example.
type invocation struct {
	where string
	args  []string // after "portcullis"
}

var tektonArrayParam = regexp.MustCompile(`^\$\(params\.[a-z-]+\[\*\]\)$`)

func tektonInvocations(t *testing.T) ([]invocation, tektonTask) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "ci", "tekton-sign-task.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var task tektonTask
	if err := yamlStrict(b, &task); err != nil {
		t.Fatalf("tekton-sign-task.yaml: %v", err)
	}
	if task.APIVersion != "tekton.dev/v1" || task.Kind != "Task" {
		t.Fatalf("apiVersion %q kind %q, want tekton.dev/v1 Task", task.APIVersion, task.Kind)
	}
	var out []invocation
	for _, s := range task.Spec.Steps {
		if len(s.Command) == 1 && filepath.Base(s.Command[0]) == "portcullis" {
			var args []string
			for _, a := range s.Args {
				if !tektonArrayParam.MatchString(a) { // expands to the extra flags, none by default
					args = append(args, a)
				}
			}
			out = append(out, invocation{"tekton step " + s.Name, args})
		}
	}
	return out, task
}

func githubInvocations(t *testing.T) ([]invocation, githubWorkflow) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "ci", "github-actions-sign-keyless.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var wf githubWorkflow
	if err := yamlLoose(b, &wf); err != nil {
		t.Fatal(err)
	}
	var out []invocation
	for name, job := range wf.Jobs {
		for _, s := range job.Steps {
			script := strings.ReplaceAll(s.Run, "\\\n", " ")
			for _, line := range strings.Split(script, "\n") {
				f := strings.Fields(line)
				if len(f) > 0 && f[0] == "portcullis" {
					var args []string
					for _, a := range f[1:] {
						args = append(args, strings.Trim(a, `"'`))
					}
					out = append(out, invocation{"job " + name + " step " + s.Name, args})
				}
			}
		}
	}
	return out, wf
}

// TestCIExamplesUseRealFlags runs each portcullis command line of deploy/ci through the
// built CLI's own flag parser (with --help, so nothing runs): an unknown flag, a misspelled
// command or a value of the wrong type fails.
func TestCIExamplesUseRealFlags(t *testing.T) {
	bin := portcullis(t)
	tekton, task := tektonInvocations(t)
	github, wf := githubInvocations(t)
	if len(tekton) != 1 || len(github) != 1 {
		t.Fatalf("%d Tekton and %d GitHub portcullis invocations, want one each", len(tekton), len(github))
	}
	for _, inv := range append(tekton, github...) {
		t.Run(inv.where, func(t *testing.T) {
			if out, err := run(t, t.TempDir(), []string{"HOME=" + t.TempDir()}, bin, append(inv.args, "--help")...); err != nil {
				t.Errorf("portcullis %s: %v\n%s", strings.Join(inv.args, " "), err, out)
			}
		})
	}
	// The parser check can fail: a misspelled flag is refused.
	bad := append([]string{"sign", "--fulcio-uri", "https://fulcio.example"}, "--help")
	if out, err := run(t, t.TempDir(), []string{"HOME=" + t.TempDir()}, bin, bad...); err == nil || !strings.Contains(out, "unknown flag: --fulcio-uri") {
		t.Errorf("portcullis %s: %v %s, want unknown flag", strings.Join(bad, " "), err, out)
	}

	// Tekton signs with the key and password from the Secret; GitHub keylessly.
	tk := strings.Join(tekton[0].args, " ")
	if !strings.HasPrefix(tk, "sign --key /etc/signing/cosign.key") {
		t.Errorf("tekton: %s, want sign --key with the mounted key", tk)
	}
	step := task.Spec.Steps[0]
	var password bool
	for _, e := range step.Env {
		if e.Name == "COSIGN_PASSWORD" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Key == "cosign.password" {
			password = true
		}
	}
	if !password {
		t.Error("tekton: COSIGN_PASSWORD does not come from the Secret's cosign.password")
	}
	if !mountsSecretKey(task.Spec.Volumes, step.VolumeMounts, "/etc/signing", "cosign.key") {
		t.Error("tekton: cosign.key of the Secret is not mounted at /etc/signing")
	}
	gh := strings.Join(github[0].args, " ")
	if !strings.HasPrefix(gh, "sign ") || strings.Contains(gh, "--key") {
		t.Errorf("github: %s, want sign without --key (keyless)", gh)
	}
	if wf.Permissions["id-token"] != "write" {
		t.Errorf("github: permissions %v, want id-token: write for the ambient OIDC token", wf.Permissions)
	}
}

func mountsSecretKey(vols []corev1.Volume, mounts []corev1.VolumeMount, path, key string) bool {
	for _, m := range mounts {
		if m.MountPath != path {
			continue
		}
		for _, v := range vols {
			if v.Name == m.Name && v.Secret != nil {
				for _, it := range v.Secret.Items {
					if it.Key == key && it.Path == key {
						return true
					}
				}
			}
		}
	}
	return false
}
