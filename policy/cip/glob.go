package cip

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/portcullis/portcullis/policy"
)

// Docker Hub's names: policy-controller sees Docker Hub images as index.docker.io/… (the
// go-containerregistry normal form); portcullis names them after their upstream, which clients
// call docker.io (an upstream named index.docker.io is Docker Hub too).
const (
	dockerHubCIP        = "index.docker.io"
	dockerHubPortcullis = "docker.io"
)

// cipGlobChars is policy-controller's own check of a glob's characters (pkg/apis/glob).
var cipGlobChars = regexp.MustCompile(`^[a-zA-Z0-9-_:/*.@]+$`)

// TranslateGlob translates a policy-controller image glob into portcullis image globs that
// match exactly the images it matches, or says why it cannot.
//
// policy-controller turns the glob into a regular expression ("*" is [^/]*, "**" is .*,
// anchored at both ends, "*" and "*/*" first rewritten to index.docker.io/library/* and
// index.docker.io/*/*) and matches it against the image reference with its tag or digest
// (ghcr.io/org/app:v1, ghcr.io/org/app@sha256:…), Docker Hub named index.docker.io.
// portcullis matches the name alone ("upstream/repository", Docker Hub's upstream named
// docker.io), "*" within a path segment and "**" as whole segments. So:
//   - the glob must end with "*" or "**" (the wildcard that takes the tag or digest), and
//     only that last wildcard may sit in the last path segment: anything else would match
//     some tags and not others, or nothing at all;
//   - tags and digests (":" after the registry, "@") and uppercase letters (which occur
//     only in tags) cannot be translated;
//   - "**" must start or end a path segment ("a/**/b", "a/b**", "**b/c*"); inside one ("a**b")
//     it is refused.
func TranslateGlob(glob string) ([]string, error) {
	switch glob {
	case "*":
		glob = dockerHubCIP + "/library/*"
	case "*/*":
		glob = dockerHubCIP + "/*/*"
	}
	if !cipGlobChars.MatchString(glob) {
		return nil, errors.New("invalid glob (policy-controller allows letters, digits and - _ : / * . @)")
	}
	if strings.Contains(glob, "@") {
		return nil, errors.New("names a digest: portcullis policies match image names, whatever digest or tag is pulled")
	}
	if strings.ToLower(glob) != glob {
		return nil, errors.New("has uppercase letters, which occur in image references only in tags: portcullis policies match image names, whatever tag is pulled")
	}
	if strings.Contains(glob, "***") {
		return nil, errors.New(`"***" cannot be translated: use "**"`)
	}
	segs := strings.Split(glob, "/")
	for i, s := range segs {
		switch {
		case s == "":
			return nil, errors.New("has an empty path segment, which no image name has")
		case i > 0 && strings.Contains(s, ":"):
			return nil, errors.New("names a tag: portcullis policies match image names, whatever tag is pulled")
		}
	}
	last := segs[len(segs)-1]
	body := strings.TrimSuffix(strings.TrimSuffix(last, "*"), "*")
	if body == last {
		return nil, errors.New("matches no image in policy-controller, which matches globs against the reference with its tag or digest (ghcr.io/org/app:v1): end it with * (one repository name) or ** (and everything below)")
	}
	if last != "**" && strings.Contains(body, "*") {
		return nil, fmt.Errorf("%q: the last path segment may hold one wildcard, at its end; others would match part of the tag or digest, so the glob would hold for some tags and not others", last)
	}

	var out []string
	for i, s := range segs {
		if s == "**" {
			out = append(out, "*", "**") // one or more whole segments
			continue
		}
		lead := strings.HasPrefix(s, "**")
		trail := strings.HasSuffix(s, "**")
		mid := strings.TrimSuffix(strings.TrimPrefix(s, "**"), "**")
		if strings.Contains(mid, "**") {
			return nil, fmt.Errorf("%q: \"**\" inside a path segment matches across segments in a way portcullis globs cannot express; put it at the start or end of a segment", s)
		}
		if lead {
			if i == len(segs)-1 {
				return nil, fmt.Errorf("%q: a \"**\" opening the last path segment could match part of the tag or digest", s)
			}
			out = append(out, "**")
			mid = "*" + mid
		}
		if trail {
			out = append(out, mid+"*", "**")
			continue
		}
		out = append(out, mid)
	}
	globs, err := dockerHub(out, segs[0])
	if err != nil {
		return nil, err
	}
	for _, g := range globs {
		if _, err := policy.CompileGlob(g); err != nil {
			return nil, fmt.Errorf("translates to %v", err)
		}
	}
	return globs, nil
}

// dockerHub renames policy-controller's Docker Hub host in the translated segments: the
// registry segment index.docker.io becomes docker.io, and a pattern for it must match both
// names or neither.
func dockerHub(segs []string, cipHost string) ([]string, error) {
	join := func(s []string) string { return strings.Join(s, "/") }
	i := 0
	if segs[0] == "**" { // the registry is matched by the next pattern, or by the "**"
		i = 1
	}
	host := segs[i]
	if !strings.Contains(host, "*") {
		switch host {
		case dockerHubCIP:
			// An upstream may be named either way; both are Docker Hub.
			alt := append([]string(nil), segs...)
			alt[i] = dockerHubPortcullis
			return []string{join(alt), join(segs)}, nil
		case dockerHubPortcullis:
			return nil, fmt.Errorf("%q matches no image in policy-controller, which names Docker Hub %s: write %s", cipHost, dockerHubCIP, dockerHubCIP)
		}
		return []string{join(segs)}, nil
	}
	g, err := policy.CompileGlob(host)
	if err != nil {
		return nil, fmt.Errorf("translates to %v", err)
	}
	idx, hub := g.Match(dockerHubCIP), g.Match(dockerHubPortcullis)
	switch {
	case idx == hub:
		return []string{join(segs)}, nil
	case hub || i == 1:
		return nil, fmt.Errorf("%q matches docker.io and index.docker.io differently; portcullis names Docker Hub docker.io, so the glob cannot be translated exactly", host)
	}
	alt := append([]string(nil), segs...)
	alt[i] = dockerHubPortcullis
	return []string{join(segs), join(alt)}, nil
}

// globsOverlap reports whether two portcullis globs can match the same name. It is exact
// over strings (it ignores which characters image names may hold), so it may report an
// overlap no real name has, never miss one.
func globsOverlap(a, b string) bool {
	return segmentsOverlap(strings.Split(a, "/"), strings.Split(b, "/"))
}

// segmentsOverlap reports whether two globs split into segments ("**" any number of
// segments, otherwise one segment matching the pattern) accept a common name.
func segmentsOverlap(a, b []string) bool {
	return sequencesOverlap(a, b, "**", patternsOverlap)
}

// patternsOverlap reports whether two segment patterns ("*" any run of characters) match a
// common string.
func patternsOverlap(a, b string) bool {
	return sequencesOverlap([]byte(a), []byte(b), '*', func(x, y byte) bool { return x == y })
}

// sequencesOverlap searches the product of two pattern automata for a common accepted
// sequence. In a pattern, star matches any run of elements (none included) and any other
// element x matches one element; x and y, one from each pattern, can match the same
// element when same(x, y).
func sequencesOverlap[E comparable](a, b []E, star E, same func(x, y E) bool) bool {
	type state struct{ i, j int }
	seen := map[state]bool{}
	var visit func(s state) bool
	visit = func(s state) bool {
		if seen[s] {
			return false
		}
		seen[s] = true
		ai, bj := s.i < len(a), s.j < len(b)
		if !ai && !bj {
			return true
		}
		// A star may match nothing.
		if ai && a[s.i] == star && visit(state{s.i + 1, s.j}) {
			return true
		}
		if bj && b[s.j] == star && visit(state{s.i, s.j + 1}) {
			return true
		}
		if !ai || !bj {
			return false
		}
		// One element consumed by both: a star stays, anything else advances.
		sa, sb := a[s.i] == star, b[s.j] == star
		switch {
		case sa && sb:
			return false // both stay: no progress
		case sa:
			return visit(state{s.i, s.j + 1})
		case sb:
			return visit(state{s.i + 1, s.j})
		}
		return same(a[s.i], b[s.j]) && visit(state{s.i + 1, s.j + 1})
	}
	return visit(state{0, 0})
}
