package store_test

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy/store"
)

// BenchmarkBlobWriter is the per-byte work of a cold blob download besides the network, on
// a 64 MiB blob in 256 KiB pieces (the proxy's chunk), with the machine's cores to itself:
// "store" writes it into a filesystem store and checks its digest, as the download does
// (hashing beside the write); "sha256" only hashes it. A cold download cannot be faster than
// "store", whatever the network.
func BenchmarkBlobWriter(b *testing.B) {
	const size, piece = 64 << 20, 256 << 10
	blob := make([]byte, size)
	_, _ = rand.Read(blob)
	d := digest.FromBytes(blob)
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			dg := d.Algorithm().Digester()
			for off := 0; off < size; off += piece {
				dg.Hash().Write(blob[off : off+piece])
			}
			if dg.Digest() != d {
				b.Fatal("digest mismatch")
			}
		}
	})
	b.Run("store", func(b *testing.B) {
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
	})
}
