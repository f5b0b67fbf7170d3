package store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/testtool"
	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/verify/oci"
)

// sharedDrivers return two drivers over one store, as two replicas have them: the same
// directory, the same s3 bucket (through two driver instances), or one inmemory driver.
func sharedDrivers(t *testing.T) map[string]func(t *testing.T) (a, b storagedriver.StorageDriver) {
	var minio *testtool.MinIO
	return map[string]func(t *testing.T) (a, b storagedriver.StorageDriver){
		"inmemory": func(*testing.T) (a, b storagedriver.StorageDriver) {
			d := inmemory.New()
			return d, d
		},
		"filesystem": func(t *testing.T) (a, b storagedriver.StorageDriver) {
			p := filesystem.DriverParameters{RootDirectory: t.TempDir(), MaxThreads: 100}
			return filesystem.New(p), filesystem.New(p)
		},
		"s3": func(t *testing.T) (a, b storagedriver.StorageDriver) {
			if minio == nil {
				minio = testtool.StartMinIO(t)
			}
			params := minio.Params(minio.NewBucket(t))
			return s3Driver(t, params), s3Driver(t, params)
		},
	}
}

func testManifest(t *testing.T, i int) oci.Manifest {
	t.Helper()
	m, err := oci.NewManifest([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"i":"`+
		strings.Repeat("x", i)+`"}}`), oci.MediaTypeOCIManifest, "")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// readAll reads blob d of s from offset, one byte at a time through the reader (the
// verifying reader's hold-back at its smallest).
func readAll(t *testing.T, s *store.Store, d digest.Digest, offset int64) ([]byte, error) {
	t.Helper()
	rc, err := s.OpenBlob(context.Background(), d, offset)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(iotest.OneByteReader(rc))
}

func TestContentWrittenByOneStoreIsReadByAnother(t *testing.T) {
	for name, drvs := range sharedDrivers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			da, db := drvs(t)
			a, b := store.New(da), store.New(db)
			m := testManifest(t, 1)
			if err := a.PutManifest(ctx, "up.test", "a/app", m); err != nil {
				t.Fatal(err)
			}
			d := putBlob(t, a, 7, 100<<10)
			if got, err := b.Manifest(ctx, "up.test", "a/app", m.Digest); err != nil || !bytes.Equal(got.Bytes, m.Bytes) {
				t.Fatalf("B reads A's manifest: %v, %v", got.Digest, err)
			}
			size, linked, err := b.BlobSize(ctx, "up.test", "a/app", d)
			if err != nil || !linked || size != 100<<10 {
				t.Fatalf("B's BlobSize of A's blob = %d, %v, %v", size, linked, err)
			}
			want := blobContent(7, 100<<10)
			for _, offset := range []int64{0, 5, 100<<10 - 1} {
				got, err := readAll(t, b, d, offset)
				if err != nil || !bytes.Equal(got, want[offset:]) {
					t.Fatalf("B reads A's blob from %d: %d bytes, %v; want the %d stored", offset, len(got), err, len(want[offset:]))
				}
			}
			// Links are per repository on every replica.
			if _, _, err := b.BlobSize(ctx, "up.test", "a/app", digest.FromString("absent")); !errors.Is(err, oci.ErrNotFound) {
				t.Errorf("absent blob: %v", err)
			}
			if _, err := b.Manifest(ctx, "up.test", "b/app", m.Digest); !errors.Is(err, oci.ErrNotFound) {
				t.Errorf("B shows A's manifest to another repository: %v", err)
			}
		})
	}
}

// TestCorruptContentIsNeverServed: content that does not match its digest in the store
// (a bucket written by something else, a torn copy) never reaches a reader whole, and is
// removed so that it is fetched again.
func TestCorruptContentIsNeverServed(t *testing.T) {
	for name, drvs := range sharedDrivers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			da, db := drvs(t)
			a := store.New(da)
			const size = 70 << 10
			for _, tc := range []struct {
				name    string
				content []byte
				offset  int64
			}{
				{"same size", bytes.Repeat([]byte{'z'}, size), 0},
				{"truncated", bytes.Repeat([]byte{1}, size/2), 0},
				{"longer", bytes.Repeat([]byte{1}, size+1), 0},
				{"empty", nil, 0},
				{"same size, ranged read", bytes.Repeat([]byte{'z'}, size), 100},
			} {
				t.Run(tc.name, func(t *testing.T) {
					d := putBlob(t, a, len(tc.name), size)
					// B has never read it: it does not know it as checked.
					b := store.New(db)
					e := d.Encoded()
					if err := da.PutContent(ctx, "/blobs/sha256/"+e[:2]+"/"+e+"/data", tc.content); err != nil {
						t.Fatal(err)
					}
					got, err := readAll(t, b, d, tc.offset)
					if !errors.Is(err, store.ErrCorrupt) {
						t.Fatalf("read of a corrupt blob: %d bytes, %v; want ErrCorrupt", len(got), err)
					}
					if tc.offset == 0 && len(got) >= len(tc.content) && len(tc.content) > 0 {
						t.Fatalf("all %d bytes of the corrupt blob were passed on before the error", len(got))
					}
					if _, _, err := b.BlobSize(ctx, "up.test", "a/app", d); !errors.Is(err, oci.ErrNotFound) {
						t.Errorf("the corrupt blob is still stored: %v", err)
					}
				})
			}
			for name, content := range map[string]string{
				"manifest changed":   "application/vnd.oci.image.manifest.v1+json\n" + `{"schemaVersion":2}`,
				"media type missing": `{"schemaVersion":2}`,
			} {
				t.Run(name, func(t *testing.T) {
					m := testManifest(t, 2)
					if err := a.PutManifest(ctx, "up.test", "a/app", m); err != nil {
						t.Fatal(err)
					}
					if err := da.PutContent(ctx, "/manifests/sha256/"+m.Digest.Encoded()+"/manifest", []byte(content)); err != nil {
						t.Fatal(err)
					}
					b := store.New(db)
					if got, err := b.Manifest(ctx, "up.test", "a/app", m.Digest); !errors.Is(err, oci.ErrNotFound) {
						t.Fatalf("corrupt manifest read as %s, %v; want ErrNotFound (fetch it again)", got.Digest, err)
					}
					if b.HasManifest(ctx, m.Digest) {
						t.Error("the corrupt manifest is still stored")
					}
				})
			}
		})
	}
}

// TestEvictionByAnotherReplica: a blob evicted by another replica while this one reads it
// is read whole or ends in an error, never cut short with io.EOF; once gone, opening it is
// oci.ErrNotFound (the proxy then fetches it again).
func TestEvictionByAnotherReplica(t *testing.T) {
	for name, drvs := range sharedDrivers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			da, db := drvs(t)
			a, b := store.New(da), store.New(db)
			const size = 3 << 20
			d := putBlob(t, a, 9, size)
			rc, err := a.OpenBlob(ctx, d, 0)
			if err != nil {
				t.Fatal(err)
			}
			head := make([]byte, 1000)
			if _, err := io.ReadFull(rc, head); err != nil {
				t.Fatal(err)
			}
			res, err := b.Sweep(ctx, store.EvictionOptions{MaxSize: 1, MaxAge: time.Hour})
			if err != nil || res.Evicted != 1 {
				t.Fatalf("B's sweep: %+v, %v; want A's blob evicted (B does not see A's reads)", res, err)
			}
			rest, err := io.ReadAll(rc)
			rc.Close()
			if n := len(head) + len(rest); err == nil && (n != size || digest.FromBytes(append(head, rest...)) != d) {
				t.Fatalf("read across the eviction ended well after %d of %d bytes", n, size)
			}
			if _, err := a.OpenBlob(ctx, d, 0); !errors.Is(err, oci.ErrNotFound) {
				t.Fatalf("opening the evicted blob: %v; want ErrNotFound", err)
			}
			if _, err := a.OpenBlob(ctx, d, 10); !errors.Is(err, oci.ErrNotFound) {
				t.Fatalf("opening the evicted blob at 10: %v; want ErrNotFound", err)
			}
		})
	}
}

// TestServedOnOneReplicaKeptByAnother: what one replica serves counts for every replica's
// sweep (and for its own after a restart), through the used marker in the store.
func TestServedOnOneReplicaKeptByAnother(t *testing.T) {
	for name, drvs := range sharedDrivers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			da, db := drvs(t)
			a, b := store.New(da), store.New(db)
			const blob = 1000
			var ds []digest.Digest
			for i := range 5 {
				ds = append(ds, putBlob(t, a, i, blob))
			}
			m := testManifest(t, 3)
			if err := a.PutManifest(ctx, "up.test", "a/app", m); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1100 * time.Millisecond) // past the store's modification time resolution
			if _, err := readAll(t, a, ds[0], 0); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Manifest(ctx, "up.test", "a/app", m.Digest); err != nil {
				t.Fatal(err)
			}
			// Room for the blob and the manifest A served (stored after its media type and a
			// newline), and nothing else.
			res, err := b.Sweep(ctx, store.EvictionOptions{MaxSize: blob + int64(len(m.MediaType)+1+len(m.Bytes)), MaxAge: time.Hour})
			if err != nil || res.Evicted != 4 {
				t.Fatalf("B's sweep: %+v, %v; want the 4 blobs A did not serve evicted", res, err)
			}
			if !stored(t, b, ds[0]) || !b.HasManifest(ctx, m.Digest) {
				t.Error("B evicted what A served last")
			}
			// Content not served for maxAge goes, whoever served it before.
			res, err = b.Sweep(ctx, store.EvictionOptions{MaxSize: 1 << 30, MaxAge: time.Hour,
				Now: func() time.Time { return time.Now().Add(2 * time.Hour) }})
			if err != nil || res.Evicted != 2 || stored(t, b, ds[0]) {
				t.Fatalf("sweep 2h later: %+v, %v; want both evicted", res, err)
			}
		})
	}
}

// TestUploadsOfAnotherReplicaSurviveSweeps: an upload in progress on one replica is kept by
// every other replica's sweeps, including the one a replica runs when it starts without
// removing everything (as a store shared by replicas is swept); it goes once stale.
func TestUploadsOfAnotherReplicaSurviveSweeps(t *testing.T) {
	for name, drvs := range sharedDrivers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			da, db := drvs(t)
			a, b := store.New(da), store.New(db)
			for i, chunk := range []string{"first chunk ", "second chunk"} {
				if _, err := a.PutChunk(ctx, "upload1", i, strings.NewReader(chunk)); err != nil {
					t.Fatal(err)
				}
			}
			if n, err := b.SweepUploads(ctx, time.Now(), false); err != nil || n != 0 {
				t.Fatalf("B's start sweep: %d, %v; want A's upload kept", n, err)
			}
			if res, err := b.Sweep(ctx, store.EvictionOptions{}); err != nil || res.Uploads != 0 {
				t.Fatalf("B's sweep: %+v, %v; want A's upload kept", res, err)
			}
			rc := a.OpenChunks(ctx, "upload1", 2)
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || string(got) != "first chunk second chunk" {
				t.Fatalf("A's upload after B's sweeps: %q, %v", got, err)
			}
			later := func() time.Time { return time.Now().Add(3 * time.Hour) }
			if res, err := b.Sweep(ctx, store.EvictionOptions{Now: later}); err != nil || res.Uploads != 1 {
				t.Fatalf("sweep 3h later: %+v, %v; want the stale upload removed", res, err)
			}
		})
	}
}
