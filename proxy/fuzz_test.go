package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy/upstream"
)

// anchoredTag matches a whole tag: 1 to 128 characters, [A-Za-z0-9_] first.
var anchoredTag = regexp.MustCompile(`^` + reference.TagRegexp.String() + `$`)

func fuzzUpstreams(t testing.TB) *Upstreams {
	t.Helper()
	var ups []*upstream.Client
	for _, c := range []upstream.Config{
		{Name: "docker.io", URL: "https://registry-1.docker.io", Default: true},
		{Name: "ghcr.io", URL: "https://ghcr.io"},
		{Name: "registry.local:5000", URL: "http://127.0.0.1:5000", Insecure: true},
	} {
		up, err := upstream.New(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		ups = append(ups, up)
	}
	u, err := NewUpstreams(ups...)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// FuzzParseRoute checks that whatever path and query a client sends, parseRoute either
// refuses it with an OCI error code (answered 4xx) or returns a route whose upstream is a
// configured one, whose repository is a valid name, and whose reference is what its kind
// needs. Nothing a client sends can name an upstream that is not configured.
func FuzzParseRoute(f *testing.F) {
	d := digest.FromString("x").String()
	for _, s := range [][2]string{
		{"library/alpine/manifests/latest", ""},
		{"alpine/manifests/" + d, "ns=docker.io"},
		{"ghcr.io/org/app/blobs/" + d, ""},
		{"registry.local:5000/a/b/c/referrers/" + d, "artifactType=x"},
		{"org/app/tags/list", "n=10&last=v1&ns=ghcr.io"},
		{"org/app/blobs/uploads/", ""},
		{"org/app/blobs/uploads/abc", ""},
		{"evil.example/x/manifests/v1", ""},
		{"x/manifests/v1", "ns=evil.example"},
		{"../manifests/v1", ""},
		{"manifests/v1", ""},
		{"a//b/manifests/" + strings.Repeat("t", 129), ""},
		{"A/manifests/v1", ""},
		{"a/manifests/sha256:abc", ""},
		{"localhost/a/manifests/v1", ""},
	} {
		f.Add(s[0], s[1])
	}
	u := fuzzUpstreams(f)
	f.Fuzz(func(t *testing.T, path, rawQuery string) {
		r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/v2/" + path, RawQuery: rawQuery}}
		rt, err := u.parseRoute(r)
		if err != nil {
			var ec errcode.Error
			if !errors.As(err, &ec) {
				t.Fatalf("parseRoute(%q, %q) error %v is not an OCI error code", path, rawQuery, err)
			}
			if s := ec.Code.Descriptor().HTTPStatusCode; s < 400 || s >= 500 {
				t.Fatalf("parseRoute(%q, %q) error %v answers %d, want 4xx", path, rawQuery, err, s)
			}
			return
		}
		if rt.upstream == nil || u.byName[rt.upstream.Name()] != rt.upstream {
			t.Fatalf("parseRoute(%q, %q) picked an unconfigured upstream %+v", path, rawQuery, rt.upstream)
		}
		if ns := r.URL.Query().Get("ns"); ns != "" && rt.upstream.Name() != ns {
			t.Fatalf("parseRoute(%q, %q): ns=%s but upstream %s", path, rawQuery, ns, rt.upstream.Name())
		}
		if _, err := reference.WithName(rt.repo); err != nil {
			t.Fatalf("parseRoute(%q, %q): invalid repository %q: %v", path, rawQuery, rt.repo, err)
		}
		if rt.image() != rt.upstream.Name()+"/"+rt.repo {
			t.Fatalf("image %q is not upstream/repo", rt.image())
		}
		if !strings.HasSuffix(rt.name, strings.TrimPrefix(rt.repo, "library/")) {
			t.Fatalf("repository %q does not come from the name %q the client used", rt.repo, rt.name)
		}
		switch rt.kind {
		case kindBlobs, kindReferrers:
			if _, err := digest.Parse(rt.ref); err != nil {
				t.Fatalf("%s route with invalid digest %q", rt.kind, rt.ref)
			}
		case kindManifests:
			// A whole tag (reference.TagRegexp alone matches anywhere in a string, so a
			// reference merely containing a tag-like run would pass), or a whole digest.
			if _, err := digest.Parse(rt.ref); err != nil && !anchoredTag.MatchString(rt.ref) {
				t.Fatalf("manifest route with reference %q, neither digest nor tag", rt.ref)
			}
		case kindTags, kindUploads:
		default:
			t.Fatalf("unknown route kind %q", rt.kind)
		}
	})
}

// FuzzParseRange checks that a Range header never selects bytes outside the blob, and that
// a partial answer always has at least one byte.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"", "bytes=0-0", "bytes=0-", "bytes=-1", "bytes=5-2", "bytes=-0", "bytes=0-1,3-4", "items=0-1", "bytes=99999999999999999999-", "bytes=--1"} {
		f.Add(s, int64(100))
	}
	f.Add("bytes=10-", int64(10))
	f.Add("bytes=0-", int64(0))
	f.Add("bytes=-1", int64(0))
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -(size + 1)
		}
		start, length, partial, err := parseRange(h, size)
		if err != nil {
			if !errors.Is(err, errRangeNotSatisfiable) {
				t.Fatalf("parseRange(%q, %d): unexpected error %v", h, size, err)
			}
			return
		}
		if start < 0 || length < 0 || start > size || length > size-start {
			t.Fatalf("parseRange(%q, %d) = start %d length %d: outside the blob", h, size, start, length)
		}
		if !partial && (start != 0 || length != size) {
			t.Fatalf("parseRange(%q, %d) = start %d length %d for a whole-blob answer", h, size, start, length)
		}
		if partial && length == 0 {
			t.Fatalf("parseRange(%q, %d): a partial answer of no bytes", h, size)
		}
	})
}
