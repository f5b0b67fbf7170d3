package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/pushauth"
	"github.com/portcullis/portcullis/verify/oci"
)

// Explain decides whether image ("<upstream>/<repo>[:tag|@digest]", as a client of the
// proxy names it; tag latest when neither is given) would be served, with the configuration
// serving: the manifest is resolved through its upstream and decided by the same engine as
// pulls (policy.Engine.Explain: no decision cache, no audit line). A denial is an Explanation
// whose Decision is not Allowed; an error means no decision could be made.
func (a *App) Explain(ctx context.Context, image string) (policy.Explanation, error) {
	g := a.cur.Load()
	name, ref := splitImage(image)
	routes, err := proxy.NewUpstreams(g.upstreams...)
	if err != nil {
		return policy.Explanation{}, err
	}
	up, repo, err := routes.Resolve(name)
	if err != nil {
		return policy.Explanation{}, fmt.Errorf("%s: %w", image, err)
	}
	m, err := up.Manifest(ctx, repo, ref)
	if err != nil {
		return policy.Explanation{}, fmt.Errorf("%s: %w", image, err)
	}
	if d, err := digest.Parse(ref); err == nil && d != m.Digest {
		return policy.Explanation{}, fmt.Errorf("%s: the upstream answered with %s", image, m.Digest)
	}
	return g.engine.Explain(ctx, policy.Request{Image: up.Name() + "/" + repo, Repository: repo, Manifest: m, Registry: up})
}

// splitImage splits "name[:tag|@digest]" into the name and the reference (tag or digest).
func splitImage(image string) (name, ref string) {
	if n, d, ok := strings.Cut(image, "@"); ok {
		return n, d
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[:i], image[i+1:]
	}
	return image, "latest"
}

// serveDecision is GET /debug/decision?image=NAME: Explain's explanation as JSON (200, also
// for a denial), for users who may push signatures for that image, authenticated as for
// pushes (HTTP Basic against push.htpasswd). Without push users configured it is 404; an
// image the upstream does not have is 404 with {"error"}, any other failure to decide 502.
func (a *App) serveDecision(w http.ResponseWriter, r *http.Request) {
	g := a.cur.Load()
	image := r.URL.Query().Get("image")
	if g.pushers == nil {
		writeDecisionError(w, http.StatusNotFound, "/debug/decision is served only with push users configured (push.htpasswd)")
		return
	}
	user, err := g.pushers.Authenticate(r)
	if te, ok := errors.AsType[*pushauth.ThrottledError](err); ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(max(1, math.Ceil(te.RetryAfter.Seconds())))))
		writeDecisionError(w, http.StatusTooManyRequests, te.Error())
		return
	}
	switch {
	case err != nil || user == "":
		g.pushers.Challenge(w)
		msg := "authentication required: the credentials of a push user"
		if err != nil {
			msg = err.Error()
		}
		writeDecisionError(w, http.StatusUnauthorized, msg)
		return
	case image == "":
		writeDecisionError(w, http.StatusBadRequest, "the query parameter image is required: /debug/decision?image=<upstream>/<repo>[:tag|@digest]")
		return
	}
	name, _ := splitImage(image)
	if routes, err := proxy.NewUpstreams(g.upstreams...); err == nil {
		if up, repo, err := routes.Resolve(name); err == nil {
			name = up.Name() + "/" + repo
		}
	}
	if !g.pushers.MayPush(user, name) {
		writeDecisionError(w, http.StatusForbidden, fmt.Sprintf("user %s may not push signatures for %s", user, name))
		return
	}
	x, err := a.Explain(r.Context(), image)
	if err != nil {
		status := http.StatusBadGateway // no decision: the upstream or a lookup failed
		if errors.Is(err, oci.ErrNotFound) {
			status = http.StatusNotFound
		}
		writeDecisionError(w, status, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(x)
}

func writeDecisionError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}
