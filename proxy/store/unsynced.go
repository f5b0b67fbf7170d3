package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// Unsynced returns d, distribution's filesystem driver rooted at root, with a PutContent
// that writes small objects (links, grants, used markers, manifests, records) to a
// temporary file under /uploads and renames it into place without the two fsyncs (file and
// directory) the driver makes for each. Those fsyncs give a registry durability, which a
// cache does not need: after a crash, every object the Store reads is checked again (a
// manifest against its digest, a record by decoding it, a blob by hashing it once in the new
// process) and one that is missing, empty or cut is fetched again; a lost grant or link only
// makes the proxy ask the upstream and the policy again. What they cost is measured by
// BenchmarkPutContent: each cold manifest writes several such objects.
//
// Everything else, blobs written through Writer included, goes to d unchanged.
func Unsynced(d storagedriver.StorageDriver, root string) storagedriver.StorageDriver {
	return unsynced{StorageDriver: d, root: root}
}

type unsynced struct {
	storagedriver.StorageDriver
	root string
}

// fullPath maps a driver path to the file, as distribution's filesystem driver does.
func (u unsynced) fullPath(p string) string {
	return filepath.Join(u.root, filepath.FromSlash(path.Clean("/"+p)))
}

func (u unsynced) PutContent(ctx context.Context, p string, content []byte) error {
	dst := u.fullPath(p)
	tmpDir := u.fullPath("/uploads")
	var b [12]byte
	_, _ = rand.Read(b[:])
	tmp := filepath.Join(tmpDir, "put-"+hex.EncodeToString(b[:]))
	if err := os.MkdirAll(tmpDir, 0o777); err != nil {
		return err
	}
	err := os.WriteFile(tmp, content, 0o666)
	if err == nil {
		if err = os.MkdirAll(filepath.Dir(dst), 0o777); err == nil {
			err = os.Rename(tmp, dst)
		}
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("put %s: %w", p, err)
	}
	return nil
}
