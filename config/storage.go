package config

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// S3Params are the storage.params the s3 driver takes: distribution's s3-aws parameters
// (github.com/distribution/distribution/v3/registry/storage/driver/s3-aws, FromParameters),
// spelled as distribution spells them, less those portcullis refuses (see refusedS3Params),
// plus secretkeyfile.
var S3Params = []string{
	"accesskey", "secretkey", "secretkeyfile", "region", "regionendpoint", "bucket", "rootdirectory",
	"secure", "skipverify", "forcepathstyle", "v4auth", "encrypt", "keyid", "chunksize",
	"multipartcopychunksize", "multipartcopymaxconcurrency", "multipartcopythresholdsize",
	"storageclass", "objectacl", "useragent", "usedualstack", "accelerate", "usefipsendpoint",
}

// refusedS3Params are distribution's s3 parameters that portcullis does not take, and why.
var refusedS3Params = map[string]string{
	"loglevel": "the AWS SDK's log goes to standard output beside portcullis's log, " +
		"and at its debug levels holds signed requests and bodies",
	"redirectendpoint": "portcullis never redirects a client to the store: every blob it serves is checked against its digest on the way",
}

// notBuiltDrivers are distribution's storage drivers that portcullis leaves out.
var notBuiltDrivers = map[string]string{
	"gcs":   "Google Cloud Storage",
	"azure": "Azure Blob Storage",
}

// normalize makes the storage params of drivers other than filesystem lower case, as
// distribution documents them, so that secretkeyFile and PORTCULLIS_STORAGE_PARAMS_* name
// the same key.
func (s *Storage) normalize() {
	if s.Driver != "s3" || s.Params == nil {
		return
	}
	params := make(map[string]any, len(s.Params))
	for k, v := range s.Params {
		params[strings.ToLower(k)] = v
	}
	s.Params = params
}

// validate checks the driver and its params; errors name the key.
func (s Storage) validate() []error {
	switch s.Driver {
	case "filesystem", "inmemory":
		return nil
	case "s3":
		return s.validateS3()
	}
	if name, ok := notBuiltDrivers[s.Driver]; ok {
		return []error{fmt.Errorf("storage.driver: %q (%s) is not built into portcullis: its client libraries would "+
			"double the binary; use s3 (AWS S3 or any S3-compatible store, e.g. GCS's XML API with HMAC keys, MinIO, Ceph RGW) or filesystem", s.Driver, name)}
	}
	return []error{fmt.Errorf("storage.driver: %q is not filesystem, s3 or inmemory", s.Driver)}
}

func (s Storage) validateS3() []error {
	var errs []error
	p := s.Params
	for _, k := range slices.Sorted(maps.Keys(p)) {
		if why, ok := refusedS3Params[k]; ok {
			errs = append(errs, fmt.Errorf("storage.params.%s: not taken by portcullis: %s", k, why))
		} else if !slices.Contains(S3Params, k) {
			errs = append(errs, fmt.Errorf("storage.params.%s: not an s3 parameter (known: %s)", k, strings.Join(S3Params, ", ")))
		}
	}
	str := func(k string) string {
		if v, ok := p[k]; ok && v != nil {
			return fmt.Sprint(v)
		}
		return ""
	}
	if str("bucket") == "" {
		errs = append(errs, errors.New("storage.params.bucket: required for the s3 driver"))
	}
	if str("region") == "" && str("regionendpoint") == "" {
		errs = append(errs, errors.New("storage.params.region: required for the s3 driver, unless regionendpoint names an S3-compatible server"))
	}
	if str("secretkey") != "" && str("secretkeyfile") != "" {
		errs = append(errs, errors.New("storage.params.secretkeyfile: set secretkey or secretkeyfile, not both"))
	}
	hasSecret := str("secretkey") != "" || str("secretkeyfile") != ""
	if (str("accesskey") != "") != hasSecret {
		errs = append(errs, errors.New("storage.params.accesskey: accesskey and secretkey (or secretkeyfile) go together; "+
			"leave both out to use the AWS credential chain (AWS_* environment, shared files, instance or pod roles)"))
	}
	if root := str("rootdirectory"); root != "" && !strings.HasPrefix(root, "/") {
		errs = append(errs, fmt.Errorf("storage.params.rootdirectory: %q must start with / (a key prefix in the bucket)", root))
	}
	return errs
}
