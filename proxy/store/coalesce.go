package store

import (
	"context"
	"errors"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// writer opens a driver writer for a new object at path. distribution's inmemory driver
// grows a writer's buffer to exactly what was written so far on every Write, copying all of
// it each time: a blob written in the cold path's chunks, or a push's 32 KiB copies, costs
// time quadratic in its size (a 64 MiB blob in 256 KiB chunks, 8 GiB of copying). Its
// writers are given the bytes in pieces of at least coalesceSize.
func (s *Store) writer(ctx context.Context, path string) (storagedriver.FileWriter, error) {
	fw, err := s.driver.Writer(ctx, path, false)
	if err != nil || s.driver.Name() != "inmemory" {
		return fw, err
	}
	return &coalescingWriter{FileWriter: fw}, nil
}

// coalesceSize is the least a coalescingWriter passes on at a time, but for the last piece.
const coalesceSize = 8 << 20

// coalescingWriter gathers writes into pieces of coalesceSize.
type coalescingWriter struct {
	storagedriver.FileWriter
	pending []byte
}

func (w *coalescingWriter) Write(p []byte) (int, error) {
	w.pending = append(w.pending, p...)
	if len(w.pending) >= coalesceSize {
		if err := w.flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (w *coalescingWriter) flush() error {
	if len(w.pending) == 0 {
		return nil
	}
	_, err := w.FileWriter.Write(w.pending)
	w.pending = w.pending[:0]
	return err
}

// Size counts what is gathered but not passed on yet.
func (w *coalescingWriter) Size() int64 { return w.FileWriter.Size() + int64(len(w.pending)) }

// Commit passes on what is gathered, then commits.
func (w *coalescingWriter) Commit(ctx context.Context) error {
	if err := w.flush(); err != nil {
		return err
	}
	return w.FileWriter.Commit(ctx)
}

// Close passes on what is gathered, as the driver's Close keeps what was written, then
// closes.
func (w *coalescingWriter) Close() error {
	err := w.flush()
	return errors.Join(err, w.FileWriter.Close())
}

// Cancel drops what is gathered, then cancels.
func (w *coalescingWriter) Cancel(ctx context.Context) error {
	w.pending = nil
	return w.FileWriter.Cancel(ctx)
}
