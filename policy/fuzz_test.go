package policy_test

import (
	"context"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/policy"
)

// FuzzPolicyMatch compiles a policy with one image glob and matches names against it.
// Invariants: a glob without "*" matches exactly its own text; a glob matches the name made
// by replacing each "**" segment with two segments and each other "*" with one character;
// Match is deterministic; "docker.io/**"-style policies never match another upstream.
func FuzzPolicyMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"docker.io/library/alpine", "docker.io/library/alpine"},
		{"docker.io/myorg/**", "docker.io/myorg/a/b"},
		{"docker.io/myorg/**", "docker.io/myorg"},
		{"ghcr.io/*/app", "ghcr.io/org/app"},
		{"ghcr.io/a*b/**/c", "ghcr.io/axxb/c"},
		{"registry.local:5000/**", "registry.local:5000x/a"},
		{"**", "anything/at/all"},
		{"docker.io/my*", "docker.io/my/org"},
		{"docker.io/**/**", "docker.io"},
	} {
		f.Add(s[0], s[1])
	}
	auth := authorities(f, "key")
	f.Fuzz(func(t *testing.T, glob, name string) {
		cfg := policy.Config{Policies: []policy.PolicyConfig{{Name: "p", Images: []string{glob}, Authorities: auth}}}
		if cfg.Validate() != nil {
			return
		}
		set, err := policy.Compile(context.Background(), cfg)
		if err != nil {
			t.Fatalf("Validate accepted glob %q but Compile failed: %v", glob, err)
		}
		got := set.Match(name) != nil
		if again := set.Match(name) != nil; again != got {
			t.Fatalf("Match(%q) not deterministic for glob %q", name, glob)
		}
		if !strings.Contains(glob, "*") && got != (name == glob) {
			t.Fatalf("literal glob %q: Match(%q) = %v", glob, name, got)
		}
		segs := strings.Split(glob, "/")
		for i, s := range segs {
			if s == "**" {
				segs[i] = "x/y"
			} else {
				segs[i] = strings.ReplaceAll(s, "*", "x")
			}
		}
		if example := strings.Join(segs, "/"); set.Match(example) == nil {
			t.Fatalf("glob %q does not match %q", glob, example)
		}
		if host, _, ok := strings.Cut(glob, "/"); ok && !strings.Contains(host, "*") && got {
			if nh, _, _ := strings.Cut(name, "/"); nh != host {
				t.Fatalf("glob %q for upstream %q matched %q of upstream %q", glob, host, name, nh)
			}
		}
	})
}
