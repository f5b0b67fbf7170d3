//go:build no_s3

package app

import (
	"context"
	"errors"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// errNoS3 is why a binary built with -tags no_s3 refuses an s3 store.
var errNoS3 = errors.New("storage.driver: s3 is not in this build (built with -tags no_s3); use filesystem or inmemory, or a build without that tag")

// newS3Driver refuses: this build links no s3 driver.
func newS3Driver(context.Context, map[string]any) (storagedriver.StorageDriver, error) {
	return nil, errNoS3
}
