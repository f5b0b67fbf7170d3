package store_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"

	"github.com/portcullis/portcullis/proxy/store"
)

// TestUnsyncedPutContent: the unsynced driver's PutContent lands where distribution's
// filesystem driver reads it, replaces an existing object whole, and leaves no temporary
// file behind.
func TestUnsyncedPutContent(t *testing.T) {
	root := t.TempDir()
	d := store.Unsynced(filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}), root)
	ctx := context.Background()
	for _, tc := range []struct {
		path    string
		content string
	}{
		{"/repositories/up/a/b/_blobs/sha256/ab/link", "sha256:ab"},
		{"/repositories/up/a/b/_blobs/sha256/ab/link", "sha256:abcd"},
		{"/manifests/sha256/cd/mediatype", ""},
		{"/manifests/sha256/cd/mediatype", "application/vnd.oci.image.manifest.v1+json"},
	} {
		if err := d.PutContent(ctx, tc.path, []byte(tc.content)); err != nil {
			t.Fatalf("PutContent(%s): %v", tc.path, err)
		}
		got, err := d.GetContent(ctx, tc.path)
		if err != nil || string(got) != tc.content {
			t.Fatalf("GetContent(%s) = %q, %v; want %q", tc.path, got, err, tc.content)
		}
		if b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(tc.path))); err != nil || string(b) != tc.content {
			t.Fatalf("file of %s = %q, %v", tc.path, b, err)
		}
	}
	left, err := os.ReadDir(filepath.Join(root, "uploads"))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("left under /uploads: %v", left)
	}
	if d.Name() != "filesystem" {
		t.Fatalf("Name() = %q: the Store recognises a local store by it", d.Name())
	}
}

// BenchmarkPutContent: distribution's filesystem PutContent (file and directory fsync)
// against the unsynced one, for a link-sized object.
func BenchmarkPutContent(b *testing.B) {
	for _, tc := range []struct {
		name     string
		unsynced bool
	}{{"distribution", false}, {"unsynced", true}} {
		b.Run(tc.name, func(b *testing.B) {
			root := b.TempDir()
			var d storagedriver.StorageDriver = filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100})
			if tc.unsynced {
				d = store.Unsynced(d, root)
			}
			ctx := context.Background()
			content := []byte("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
			for b.Loop() {
				if err := d.PutContent(ctx, "/repositories/up/a/_blobs/sha256/01/link", content); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
