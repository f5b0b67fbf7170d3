package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// TestCoalescingWriter writes blobs of several sizes in pieces of several sizes to an
// inmemory store: the driver is given pieces of at least coalesceSize but for the last, and
// the committed object is the exact bytes.
func TestCoalescingWriter(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ size, piece int }{
		{0, 1}, {1, 1}, {100 << 10, 32 << 10}, {coalesceSize, 256 << 10},
		{3*coalesceSize + 5, 32 << 10}, {2*coalesceSize + 1, coalesceSize + 1}, {coalesceSize + 7, 3 * coalesceSize},
	} {
		t.Run(fmt.Sprintf("size=%d,piece=%d", tc.size, tc.piece), func(t *testing.T) {
			s := New(inmemory.New())
			fw, err := s.writer(ctx, "/uploads/x")
			if err != nil {
				t.Fatal(err)
			}
			cw, ok := fw.(*coalescingWriter)
			if !ok {
				t.Fatalf("an inmemory store's writer is a %T", fw)
			}
			rec := &recordingWriter{FileWriter: cw.FileWriter}
			cw.FileWriter = rec
			want := make([]byte, tc.size)
			_, _ = rand.Read(want)
			for off := 0; off < tc.size; off += tc.piece {
				if _, err := fw.Write(want[off:min(off+tc.piece, tc.size)]); err != nil {
					t.Fatal(err)
				}
			}
			if err := fw.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if fw.Size() != int64(tc.size) {
				t.Errorf("Size %d after committing %d bytes", fw.Size(), tc.size)
			}
			if err := fw.Close(); err != nil {
				t.Fatal(err)
			}
			for i, n := range rec.writes {
				if n < coalesceSize && i != len(rec.writes)-1 {
					t.Errorf("write %d of %d passed %d bytes on, want at least %d", i, len(rec.writes), n, coalesceSize)
				}
			}
			rc, err := s.driver.Reader(ctx, "/uploads/x", 0)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("stored %d bytes (%v), want the %d written", len(got), err, len(want))
			}
		})
	}
}

// recordingWriter records the size of each write its driver writer is given.
type recordingWriter struct {
	storagedriver.FileWriter
	writes []int
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, len(p))
	return w.FileWriter.Write(p)
}
