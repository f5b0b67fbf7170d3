package proxy

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/distribution/reference"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/verify/oci"
)

// Endpoint kinds of the distribution API that portcullis serves.
const (
	kindManifests = "manifests"
	kindBlobs     = "blobs"
	kindTags      = "tags"
	kindReferrers = "referrers"
	kindUploads   = "uploads"
)

// route is a parsed /v2/<name>/<kind>/<ref> request.
type route struct {
	kind string
	// name is the repository as the client named it (with a path prefix if it used one).
	name     string
	upstream *upstream.Client
	// repo is the repository path in the upstream, normalised (e.g. "library/alpine").
	repo string
	// ref is a tag or digest (manifests), a digest (blobs, referrers), or "" (tags).
	ref string
	// ns is the containerd ?ns= value, kept for links the proxy writes.
	ns string
}

// image is the normalised image name policies match: "<upstream>/<repo>".
func (rt route) image() string { return rt.upstream.Name() + "/" + rt.repo }

// Upstreams picks the upstream of a request.
type Upstreams struct {
	byName map[string]*upstream.Client
	def    *upstream.Client
	// names are repository names that passed reference.WithName, so that a name asked for
	// again is not matched against its regular expression again (a tenth of a cached
	// manifest GET's CPU); bounded, a name evicted is checked again.
	names *lru.Cache[string, struct{}]
}

// validNamesCached is how many valid repository names Upstreams remembers.
const validNamesCached = 4096

// NewUpstreams indexes ups by name; at most one may be the default.
func NewUpstreams(ups ...*upstream.Client) (*Upstreams, error) {
	names, _ := lru.New[string, struct{}](validNamesCached)
	u := &Upstreams{byName: map[string]*upstream.Client{}, names: names}
	for _, up := range ups {
		if _, dup := u.byName[up.Name()]; dup {
			return nil, fmt.Errorf("upstream %q configured twice", up.Name())
		}
		u.byName[up.Name()] = up
		if up.IsDefault() {
			if u.def != nil {
				return nil, fmt.Errorf("upstreams %q and %q are both default", u.def.Name(), up.Name())
			}
			u.def = up
		}
	}
	return u, nil
}

// Get returns the upstream called name.
func (u *Upstreams) Get(name string) (*upstream.Client, bool) {
	up, ok := u.byName[name]
	return up, ok
}

// parseRoute splits the path after /v2/ into name, kind and reference, and chooses the
// upstream: ?ns= (containerd), else a first path component naming an upstream (path-prefix
// mirrors), else the default upstream. Nothing a client sends can make the proxy contact a
// host that is not configured.
func (u *Upstreams) parseRoute(r *http.Request) (route, error) {
	p := strings.TrimPrefix(r.URL.Path, "/v2/")
	segs := strings.Split(p, "/")
	var rt route
	n := len(segs)
	switch {
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		rt.kind, rt.name = kindTags, strings.Join(segs[:n-2], "/")
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads",
		n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		idx := n - 2
		if segs[n-1] != "uploads" {
			idx = n - 3
		}
		rt.kind, rt.name = kindUploads, strings.Join(segs[:idx], "/")
	case n >= 3 && (segs[n-2] == kindManifests || segs[n-2] == kindBlobs || segs[n-2] == kindReferrers):
		rt.kind, rt.name, rt.ref = segs[n-2], strings.Join(segs[:n-2], "/"), segs[n-1]
	default:
		return rt, errcode.ErrorCodeUnsupported.WithMessage(fmt.Sprintf("%s is not a distribution API endpoint", r.URL.Path))
	}
	if rt.name == "" {
		return rt, errcode.ErrorCodeNameInvalid.WithMessage("repository name is empty")
	}

	if ns := r.URL.Query().Get("ns"); ns != "" {
		up, ok := u.byName[ns]
		if !ok {
			return rt, errcode.ErrorCodeNameUnknown.WithMessage(fmt.Sprintf("upstream %q (from ns=) is not configured", ns))
		}
		rt.upstream, rt.ns = up, ns
		rt.repo = up.Normalize(rt.name)
		if err := u.checkName(rt.repo); err != nil {
			return rt, err
		}
	} else {
		up, repo, err := u.Resolve(rt.name)
		if err != nil {
			return rt, err
		}
		rt.upstream, rt.repo = up, repo
	}

	switch rt.kind {
	case kindBlobs, kindReferrers:
		if _, err := oci.ParseDigest(rt.ref); err != nil {
			return rt, errcode.ErrorCodeDigestInvalid.WithMessage(fmt.Sprintf("invalid digest %q: %v", rt.ref, err))
		}
	case kindManifests:
		if strings.Contains(rt.ref, ":") {
			if _, err := oci.ParseDigest(rt.ref); err != nil {
				return rt, errcode.ErrorCodeDigestInvalid.WithMessage(fmt.Sprintf("invalid digest %q: %v", rt.ref, err))
			}
		} else if !reference.TagRegexp.MatchString(rt.ref) || len(reference.TagRegexp.FindString(rt.ref)) != len(rt.ref) {
			return rt, errcode.ErrorCodeTagInvalid.WithMessage(fmt.Sprintf("invalid tag %q", rt.ref))
		}
	}
	return rt, nil
}

// looksLikeHost reports whether a first path component is a registry host in Docker's sense
// (has a dot or a port, or is localhost): such a name is never a repository on the default
// upstream, so an unknown one is refused rather than forwarded.
// Resolve picks the upstream of a repository name as a client names it ("<upstream>/<repo>",
// or "<repo>" of the default upstream) and returns it with the repository path in it,
// normalised. Errors are OCI errors (NAME_UNKNOWN, NAME_INVALID).
func (u *Upstreams) Resolve(name string) (*upstream.Client, string, error) {
	var up *upstream.Client
	repo := name
	if first, rest, ok := strings.Cut(name, "/"); ok && u.byName[first] != nil {
		up, repo = u.byName[first], rest
	} else if looksLikeHost(first) && ok {
		return nil, "", errcode.ErrorCodeNameUnknown.WithMessage(fmt.Sprintf("upstream %q is not configured", first))
	} else if u.def != nil {
		up = u.def
	} else {
		return nil, "", errcode.ErrorCodeNameUnknown.WithMessage(fmt.Sprintf("repository %q names no configured upstream and there is no default upstream", name))
	}
	repo = up.Normalize(repo)
	if err := u.checkName(repo); err != nil {
		return nil, "", err
	}
	return up, repo, nil
}

// checkName returns NAME_INVALID unless repo is a valid repository name.
func (u *Upstreams) checkName(repo string) error {
	if _, ok := u.names.Get(repo); ok {
		return nil
	}
	if _, err := reference.WithName(repo); err != nil {
		return errcode.ErrorCodeNameInvalid.WithMessage(fmt.Sprintf("invalid repository name %q: %v", repo, err))
	}
	u.names.Add(repo, struct{}{})
	return nil
}

func looksLikeHost(s string) bool {
	return strings.ContainsAny(s, ".:") || s == "localhost"
}
