package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/config"
)

const good = `
listen: 127.0.0.1:5000
storage:
  driver: inmemory
upstreams:
  - name: docker.io
    url: https://registry-1.docker.io
    default: true
  - name: registry.local:5000
    url: http://127.0.0.1:5000
    insecure: true
    auth: {username: u, password: p}
cache:
  tagTTL: 1m
`

func write(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	c, err := config.Load(write(t, good), []string{"PORTCULLIS_LISTEN=:6000", "PORTCULLIS_LOG_FORMAT=text", "HOME=/root"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":6000" || c.Log.Format != "text" || c.Log.Level != "info" {
		t.Errorf("env overrides: listen %q format %q level %q", c.Listen, c.Log.Format, c.Log.Level)
	}
	if len(c.Upstreams) != 2 || c.Upstreams[1].Auth == nil || c.Upstreams[1].Auth.Password != "p" || !c.Upstreams[0].Default {
		t.Errorf("upstreams: %+v", c.Upstreams)
	}
	if c.Cache.TagTTL != time.Minute {
		t.Errorf("tagTTL = %v", c.Cache.TagTTL)
	}
}

func TestLoadRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		env        []string
		want       string
	}{
		{"unknown top-level key", good + "bogus: 1\n", nil, "bogus"},
		{"unknown upstream key", strings.Replace(good, "default: true", "default: true\n    colour: red", 1), nil, "colour"},
		{"no upstreams", "listen: :5000\n", nil, "upstreams: at least one"},
		{"plain http without insecure", strings.Replace(good, "    insecure: true\n", "", 1), nil, "upstreams[1].url"},
		{"two defaults", strings.Replace(good, "insecure: true", "insecure: true\n    default: true", 1), nil, "more than one upstream is marked default"},
		{"bad duration", strings.Replace(good, "tagTTL: 1m", "tagTTL: soon", 1), nil, "tagTTL"},
		{"bad driver", strings.Replace(good, "driver: inmemory", "driver: s4", 1), nil, "storage.driver"},
		{"half tls", good + "tls: {cert: a.pem}\n", nil, "tls: cert and key"},
		{"unknown env key", good, []string{"PORTCULLIS_NOPE=1"}, "PORTCULLIS_NOPE"},
		{"not yaml", "upstreams: [", nil, "config"},
		{"bad log level", good, []string{"PORTCULLIS_LOG_LEVEL=loud"}, "log.level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(write(t, tc.yaml), tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load() error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
