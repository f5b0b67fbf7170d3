package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"weak"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/pushauth"
	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
)

// upload is one blob upload session. Its chunks are stored under /uploads/<id>/ until the
// final PUT assembles and checks them.
type upload struct {
	mu     sync.Mutex
	id     string
	image  string
	user   string
	limit  int64 // see pushLimit
	size   int64
	chunks int
}

// newUploads holds upload sessions for an hour; the chunks of a session that expires, is
// evicted unfinished or is removed once finished are deleted from the store, off the
// request's path (counted in background, which Handler.Close waits for).
//
// The LRU's expiry goroutine never ends, so it holds background only weakly: a Handler
// replaced by a reload is collected once it is idle, and what its sessions left is deleted
// all the same.
func newUploads(st *store.Store, background *sync.WaitGroup) *expirable.LRU[string, *upload] {
	bg := weak.Make(background)
	return expirable.NewLRU[string, *upload](4096, func(id string, _ *upload) {
		del := func() { st.DeleteUpload(context.Background(), id) }
		if wg := bg.Value(); wg != nil {
			wg.Go(del)
		} else {
			go del()
		}
	}, time.Hour)
}

// authorizePush returns the authenticated user allowed to write image, or the error to
// answer: 401 without (valid) credentials, 429 when the client's address made too many
// failed logins, 403 when the user has no grant for image.
func (h *Handler) authorizePush(w http.ResponseWriter, r *http.Request, image string) (string, error) {
	p := h.opts.Pushers
	if p == nil {
		return "", errcode.ErrorCodeUnsupported.WithMessage("portcullis is a read-only mirror here: no push users are configured")
	}
	user, err := p.Authenticate(r)
	if err != nil || user == "" {
		return "", loginFailed(w, p, err, "authentication required to push")
	}
	if !p.MayPush(user, image) {
		return "", errcode.ErrorCodeDenied.WithMessage(fmt.Sprintf("user %q may not push to %s", user, image))
	}
	return user, nil
}

// loginFailed is the answer to a request that Authenticate did not authenticate (err, or
// no credentials: then msg says what they are needed for): 429 TOOMANYREQUESTS with
// Retry-After for a throttled address, otherwise 401 UNAUTHORIZED with a challenge.
func loginFailed(w http.ResponseWriter, p *pushauth.Pushers, err error, msg string) error {
	if te, ok := errors.AsType[*pushauth.ThrottledError](err); ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(max(1, math.Ceil(te.RetryAfter.Seconds())))))
		return errcode.ErrorCodeTooManyRequests.WithMessage(te.Error())
	}
	p.Challenge(w)
	if err != nil {
		msg = err.Error()
	}
	return errcode.ErrorCodeUnauthorized.WithMessage(msg)
}

// servePush handles the write side: blob uploads, manifest PUT and DELETE.
func (h *Handler) servePush(w http.ResponseWriter, r *http.Request, rt route, info *requestInfo) error {
	image := rt.image()
	user, err := h.authorizePush(w, r, image)
	if err != nil {
		return err
	}
	info.user = user
	switch {
	case rt.kind == kindUploads:
		return h.serveUpload(w, r, rt, user)
	case rt.kind == kindManifests && r.Method == http.MethodPut:
		return h.putManifest(w, r, rt)
	case rt.kind == kindManifests && r.Method == http.MethodDelete:
		return h.deleteManifest(w, r, rt)
	case rt.kind == kindBlobs && r.Method == http.MethodDelete && h.opts.Pushers.PlainPush(image):
		if err := h.forwardDelete(w, r, rt, "blobs"); err != nil {
			return err
		}
		return h.revokeBlob(r.Context(), rt, digest.Digest(rt.ref))
	}
	return errcode.ErrorCodeUnsupported.WithMessage(fmt.Sprintf("%s %s is not supported", r.Method, r.URL.Path))
}

// serveUpload implements the blob upload protocol: POST (monolithic with ?digest=, a mount
// with ?mount=&from=, or a session), PATCH chunks, PUT ?digest= to finish, GET status, DELETE
// cancel. Blobs are checked against their digest before they are pushed to the upstream
// with the proxy's credentials, and capped by pushLimit.
func (h *Handler) serveUpload(w http.ResponseWriter, r *http.Request, rt route, user string) error {
	ctx := r.Context()
	base := "/v2/" + rt.name + "/blobs/uploads/"
	id := strings.TrimPrefix(r.URL.Path, base)
	if r.Method == http.MethodPost {
		if id != "" {
			return errcode.ErrorCodeUnsupported.WithMessage("POST goes to " + base)
		}
		limit := h.pushLimit(rt.image())
		if dgst := r.URL.Query().Get("digest"); dgst != "" {
			d, err := digest.Parse(dgst)
			if err != nil {
				return errcode.ErrorCodeDigestInvalid.WithMessage(err.Error())
			}
			return h.finishUpload(w, r, rt, &upload{id: newID(), image: rt.image(), user: user, limit: limit}, d)
		}
		if mount := r.URL.Query().Get("mount"); mount != "" {
			d, ok, err := h.mountBlob(ctx, rt, user, mount, r.URL.Query().Get("from"), limit)
			if err != nil {
				return err
			}
			if ok {
				return blobCreated(w, rt, d)
			}
		}
		u := &upload{id: newID(), image: rt.image(), user: user, limit: limit}
		h.uploads.Add(u.id, u)
		return uploadAccepted(w, base, u, http.StatusAccepted)
	}
	u, ok := h.uploads.Get(id)
	if !ok || u.image != rt.image() || u.user != user {
		return errcode.ErrorCodeBlobUploadUnknown.WithMessage(fmt.Sprintf("no upload %q for %s", id, rt.image()))
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	switch r.Method {
	case http.MethodGet:
		return uploadAccepted(w, base, u, http.StatusNoContent)
	case http.MethodDelete:
		h.uploads.Remove(id)
		h.opts.Store.DeleteUpload(context.WithoutCancel(ctx), id)
		w.WriteHeader(http.StatusNoContent)
		return nil
	case http.MethodPatch:
		if err := checkChunkStart(w, r, u); err != nil {
			return err
		}
		if err := h.appendChunk(ctx, u, r); err != nil {
			return err
		}
		return uploadAccepted(w, base, u, http.StatusAccepted)
	case http.MethodPut:
		d, err := digest.Parse(r.URL.Query().Get("digest"))
		if err != nil {
			return errcode.ErrorCodeDigestInvalid.WithMessage(fmt.Sprintf("PUT needs ?digest=: %v", err))
		}
		if err := checkChunkStart(w, r, u); err != nil {
			return err
		}
		defer h.uploads.Remove(id) // after finishing: removal deletes what is left of it
		return h.finishUpload(w, r, rt, u, d)
	}
	return errcode.ErrorCodeUnsupported.WithMessage(r.Method + " is not part of the upload protocol")
}

// mountBlob mounts blob mount of repository from into rt's repository, as the client's POST
// ?mount=&from= asks: only when from names a repository of the same upstream, the blob came
// through portcullis there (pushed or fetched for it: linked in the store), user may read it
// there (an admitted manifest there references it, or user may push to from), and it is within
// rt's push limit. The blob is then pushed to rt's repository upstream. Anything else
// (including a mount without from) is not an error: it reports false, and the client gets an
// upload session, as the distribution spec allows.
func (h *Handler) mountBlob(ctx context.Context, rt route, user, mount, from string, limit int64) (digest.Digest, bool, error) {
	d, err := digest.Parse(mount)
	if err != nil || from == "" {
		return "", false, nil
	}
	q := url.Values{}
	if rt.ns != "" {
		q.Set("ns", rt.ns)
	}
	src, err := h.opts.Upstreams.parseRoute(&http.Request{Method: http.MethodGet,
		URL: &url.URL{Path: "/v2/" + from + "/blobs/" + d.String(), RawQuery: q.Encode()}})
	if err != nil || src.kind != kindBlobs || src.upstream != rt.upstream {
		return "", false, nil
	}
	size, linked, err := h.opts.Store.BlobSize(ctx, src.upstream.Name(), src.repo, d)
	if err != nil || !linked || size > limit {
		return "", false, nil
	}
	if !h.opts.Pushers.MayPush(user, src.image()) {
		granted := h.grants.blobs.Contains(grantKey(src, d))
		if !granted {
			if granted, err = h.opts.Store.Granted(ctx, src.upstream.Name(), src.repo, d); err != nil {
				h.log.WarnContext(ctx, "content store read failed", slog.String("error", err.Error()))
			}
		}
		if !granted {
			return "", false, nil
		}
	}
	if err := h.pushBlob(ctx, rt, d, size); err != nil {
		h.log.WarnContext(ctx, "mounting a blob failed: an upload session is offered", slog.String("digest", d.String()),
			slog.String("from", src.image()), slog.String("error", err.Error()))
		return "", false, nil
	}
	if err := h.opts.Store.LinkBlob(ctx, rt.upstream.Name(), rt.repo, d); err != nil {
		return "", false, err
	}
	return d, true, nil
}

// checkChunkStart refuses a chunk whose Content-Range does not start where the upload is.
func checkChunkStart(w http.ResponseWriter, r *http.Request, u *upload) error {
	cr := r.Header.Get("Content-Range")
	if cr == "" {
		return nil
	}
	start, _, ok := strings.Cut(cr, "-")
	if n, err := strconv.ParseInt(strings.TrimPrefix(start, "bytes="), 10, 64); !ok || err != nil || n != u.size {
		w.Header().Set("Range", fmt.Sprintf("0-%d", max(u.size-1, 0)))
		return errcode.ErrorCodeRangeInvalid.WithMessage(fmt.Sprintf("chunk starts at %q, upload is at %d", cr, u.size))
	}
	return nil
}

// Push size limits. Outside plain push-through only signatures may be pushed, and their
// blobs are capped at what the signature check reads anyway (verify.DefaultMaxArtifactLayerSize,
// 16 MiB): a sigstore bundle with its certificate chain is a few KiB, but an attestation's
// layer is a DSSE envelope of its whole predicate, base64-encoded, and SBOM predicates run to
// several MiB. Plain push-through is for tests and small artifacts, not image builds.
const (
	maxSignatureBlob = verify.DefaultMaxArtifactLayerSize
	maxPushBlob      = 512 << 20
)

// pushLimit is the largest blob that may be pushed to image.
func (h *Handler) pushLimit(image string) int64 {
	if h.opts.Pushers.PlainPush(image) {
		return maxPushBlob
	}
	return maxSignatureBlob
}

// tooLarge is the answer to a blob over u's limit.
func tooLarge(u *upload) error {
	if u.limit < maxPushBlob {
		return errcode.ErrorCodeSizeInvalid.WithMessage(fmt.Sprintf(
			"blob over the %d byte (%d MiB) limit for signature pushes to %s", u.limit, u.limit>>20, u.image))
	}
	return errcode.ErrorCodeSizeInvalid.WithMessage(fmt.Sprintf(
		"blob over the %d byte (%d MiB) push limit", u.limit, u.limit>>20))
}

// appendChunk stores body as u's next chunk. An upload that goes over its limit is
// refused, without reading past the limit, and its session is dropped.
func (h *Handler) appendChunk(ctx context.Context, u *upload, r *http.Request) error {
	if r.ContentLength > u.limit-u.size {
		h.uploads.Remove(u.id)
		return tooLarge(u)
	}
	n, err := h.opts.Store.PutChunk(ctx, u.id, u.chunks, io.LimitReader(r.Body, u.limit-u.size+1))
	if err != nil {
		return err
	}
	u.chunks++
	u.size += n
	if u.size > u.limit {
		h.uploads.Remove(u.id)
		return tooLarge(u)
	}
	return nil
}

// finishUpload takes the request body as the last chunk, checks the whole blob against d,
// stores it and pushes it to the upstream.
func (h *Handler) finishUpload(w http.ResponseWriter, r *http.Request, rt route, u *upload, d digest.Digest) error {
	ctx := r.Context()
	st := h.opts.Store
	defer st.DeleteUpload(context.WithoutCancel(ctx), u.id)
	if err := h.appendChunk(ctx, u, r); err != nil {
		return err
	}
	bw, err := st.NewBlobWriter(ctx, d)
	if err != nil {
		return err
	}
	rc := st.OpenChunks(ctx, u.id, u.chunks)
	_, err = io.Copy(bw, rc)
	rc.Close()
	if err != nil {
		bw.Cancel(ctx)
		return fmt.Errorf("assemble upload: %w", err)
	}
	if !bw.Verified() {
		bw.Cancel(ctx)
		return errcode.ErrorCodeDigestInvalid.WithMessage(fmt.Sprintf("uploaded content does not match %s", d))
	}
	if err := bw.Commit(ctx, rt.upstream.Name(), rt.repo); err != nil {
		return err
	}
	if err := h.pushBlob(ctx, rt, d, u.size); err != nil {
		return err
	}
	return blobCreated(w, rt, d)
}

func blobCreated(w http.ResponseWriter, rt route, d digest.Digest) error {
	w.Header().Set("Location", "/v2/"+rt.name+"/blobs/"+d.String())
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

func uploadAccepted(w http.ResponseWriter, base string, u *upload, status int) error {
	w.Header().Set("Location", base+u.id)
	w.Header().Set("Docker-Upload-UUID", u.id)
	w.Header().Set("Range", fmt.Sprintf("0-%d", max(u.size-1, 0)))
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(status)
	return nil
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// pushBlob copies stored blob d to the upstream.
func (h *Handler) pushBlob(ctx context.Context, rt route, d digest.Digest, size int64) error {
	return rt.upstream.PushBlob(ctx, rt.repo, &storedLayer{ctx: ctx, st: h.opts.Store, d: d, size: size})
}

// storedLayer presents a stored blob to go-containerregistry for upload.
type storedLayer struct {
	ctx  context.Context
	st   *store.Store
	d    digest.Digest
	size int64
}

func (l *storedLayer) Digest() (v1.Hash, error)            { return v1.NewHash(l.d.String()) }
func (l *storedLayer) DiffID() (v1.Hash, error)            { return l.Digest() }
func (l *storedLayer) Size() (int64, error)                { return l.size, nil }
func (l *storedLayer) MediaType() (types.MediaType, error) { return "application/octet-stream", nil }
func (l *storedLayer) Compressed() (io.ReadCloser, error)  { return l.st.OpenBlob(l.ctx, l.d, 0) }
func (l *storedLayer) Uncompressed() (io.ReadCloser, error) {
	return l.Compressed()
}

// subjectOf returns the image digest a signature artifact refers to: its subject, or the
// digest its cosign tag names.
func subjectOf(ref string, m oci.Manifest) digest.Digest {
	var doc struct {
		Subject *struct {
			Digest digest.Digest `json:"digest"`
		} `json:"subject"`
	}
	if json.Unmarshal(m.Bytes, &doc) == nil && doc.Subject != nil && doc.Subject.Digest.Validate() == nil {
		return doc.Subject.Digest
	}
	if d, ok := cosign.ParseSignatureTag(ref); ok {
		return d
	}
	return ""
}

// isSignaturePush reports whether a manifest PUT (or DELETE) of rt.ref is a signature: pushed
// by digest or under a cosign tag, shaped like a signature artifact, and referencing nothing
// but signatures (checked in the upstream, where its blobs were pushed first). A manifest
// shaped like a signature whose content is something else is refused with the reason,
// whatever the user may push otherwise.
func (h *Handler) isSignaturePush(ctx context.Context, rt route, m oci.Manifest) (bool, error) {
	if !policy.IsSignatureArtifact(m) {
		return false, nil
	}
	if _, byDigest := digest.Parse(rt.ref); byDigest != nil {
		if _, cosignTag := cosign.ParseSignatureTag(rt.ref); !cosignTag {
			return false, nil
		}
	}
	err := h.opts.Artifacts.CheckArtifact(ctx, rt.upstream, rt.repo, m)
	if _, bad := errors.AsType[*verify.ArtifactError](err); bad {
		return false, errcode.ErrorCodeDenied.WithMessage(fmt.Sprintf("%s@%s is shaped like a signature but is %v", rt.image(), m.Digest, err))
	}
	if err != nil {
		return false, fmt.Errorf("check pushed signature %s: %w", m.Digest, err)
	}
	return true, nil
}

// putManifest forwards a signature manifest (or, for plain push-through images, any
// manifest) to the upstream. A manifest with a subject gets the OCI-Subject header: the
// upstream's referrers tag schema index is updated here, because portcullis answers the
// referrers API and clients therefore skip that step. Cached denials of the signed digest
// are dropped at once.
func (h *Handler) putManifest(w http.ResponseWriter, r *http.Request, rt route) error {
	ctx := r.Context()
	b, err := oci.ReadCapped(r.Body, oci.MaxManifestSize)
	if err != nil {
		return errcode.ErrorCodeManifestInvalid.WithMessage(fmt.Sprintf("manifest over the %d byte limit", oci.MaxManifestSize))
	}
	var want digest.Digest
	if d, err := digest.Parse(rt.ref); err == nil {
		want = d
	}
	m, err := oci.NewManifest(b, oci.ManifestMediaType(b, r.Header.Get("Content-Type")), want)
	if err != nil {
		return errcode.ErrorCodeDigestInvalid.WithMessage(err.Error())
	}
	if !json.Valid(b) {
		return errcode.ErrorCodeManifestInvalid.WithMessage("manifest is not JSON")
	}
	image := rt.image()
	signature, err := h.isSignaturePush(ctx, rt, m)
	if err != nil {
		return err
	}
	if !signature && !h.opts.Pushers.PlainPush(image) {
		return errcode.ErrorCodeDenied.WithMessage(fmt.Sprintf("portcullis accepts only signature pushes here (cosign .sig/.att manifests or sigstore bundle referrers); %s is not open to other pushes", image))
	}
	ref := rt.ref
	if want != "" {
		ref = want.String()
	}
	if err := rt.upstream.PutManifest(ctx, rt.repo, ref, m); err != nil {
		return err
	}
	if err := h.opts.Store.PutManifest(ctx, rt.upstream.Name(), rt.repo, m); err != nil {
		h.log.WarnContext(ctx, "caching pushed manifest failed", slog.String("error", err.Error()))
	}
	subject := subjectOf(rt.ref, m)
	if subject != "" && h.opts.Decisions != nil {
		h.opts.Decisions.Forget(ctx, "", subject)
	}
	if hasSubject(m) {
		w.Header().Set("OCI-Subject", subject.String())
	}
	h.log.InfoContext(ctx, "pushed", slog.String("image", image), slog.String("ref", rt.ref),
		slog.String("digest", m.Digest.String()), slog.Bool("signature", signature), slog.String("subject", subject.String()))
	w.Header().Set("Location", "/v2/"+rt.name+"/manifests/"+m.Digest.String())
	w.Header().Set("Docker-Content-Digest", m.Digest.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// hasSubject reports whether m's subject field names a valid digest: only then does the
// answer carry OCI-Subject (which subjectOf then returns), never a digest taken from the tag
// for a manifest whose subject is broken.
func hasSubject(m oci.Manifest) bool {
	var doc struct {
		Subject *struct {
			Digest digest.Digest `json:"digest"`
		} `json:"subject"`
	}
	return json.Unmarshal(m.Bytes, &doc) == nil && doc.Subject != nil && doc.Subject.Digest.Validate() == nil
}

// deleteManifest deletes a signature (or, for plain push-through images, any manifest)
// upstream, where the upstream allows it.
func (h *Handler) deleteManifest(w http.ResponseWriter, r *http.Request, rt route) error {
	ctx := r.Context()
	m, err := rt.upstream.Manifest(ctx, rt.repo, rt.ref)
	if err != nil {
		return err
	}
	signature, err := h.isSignaturePush(ctx, rt, m)
	if err != nil && !h.opts.Pushers.PlainPush(rt.image()) {
		return err
	}
	if !signature && !h.opts.Pushers.PlainPush(rt.image()) {
		return errcode.ErrorCodeDenied.WithMessage(fmt.Sprintf("portcullis deletes only signatures here; %s@%s is not one", rt.image(), m.Digest))
	}
	if err := h.forwardDelete(w, r, rt, "manifests"); err != nil {
		return err
	}
	if _, byDigest := digest.Parse(rt.ref); byDigest == nil {
		if err := h.opts.Store.UnlinkManifest(ctx, rt.upstream.Name(), rt.repo, m.Digest); err != nil {
			return err
		}
	}
	h.tags.Remove(rt.upstream.Name() + "/" + rt.repo + ":" + rt.ref)
	if subject := subjectOf(rt.ref, m); subject != "" && h.opts.Decisions != nil {
		h.opts.Decisions.Forget(ctx, "", subject)
	}
	return nil
}

// forwardDelete sends the DELETE to the upstream with the proxy's credentials.
func (h *Handler) forwardDelete(w http.ResponseWriter, r *http.Request, rt route, kind string) error {
	if err := rt.upstream.Delete(r.Context(), rt.repo, kind, rt.ref); err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}
