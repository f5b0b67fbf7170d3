package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// glob is a compiled image glob: path segments, each "**" or a segment pattern in which "*"
// matches any run of characters.
type glob struct {
	pattern  string
	segments []string
}

var (
	// hostSegment and pathSegment are the literal forms a first and a later segment of a
	// normalised image name can take (distribution's reference grammar, lowercase only).
	hostSegment = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]+)?$`)
	pathSegment = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$`)
)

// compileGlob parses pattern and refuses globs that cannot match a normalised image name.
func compileGlob(pattern string) (glob, error) {
	if pattern == "" {
		return glob{}, errors.New("empty image glob")
	}
	if strings.ToLower(pattern) != pattern {
		return glob{}, fmt.Errorf("%q has uppercase letters, which never occur in a normalised image name", pattern)
	}
	segments := strings.Split(pattern, "/")
	for i, s := range segments {
		host := i == 0
		switch {
		case s == "":
			return glob{}, fmt.Errorf("%q has an empty path segment", pattern)
		case s == "**":
			continue
		case strings.Contains(s, "**"):
			return glob{}, fmt.Errorf("%q: \"**\" must be a whole path segment, got %q", pattern, s)
		}
		for _, r := range s {
			if !validGlobRune(r, host) {
				what := "an image name"
				if r == ':' || r == '@' {
					what = "an image name (globs match names, without tag or digest)"
				}
				return glob{}, fmt.Errorf("%q: %q cannot occur in %s", pattern, r, what)
			}
		}
		if strings.Contains(s, "*") {
			continue
		}
		if host && !hostSegment.MatchString(s) {
			return glob{}, fmt.Errorf("%q: %q is not a registry host, so the glob matches nothing", pattern, s)
		}
		if !host && !pathSegment.MatchString(s) {
			return glob{}, fmt.Errorf("%q: %q is not a repository path component, so the glob matches nothing", pattern, s)
		}
	}
	return glob{pattern: pattern, segments: segments}, nil
}

// validGlobRune reports whether r may occur in a glob segment; host segments may carry a port.
func validGlobRune(r rune, host bool) bool {
	switch {
	case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '.', r == '-', r == '*':
		return true
	case r == '_':
		return !host
	case r == ':':
		return host
	}
	return false
}

// match reports whether the normalised image name matches g.
func (g glob) match(name string) bool {
	if name == "" {
		return false
	}
	segs := strings.Split(name, "/")
	for _, s := range segs {
		if s == "" {
			return false
		}
	}
	return matchSegments(g.segments, segs)
}

// matchSegments matches pattern segments against name segments, "**" standing for any number
// of whole segments. It is the linear backtracking wildcard match: on a mismatch, resume after
// the most recent "**" with one more segment consumed by it.
func matchSegments(pattern, name []string) bool {
	p, n := 0, 0
	star, starN := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == "**":
			star, starN = p, n
			p++
		case p < len(pattern) && matchSegment(pattern[p], name[n]):
			p++
			n++
		case star >= 0:
			starN++
			p, n = star+1, starN
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == "**" {
		p++
	}
	return p == len(pattern)
}

// matchSegment matches one segment pattern, in which "*" stands for any run of characters,
// against one name segment, with the same linear backtracking.
func matchSegment(pattern, s string) bool {
	p, i := 0, 0
	star, starI := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, starI = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			starI++
			p, i = star+1, starI
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// Glob is a compiled image glob, as policies use them: "*" matches within one path segment,
// "**" any number of whole segments.
type Glob struct{ g glob }

// CompileGlob parses pattern, refusing globs that cannot match a normalised image name.
func CompileGlob(pattern string) (Glob, error) {
	g, err := compileGlob(pattern)
	return Glob{g}, err
}

// Match reports whether the normalised image name ("upstream/repository") matches.
func (g Glob) Match(image string) bool { return g.g.match(image) }

// String returns the pattern.
func (g Glob) String() string { return g.g.pattern }
