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
	"time"

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
// The download (the fill) runs at the upstream's pace whatever the client does: a goroutine
// reads the upstream into free buffers, a second writes each to the store (which hashes it)
// and offers it to the client. The client takes buffers one chunk behind, so the last is held
// back until the whole blob is hashed. A client that falls more than clientAhead chunks
// behind is dropped from the feed — its queued buffers go back to the fill — and is served
// the rest from the store once the fill has committed it. So a slow client never slows or
// aborts the download, and an idle connection holds at most the chunk it is writing. The
// fill is detached from the request and finishes (or fails) on its own; Close waits for it.
func (h *Handler) streamBlob(w http.ResponseWriter, r *http.Request, rt route, d digest.Digest) error {
	fctx, cancel := h.fillCtx(r.Context())
	rc, size, bw, err := h.openFill(fctx, rt, d)
	if err != nil {
		cancel()
		return err
	}
	blobHeaders(w, d)
	if size >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	}
	w.WriteHeader(http.StatusOK)

	f := newFeed()
	h.background.Go(func() {
		defer cancel()
		h.fill(fctx, rt, d, size, rc, bw, f)
	})
	return h.follow(w, r, d, f)
}

// Sizes of the cold-blob path: fillBuffers chunk buffers per download, of which the client
// may hold clientAhead queued plus the one it is writing.
const (
	fillBuffers = 6
	clientAhead = 2
	// writeSlice is how much is written to the client at a time, each within the client
	// stall timeout.
	writeSlice = 64 << 10
	// defaultClientStall bounds one write to a client. The kernel queues up to 4 MiB per
	// connection (tcp_wmem) and wakes a blocked writer only when half of it has drained, so
	// a live client at 10 KiB/s may keep one write waiting for 205 s; a client that reads
	// nothing is cut after this.
	defaultClientStall = 5 * time.Minute
)

// feed passes a download's chunks from the fill to the client.
type feed struct {
	mu      sync.Mutex
	cond    *sync.Cond
	queue   [][]byte
	lagging bool // the client fell behind: it reads the rest from the store
	free    chan []byte
	// verified is set once the whole blob was read and checked (ok tells how it went);
	// done once the fill has ended, committed if the blob is durable in the store then.
	verified, ok, done, committed bool
	total                         int64
}

func newFeed() *feed {
	f := &feed{free: make(chan []byte, fillBuffers)}
	f.cond = sync.NewCond(&f.mu)
	for range fillBuffers {
		f.free <- make([]byte, chunk)
	}
	return f
}

// offer hands a stored chunk to the client, or takes it back (with everything queued) when
// the client is too far behind.
func (f *feed) offer(buf []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.lagging && len(f.queue) < clientAhead {
		f.queue = append(f.queue, buf)
		f.cond.Broadcast()
		return
	}
	if !f.lagging {
		f.lagging = true
		for _, b := range f.queue {
			f.free <- b[:chunk]
		}
		f.queue = nil
		f.cond.Broadcast()
	}
	f.free <- buf[:chunk]
}

// verify records that the download was read whole and checked; a failed one is also done.
func (f *feed) verify(ok bool, total int64) {
	f.mu.Lock()
	f.verified, f.ok, f.total, f.done = true, ok, total, !ok
	f.cond.Broadcast()
	f.mu.Unlock()
}

// end records that the fill is over, with the blob durable in the store or not.
func (f *feed) end(committed bool) {
	f.mu.Lock()
	f.done, f.committed = true, committed
	f.cond.Broadcast()
	f.mu.Unlock()
}

// fill downloads d into the store and feeds the client (see streamBlob).
func (h *Handler) fill(ctx context.Context, rt route, d digest.Digest, size int64, rc io.ReadCloser, bw *store.BlobWriter, f *feed) {
	defer rc.Close()
	read := make(chan piece, fillBuffers)
	var wg sync.WaitGroup
	wg.Go(func() { // upstream → read; the last piece sent has err set
		defer close(read)
		for {
			buf := <-f.free
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
	var total int64
	var rerr error
	for p := range read { // read → store → client
		if len(p.buf) > 0 {
			_, _ = bw.Write(p.buf)
			total += int64(len(p.buf))
			f.offer(p.buf)
		} else {
			f.free <- p.buf[:chunk]
		}
		rerr = p.err
	}
	wg.Wait()
	if rerr != io.EOF {
		bw.Cancel(ctx)
		h.log.WarnContext(ctx, "blob download failed", slog.String("digest", d.String()), slog.String("error", rerr.Error()))
		f.verify(false, total)
		return
	}
	if !bw.Verified() || (size >= 0 && total != size) {
		bw.Cancel(ctx)
		h.log.ErrorContext(ctx, "blob from upstream rejected", slog.String("upstream", rt.upstream.Name()),
			slog.String("repo", rt.repo), slog.String("digest", d.String()),
			slog.String("error", fmt.Sprintf("content does not match its digest (%d bytes, %d announced)", total, size)))
		f.verify(false, total)
		return
	}
	// Verified: the client may have its last chunk now; making the store's copy durable
	// (an fsync of the whole blob) happens after, and requests for d meanwhile wait for it.
	committed := make(chan struct{})
	h.committing.Store(d, committed)
	f.verify(true, total)
	err := bw.Commit(ctx, rt.upstream.Name(), rt.repo)
	if err != nil {
		h.log.WarnContext(ctx, "caching blob failed", slog.String("digest", d.String()), slog.String("error", err.Error()))
	}
	h.committing.Delete(d)
	close(committed)
	f.end(err == nil)
}

// follow sends the feed's chunks to the client one behind, the last once the blob is
// verified; a client that fell behind gets the rest from the store once it is committed.
// A failed download, or a client that stalls for Options.ClientStall, ends the response early.
func (h *Handler) follow(w http.ResponseWriter, r *http.Request, d digest.Digest, f *feed) error {
	rcw := http.NewResponseController(w)
	send := func(b []byte) bool {
		for len(b) > 0 {
			n := min(len(b), writeSlice)
			_ = rcw.SetWriteDeadline(time.Now().Add(h.opts.ClientStall))
			if _, err := w.Write(b[:n]); err != nil {
				return false
			}
			b = b[n:]
		}
		return true
	}
	var pending []byte // the last chunk taken, not yet sent
	var sent int64
	f.mu.Lock()
	for {
		switch {
		case f.lagging:
			f.mu.Unlock()
			if pending != nil {
				f.free <- pending[:chunk]
			}
			return h.catchUp(w, r, d, f, sent, send)
		case len(f.queue) > 0:
			next := f.queue[0]
			f.queue = f.queue[1:]
			f.mu.Unlock()
			if pending != nil {
				ok := send(pending)
				f.free <- pending[:chunk]
				if !ok {
					f.free <- next[:chunk]
					return nil // the client went away; the fill goes on
				}
				sent += int64(len(pending))
			}
			pending = next
			f.mu.Lock()
		case f.verified:
			ok := f.ok
			f.mu.Unlock()
			if !ok {
				if pending != nil {
					f.free <- pending[:chunk]
				}
				panic(http.ErrAbortHandler)
			}
			if pending != nil {
				send(pending)
				f.free <- pending[:chunk]
			}
			_ = rcw.Flush()
			return nil
		default:
			f.cond.Wait()
		}
	}
}

// catchUp serves a client that fell behind from byte offset of the store's copy, once the
// fill has committed it.
func (h *Handler) catchUp(w http.ResponseWriter, r *http.Request, d digest.Digest, f *feed, offset int64, send func([]byte) bool) error {
	f.mu.Lock()
	for !f.done {
		f.cond.Wait()
	}
	ok, committed, total := f.ok, f.committed, f.total
	f.mu.Unlock()
	if !ok || !committed {
		panic(http.ErrAbortHandler)
	}
	rc, err := h.opts.Store.OpenBlob(context.WithoutCancel(r.Context()), d, offset)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	defer rc.Close()
	buf := make([]byte, writeSlice)
	for offset < total {
		n, err := io.ReadFull(rc, buf[:min(int64(len(buf)), total-offset)])
		if n > 0 && !send(buf[:n]) {
			return nil
		}
		offset += int64(n)
		if err != nil {
			panic(http.ErrAbortHandler)
		}
	}
	return nil
}

// piece is a chunk passed from the upstream reader to the store; err is set on the last one,
// io.EOF if the download ended well.
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
