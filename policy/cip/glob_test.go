package cip_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/policy/cip"
)

// pcMatch is policy-controller's glob semantics, written from its documentation and
// pkg/apis/glob: "*" and "*/*" stand for index.docker.io/library/* and index.docker.io/*/*,
// "*" is any run without "/", "**" any run, anchored, matched against the full reference
// with its tag or digest.
func pcMatch(t *testing.T, glob, ref string) bool {
	t.Helper()
	switch glob {
	case "*":
		glob = "index.docker.io/library/*"
	case "*/*":
		glob = "index.docker.io/*/*"
	}
	var re strings.Builder
	for i := 0; i < len(glob); i++ {
		switch {
		case strings.HasPrefix(glob[i:], "**"):
			re.WriteString(".*")
			i++
		case glob[i] == '*':
			re.WriteString("[^/]*")
		default:
			re.WriteString(regexp.QuoteMeta(glob[i : i+1]))
		}
	}
	return regexp.MustCompile("^" + re.String() + "$").MatchString(ref)
}

// names are portcullis image names; policy-controller sees Docker Hub's as index.docker.io.
var names = []string{
	"docker.io/library/alpine", "docker.io/library/busybox", "docker.io/myuser/myapp",
	"docker.io/a/b/c", "index.docker.io/library/alpine",
	"ghcr.io/org/app", "ghcr.io/org/apple", "ghcr.io/org/app/sub", "ghcr.io/org/app-x/y/z",
	"ghcr.io/org", "ghcr.io/other/app", "ghcr.io/org/team/app", "ghcr.io/org/team/sub/app",
	"ghcrxio/org/app", "ghcr.io.evil.com/org/app", "gcr.io/projectsigstore/policy-webhook",
	"ghcr.io/sigstore/timestamp-server", "ghcr.io/sigstore/timestamp-server-x/y",
	"registry.local:5000/cosigned/demo", "registry.local:5000/cosigned/demo2", "registry.local/cosigned/demo",
	"quay.io/a/b", "localhost:5000/x", "index.example.com/x/y",
}

// suffixes are the tag and digest forms policy-controller matches.
var suffixes = []string{":latest", ":v1.2-rc_3", "@sha256:5504f2a95018e3d8a52d80d9e1a128c6ea337581808ff9fe96f5628ce2336350"}

func pcName(name string) string {
	// go-containerregistry's normal form of Docker Hub names.
	if rest, ok := strings.CutPrefix(name, "docker.io/"); ok {
		return "index.docker.io/" + rest
	}
	return name
}

func TestTranslateGlob(t *testing.T) {
	for _, tc := range []struct {
		glob string
		want []string // nil: refused
	}{
		{"**", []string{"*/**"}},
		{"*", []string{"docker.io/library/*", "index.docker.io/library/*"}},
		{"*/*", []string{"docker.io/*/*", "index.docker.io/*/*"}},
		{"index.docker.io/library/*", []string{"docker.io/library/*", "index.docker.io/library/*"}},
		{"index.docker.io/**", []string{"docker.io/*/**", "index.docker.io/*/**"}},
		{"ghcr.io/org/**", []string{"ghcr.io/org/*/**"}},
		{"ghcr.io/org/*", []string{"ghcr.io/org/*"}},
		{"ghcr.io/org/app*", []string{"ghcr.io/org/app*"}},
		{"ghcr.io/*/app*", []string{"ghcr.io/*/app*"}},
		{"ghcr.io/sigstore/timestamp-server**", []string{"ghcr.io/sigstore/timestamp-server*/**"}},
		{"registry.local:5000/cosigned/demo*", []string{"registry.local:5000/cosigned/demo*"}},
		{"ghcr.io/**/app*", []string{"ghcr.io/*/**/app*"}},
		{"ghcr.io/org**/app*", []string{"ghcr.io/org*/**/app*"}},
		{"ghcr.io/**team/*", []string{"ghcr.io/**/*team/*"}},
		{"ghc**", []string{"ghc*/**"}},
		{"*/**", []string{"*/*/**"}},
		{"index.*/library/*", []string{"index.*/library/*", "docker.io/library/*"}},
		{"*.io/library/*", []string{"*.io/library/*"}},
		// refused
		{"docker.io/library/*", nil}, // policy-controller never sees docker.io
		{"ghcr.io/org/app", nil},     // no wildcard for the tag: matches nothing there
		{"ghcr.io/org/app:*", nil},   // tags
		{"ghcr.io/org/app:v1", nil},  // tags
		{"gcr.io/projectsigstore/policy-webhook@sha256:d1e7af59381793687db4673277005276eb73a06cf555503138dd18eaa1ca47d6", nil},
		{"ghcr.io/org/app*-*", nil}, // second wildcard in the last segment
		{"ghcr.io/org/**app*", nil}, // "**" opening the last segment
		{"ghcr.io/a**b/c*", nil},    // "**" inside a segment
		{"ghcr.io/Org/*", nil},      // uppercase
		{"ghcr.io//app*", nil},      // empty segment
		{"ghcr.io/org/[a-z]*", nil}, // not a policy-controller glob
		{"d*.io/library/*", nil},    // docker.io but not index.docker.io
		{"ghcr.io/***", nil},
	} {
		t.Run(tc.glob, func(t *testing.T) {
			got, err := cip.TranslateGlob(tc.glob)
			if tc.want == nil {
				if err == nil {
					t.Fatalf("TranslateGlob(%q) = %q, want a refusal", tc.glob, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("TranslateGlob(%q): %v", tc.glob, err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("TranslateGlob(%q) = %q, want %q", tc.glob, got, tc.want)
			}
			// The translation decides like policy-controller on every name, whatever the
			// tag or digest.
			for _, n := range names {
				var ours bool
				for _, g := range got {
					cg, err := policy.CompileGlob(g)
					if err != nil {
						t.Fatal(err)
					}
					ours = ours || cg.Match(n)
				}
				for _, sfx := range suffixes {
					if theirs := pcMatch(t, tc.glob, pcName(n)+sfx); theirs != ours {
						t.Errorf("%s%s: policy-controller matches %t, portcullis (%q) %t", n, sfx, theirs, got, ours)
					}
				}
			}
		})
	}
}

func TestGlobsOverlap(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"ghcr.io/org/*", "ghcr.io/org/*", true},
		{"ghcr.io/org/*/**", "ghcr.io/org/app", true},
		{"ghcr.io/org/app*", "ghcr.io/org/*-x", true},
		{"ghcr.io/org/a*", "ghcr.io/org/b*", false},
		{"ghcr.io/org/*", "ghcr.io/other/*", false},
		{"*/**", "quay.io/x", true},
		{"ghcr.io/*/**/app*", "ghcr.io/org/team/app", true},
		{"ghcr.io/*/**/app*", "ghcr.io/app", false},
		{"docker.io/library/*", "docker.io/*/*", true},
		{"docker.io/library/*", "docker.io/*/*/*", false},
		{"ghcr.io/**/x", "ghcr.io/**/y", false},
		{"ghcr.io/**/x*", "ghcr.io/**/*y", true},
		{"a*b/c", "*a/c", false},
		{"a*b/c", "*b/c", true},
	} {
		t.Run(tc.a+"|"+tc.b, func(t *testing.T) {
			for _, order := range [][2]string{{tc.a, tc.b}, {tc.b, tc.a}} {
				if got := cip.GlobsOverlap(order[0], order[1]); got != tc.want {
					t.Errorf("GlobsOverlap(%q, %q) = %t, want %t", order[0], order[1], got, tc.want)
				}
			}
		})
	}
}
