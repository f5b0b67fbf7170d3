package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/verify/oci"
)

// chunk is the unit in which blobs are copied; the last chunk of a download is held back
// until the digest is checked, so a client never receives a complete wrong blob.
const chunk = 1 << 20

func (h *Handler) serveBlob(w http.ResponseWriter, r *http.Request, rt route, info *requestInfo) error {
	ctx := r.Context()
	d := digest.Digest(rt.ref)
	info.digest = d
	up, st := rt.upstream, h.opts.Store
	if c, ok := h.committing.Load(d); ok {
		select { // a download of d is being made durable in the store: use it
		case <-c.(chan struct{}):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := h.checkBlobAccess(w, r, rt, d, info); err != nil {
		return err
	}
	size, linked, err := st.BlobSize(ctx, up.Name(), rt.repo, d)
	stored := err == nil
	if err != nil && !errors.Is(err, oci.ErrNotFound) {
		h.log.WarnContext(ctx, "content store read failed", slog.String("error", err.Error()))
	}
	if stored && !linked {
		// Stored for another repository, and referenced by a manifest the upstream served
		// for this one: the upstream has it here too.
		if err := st.LinkBlob(ctx, up.Name(), rt.repo, d); err != nil {
			h.log.WarnContext(ctx, "linking blob failed", slog.String("error", err.Error()))
		}
	}
	if stored {
		info.source = "store"
		return h.serveStoredBlob(w, r, d, size)
	}
	info.source = "upstream"
	if r.Method == http.MethodHead {
		size, err := up.StatBlob(ctx, rt.repo, d)
		if err != nil {
			return err
		}
		blobHeaders(w, d)
		if size >= 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		}
		w.WriteHeader(http.StatusOK)
		return nil
	}
	if r.Header.Get("Range") != "" {
		// A part of a blob cannot be verified on its own: fetch and check all of it first.
		if err := h.fillBlob(ctx, rt, d); err != nil {
			return err
		}
		size, _, err := st.BlobSize(ctx, up.Name(), rt.repo, d)
		if err != nil {
			return err
		}
		return h.serveStoredBlob(w, r, d, size)
	}
	return h.streamBlob(w, r, rt, d)
}

func blobHeaders(w http.ResponseWriter, d digest.Digest) {
	hd := w.Header()
	hd.Set("Docker-Content-Digest", d.String())
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Accept-Ranges", "bytes")
	hd.Set("Etag", `"`+d.String()+`"`)
}

// fillCtx detaches a cache fill from the client's request so that a client that goes away
// does not waste the download, bounded by the fill timeout.
func (h *Handler) fillCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), h.opts.FillTimeout)
}

// openFill starts downloading d from the upstream and writing it into the store.
func (h *Handler) openFill(ctx context.Context, rt route, d digest.Digest) (io.ReadCloser, int64, *store.BlobWriter, error) {
	rc, size, err := rt.upstream.OpenBlob(ctx, rt.repo, d)
	if err != nil {
		return nil, 0, nil, err
	}
	bw, err := h.opts.Store.NewBlobWriter(ctx, d)
	if err != nil {
		rc.Close()
		return nil, 0, nil, err
	}
	return rc, size, bw, nil
}

// fillBlob downloads d into the store without serving it.
func (h *Handler) fillBlob(ctx context.Context, rt route, d digest.Digest) error {
	ctx, cancel := h.fillCtx(ctx)
	defer cancel()
	rc, _, bw, err := h.openFill(ctx, rt, d)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.Copy(bw, rc); err != nil {
		bw.Cancel(ctx)
		return fmt.Errorf("blob %s from upstream %s: %w", d, rt.upstream.Name(), err)
	}
	if err := bw.Commit(ctx, rt.upstream.Name(), rt.repo); err != nil {
		return fmt.Errorf("blob %s from upstream %s: %w", d, rt.upstream.Name(), err)
	}
	return nil
}

// streamBlob sends d to the client while writing it to the store. The digest is checked
// before the last chunk is sent: on a mismatch the stored copy is discarded and the client's
// connection is cut, so it sees a failed download rather than wrong content.
//
// The copy is a pipeline, so that it runs at the pace of its slowest stage rather than at
// the sum of their costs: a goroutine reads the upstream into free buffers, a second writes
// each filled buffer to the store (which hashes it), and the handler's goroutine sends each
// stored buffer to the client one chunk behind, so the last is held back until the whole
// blob is hashed. Each stage hands a buffer on only when done with it, and buffers return
// to the free list once sent, so memory stays at pipelineBuffers chunks whatever the size.
func (h *Handler) streamBlob(w http.ResponseWriter, r *http.Request, rt route, d digest.Digest) error {
	ctx, cancel := h.fillCtx(r.Context())
	defer cancel()
	rc, size, bw, err := h.openFill(ctx, rt, d)
	if err != nil {
		return err
	}
	defer rc.Close()
	blobHeaders(w, d)
	if size >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	}
	w.WriteHeader(http.StatusOK)

	// Every piece holds a buffer from free, so no more than pipelineBuffers pieces exist
	// and sends on read and stored never block.
	free := make(chan []byte, pipelineBuffers)
	for range pipelineBuffers {
		free <- make([]byte, chunk)
	}
	read, stored := make(chan piece, pipelineBuffers), make(chan piece, pipelineBuffers)
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { // however the handler ends, no stage outlives it
		close(done)
		cancel() // unblocks a read from the upstream
		wg.Wait()
	}()
	wg.Go(func() { // upstream → read; the last piece sent has err set
		defer close(read)
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-done:
				return
			}
			n, err := io.ReadFull(rc, buf)
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			read <- piece{buf[:n], err}
			if err != nil {
				return
			}
		}
	})
	wg.Go(func() { // read → store → stored
		for p := range read {
			_, _ = bw.Write(p.buf)
			stored <- p
		}
	})

	var pending []byte // the last chunk stored, not yet sent
	clientOK := true
	var total int64
	var rerr error
	for rerr == nil {
		p := <-stored // the stages always end with a piece that has err set
		rerr = p.err
		if len(p.buf) == 0 {
			continue
		}
		total += int64(len(p.buf))
		if pending != nil {
			if clientOK {
				if _, err := w.Write(pending); err != nil {
					clientOK = false
				}
			}
			free <- pending[:chunk]
		}
		pending = p.buf
	}
	// Both stages are done with bw now.
	if rerr != io.EOF {
		bw.Cancel(ctx)
		h.log.WarnContext(ctx, "blob download failed", slog.String("digest", d.String()), slog.String("error", rerr.Error()))
		panic(http.ErrAbortHandler)
	}
	if !bw.Verified() || (size >= 0 && total != size) {
		bw.Cancel(ctx)
		h.log.ErrorContext(ctx, "blob from upstream rejected", slog.String("upstream", rt.upstream.Name()),
			slog.String("repo", rt.repo), slog.String("digest", d.String()),
			slog.String("error", fmt.Sprintf("content does not match its digest (%d bytes, %d announced)", total, size)))
		panic(http.ErrAbortHandler)
	}
	// Verified: the client gets the last chunk now; making the store's copy durable (an
	// fsync of the whole blob) happens after, and requests for d meanwhile wait for it.
	committed := make(chan struct{})
	h.committing.Store(d, committed)
	defer func() {
		h.committing.Delete(d)
		close(committed)
	}()
	if clientOK && len(pending) > 0 {
		_, _ = w.Write(pending)
		_ = http.NewResponseController(w).Flush()
	}
	if err := bw.Commit(ctx, rt.upstream.Name(), rt.repo); err != nil {
		h.log.WarnContext(ctx, "caching blob failed", slog.String("digest", d.String()), slog.String("error", err.Error()))
	}
	return nil
}

// pipelineBuffers is how many chunk buffers a streamed blob uses: one being read, one being
// stored, one being sent and one held back.
const pipelineBuffers = 4

// piece is a chunk passed along streamBlob's pipeline; err is set on the last one, io.EOF
// if the download ended well.
type piece struct {
	buf []byte
	err error
}

// serveStoredBlob serves a stored blob, honouring a single byte range.
func (h *Handler) serveStoredBlob(w http.ResponseWriter, r *http.Request, d digest.Digest, size int64) error {
	blobHeaders(w, d)
	start, length, partial, err := parseRange(r.Header.Get("Range"), size)
	if err != nil {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		return err
	}
	w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
	status := http.StatusOK
	if partial {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, size))
		status = http.StatusPartialContent
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return nil
	}
	rc, err := h.opts.Store.OpenBlob(r.Context(), d, start)
	if err != nil {
		return err
	}
	defer rc.Close()
	w.WriteHeader(status)
	if _, err := io.CopyN(w, rc, length); err != nil {
		panic(http.ErrAbortHandler)
	}
	return nil
}

// errRangeNotSatisfiable is answered 416.
var errRangeNotSatisfiable = errors.New("requested range not satisfiable")

// parseRange understands one "bytes=a-b", "bytes=a-" or "bytes=-n" range. Anything it does
// not understand (several ranges, other units) is ignored and the whole blob is served, as
// RFC 9110 allows.
func parseRange(h string, size int64) (start, length int64, partial bool, err error) {
	if h == "" || !strings.HasPrefix(h, "bytes=") || strings.Contains(h, ",") {
		return 0, size, false, nil
	}
	a, b, ok := strings.Cut(strings.TrimPrefix(h, "bytes="), "-")
	if !ok {
		return 0, size, false, nil
	}
	switch {
	case a == "":
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return 0, size, false, nil
		}
		if size == 0 {
			return 0, 0, false, errRangeNotSatisfiable // no byte to serve
		}
		if n > size {
			n = size
		}
		return size - n, n, true, nil
	default:
		s, err := strconv.ParseInt(a, 10, 64)
		if err != nil || s < 0 {
			return 0, size, false, nil
		}
		if s >= size {
			return 0, 0, false, errRangeNotSatisfiable
		}
		e := size - 1
		if b != "" {
			e, err = strconv.ParseInt(b, 10, 64)
			if err != nil {
				return 0, size, false, nil
			}
			if e < s {
				return 0, 0, false, errRangeNotSatisfiable // as distribution answers it
			}
			if e >= size {
				e = size - 1
			}
		}
		return s, e - s + 1, true, nil
	}
}
