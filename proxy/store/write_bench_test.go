package store_test

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy/store"
)

// BenchmarkBlobWriter writes a 64 MiB blob into a filesystem store in 1 MiB pieces, as a
// cold download does, and commits it.
func BenchmarkBlobWriter(b *testing.B) {
	const size, piece = 64 << 20, 1 << 20
	blob := make([]byte, size)
	_, _ = rand.Read(blob)
	d := digest.FromBytes(blob)
	s := store.New(filesystem.New(filesystem.DriverParameters{RootDirectory: b.TempDir(), MaxThreads: 100}))
	ctx := context.Background()
	b.SetBytes(size)
	for b.Loop() {
		w, err := s.NewBlobWriter(ctx, d)
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < size; off += piece {
			_, _ = w.Write(blob[off : off+piece])
		}
		if !w.Verified() {
			b.Fatal("not verified")
		}
		w.Cancel(ctx)
	}
}
