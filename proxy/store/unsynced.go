package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// Unsynced returns d, distribution's filesystem driver rooted at root, writing without the
// fsyncs the driver makes: PutContent (links, grants, used markers, manifests, records)
// writes a temporary file under /uploads and renames it into place, without the file and
// directory fsyncs; Writer (blobs, upload chunks) commits without the file's fsync. Those
// fsyncs give a registry durability, which a cache does not need: after a crash, every
// object the Store reads is checked again (a manifest against its digest, a record by
// decoding it, a blob by hashing it once in the new process) and one that is missing, empty
// or cut is fetched again; a lost grant or link only makes the proxy ask the upstream and
// the policy again. What they cost is measured by BenchmarkPutContent (each cold manifest
// writes several small objects) and by a blob's commit, which made the requests for it
// wait for 64 MiB to reach the disk.
//
// Reads, listings, moves and deletes go to d unchanged.
func Unsynced(d storagedriver.StorageDriver, root string) storagedriver.StorageDriver {
	return unsynced{StorageDriver: d, root: root}
}

type unsynced struct {
	storagedriver.StorageDriver
	root string
}

// fullPath maps a driver path to the file, as distribution's filesystem driver does.
func (u unsynced) fullPath(p string) string {
	return filepath.Join(u.root, filepath.FromSlash(path.Clean("/"+p)))
}

func (u unsynced) PutContent(ctx context.Context, p string, content []byte) error {
	dst, tmp := u.fullPath(p), u.fullPath(uploadPath())
	if err := os.MkdirAll(filepath.Dir(tmp), 0o777); err != nil {
		return err
	}
	err := os.WriteFile(tmp, content, 0o666)
	if err == nil {
		if err = os.MkdirAll(filepath.Dir(dst), 0o777); err == nil {
			err = os.Rename(tmp, dst)
		}
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("put %s: %w", p, err)
	}
	return nil
}

func (u unsynced) Writer(ctx context.Context, p string, append bool) (storagedriver.FileWriter, error) {
	full := u.fullPath(p)
	if err := os.MkdirAll(filepath.Dir(full), 0o777); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	var size int64
	if append {
		size, err = f.Seek(0, io.SeekEnd)
	} else {
		err = f.Truncate(0)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &unsyncedWriter{f: f, size: size}, nil
}

// unsyncedWriter is a storagedriver.FileWriter on a local file whose Commit does not fsync.
type unsyncedWriter struct {
	f                            *os.File
	size                         int64
	closed, committed, cancelled bool
}

func (w *unsyncedWriter) Write(p []byte) (int, error) {
	switch {
	case w.closed:
		return 0, errors.New("already closed")
	case w.committed:
		return 0, errors.New("already committed")
	case w.cancelled:
		return 0, errors.New("already cancelled")
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	return n, err
}

func (w *unsyncedWriter) Size() int64 { return w.size }

func (w *unsyncedWriter) Close() error {
	if w.closed {
		return errors.New("already closed")
	}
	w.closed = true
	return w.f.Close()
}

func (w *unsyncedWriter) Cancel(context.Context) error {
	if w.closed {
		return errors.New("already closed")
	}
	w.cancelled, w.closed = true, true
	_ = w.f.Close()
	return os.Remove(w.f.Name())
}

func (w *unsyncedWriter) Commit(context.Context) error {
	switch {
	case w.closed:
		return errors.New("already closed")
	case w.committed:
		return errors.New("already committed")
	case w.cancelled:
		return errors.New("already cancelled")
	}
	w.committed = true
	return nil
}
