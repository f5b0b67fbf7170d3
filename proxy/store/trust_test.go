package store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/verify/oci"
)

// isFile reports whether a blob reader is a file underneath, as net/http's sendfile finds
// one (through syscall.Conn): a read that hashes nothing.
func isFile(rc io.Reader) bool {
	sc, ok := rc.(syscall.Conn)
	if !ok {
		return false
	}
	_, err := sc.SyscallConn()
	return err == nil
}

// TestLocalBlobTrustedWhileUnchanged: on a filesystem store, a blob the Store wrote, or read
// whole and checked, is served as its file (sendfile, no hashing) while its size and
// modification time are those it had when checked; a file changed on disk since (another
// size, another modification time) is checked again, found corrupt, never passed on whole,
// and removed.
func TestLocalBlobTrustedWhileUnchanged(t *testing.T) {
	const size = 70 << 10
	for _, tc := range []struct {
		name   string
		modify func(t *testing.T, file string) // nil: left alone
		offset int64
	}{
		{"unmodified", nil, 0},
		{"unmodified, ranged read", nil, 100},
		{"one byte appended", func(t *testing.T, file string) { appendByte(t, file) }, 0},
		{"truncated", func(t *testing.T, file string) { truncate(t, file, size/2) }, 0},
		{"rewritten, same size, new modification time", func(t *testing.T, file string) { rewrite(t, file, size, time.Now().Add(time.Minute)) }, 0},
		{"rewritten, same size, new modification time, ranged read", func(t *testing.T, file string) { rewrite(t, file, size, time.Now().Add(time.Minute)) }, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			s := store.New(filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}))
			d := putBlob(t, s, 3, size)
			want := blobContent(3, size)
			var modified int64
			if tc.modify != nil {
				tc.modify(t, blobFile(root, d))
				fi, err := os.Stat(blobFile(root, d))
				if err != nil {
					t.Fatal(err)
				}
				modified = fi.Size()
			}
			rc, err := s.OpenBlob(context.Background(), d, tc.offset)
			if tc.modify == nil {
				if err != nil {
					t.Fatal(err)
				}
				file := isFile(rc)
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || !bytes.Equal(got, want[tc.offset:]) {
					t.Fatalf("read %d bytes, %v; want the %d stored", len(got), err, size-tc.offset)
				}
				if !file {
					t.Error("a blob this Store wrote, unmodified, is read through a wrapper (hashed, no sendfile); want its file")
				}
				return
			}
			var got []byte
			if err == nil {
				if isFile(rc) {
					t.Error("a blob modified on disk is read as its file, unchecked")
				}
				got, err = io.ReadAll(rc)
				rc.Close()
			}
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("read of a blob modified on disk: %d bytes, %v; want ErrCorrupt", len(got), err)
			}
			if int64(len(got)) >= modified-tc.offset {
				t.Fatalf("all %d bytes of the modified blob were passed on before the error", len(got))
			}
			if _, _, err := s.BlobSize(context.Background(), "up.test", "a/app", d); !errors.Is(err, oci.ErrNotFound) {
				t.Errorf("the modified blob is still stored: %v", err)
			}
		})
	}
}

// TestLocalBlobCheckedOnceAfterRestart: a Store that did not write a blob (a restart) checks
// it on its first read, then trusts the file it checked. The check is what a file's size and
// modification time tell: content changed in place with both restored afterwards is passed
// on unchecked, which shows that a trusted read hashes nothing (an object store, where other
// replicas write, is checked on every read instead).
func TestLocalBlobCheckedOnceAfterRestart(t *testing.T) {
	const size = 70 << 10
	root := t.TempDir()
	drv := func() *store.Store {
		return store.New(filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}))
	}
	d := putBlob(t, drv(), 4, size)
	want := blobContent(4, size)
	s := drv() // restarted
	for i, wantFile := range []bool{false, true} {
		rc, err := s.OpenBlob(context.Background(), d, 0)
		if err != nil {
			t.Fatal(err)
		}
		file := isFile(rc)
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read %d: %d bytes, %v", i, len(got), err)
		}
		if file != wantFile {
			t.Fatalf("read %d after a restart read as its file: %v, want %v", i, file, wantFile)
		}
	}
	file := blobFile(root, d)
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	rewrite(t, file, size, fi.ModTime())
	got, err := readAll(t, s, d, 0)
	if err != nil || bytes.Equal(got, want) || len(got) != size {
		t.Fatalf("content changed in place, size and time restored: %d bytes, %v; want the changed bytes, unchecked", len(got), err)
	}
}

// TestObjectStoreBlobCheckedOnEveryRead: on a store that is not local files, every read from
// offset 0 is checked, even of a blob this Store wrote: content changed behind it is found at
// once.
func TestObjectStoreBlobCheckedOnEveryRead(t *testing.T) {
	drv := inmemory.New()
	s := store.New(drv)
	const size = 70 << 10
	d := putBlob(t, s, 5, size)
	rc, err := s.OpenBlob(context.Background(), d, 0)
	if err != nil {
		t.Fatal(err)
	}
	if isFile(rc) {
		t.Fatal("an inmemory blob read as a file")
	}
	rc.Close()
	e := d.Encoded()
	if err := drv.PutContent(context.Background(), "/blobs/sha256/"+e[:2]+"/"+e+"/data", bytes.Repeat([]byte{'z'}, size)); err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, s, d, 0); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("read of a blob changed behind the Store that wrote it: %d bytes, %v; want ErrCorrupt", len(got), err)
	}
}

func blobFile(root string, d digest.Digest) string {
	e := d.Encoded()
	return filepath.Join(root, "blobs", "sha256", e[:2], e, "data")
}

func appendByte(t *testing.T, file string) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
}

func truncate(t *testing.T, file string, n int64) {
	t.Helper()
	if err := os.Truncate(file, n); err != nil {
		t.Fatal(err)
	}
}

// rewrite replaces file's content in place with n other bytes and sets its modification
// time to mod.
func rewrite(t *testing.T, file string, n int, mod time.Time) {
	t.Helper()
	if err := os.WriteFile(file, bytes.Repeat([]byte{'z'}, n), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(file, mod, mod); err != nil {
		t.Fatal(err)
	}
}
