package cip_test

import (
	"strings"
	"testing"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/policy/cip"
)

// FuzzTranslateGlob: a glob TranslateGlob accepts translates to portcullis globs that compile
// and match exactly the names policy-controller matches, with any tag or digest.
func FuzzTranslateGlob(f *testing.F) {
	for _, g := range []string{"**", "*", "*/*", "ghcr.io/org/**", "ghcr.io/*/app*", "index.docker.io/library/*",
		"index.*/*", "ghcr.io/**/x*", "ghcr.io/org**/a*", "ghcr.io/**team/*", "a**", "ghc**", "registry.local:5000/x/y*", "ghcr.io/a**b/c*"} {
		f.Add(g)
	}
	f.Fuzz(func(t *testing.T, glob string) {
		globs, err := cip.TranslateGlob(glob)
		if err != nil {
			return
		}
		var compiled []policy.Glob
		for _, g := range globs {
			cg, err := policy.CompileGlob(g)
			if err != nil {
				t.Fatalf("TranslateGlob(%q) gave %q, which does not compile: %v", glob, g, err)
			}
			compiled = append(compiled, cg)
		}
		for _, n := range names {
			ours := false
			for _, cg := range compiled {
				ours = ours || cg.Match(n)
			}
			for _, sfx := range suffixes {
				if theirs := pcMatch(t, glob, pcName(n)+sfx); theirs != ours {
					t.Fatalf("glob %q on %s%s: policy-controller matches %t, portcullis (%q) %t", glob, n, sfx, theirs, globs, ours)
				}
			}
		}
	})
}

// FuzzConvert: any input is converted or refused with an error naming the file, never a
// panic; what is converted validates as portcullis policies.
func FuzzConvert(f *testing.F) {
	f.Add("apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata: {name: a}\nspec:\n  images: [{glob: \"**\"}]\n  authorities: [{static: {action: pass}}]\n")
	f.Add("apiVersion: policy.sigstore.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: k}\nspec:\n  mode: warn\n  images: [{glob: \"ghcr.io/org/*\"}]\n  authorities:\n  - keyless: {url: \"https://fulcio.sigstore.dev\", identities: [{issuer: i, subjectRegExp: \".*\"}]}\n    ctlog: {url: \"https://rekor.sigstore.dev\"}\n    attestations: [{name: a, predicateType: vuln, policy: {type: cue, data: \"x: 1\"}}]\n---\n")
	f.Add("---\n---\n- [\n")
	f.Fuzz(func(t *testing.T, doc string) {
		ps, err := cip.Convert([]cip.File{{Name: "f.yaml", Data: []byte(doc)}})
		if err != nil {
			for line := range strings.Lines(err.Error()) {
				if !strings.HasPrefix(line, "f.yaml: ") {
					t.Fatalf("error line %q does not name the file", line)
				}
			}
			return
		}
		if err := (policy.Config{Policies: ps}).Validate(); err != nil {
			t.Fatalf("converted policies do not validate: %v\n%s", err, doc)
		}
	})
}
