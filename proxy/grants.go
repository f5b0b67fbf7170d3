package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/verify/oci"
)

// Blob grants: a repository serves a blob only when a manifest that portcullis admitted (or
// exempted as a signature artifact) in that repository references it, so that nothing of a
// denied image leaves portcullis as loose blobs, and an anonymous client cannot make
// portcullis download arbitrary blobs of an upstream. The references are recorded when the
// manifest is served — a lookup at blob time, not a walk — in memory and, written behind, in
// the store, so that they survive a restart.

// grantCacheSize bounds the in-memory sets of granted blobs and of manifests whose
// references were recorded; what they forget is read back from the store.
const grantCacheSize = 1 << 16

type grants struct {
	blobs     *lru.Cache[string, struct{}] // "<upstream>/<repo>@<blob digest>"
	manifests *lru.Cache[string, struct{}] // "<upstream>/<repo>@<manifest digest>"
}

func newGrants() grants {
	b, _ := lru.New[string, struct{}](grantCacheSize)
	m, _ := lru.New[string, struct{}](grantCacheSize)
	return grants{blobs: b, manifests: m}
}

func grantKey(rt route, d digest.Digest) string {
	return rt.upstream.Name() + "/" + rt.repo + "@" + d.String()
}

// blobReferences returns the blobs an image manifest references (config and layers); an
// index references manifests only, which are admitted on their own.
func blobReferences(m oci.Manifest) []digest.Digest {
	if oci.IsIndex(m.MediaType) {
		return nil
	}
	var doc struct {
		Config *struct {
			Digest digest.Digest `json:"digest"`
		} `json:"config"`
		Layers []struct {
			Digest digest.Digest `json:"digest"`
		} `json:"layers"`
	}
	if json.Unmarshal(m.Bytes, &doc) != nil {
		return nil
	}
	out := make([]digest.Digest, 0, len(doc.Layers)+1)
	if doc.Config != nil && doc.Config.Digest.Validate() == nil {
		out = append(out, doc.Config.Digest)
	}
	for _, l := range doc.Layers {
		if l.Digest.Validate() == nil {
			out = append(out, l.Digest)
		}
	}
	return out
}

// grantReferences records in memory that rt's repository may serve the blobs admitted
// manifest m references, and returns the store's writes of the same grants (nil if none),
// which the caller runs once its response is sent.
func (h *Handler) grantReferences(rt route, m oci.Manifest) func(context.Context) {
	mk := grantKey(rt, m.Digest)
	if h.grants.manifests.Contains(mk) {
		return nil
	}
	var todo []digest.Digest
	for _, d := range blobReferences(m) {
		if k := grantKey(rt, d); !h.grants.blobs.Contains(k) {
			h.grants.blobs.Add(k, struct{}{})
			todo = append(todo, d)
		}
	}
	h.grants.manifests.Add(mk, struct{}{})
	if len(todo) == 0 {
		return nil
	}
	return func(sctx context.Context) {
		for _, d := range todo {
			if err := h.opts.Store.Grant(sctx, rt.upstream.Name(), rt.repo, d); err != nil {
				h.log.WarnContext(sctx, "recording a blob grant failed", slog.String("digest", d.String()), slog.String("error", err.Error()))
			}
		}
	}
}

// revokeBlob makes blob d unservable in rt's repository, after it was deleted upstream.
func (h *Handler) revokeBlob(ctx context.Context, rt route, d digest.Digest) error {
	h.grants.blobs.Remove(grantKey(rt, d))
	return h.opts.Store.UnlinkBlob(ctx, rt.upstream.Name(), rt.repo, d)
}

// checkBlobAccess returns nil when rt's repository may serve blob d to r: the blob is
// granted (see above), or r comes from a user who may push to the repository and the blob
// was pushed (or mounted) there through portcullis, so that a pusher can read back what it
// pushed. Otherwise it returns the error to answer: BLOB_UNKNOWN, or UNAUTHORIZED with a
// challenge for an anonymous request of a pushed blob (clients send credentials only when
// challenged). A store failure refuses.
func (h *Handler) checkBlobAccess(w http.ResponseWriter, r *http.Request, rt route, d digest.Digest, info *requestInfo) error {
	ctx := r.Context()
	k := grantKey(rt, d)
	if h.grants.blobs.Contains(k) {
		return nil
	}
	unknown := errcode.ErrorCodeBlobUnknown.WithMessage(fmt.Sprintf(
		"blob %s is not referenced by any manifest portcullis admitted in %s", d, rt.image()))
	ok, err := h.opts.Store.Granted(ctx, rt.upstream.Name(), rt.repo, d)
	if err != nil {
		h.log.WarnContext(ctx, "content store read failed", slog.String("error", err.Error()))
		return unknown
	}
	if ok {
		h.grants.blobs.Add(k, struct{}{})
		return nil
	}
	p := h.opts.Pushers
	if p == nil {
		return unknown
	}
	if _, linked, err := h.opts.Store.BlobSize(ctx, rt.upstream.Name(), rt.repo, d); err != nil || !linked {
		return unknown
	}
	user, err := p.Authenticate(r)
	if err != nil || user == "" {
		p.Challenge(w)
		return errcode.ErrorCodeUnauthorized.WithMessage(fmt.Sprintf(
			"blob %s was pushed through portcullis and no admitted manifest references it: only push users may read it", d))
	}
	if !p.MayPush(user, rt.image()) {
		return unknown
	}
	info.user = user
	return nil
}
