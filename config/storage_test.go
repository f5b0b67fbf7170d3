package config_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/config"
)

// secret is a secret key that must never appear in an error.
const secret = "wJalrXUtnFEMI-never-shown"

func withStorage(storage string) string {
	return strings.Replace(good, "storage:\n  driver: inmemory\n", storage, 1)
}

func TestS3StorageValidated(t *testing.T) {
	for _, tc := range []struct {
		name    string
		storage string
		env     []string
		want    string // "" = valid
	}{
		{"aws region and bucket, credential chain", "storage: {driver: s3, params: {region: eu-west-1, bucket: b}}\n", nil, ""},
		{"s3-compatible endpoint", "storage: {driver: s3, params: {regionendpoint: 'http://127.0.0.1:9000', bucket: b, accesskey: a, secretkey: " + secret + ", secure: false, forcepathstyle: true, chunksize: 5242880, rootdirectory: /p}}\n", nil, ""},
		{"secretkeyFile in any case", "storage: {driver: s3, params: {region: us-east-1, bucket: b, accessKey: a, secretkeyFile: s.key}}\n", nil, ""},
		{"all from the environment", "", []string{"PORTCULLIS_STORAGE_DRIVER=s3", "PORTCULLIS_STORAGE_PARAMS_BUCKET=b",
			"PORTCULLIS_STORAGE_PARAMS_REGIONENDPOINT=http://127.0.0.1:9000", "PORTCULLIS_STORAGE_PARAMS_ACCESSKEY=a",
			"PORTCULLIS_STORAGE_PARAMS_SECRETKEY=" + secret, "PORTCULLIS_STORAGE_PARAMS_SECURE=false"}, ""},
		{"no bucket", "storage: {driver: s3, params: {region: us-east-1}}\n", nil, "storage.params.bucket: required"},
		{"no region nor endpoint", "storage: {driver: s3, params: {bucket: b}}\n", nil, "storage.params.region: required"},
		{"secretkey and secretkeyfile", "storage: {driver: s3, params: {region: r, bucket: b, accesskey: a, secretkey: " + secret + ", secretkeyfile: s.key}}\n", nil, "storage.params.secretkeyfile: set secretkey or secretkeyfile, not both"},
		{"accesskey alone", "storage: {driver: s3, params: {region: r, bucket: b, accesskey: a}}\n", nil, "storage.params.accesskey: accesskey and secretkey"},
		{"secretkey alone", "storage: {driver: s3, params: {region: r, bucket: b, secretkey: " + secret + "}}\n", nil, "storage.params.accesskey: accesskey and secretkey"},
		{"misspelt parameter", "storage: {driver: s3, params: {region: r, bukket: b}}\n", nil, "storage.params.bukket: not an s3 parameter"},
		{"loglevel", "storage: {driver: s3, params: {region: r, bucket: b, loglevel: debugwithsigning}}\n", nil, "storage.params.loglevel: not taken by portcullis"},
		{"redirectendpoint", "storage: {driver: s3, params: {region: r, bucket: b, redirectendpoint: 'https://cdn.example'}}\n", nil, "storage.params.redirectendpoint: not taken by portcullis"},
		{"relative rootdirectory", "storage: {driver: s3, params: {region: r, bucket: b, rootdirectory: data}}\n", nil, "storage.params.rootdirectory: \"data\" must start with /"},
		{"gcs", "storage: {driver: gcs, params: {bucket: b}}\n", nil, `storage.driver: "gcs" (Google Cloud Storage) is not built into portcullis`},
		{"azure", "storage: {driver: azure}\n", nil, `storage.driver: "azure" (Azure Blob Storage) is not built into portcullis`},
		{"unknown driver", "storage: {driver: swift}\n", nil, `storage.driver: "swift" is not filesystem, s3 or inmemory`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(write(t, withStorage(tc.storage)), tc.env)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Load() = %v, want it valid", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Load() error = %v, want it to mention %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), secret):
				t.Fatalf("the error shows the secret key: %v", err)
			}
		})
	}
}

// TestS3StorageParams: s3 parameter names are distribution's, whatever their case in the
// file; secretkeyfile is relative to the configuration, rootdirectory is a key prefix and is
// left alone (a filesystem root is made absolute).
func TestS3StorageParams(t *testing.T) {
	p := write(t, withStorage("storage: {driver: s3, params: {region: us-east-1, Bucket: b, accessKey: a, secretkeyFile: keys/s3.key, rootdirectory: /mirror}}\n"))
	c, err := config.Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"region": "us-east-1", "bucket": "b", "accesskey": "a",
		"secretkeyfile": filepath.Join(filepath.Dir(p), "keys", "s3.key"), "rootdirectory": "/mirror"}
	if len(c.Storage.Params) != len(want) {
		t.Fatalf("params = %v, want %v", c.Storage.Params, want)
	}
	for k, v := range want {
		if c.Storage.Params[k] != v {
			t.Errorf("params[%s] = %v, want %v", k, c.Storage.Params[k], v)
		}
	}
	fs := write(t, withStorage("storage: {driver: filesystem, params: {rootdirectory: data}}\n"))
	c, err = config.Load(fs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Storage.Params["rootdirectory"]; got != filepath.Join(filepath.Dir(fs), "data") {
		t.Errorf("filesystem rootdirectory = %v, want it relative to the configuration", got)
	}
}
