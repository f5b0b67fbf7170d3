package keyless

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/internal/testtool"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	// buildCtx ends a background build still running when the tests are over.
	buildCtx, cancelBuild = context.WithCancel(context.Background())
)

// portcullisBin is the portcullis binary, built once per test binary into a temporary
// directory removed by TestMain (needStack starts the build in the background).
func portcullisBin(t *testing.T) string {
	t.Helper()
	buildPortcullis()
	if buildErr != nil {
		t.Fatalf("go build: %v", buildErr)
	}
	return binPath
}

// buildPortcullis builds the portcullis binary once; concurrent callers wait for it.
func buildPortcullis() {
	buildOnce.Do(func() {
		root, err := testtool.ModuleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "portcullis-keyless-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "portcullis")
		cmd := exec.CommandContext(buildCtx, "go", "build", "-o", binPath, "./cmd/portcullis")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = errors.New(string(out))
		}
	})
}

// portcullisSignArgs are the arguments of a keyless `portcullis sign` on the stack, as a CI
// job would write them: the token, the signing config (bundle: Fulcio, Rekor v2, TSA) or the
// URLs (legacy: Fulcio and the TSA), and the trusted root to check the result.
func (s *stack) portcullisSignArgs(token string, bundle bool) []string {
	args := []string{"sign", "--yes", "--allow-http-registry", "--identity-token", token, "--trusted-root", s.trustedRoot}
	if bundle {
		return append(args, "--signing-config", s.signingConfig)
	}
	return append(args, "--new-bundle-format=false", "--use-signing-config=false", "--fulcio-url", s.fulcio, "--timestamp-server-url", s.tsa)
}

// TestPortcullisSignsKeylessCosignVerifies: `portcullis sign` signs keylessly on the stack
// in both formats, and the real cosign v3 (and v2 for the legacy layout, which cosign v2
// reads) accepts the signature for the signer's identity and refuses another one.
func TestPortcullisSignsKeylessCosignVerifies(t *testing.T) {
	s := needStack(t)
	pc := portcullisBin(t)
	cosign2 := testtool.Path(t, "cosign2")
	up := newUpstream(t)
	const alice = "alice@example.com"
	for _, tc := range []struct {
		name   string
		bundle bool
	}{{"bundle", true}, {"legacy", false}} {
		t.Run(tc.name, func(t *testing.T) {
			img := up.push(t, "portcullis-signed/"+tc.name)
			s.must(t, pc, append(s.portcullisSignArgs(s.oidc.emailToken(alice), tc.bundle), img)...)
			verifiers := []string{s.cosign3}
			if !tc.bundle {
				verifiers = append(verifiers, cosign2)
			}
			for _, cosign := range verifiers {
				args := s.cosignVerifyArgs(alice, s.oidc.url("email"), tc.bundle)
				if cosign == cosign2 {
					args = []string{"verify", "--allow-http-registry", "--trusted-root", s.trustedRoot, "--insecure-ignore-tlog",
						"--use-signed-timestamps", "--certificate-identity", alice, "--certificate-oidc-issuer", s.oidc.url("email")}
				}
				s.must(t, cosign, append(args, img)...)
				wrong := append([]string{}, args...)
				for i, a := range wrong {
					if a == alice {
						wrong[i] = "mallory@example.com"
					}
				}
				if out, err := s.run(t, cosign, append(wrong, img)...); err == nil {
					t.Errorf("%s verify accepted another identity:\n%s", filepath.Base(cosign), out)
				} else if !strings.Contains(out, alice) {
					t.Errorf("%s verify refused, but not for the identity:\n%s", filepath.Base(cosign), out)
				}
			}
		})
	}
}

// TestPortcullisSignsKeylessThroughTheProxy: a CI job signs keylessly with `portcullis sign`
// through portcullis (as its push user), in both formats; the image is admitted at once by a
// keyless policy for the job's identity, and the real cosign v3 (and v2 for the legacy layout)
// verifies the signature read through portcullis.
func TestPortcullisSignsKeylessThroughTheProxy(t *testing.T) {
	s := needStack(t)
	pc := portcullisBin(t)
	cosign2 := testtool.Path(t, "cosign2")
	crane := testtool.Path(t, "crane")
	up := newUpstream(t)
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("ci:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const alice = "alice@example.com"
	email := s.oidc.url("email")
	px := startProxy(t, up, fmt.Sprintf(`push:
  htpasswd: %[1]s
  users: [{name: ci, images: ["%[2]s/signme/**"]}]
trustRoots: [{name: local, trustedRootFile: %[3]s}]
defaultPolicy: deny
policies:
  - name: bundle
    images: ["%[2]s/signme/bundle/**"]
    authorities: [{name: ci, keyless: {trustRoot: local, identities: [{issuer: %[4]q, subject: %[5]s}]}}]
  - name: legacy
    images: ["%[2]s/signme/legacy/**"]
    authorities: [{name: ci, keyless: {trustRoot: local, identities: [{issuer: %[4]q, subject: %[5]s}]}, tlog: {threshold: 0}, timestamps: {threshold: 1}}]
`, htpasswd, up.name, s.trustedRoot, email, alice))
	dockerConfig := filepath.Join(dir, "docker")
	auth := base64.StdEncoding.EncodeToString([]byte("ci:s3cret"))
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{px.host: map[string]string{"auth": auth}}})
	if err := os.MkdirAll(dockerConfig, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		bundle bool
	}{{"bundle", true}, {"legacy", false}} {
		t.Run(tc.name, func(t *testing.T) {
			repo := "signme/" + tc.name
			upRef := up.push(t, repo)
			viaProxy := px.host + "/" + repo + upRef[strings.Index(upRef, "@"):]
			pull := func() (string, error) {
				return testtool.Run(t, "", crane, nil, "pull", "--insecure", "--format", "oci", px.host+"/"+repo+":v1", filepath.Join(t.TempDir(), "out"))
			}
			if out, err := pull(); err == nil {
				t.Fatalf("unsigned image admitted:\n%s", out)
			}
			args := append(s.portcullisSignArgs(s.oidc.emailToken(alice), tc.bundle), px.host+"/"+repo+":v1")
			if out, err := testtool.Run(t, "", pc, []string{"DOCKER_CONFIG=" + dockerConfig}, args...); err != nil {
				t.Fatalf("portcullis sign through the proxy: %v\n%s", err, out)
			}
			if out, err := pull(); err != nil {
				t.Fatalf("signed through the proxy but denied: %v\n%s", err, out)
			}
			s.must(t, s.cosign3, append(s.cosignVerifyArgs(alice, email, tc.bundle), viaProxy)...)
			if !tc.bundle {
				s.must(t, cosign2, "verify", "--allow-http-registry", "--trusted-root", s.trustedRoot, "--insecure-ignore-tlog",
					"--use-signed-timestamps", "--certificate-identity", alice, "--certificate-oidc-issuer", email, viaProxy)
			}
		})
	}
}

// TestPortcullisSignsWithGitHubActionsToken: in a GitHub Actions job (ACTIONS_ID_TOKEN_REQUEST_*
// set, no --identity-token) `portcullis sign` gets the job's ID token itself; the certificate
// names the workflow, as the real cosign verify and portcullis verify check it.
func TestPortcullisSignsWithGitHubActionsToken(t *testing.T) {
	s := needStack(t)
	pc := portcullisBin(t)
	up := newUpstream(t)
	img := up.push(t, "gha/ambient")
	args := []string{"sign", "--yes", "--allow-http-registry", "--trusted-root", s.trustedRoot, "--signing-config", s.signingConfig, img}
	if out, err := testtool.Run(t, "", pc, s.oidc.actionsEnv(), args...); err != nil {
		t.Fatalf("portcullis sign with the ambient token: %v\n%s", err, out)
	}
	const identity = "https://github.com/acme/widget/.github/workflows/release.yml@refs/heads/main"
	id := []string{"--trusted-root", s.trustedRoot, "--certificate-identity", identity, "--certificate-oidc-issuer", s.oidc.url("gha"),
		"--certificate-github-workflow-repository", "acme/widget"}
	s.must(t, s.cosign3, append(append([]string{"verify", "--allow-http-registry"}, id...), img)...)
	s.must(t, pc, append(append([]string{"verify"}, id...), img)...)
	if out, err := s.run(t, pc, append(append([]string{"verify"}, id[:len(id)-1]...), "acme/other", img)...); err == nil {
		t.Errorf("portcullis verify accepted another workflow repository:\n%s", out)
	}
	// Without the runner's token the job has no identity: nothing is signed.
	out, err := testtool.Run(t, "", pc, nil, args...)
	if err == nil || !strings.Contains(out, "identity token") {
		t.Errorf("signed without a token (err %v):\n%s", err, out)
	}
}

// TestPortcullisSignRefuses: keyless signing fails closed — nothing is pushed when Fulcio
// refuses the token, when what the services returned does not verify against --trusted-root,
// or when the legacy layout is asked to record a Rekor entry.
func TestPortcullisSignRefuses(t *testing.T) {
	s := needStack(t)
	pc := portcullisBin(t)
	crane := testtool.Path(t, "crane")
	up := newUpstream(t)
	alice := s.oidc.emailToken("alice@example.com")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"token of an issuer Fulcio does not trust", []string{"--identity-token", s.oidc.token("stranger", map[string]any{"sub": "x", "email": "x@example.com", "email_verified": true}),
			"--signing-config", s.signingConfig}, "Fulcio returned 400"},
		{"trusted root without the stack's CA", []string{"--identity-token", alice, "--signing-config", s.signingConfig, "--trusted-root", s.byoRoot}, "keyless signing: failed to verify"},
		{"legacy layout with a Rekor log", []string{"--identity-token", alice, "--new-bundle-format=false", "--signing-config", s.signingConfig}, "legacy layout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := "refused/" + strings.ReplaceAll(strings.Fields(tc.name)[0], " ", "")
			img := up.push(t, repo)
			args := append(append([]string{"sign", "--yes", "--allow-http-registry"}, tc.args...), img)
			out, err := s.run(t, pc, args...)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("portcullis sign: err %v, want a failure saying %q:\n%s", err, tc.want, out)
			}
			t.Logf("refused: %s", strings.TrimSpace(out))
			tags := s.must(t, crane, "ls", "--insecure", up.host+"/"+repo)
			if strings.TrimSpace(tags) != "v1" {
				t.Errorf("something was pushed: tags %q", tags)
			}
		})
	}
}
