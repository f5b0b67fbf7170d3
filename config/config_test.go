package config_test

import (
	"os"
	"path/filepath"
	"slices"
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

// TestEnvOverridesEveryKey sets keys the file does not have, lists and maps included, from
// the environment.
func TestEnvOverridesEveryKey(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(p, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p, []string{
		"PORTCULLIS_PUSH_HTPASSWD=secrets/htpasswd",
		`PORTCULLIS_PUSH_USERS=[{name: ci, images: ["docker.io/org/**", "ghcr.io/org/**"]}, {name: bot, images: [docker.io/bot/*]}]`,
		"PORTCULLIS_PUSH_PASSTHROUGH_IMAGES=docker.io/org/scratch/**, docker.io/org/tmp/**",
		"PORTCULLIS_PUSH_LOGINTHROTTLE_BURST=3",
		"PORTCULLIS_STORAGE_DRIVER=filesystem",
		"PORTCULLIS_STORAGE_PARAMS_ROOTDIRECTORY=/data/portcullis",
		"PORTCULLIS_STORAGE_PARAMS_MAXTHREADS=50",
		"PORTCULLIS_KEYS_TIMEOUT=5s",
		"PORTCULLIS_KEYS_ALLOWKMSPLUGINS=true",
		"PORTCULLIS_UPSTREAMS=- name: ghcr.io\n  url: https://ghcr.io\n  allowedHosts: [pkg-containers.githubusercontent.com]\n  auth: {username: u, passwordFile: ghcr.pw}\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Push.Htpasswd != filepath.Join(dir, "secrets/htpasswd") {
		t.Errorf("push.htpasswd = %q, want it relative to the configuration file", c.Push.Htpasswd)
	}
	if len(c.Push.Users) != 2 || c.Push.Users[0].Name != "ci" || len(c.Push.Users[0].Images) != 2 || c.Push.Users[1].Images[0] != "docker.io/bot/*" {
		t.Errorf("push.users = %+v", c.Push.Users)
	}
	if got := c.Push.PassThrough.Images; len(got) != 2 || got[1] != "docker.io/org/tmp/**" {
		t.Errorf("push.passThrough.images = %q", got)
	}
	if c.Push.LoginThrottle.Burst != 3 {
		t.Errorf("push.loginThrottle.burst = %d", c.Push.LoginThrottle.Burst)
	}
	if c.Storage.Driver != "filesystem" || c.Storage.Params["rootdirectory"] != "/data/portcullis" || c.Storage.Params["maxthreads"] != "50" {
		t.Errorf("storage = %+v", c.Storage)
	}
	if c.Keys.Timeout != 5*time.Second || !c.Keys.AllowKMSPlugins {
		t.Errorf("keys = %+v", c.Keys)
	}
	if len(c.Upstreams) != 1 || c.Upstreams[0].Name != "ghcr.io" || len(c.Upstreams[0].AllowedHosts) != 1 ||
		c.Upstreams[0].Auth == nil || c.Upstreams[0].Auth.PasswordFile != filepath.Join(dir, "ghcr.pw") {
		t.Errorf("upstreams = %+v (auth %+v)", c.Upstreams, c.Upstreams[0].Auth)
	}
}

// TestRelativePaths: every file the configuration names is relative to its directory.
func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "portcullis.yaml")
	yml := strings.Replace(good, "storage:\n  driver: inmemory\n", "storage:\n  driver: filesystem\n  params: {rootdirectory: data}\n", 1) +
		"tls: {cert: tls/crt.pem, key: /abs/key.pem}\n" +
		"push: {htpasswd: htpasswd}\n" +
		"trustRoots: [{name: corp, trustedRootFile: roots/trusted_root.json}, {name: tuf, tuf: {root: roots/root.json, cacheDir: tufcache}}]\n" +
		"policies:\n  - name: p\n    images: [\"docker.io/**\"]\n    authorities:\n      - {name: k, key: {path: keys/cosign.pub}}\n"
	yml = strings.Replace(yml, "auth: {username: u, password: p}", "auth: {username: u, passwordFile: ../up.pw}", 1)
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ key, got, want string }{
		{"tls.cert", c.TLS.Cert, filepath.Join(dir, "tls/crt.pem")},
		{"tls.key", c.TLS.Key, "/abs/key.pem"},
		{"storage.params.rootdirectory", c.Storage.Params["rootdirectory"].(string), filepath.Join(dir, "data")},
		{"push.htpasswd", c.Push.Htpasswd, filepath.Join(dir, "htpasswd")},
		{"auth.passwordFile", c.Upstreams[1].Auth.PasswordFile, filepath.Join(filepath.Dir(dir), "up.pw")},
		{"key.path", c.Policies[0].Authorities[0].Key.Path, filepath.Join(dir, "keys/cosign.pub")},
		{"trustRoots[0].trustedRootFile", c.TrustRoots[0].TrustedRootFile, filepath.Join(dir, "roots/trusted_root.json")},
		{"trustRoots[1].tuf.root", c.TrustRoots[1].TUF.Root, filepath.Join(dir, "roots/root.json")},
		{"trustRoots[1].tuf.cacheDir", c.TrustRoots[1].TUF.CacheDir, filepath.Join(dir, "tufcache")},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.key, tc.got, tc.want)
		}
	}
	want := []string{"/abs/key.pem", filepath.Join(filepath.Dir(dir), "up.pw"), filepath.Join(dir, "htpasswd"), filepath.Join(dir, "keys/cosign.pub"),
		filepath.Join(dir, "tls/crt.pem"), filepath.Join(dir, "roots/trusted_root.json"), filepath.Join(dir, "roots/root.json")}
	slices.Sort(want)
	if got := c.Files(); !slices.Equal(got, want) {
		t.Errorf("Files() = %q, want %q", got, want)
	}
}

func TestListenValidated(t *testing.T) {
	for _, tc := range []struct {
		listen string
		ok     bool
	}{
		{":5000", true}, {"127.0.0.1:5000", true}, {"[::1]:5000", true}, {"localhost:0", true}, {"mirror.internal:443", true},
		{"5000", false}, {":http", false}, {":70000", false}, {"127.0.0.1", false}, {"a b:5000", false}, {"", false}, {":-1", false},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			_, err := config.Load(write(t, good), []string{"PORTCULLIS_LISTEN=" + tc.listen})
			if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), "listen")) {
				t.Errorf("listen %q: error %v, want ok=%v", tc.listen, err, tc.ok)
			}
		})
	}
}

// TestDataKeysKeepTheirCase: keys of the schema match in any case, but the keys of open
// maps are data: cosign annotations and storage parameters are case-sensitive.
func TestDataKeysKeepTheirCase(t *testing.T) {
	yml := strings.Replace(good, "cache:\n  tagTTL: 1m\n", "CACHE:\n  TagTTL: 1m\n", 1) +
		"policies:\n  - name: p\n    images: [\"docker.io/**\"]\n    authorities:\n      - {name: k, key: {env: K}, annotations: {Team: Blue, team: red}}\n"
	c, err := config.Load(write(t, yml), []string{"PORTCULLIS_CACHE_TAGTTL=2m"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Policies[0].Authorities[0].Annotations; got["Team"] != "Blue" || got["team"] != "red" || len(got) != 2 {
		t.Errorf("annotations = %v, want Team: Blue and team: red", got)
	}
	if c.Cache.TagTTL != 2*time.Minute {
		t.Errorf("cache.tagTTL = %s: the environment must override the file's CACHE.TagTTL", c.Cache.TagTTL)
	}
}

// TestDefaultsAreWhatLoadGives checks that a configuration built in code on config.Defaults
// (as the demo builds one) has every default serve would give it: the same as Load of a file
// naming only the upstream, and valid.
func TestDefaultsAreWhatLoadGives(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(path, []byte("upstreams:\n  - {name: docker.io, url: https://registry-1.docker.io, default: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	built, err := config.Defaults()
	if err != nil {
		t.Fatal(err)
	}
	built.Upstreams = loaded.Upstreams
	built.Storage.Params = loaded.Storage.Params
	if err := built.Validate(); err != nil {
		t.Fatalf("defaults with one upstream do not validate: %v", err)
	}
	if built.Server != loaded.Server || built.Cache.MaxStale != loaded.Cache.MaxStale || built.Cache.TTL != loaded.Cache.TTL || built.Keys != loaded.Keys {
		t.Errorf("Defaults differs from Load:\n%+v %+v\n%+v %+v", built.Server, built.Cache, loaded.Server, loaded.Cache)
	}
}
