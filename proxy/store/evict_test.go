package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/verify/oci"
)

// putBlob stores n bytes of content seeded by i and returns its digest.
func putBlob(t *testing.T, s *store.Store, i, n int) digest.Digest {
	t.Helper()
	b := blobContent(i, n)
	d := digest.FromBytes(b)
	w, err := s.NewBlobWriter(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(b)
	if err := w.Commit(context.Background(), "up.test", "a/app"); err != nil {
		t.Fatal(err)
	}
	return d
}

// blobContent is the content putBlob stores.
func blobContent(i, n int) []byte {
	b := bytes.Repeat([]byte{byte(i)}, n)
	copy(b, fmt.Sprint(i))
	return b
}

func stored(t *testing.T, s *store.Store, d digest.Digest) bool {
	t.Helper()
	_, _, err := s.BlobSize(context.Background(), "up.test", "a/app", d)
	if err != nil && !errors.Is(err, oci.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func TestSweepKeepsTheStoreUnderItsCap(t *testing.T) {
	for name, drv := range drivers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := store.New(drv(t))
			const blob, maxSize = 1000, 10 * 1000
			var ds []digest.Digest
			for i := range 30 { // 3× the cap
				ds = append(ds, putBlob(t, s, i, blob))
			}
			// Served recently: the first blob (read once) and the second (being read now).
			rc, err := s.OpenBlob(ctx, ds[0], 0)
			if err != nil {
				t.Fatal(err)
			}
			rc.Close()
			reading, err := s.OpenBlob(ctx, ds[1], 0)
			if err != nil {
				t.Fatal(err)
			}
			// The rest were written in order; make the store see them as older than the reads.
			now := func() time.Time { return time.Now().Add(time.Minute) }
			res, err := s.Sweep(ctx, store.EvictionOptions{MaxSize: maxSize, MaxAge: time.Hour, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if res.Bytes > maxSize || res.Evicted < 20 || s.Bytes() != res.Bytes || s.Evictions() != int64(res.Evicted) {
				t.Fatalf("sweep %+v (store says %d bytes, %d evictions); want at most %d bytes kept", res, s.Bytes(), s.Evictions(), maxSize)
			}
			if !stored(t, s, ds[0]) {
				t.Error("the most recently served blob was evicted")
			}
			if !stored(t, s, ds[1]) {
				t.Error("a blob being read was evicted")
			}
			reading.Close()
			if stored(t, s, ds[2]) {
				t.Error("the least recently served blob was kept")
			}
			// Evicted content can be stored again (a pull fetches it again).
			if d := putBlob(t, s, 2, blob); !stored(t, s, d) {
				t.Error("evicted blob not stored again")
			}
		})
	}
}

func TestSweepMaxAgeAndUploads(t *testing.T) {
	for name, drv := range drivers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := store.New(drv(t))
			d := putBlob(t, s, 1, 100)
			// A download cut by a crash: written, never committed.
			w, err := s.NewBlobWriter(ctx, digest.FromString("partial"))
			if err != nil {
				t.Fatal(err)
			}
			_, _ = w.Write([]byte("part"))
			opts := store.EvictionOptions{MaxSize: 1 << 30, MaxAge: time.Hour}
			res, err := s.Sweep(ctx, opts)
			if err != nil || res.Evicted != 0 || res.Uploads != 0 || !stored(t, s, d) {
				t.Fatalf("fresh content: %+v, %v", res, err)
			}
			// On s3 an uncommitted write is an incomplete multipart upload, not an object: the
			// bucket's lifecycle rule (MinIO: its stale upload expiry) removes it.
			want := map[bool]int{true: 0, false: 1}[name == "s3"]
			n, err := s.SweepUploads(ctx, time.Now(), true) // at start: nothing can be in progress
			if err != nil || n != want {
				t.Fatalf("start sweep: %d, %v; want %d (the partial write removed)", n, err, want)
			}
			opts.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
			res, err = s.Sweep(ctx, opts)
			if err != nil || res.Evicted != 1 || stored(t, s, d) {
				t.Fatalf("content unserved for 2h with maxAge 1h: %+v, %v", res, err)
			}
		})
	}
}
