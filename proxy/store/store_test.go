package store_test

import (
	"context"
	"errors"
	"io"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/testtool"
	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/verify/oci"
)

// drivers are the storage drivers every test runs on: each returns a fresh, empty store.
// s3 is a real MinIO (one per top-level test, a bucket per store).
func drivers(t *testing.T) map[string]func(t *testing.T) storagedriver.StorageDriver {
	var minio *testtool.MinIO
	return map[string]func(t *testing.T) storagedriver.StorageDriver{
		"inmemory": func(*testing.T) storagedriver.StorageDriver { return inmemory.New() },
		"filesystem": func(t *testing.T) storagedriver.StorageDriver {
			return filesystem.New(filesystem.DriverParameters{RootDirectory: t.TempDir(), MaxThreads: 100})
		},
		"s3": func(t *testing.T) storagedriver.StorageDriver {
			if minio == nil {
				minio = testtool.StartMinIO(t)
			}
			return s3Driver(t, minio.Params(minio.NewBucket(t)))
		},
	}
}

// s3Driver is distribution's s3 driver with params.
func s3Driver(t *testing.T, params map[string]any) storagedriver.StorageDriver {
	t.Helper()
	d, err := s3.FromParameters(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestManifestsAreLinkedPerRepository(t *testing.T) {
	for name, drv := range drivers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := store.New(drv(t))
			m, err := oci.NewManifest([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`), oci.MediaTypeOCIManifest, "")
			if err != nil {
				t.Fatal(err)
			}
			if err := s.PutManifest(ctx, "up.test", "a/app", m); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Manifest(ctx, "up.test", "a/app", m.Digest); err != nil || got.Digest != m.Digest {
				t.Fatalf("Manifest = %v, %v", got.Digest, err)
			}
			if _, err := s.Manifest(ctx, "up.test", "b/app", m.Digest); !errors.Is(err, oci.ErrNotFound) {
				t.Errorf("another repository sees it: %v", err)
			}
			if !s.HasManifest(ctx, m.Digest) {
				t.Error("HasManifest = false")
			}
			if err := s.UnlinkManifest(ctx, "up.test", "a/app", m.Digest); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Manifest(ctx, "up.test", "a/app", m.Digest); !errors.Is(err, oci.ErrNotFound) {
				t.Errorf("after unlink: %v", err)
			}
		})
	}
}

func TestBlobWriterCommitsOnlyVerifiedContent(t *testing.T) {
	for name, drv := range drivers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := store.New(drv(t))
			good := []byte("layer content")
			want := digest.FromBytes(good)
			for _, tc := range []struct {
				name    string
				content []byte
				commit  bool
			}{{"wrong content", []byte("other content"), false}, {"right content", good, true}} {
				w, err := s.NewBlobWriter(ctx, want)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = w.Write(tc.content)
				if w.Verified() != tc.commit {
					t.Errorf("%s: Verified = %v", tc.name, w.Verified())
				}
				err = w.Commit(ctx, "up.test", "a/app")
				if (err == nil) != tc.commit {
					t.Fatalf("%s: Commit = %v", tc.name, err)
				}
				_, linked, err := s.BlobSize(ctx, "up.test", "a/app", want)
				if tc.commit != (err == nil && linked) {
					t.Fatalf("%s: stored %v, linked %v", tc.name, err, linked)
				}
			}
			rc, err := s.OpenBlob(ctx, want, 6)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			if string(b) != "content" {
				t.Errorf("OpenBlob at 6 = %q", b)
			}
			// A grant is per repository, and revoked with the blob's link.
			if err := s.Grant(ctx, "up.test", "a/app", want); err != nil {
				t.Fatal(err)
			}
			for repo, wantGranted := range map[string]bool{"a/app": true, "b/app": false} {
				if ok, err := s.Granted(ctx, "up.test", repo, want); err != nil || ok != wantGranted {
					t.Errorf("Granted(%s) = %v, %v", repo, ok, err)
				}
			}
			if err := s.UnlinkBlob(ctx, "up.test", "a/app", want); err != nil {
				t.Fatal(err)
			}
			if ok, _ := s.Granted(ctx, "up.test", "a/app", want); ok {
				t.Error("grant survives UnlinkBlob")
			}
		})
	}
}
