package store_test

import (
	"context"
	"fmt"
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
		{"/manifests/sha256/cd/manifest", ""},
		{"/manifests/sha256/cd/manifest", "application/vnd.oci.image.manifest.v1+json\n{}"},
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

// TestUnsyncedWriter: the unsynced Writer behaves as distribution's filesystem driver's
// (the same steps give the same sizes, contents and errors), without its fsyncs.
func TestUnsyncedWriter(t *testing.T) {
	ctx := context.Background()
	type outcome struct {
		sizes   []int64
		content string
		exists  bool
		errs    []bool
	}
	run := func(d storagedriver.StorageDriver, steps func(d storagedriver.StorageDriver, o *outcome)) outcome {
		var o outcome
		steps(d, &o)
		b, err := d.GetContent(ctx, "/uploads/x/data")
		o.exists = err == nil
		o.content = string(b)
		return o
	}
	for _, tc := range []struct {
		name  string
		steps func(d storagedriver.StorageDriver, o *outcome)
	}{
		{"write, commit, close", func(d storagedriver.StorageDriver, o *outcome) {
			w, _ := d.Writer(ctx, "/uploads/x/data", false)
			_, _ = w.Write([]byte("hello "))
			_, _ = w.Write([]byte("world"))
			o.sizes = append(o.sizes, w.Size())
			o.errs = append(o.errs, w.Commit(ctx) != nil, w.Commit(ctx) != nil)
			_, err := w.Write([]byte("!"))
			o.errs = append(o.errs, err != nil, w.Close() != nil, w.Close() != nil)
		}},
		{"close, then append", func(d storagedriver.StorageDriver, o *outcome) {
			w, _ := d.Writer(ctx, "/uploads/x/data", false)
			_, _ = w.Write([]byte("part one,"))
			o.errs = append(o.errs, w.Close() != nil)
			w, _ = d.Writer(ctx, "/uploads/x/data", true)
			o.sizes = append(o.sizes, w.Size())
			_, _ = w.Write([]byte(" part two"))
			o.sizes = append(o.sizes, w.Size())
			o.errs = append(o.errs, w.Commit(ctx) != nil, w.Close() != nil)
		}},
		{"rewrite without append", func(d storagedriver.StorageDriver, o *outcome) {
			_ = d.PutContent(ctx, "/uploads/x/data", []byte("a longer old content"))
			w, _ := d.Writer(ctx, "/uploads/x/data", false)
			o.sizes = append(o.sizes, w.Size())
			_, _ = w.Write([]byte("new"))
			o.errs = append(o.errs, w.Commit(ctx) != nil, w.Close() != nil)
		}},
		{"cancel", func(d storagedriver.StorageDriver, o *outcome) {
			w, _ := d.Writer(ctx, "/uploads/x/data", false)
			_, _ = w.Write([]byte("gone"))
			o.errs = append(o.errs, w.Cancel(ctx) != nil, w.Commit(ctx) != nil, w.Close() != nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			want := run(filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}), tc.steps)
			root = t.TempDir()
			got := run(store.Unsynced(filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}), root), tc.steps)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("unsynced: %+v\ndistribution's filesystem driver: %+v", got, want)
			}
			if !want.exists && tc.name != "cancel" {
				t.Errorf("nothing written: %+v", want)
			}
		})
	}
}
