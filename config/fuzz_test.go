package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/portcullis/portcullis/config"
)

// FuzzLoad loads arbitrary bytes as the configuration file. Invariants: Load never panics;
// whatever it accepts is valid (Validate passes), has an upstream and a listen address, and
// loads the same way twice.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		"upstreams:\n  - {name: docker.io, url: https://registry-1.docker.io, default: true}\n",
		"listen: 127.0.0.1:5000\nlog: {format: text, level: debug}\nstorage: {driver: inmemory}\nupstreams:\n  - name: registry.local:5000\n    url: http://127.0.0.1:5000\n    insecure: true\n    retries: 0\n    timeout: 1s\ncache: {size: 10, ttl: 1m, negativeTTL: 1s, tagTTL: 5s}\ndefaultPolicy: allow\n",
		"upstreams:\n  - {name: ghcr.io, url: https://ghcr.io}\npolicies:\n  - name: p\n    images: [\"ghcr.io/**\"]\n    mode: warn\n    require: all\n    authorities:\n      - name: k\n        key: {env: KEY}\n",
		"upstreams: [{name: a.io, url: 'https://a.io', auth: {username: u, password: p}}]\ncache: {ttl: -1s}\n",
		"unknown: 1\n",
		"upstreams: {name: x}\n",
		"&a [*a]",
		"listen: [1, 2]\n",
		"cache: {size: 99999999999999999999}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, yml []byte) {
		p := filepath.Join(t.TempDir(), "portcullis.yaml")
		if err := os.WriteFile(p, yml, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(p, nil)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load accepted an invalid configuration: %v\n%s", err, yml)
		}
		if c.Listen == "" || len(c.Upstreams) == 0 {
			t.Fatalf("Load accepted a configuration without listen address or upstream:\n%s", yml)
		}
		again, err := config.Load(p, nil)
		if err != nil || !reflect.DeepEqual(c, again) {
			t.Fatalf("loading the same file twice differs (%v):\n%s", err, yml)
		}
	})
}
