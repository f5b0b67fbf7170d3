//go:build !no_s3

package app

import (
	"context"
	"fmt"
	"strings"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"

	"github.com/portcullis/portcullis/internal/keys"
)

// newS3Driver builds distribution's s3 driver from its parameters, with
// params.secretkeyfile read into secretkey (as auth.passwordFile is); it contacts the bucket
// only when used (readiness lists it). Built with -tags no_s3, the binary has no s3 driver
// (see s3_disabled.go): it idles about 6 MiB smaller without the AWS SDK.
func newS3Driver(ctx context.Context, p map[string]any) (storagedriver.StorageDriver, error) {
	params := map[string]any{}
	for k, v := range p {
		params[k] = v
	}
	if f, ok := params["secretkeyfile"].(string); ok && f != "" {
		b, err := keys.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("storage.params.secretkeyfile: %w", err)
		}
		params["secretkey"] = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	}
	delete(params, "secretkeyfile")
	d, err := s3.FromParameters(ctx, params)
	if err != nil {
		return nil, fmt.Errorf("storage.params: %w", err)
	}
	return d, nil
}
