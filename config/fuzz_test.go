package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis/portcullis/config"
)

// FuzzLoad loads arbitrary bytes as the configuration file. Load must never panic. What it
// accepts must survive being written back: the Config, encoded by its own mapstructure
// tags as YAML and loaded again from another directory, is the same Config — so decoding
// loses nothing (durations, lists, the case of map keys), defaults and relative paths
// resolve once (paths are absolute after the first Load), and nothing Load accepts
// depends on how the file spelled it. Every file the Config names is absolute.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		"upstreams:\n  - {name: docker.io, url: https://registry-1.docker.io, default: true}\n",
		"listen: 127.0.0.1:5000\nlog: {format: text, level: debug}\nstorage: {driver: inmemory}\nupstreams:\n  - name: registry.local:5000\n    url: http://127.0.0.1:5000\n    insecure: true\n    retries: 0\n    timeout: 1s\ncache: {size: 10, ttl: 1m, negativeTTL: 1s, tagTTL: 5s}\ndefaultPolicy: allow\n",
		"upstreams:\n  - {name: ghcr.io, url: https://ghcr.io}\npolicies:\n  - name: p\n    images: [\"ghcr.io/**\"]\n    mode: warn\n    require: all\n    authorities:\n      - name: k\n        key: {path: keys/k.pub}\n        annotations: {Team: Blue}\n",
		"upstreams: [{name: a.io, url: 'https://a.io', auth: {username: u, passwordFile: pw}}]\ntls: {cert: c.pem, key: k.pem}\npush: {htpasswd: ht, users: [{name: ci, images: ['a.io/**']}], loginThrottle: {burst: 2, every: 1m}}\n",
		"upstreams: [{name: a.io, url: 'https://a.io'}]\nstorage: {driver: filesystem, params: {rootdirectory: data, MaxThreads: 100}}\nkeys: {timeout: 1s}\n",
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
		for _, file := range c.Files() {
			if !filepath.IsAbs(file) {
				t.Fatalf("Files() has the relative path %q:\n%s", file, yml)
			}
		}
		out, err := yaml.Marshal(encode(reflect.ValueOf(c)))
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		p2 := filepath.Join(t.TempDir(), "again.yaml")
		if err := os.WriteFile(p2, out, 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := config.Load(p2, nil)
		if err != nil {
			t.Fatalf("Load accepted\n%s\nbut not its own encoding\n%s\n%v", yml, out, err)
		}
		if !reflect.DeepEqual(c, again) {
			t.Fatalf("Load of\n%s\ngave %+v\nits encoding\n%s\nloads as %+v", yml, c, out, again)
		}
	})
}

// encode writes v as the configuration file spells it: structs by their mapstructure tags,
// durations as text, nil pointers, slices and maps left out.
func encode(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return encode(v.Elem())
	case reflect.Struct:
		m := map[string]any{}
		for i := range v.NumField() {
			tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("mapstructure"), ",")
			if tag == "" || tag == "-" || !v.Type().Field(i).IsExported() {
				continue
			}
			if e := encode(v.Field(i)); e != nil {
				m[tag] = e
			}
		}
		return m
	case reflect.Slice:
		if v.IsNil() {
			return nil
		}
		out := []any{}
		for i := range v.Len() {
			out = append(out, encode(v.Index(i)))
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return nil
		}
		m := map[string]any{}
		for _, k := range v.MapKeys() {
			m[k.String()] = encode(v.MapIndex(k))
		}
		return m
	}
	if d, ok := v.Interface().(time.Duration); ok {
		return d.String()
	}
	return v.Interface()
}
