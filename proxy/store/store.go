package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/verify/oci"
)

// Store is the content store (see the package documentation). It is safe for concurrent use.
type Store struct {
	driver storagedriver.StorageDriver
	// local is set on distribution's filesystem driver: objects are files on this host,
	// which only processes storing through a Store write (under /uploads, then moved into
	// place), so a blob checked once is trusted while its size and modification time stay
	// (see OpenBlob), and a blob being written can be read back as it is written (see
	// BlobWriter.OpenWritten).
	local bool

	mu sync.Mutex
	// pending holds manifests being written behind, by link path, so that reads find them
	// before the driver has them.
	pending map[string]oci.Manifest
	// usage tells eviction what was served when and what is being read (evict.go).
	usage *usage
}

// New returns a Store on driver.
func New(driver storagedriver.StorageDriver) *Store {
	return &Store{driver: driver, local: driver.Name() == "filesystem",
		pending: map[string]oci.Manifest{}, usage: newUsage()}
}

// recordWritten records that this Store wrote blob d (size bytes) and checked it; on a
// local store, with the size and modification time the file has now.
func (s *Store) recordWritten(ctx context.Context, d digest.Digest, size int64) {
	c := check{size: size}
	if s.local {
		fi, err := s.driver.Stat(ctx, blobPath(d))
		if err != nil {
			s.usage.unverified(d) // checked again when it is read
			return
		}
		c = check{size: fi.Size(), mod: fi.ModTime()}
	}
	s.usage.verified(d, c)
}

// PutPending makes m readable for repo at once, until the returned func is called (when
// the caller's PutManifest has finished, successfully or not).
func (s *Store) PutPending(upstream, repo string, m oci.Manifest) (done func()) {
	key := linkPath(upstream, repo, "_manifests", m.Digest)
	s.mu.Lock()
	s.pending[key] = m
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.pending, key)
		s.mu.Unlock()
	}
}

func blobPath(d digest.Digest) string {
	e := d.Encoded()
	return path.Join("/blobs", d.Algorithm().String(), e[:2], e, "data")
}

func manifestDir(d digest.Digest) string {
	return path.Join("/manifests", d.Algorithm().String(), d.Encoded())
}

func manifestPath(d digest.Digest) string { return manifestDir(d) + "/manifest" }

func linkPath(upstream, repo, kind string, d digest.Digest) string {
	// Storage paths may not hold ':' (host:port upstream names); '_' never occurs in a host.
	return path.Join("/repositories", strings.ReplaceAll(upstream, ":", "_"), repo, kind, d.Algorithm().String(), d.Encoded())
}

func isNotFound(err error) bool {
	var pnf storagedriver.PathNotFoundError
	return errors.As(err, &pnf)
}

// linked reports whether repo has a link to d of the given kind.
func (s *Store) linked(ctx context.Context, upstream, repo, kind string, d digest.Digest) (bool, error) {
	_, err := s.driver.Stat(ctx, linkPath(upstream, repo, kind, d))
	if isNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// Link records that repo may see d.
func (s *Store) link(ctx context.Context, upstream, repo, kind string, d digest.Digest) error {
	return s.driver.PutContent(ctx, linkPath(upstream, repo, kind, d), []byte(d.String()))
}

// Manifest returns the stored manifest d if repo fetched it before; oci.ErrNotFound otherwise.
// The stored bytes are checked against d on every read.
func (s *Store) Manifest(ctx context.Context, upstream, repo string, d digest.Digest) (oci.Manifest, error) {
	s.mu.Lock()
	m, pending := s.pending[linkPath(upstream, repo, "_manifests", d)]
	s.mu.Unlock()
	if pending {
		return m, nil
	}
	ok, err := s.linked(ctx, upstream, repo, "_manifests", d)
	if err != nil {
		return oci.Manifest{}, fmt.Errorf("content store: %w", err)
	}
	if !ok {
		return oci.Manifest{}, fmt.Errorf("manifest %s not in store for %s: %w", d, repo, oci.ErrNotFound)
	}
	return s.manifest(ctx, d)
}

func (s *Store) manifest(ctx context.Context, d digest.Digest) (oci.Manifest, error) {
	s.touch(ctx, d, manifestDir(d))
	b, err := s.driver.GetContent(ctx, manifestPath(d))
	if isNotFound(err) {
		return oci.Manifest{}, fmt.Errorf("manifest %s not in store: %w", d, oci.ErrNotFound)
	}
	if err != nil {
		return oci.Manifest{}, fmt.Errorf("content store: %w", err)
	}
	m, err := decodeManifest(b, d)
	if err != nil {
		// Never served: removed, so that the next request fetches and checks it again.
		_ = s.driver.Delete(ctx, manifestDir(d))
		return oci.Manifest{}, fmt.Errorf("content store held a corrupt manifest, removed: %v: %w", err, oci.ErrNotFound)
	}
	return m, nil
}

// A stored manifest is one object: its media type, a newline, then its bytes exactly as
// the upstream or the pusher sent them (one write and one read per manifest).
func encodeManifest(m oci.Manifest) []byte {
	return append(append([]byte(m.MediaType), '\n'), m.Bytes...)
}

func decodeManifest(b []byte, d digest.Digest) (oci.Manifest, error) {
	mt, body, ok := bytes.Cut(b, []byte{'\n'})
	if !ok {
		return oci.Manifest{}, errors.New("no media type")
	}
	return oci.NewManifest(body, string(mt), d)
}

// HasManifest reports whether d is stored at all, for any repository.
func (s *Store) HasManifest(ctx context.Context, d digest.Digest) bool {
	_, err := s.driver.Stat(ctx, manifestPath(d))
	return err == nil
}

// UnlinkManifest hides manifest d from repo again, after it was deleted upstream through the
// proxy. The content stays for other repositories.
func (s *Store) UnlinkManifest(ctx context.Context, upstream, repo string, d digest.Digest) error {
	return s.unlink(ctx, upstream, repo, "_manifests", d)
}

// UnlinkBlob hides blob d from repo again and revokes its grant there, after it was deleted
// upstream through the proxy. The content stays for other repositories.
func (s *Store) UnlinkBlob(ctx context.Context, upstream, repo string, d digest.Digest) error {
	if err := s.unlink(ctx, upstream, repo, "_grants", d); err != nil {
		return err
	}
	return s.unlink(ctx, upstream, repo, "_blobs", d)
}

func (s *Store) unlink(ctx context.Context, upstream, repo, kind string, d digest.Digest) error {
	err := s.driver.Delete(ctx, linkPath(upstream, repo, kind, d))
	if isNotFound(err) {
		return nil
	}
	return err
}

// Grant records that repo may serve blob d: a manifest admitted in repo references it.
func (s *Store) Grant(ctx context.Context, upstream, repo string, d digest.Digest) error {
	return s.link(ctx, upstream, repo, "_grants", d)
}

// Granted reports whether Grant recorded d for repo.
func (s *Store) Granted(ctx context.Context, upstream, repo string, d digest.Digest) (bool, error) {
	ok, err := s.linked(ctx, upstream, repo, "_grants", d)
	if err != nil {
		return false, fmt.Errorf("content store: %w", err)
	}
	return ok, nil
}

// LinkManifest makes a stored manifest visible to repo.
func (s *Store) LinkManifest(ctx context.Context, upstream, repo string, d digest.Digest) error {
	return s.link(ctx, upstream, repo, "_manifests", d)
}

// PutManifest stores m (whose digest the caller computed from its bytes) for repo.
func (s *Store) PutManifest(ctx context.Context, upstream, repo string, m oci.Manifest) error {
	if _, err := oci.NewManifest(m.Bytes, m.MediaType, m.Digest); err != nil {
		return err
	}
	if strings.ContainsRune(m.MediaType, '\n') {
		return fmt.Errorf("media type %q holds a newline", m.MediaType)
	}
	if !s.HasManifest(ctx, m.Digest) {
		if err := s.driver.PutContent(ctx, manifestPath(m.Digest), encodeManifest(m)); err != nil {
			return fmt.Errorf("content store: %w", err)
		}
	}
	return s.LinkManifest(ctx, upstream, repo, m.Digest)
}

// uploadPath names a new object under /uploads, where unfinished writes live.
func uploadPath() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "/uploads/" + hex.EncodeToString(b[:])
}

// BlobSize returns the size of stored blob d and whether repo has a link to it. A blob that
// is not stored at all is oci.ErrNotFound.
func (s *Store) BlobSize(ctx context.Context, upstream, repo string, d digest.Digest) (size int64, linked bool, err error) {
	fi, err := s.driver.Stat(ctx, blobPath(d))
	if isNotFound(err) {
		return 0, false, fmt.Errorf("blob %s not in store: %w", d, oci.ErrNotFound)
	}
	if err != nil {
		return 0, false, fmt.Errorf("content store: %w", err)
	}
	linked, err = s.linked(ctx, upstream, repo, "_blobs", d)
	if err != nil {
		return 0, false, fmt.Errorf("content store: %w", err)
	}
	return fi.Size(), linked, nil
}

// LinkBlob makes a stored blob visible to repo.
func (s *Store) LinkBlob(ctx context.Context, upstream, repo string, d digest.Digest) error {
	return s.link(ctx, upstream, repo, "_blobs", d)
}

// OpenBlob reads stored blob d from offset; a blob that is not stored (any more: another
// replica may have evicted it since BlobSize) is oci.ErrNotFound. Eviction by this Store
// leaves it alone until the reader is closed.
//
// The content is checked against d unless this Store can trust it:
//   - On a local filesystem store, a blob this Store wrote (BlobWriter.Commit) or read whole
//     and found matching d is trusted while its size and modification time are those it had
//     when it was checked; it is then read as the file itself, unhashed (an *os.File
//     underneath). A file changed or cut on disk since is checked
//     again, as is every blob after a restart.
//   - On any other store (s3: other replicas write the same bucket) every read from offset 0
//     is checked; a read from a later offset is not checked again once this Store checked
//     the blob whole.
//
// A checked read from offset 0 hashes what it passes on and holds its last byte back until
// the whole object has been read and matched d (see verifyingReader), so a corrupt or
// truncated object ends in ErrCorrupt, never in a complete wrong blob; it is then removed,
// to be fetched and checked again. A read from a later offset of a blob not trusted first
// checks the whole object.
func (s *Store) OpenBlob(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	s.touch(ctx, d, path.Dir(blobPath(d)))
	release := s.usage.open(d)
	rc, err := s.openBlob(ctx, d, offset)
	if err != nil {
		release()
		return nil, err
	}
	if f, ok := rc.(*os.File); ok {
		return &fileReader{File: f, release: release}, nil
	}
	return &releasingReader{ReadCloser: rc, release: release}, nil
}

// openBlob opens d at offset, checked as OpenBlob describes: a trusted local file is
// returned as the *os.File.
func (s *Store) openBlob(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	rc, fi, err := s.reader(ctx, d, offset)
	if err != nil {
		return nil, err
	}
	if s.trustedRead(d, offset, fi) {
		return rc, nil
	}
	if offset == 0 {
		return s.verifying(ctx, d, rc, fi), nil
	}
	// A part cannot be checked on its own: check the whole blob first.
	rc.Close()
	if err := s.verifyBlob(ctx, d); err != nil {
		return nil, err
	}
	if rc, fi, err = s.reader(ctx, d, offset); err != nil {
		return nil, err
	}
	if !s.trustedRead(d, offset, fi) {
		rc.Close()
		return nil, fmt.Errorf("blob %s changed in the store while it was checked: %w", d, ErrCorrupt)
	}
	return rc, nil
}

// trustedRead reports whether a read of d from offset, opened as fi, needs no check (see
// OpenBlob): the file of a local store as it was when checked; elsewhere, a read from a
// later offset of a blob checked before.
func (s *Store) trustedRead(d digest.Digest, offset int64, fi *check) bool {
	if fi != nil {
		return s.usage.trusted(d, fi)
	}
	return offset > 0 && s.usage.trusted(d, nil)
}

// reader opens d at offset with the driver; on a local store, fi is what the opened file
// is now (size and modification time), which its trust is checked against.
func (s *Store) reader(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, *check, error) {
	rc, err := s.driver.Reader(ctx, blobPath(d), offset)
	if isNotFound(err) {
		return nil, nil, fmt.Errorf("blob %s not in store: %w", d, oci.ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("content store: %w", err)
	}
	if !s.local {
		return rc, nil, nil
	}
	f, ok := rc.(*os.File)
	if !ok {
		return rc, nil, nil // not a file after all: checked on every read
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("content store: %w", err)
	}
	return f, &check{size: st.Size(), mod: st.ModTime()}, nil
}

// verifying checks rc, a read of d from offset 0 (opened as fi, on a local store), as it
// is read, and records the outcome.
func (s *Store) verifying(ctx context.Context, d digest.Digest, rc io.ReadCloser, fi *check) io.ReadCloser {
	return &verifyingReader{rc: rc, want: d, digester: d.Algorithm().Digester(), space: make([]byte, 32<<10),
		verdict: func(ok bool, n int64) {
			if !ok {
				s.usage.unverified(d)
				_ = s.driver.Delete(context.WithoutCancel(ctx), path.Dir(blobPath(d)))
				return
			}
			if fi == nil {
				fi = &check{size: n}
			}
			s.usage.verified(d, *fi)
		}}
}

// verifyBlob reads all of stored blob d and checks it.
func (s *Store) verifyBlob(ctx context.Context, d digest.Digest) error {
	rc, fi, err := s.reader(ctx, d, 0)
	if err != nil {
		return err
	}
	vr := s.verifying(ctx, d, rc, fi)
	defer vr.Close()
	_, err = io.Copy(io.Discard, vr)
	return err
}

// ErrCorrupt is returned by a read of a stored blob whose content does not match its digest
// (or that was cut short, e.g. evicted by another replica while it was read). The blob is
// removed from the store; the caller may fetch it again.
var ErrCorrupt = errors.New("stored blob does not match its digest")

// verifyingReader hashes a stored blob as it passes it on and holds back its last byte
// until the end of the object has been read: then the digest decides between io.EOF and
// ErrCorrupt, which the caller gets instead of that byte.
type verifyingReader struct {
	rc       io.ReadCloser
	want     digest.Digest
	digester digest.Digester
	verdict  func(ok bool, size int64)
	space    []byte
	buf      []byte // read and hashed, not yet passed on; its last byte is held back
	n        int64  // bytes read and hashed
	end      error  // nil while reading; io.EOF once checked and good; else the failure
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(v.buf) <= 1 && v.end == nil {
		n := copy(v.space, v.buf)
		m, err := v.rc.Read(v.space[n:])
		v.digester.Hash().Write(v.space[n : n+m])
		v.buf = v.space[:n+m]
		v.n += int64(m)
		switch {
		case err == io.EOF && v.digester.Digest() == v.want:
			v.end = io.EOF
			v.verdict(true, v.n)
		case err == io.EOF:
			v.end = fmt.Errorf("%w: %s read as %s", ErrCorrupt, v.want, v.digester.Digest())
			v.verdict(false, v.n)
		case err != nil:
			v.end = fmt.Errorf("content store: %w", err)
		}
	}
	avail := len(v.buf)
	if v.end != io.EOF {
		avail-- // held back until the digest is known good
	}
	if avail <= 0 {
		return 0, v.end
	}
	n := copy(p, v.buf[:avail])
	v.buf = v.buf[n:]
	return n, nil
}

func (v *verifyingReader) Close() error { return v.rc.Close() }

// fileReader is a trusted stored blob read as its file: the *os.File's methods (among them
// SyscallConn, should a caller want sendfile) with a Close that tells eviction.
type fileReader struct {
	*os.File
	release func()
}

func (r *fileReader) Close() error {
	defer r.release()
	return r.File.Close()
}

// releasingReader tells eviction when a blob is no longer being read.
type releasingReader struct {
	io.ReadCloser
	release func()
}

func (r *releasingReader) Close() error {
	defer r.release()
	return r.ReadCloser.Close()
}

// BlobWriter writes one blob into the store. Its content becomes visible only on Commit, and
// only if it matches the expected digest.
type BlobWriter struct {
	s        *Store
	fw       storagedriver.FileWriter
	tmp      string
	want     digest.Digest
	digester digest.Digester
	failed   error
}

// NewBlobWriter starts writing blob want.
func (s *Store) NewBlobWriter(ctx context.Context, want digest.Digest) (*BlobWriter, error) {
	tmp := uploadPath()
	fw, err := s.writer(ctx, tmp)
	if err != nil {
		return nil, fmt.Errorf("content store: %w", err)
	}
	return &BlobWriter{s: s, fw: fw, tmp: tmp, want: want, digester: want.Algorithm().Digester()}, nil
}

// parallelHash is the size from which BlobWriter.Write hashes in a goroutine of its own
// while it writes to the driver.
const parallelHash = 256 << 10

// Write appends p; a storage failure is remembered and reported by Commit, so that a
// broken cache never interrupts the client's download. A large p is hashed while it is
// written, so that a write costs the longer of the two rather than their sum.
func (w *BlobWriter) Write(p []byte) (int, error) {
	if w.failed != nil || len(p) < parallelHash {
		w.digester.Hash().Write(p)
		w.store(p)
		return len(p), nil
	}
	var hashed sync.WaitGroup
	hashed.Go(func() { w.digester.Hash().Write(p) })
	w.store(p)
	hashed.Wait()
	return len(p), nil
}

func (w *BlobWriter) store(p []byte) {
	if w.failed == nil {
		if _, err := w.fw.Write(p); err != nil {
			w.failed = err
		}
	}
}

// Healthy reports whether everything written so far reached the store (a failed write is
// reported by Commit).
func (w *BlobWriter) Healthy() bool { return w.failed == nil }

// ErrNotLocal is returned by BlobWriter.OpenWritten on a store whose objects are not local
// files: what is being written cannot be read back before it is committed.
var ErrNotLocal = errors.New("content store: a blob being written is readable only on a filesystem store")

// OpenWritten reads the blob being written from offset, on a local filesystem store (else
// ErrNotLocal), as its *os.File: what a Write returned for is there, except possibly its last
// few KiB (the driver buffers small writes until Commit), so a reader must not go past what
// it knows was written and must expect the file to end sooner. The file is neither checked
// nor committed: the caller holds back what it may not pass on yet. Once the blob is
// committed (or cancelled) it can no longer be opened this way (oci.ErrNotFound); a file
// opened before stays readable.
func (w *BlobWriter) OpenWritten(ctx context.Context, offset int64) (io.ReadCloser, error) {
	if !w.s.local {
		return nil, ErrNotLocal
	}
	rc, err := w.s.driver.Reader(ctx, w.tmp, offset)
	if isNotFound(err) {
		return nil, fmt.Errorf("blob %s being written: %w", w.want, oci.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("content store: %w", err)
	}
	return rc, nil
}

// Verified reports whether the bytes written so far have the expected digest.
func (w *BlobWriter) Verified() bool { return w.digester.Digest() == w.want }

// Commit moves the blob into place if its digest matches and links it to repo.
func (w *BlobWriter) Commit(ctx context.Context, upstream, repo string) error {
	if got := w.digester.Digest(); got != w.want {
		w.Cancel(ctx)
		return fmt.Errorf("blob digest mismatch: expected %s, content is %s", w.want, got)
	}
	if w.failed != nil {
		w.Cancel(ctx)
		return fmt.Errorf("content store: %w", w.failed)
	}
	if err := w.fw.Commit(ctx); err != nil {
		w.Cancel(ctx)
		return fmt.Errorf("content store: %w", err)
	}
	if err := w.fw.Close(); err != nil {
		return fmt.Errorf("content store: %w", err)
	}
	if err := w.s.driver.Move(ctx, w.tmp, blobPath(w.want)); err != nil {
		_ = w.s.driver.Delete(ctx, w.tmp)
		return fmt.Errorf("content store: %w", err)
	}
	w.s.recordWritten(ctx, w.want, w.fw.Size())
	return w.s.LinkBlob(ctx, upstream, repo, w.want)
}

// Cancel discards what was written.
func (w *BlobWriter) Cancel(ctx context.Context) {
	_ = w.fw.Cancel(ctx)
	_ = w.fw.Close()
	_ = w.s.driver.Delete(ctx, w.tmp)
}

func chunkPath(id string, n int) string { return fmt.Sprintf("/uploads/%s/%d", id, n) }

// PutChunk stores chunk n of upload id and returns its size.
func (s *Store) PutChunk(ctx context.Context, id string, n int, r io.Reader) (int64, error) {
	fw, err := s.writer(ctx, chunkPath(id, n))
	if err != nil {
		return 0, fmt.Errorf("content store: %w", err)
	}
	written, err := io.Copy(fw, r)
	if err == nil {
		err = fw.Commit(ctx)
	}
	if err != nil {
		_ = fw.Cancel(ctx)
		_ = fw.Close()
		return 0, fmt.Errorf("receive chunk: %w", err)
	}
	return written, fw.Close()
}

// OpenChunks reads chunks 0..n-1 of upload id in order.
func (s *Store) OpenChunks(ctx context.Context, id string, n int) io.ReadCloser {
	return &chunkReader{ctx: ctx, s: s, id: id, n: n}
}

// DeleteUpload removes what upload id left behind.
func (s *Store) DeleteUpload(ctx context.Context, id string) {
	_ = s.driver.Delete(ctx, "/uploads/"+id)
}

type chunkReader struct {
	ctx  context.Context
	s    *Store
	id   string
	n, i int
	cur  io.ReadCloser
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for {
		if c.cur == nil {
			if c.i >= c.n {
				return 0, io.EOF
			}
			rc, err := c.s.driver.Reader(c.ctx, chunkPath(c.id, c.i), 0)
			if err != nil {
				return 0, fmt.Errorf("content store: %w", err)
			}
			c.cur, c.i = rc, c.i+1
		}
		n, err := c.cur.Read(p)
		if err == io.EOF {
			c.cur.Close()
			c.cur = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *chunkReader) Close() error {
	if c.cur != nil {
		return c.cur.Close()
	}
	return nil
}
