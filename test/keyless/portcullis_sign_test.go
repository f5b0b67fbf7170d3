package keyless

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/portcullis/portcullis/internal/testtool"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// portcullisBin is the portcullis binary, built once per test binary into the stack-independent
// temporary directory removed by TestMain.
func portcullisBin(t *testing.T) string {
	t.Helper()
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
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/portcullis")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v", buildErr)
	}
	return binPath
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
