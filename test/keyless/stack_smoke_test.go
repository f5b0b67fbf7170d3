package keyless

import (
	"strings"
	"testing"
)

// TestStackSignsAndVerifies proves the stack itself: the real cosign v3 signs keylessly in
// both formats against it, and the real cosign verify accepts the right identity and
// refuses another one, straight from the upstream (no portcullis).
func TestStackSignsAndVerifies(t *testing.T) {
	s := needStack(t)
	up := newUpstream(t)
	alice := "alice@example.com"
	for _, tc := range []struct {
		name   string
		bundle bool
	}{{"bundle, Rekor v2, TSA, SCT", true}, {"legacy, TSA", false}} {
		t.Run(tc.name, func(t *testing.T) {
			img := up.push(t, "smoke/"+map[bool]string{true: "bundle", false: "legacy"}[tc.bundle])
			s.cosignSignKeyless(t, s.oidc.emailToken(alice), img, tc.bundle)
			s.must(t, s.cosign3, append(s.cosignVerifyArgs(alice, s.oidc.url("email"), tc.bundle), img)...)
			out, err := s.run(t, s.cosign3, append(s.cosignVerifyArgs("mallory@example.com", s.oidc.url("email"), tc.bundle), img)...)
			// Both formats' refusals name the identity the certificate holds.
			if err == nil || !strings.Contains(out, alice) {
				t.Errorf("cosign verify accepted another identity (err %v):\n%s", err, out)
			}
		})
	}
}
