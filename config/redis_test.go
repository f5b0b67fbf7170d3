package config_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/config"
)

func TestCacheRedis(t *testing.T) {
	t.Run("file and environment", func(t *testing.T) {
		p := write(t, good+"  redis: {addr: 127.0.0.1:6379, passwordFile: secrets/redis.pw, tls: {enabled: true, caFile: ca.pem}}\n")
		c, err := config.Load(p, []string{"PORTCULLIS_CACHE_REDIS_DB=2", "PORTCULLIS_CACHE_REDIS_TIMEOUT=250ms",
			"PORTCULLIS_CACHE_REDIS_KEYPREFIX=fleet-a:", "PORTCULLIS_CACHE_REDIS_USERNAME=portcullis"})
		if err != nil {
			t.Fatal(err)
		}
		r, dir := c.Cache.Redis, filepath.Dir(p)
		if r == nil || r.Addr != "127.0.0.1:6379" || r.DB != 2 || r.Timeout != 250*time.Millisecond || r.KeyPrefix != "fleet-a:" || r.Username != "portcullis" {
			t.Fatalf("cache.redis = %+v", r)
		}
		if r.PasswordFile != filepath.Join(dir, "secrets/redis.pw") || r.TLS.CAFile != filepath.Join(dir, "ca.pem") {
			t.Errorf("passwordFile %q, tls.caFile %q: want them relative to the configuration file", r.PasswordFile, r.TLS.CAFile)
		}
		if files := strings.Join(c.Files(), " "); !strings.Contains(files, "redis.pw") || !strings.Contains(files, "ca.pem") {
			t.Errorf("Files() = %s, want the password and CA files (a change reloads)", files)
		}
	})
	t.Run("sentinel from the environment", func(t *testing.T) {
		c, err := config.Load(write(t, good), []string{"PORTCULLIS_CACHE_REDIS_SENTINEL_MASTERNAME=mymaster",
			"PORTCULLIS_CACHE_REDIS_SENTINEL_ADDRS=10.0.0.1:26379, 10.0.0.2:26379"})
		if err != nil {
			t.Fatal(err)
		}
		if s := c.Cache.Redis.Sentinel; s == nil || s.MasterName != "mymaster" || len(s.Addrs) != 2 || s.Addrs[1] != "10.0.0.2:26379" {
			t.Fatalf("cache.redis.sentinel = %+v", s)
		}
	})
	t.Run("absent", func(t *testing.T) {
		c, err := config.Load(write(t, good), nil)
		if err != nil || c.Cache.Redis != nil {
			t.Fatalf("cache.redis = %+v, %v; want none", c.Cache.Redis, err)
		}
	})
	for _, tc := range []struct{ name, redis, want string }{
		{"no server", "{db: 1}", "cache.redis.addr: set exactly one of addr, sentinel and cluster (0 are set)"},
		{"two modes", "{addr: 127.0.0.1:6379, cluster: {addrs: [127.0.0.1:7000]}}", "cache.redis.addr: set exactly one"},
		{"bad addr", "{addr: redis}", `cache.redis.addr: "redis" is not host:port`},
		{"bad port", "{addr: 'redis:0'}", "cache.redis.addr"},
		{"sentinel without master", "{sentinel: {addrs: [127.0.0.1:26379]}}", "cache.redis.sentinel.masterName: must be set"},
		{"sentinel without addrs", "{sentinel: {masterName: m}}", "cache.redis.sentinel.addrs: at least one"},
		{"cluster bad addr", "{cluster: {addrs: [127.0.0.1:7000, x]}}", "cache.redis.cluster.addrs[1]"},
		{"cluster db", "{cluster: {addrs: [127.0.0.1:7000]}, db: 1}", "cache.redis.db: Redis Cluster has only database 0"},
		{"negative db", "{addr: 127.0.0.1:6379, db: -1}", "cache.redis.db"},
		{"negative timeout", "{addr: 127.0.0.1:6379, timeout: -1s}", "cache.redis.timeout"},
		{"hash tag in prefix", "{addr: 127.0.0.1:6379, keyPrefix: 'a{b}:'}", "cache.redis.keyPrefix"},
		{"tls options without tls", "{addr: 127.0.0.1:6379, tls: {caFile: ca.pem}}", "cache.redis.tls: caFile, serverName and insecureSkipVerify need tls.enabled"},
		{"unknown key", "{addr: 127.0.0.1:6379, password: hunter2}", "password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(write(t, good+"  redis: "+tc.redis+"\n"), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load() error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
