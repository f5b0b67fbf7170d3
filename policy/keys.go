package policy

import (
	"context"
	"fmt"

	"github.com/portcullis/portcullis/internal/keys"
)

// loadKey loads the public key k describes through package keys, the one key loader; at is
// the key's config path for errors, e.g. "policies[0].authorities[1].key". k has passed
// validation: exactly one source is set.
func (o *compileOptions) loadKey(ctx context.Context, at string, k KeyConfig) (*keys.PublicKey, error) {
	var (
		field string
		key   *keys.PublicKey
		err   error
	)
	switch {
	case k.Path != "":
		field = at + ".path"
		var b []byte
		if b, err = keys.ReadFile(k.Path); err == nil {
			key, err = keys.ParsePublicKey(b)
		}
	case k.Data != "":
		field = at + ".data"
		key, err = keys.ParsePublicKey([]byte(k.Data))
	case k.Env != "":
		field = at + ".env"
		if o.lookupEnv == nil {
			return nil, fmt.Errorf("%s: cannot read environment variable %s: no environment lookup was given (policy.WithLookupEnv)", field, k.Env)
		}
		v, ok := o.lookupEnv(k.Env)
		if !ok || v == "" {
			return nil, fmt.Errorf("%s: environment variable %s is not set", field, k.Env)
		}
		key, err = keys.ParsePublicKey([]byte(v))
	case k.KMS != "":
		field = at + ".kms"
		key, err = keys.KMSPublicKey(ctx, k.KMS)
	default:
		return nil, fmt.Errorf("%s: no key source", at)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return key, nil
}
