package app

import (
	"fmt"
	"reflect"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/cache/redistier"
	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
)

// decisionCache is a generation's decision cache: a cache.Memory, or a redistier.Tier in
// front of one when cache.redis is configured.
type decisionCache interface {
	policy.DecisionCache
	proxy.Forgetter
	Len() int
}

// sharedTier is the Redis tier of decisions shared by replicas.
type sharedTier = redistier.Tier[policy.Decision]

var (
	_ decisionCache = (*cache.Memory[policy.Decision])(nil)
	_ decisionCache = (*sharedTier)(nil)
)

// buildDecisions gives g the decision cache of its cache settings: prev's when they (and
// the content of cache.redis.passwordFile) did not change, so that decisions and the Redis
// connections are kept, else a new cache.Memory and, with cache.redis, a Redis tier in
// front of it.
func (a *App) buildDecisions(g, prev *generation) error {
	c := g.cfg.Cache
	if c.Redis != nil {
		pw, err := c.Redis.Password()
		if err != nil {
			return fmt.Errorf("cache.redis.%w", err)
		}
		g.redisPassword = pw
	}
	if prev != nil && reflect.DeepEqual(prev.cfg.Cache, c) && prev.redisPassword == g.redisPassword {
		g.decisions, g.redis = prev.decisions, prev.redis
		return nil
	}
	mem, err := cache.NewMemory[policy.Decision](cache.WithSize(c.Size), cache.WithTTL(c.TTL), cache.WithNegativeTTL(c.NegativeTTL))
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	g.decisions = mem
	if c.Redis == nil {
		return nil
	}
	client, err := redistier.NewClient(c.Redis, g.redisPassword)
	if err != nil {
		return fmt.Errorf("cache.redis.%w", err)
	}
	g.redis, err = redistier.New(mem, client, redistier.Options{
		KeyPrefix: c.Redis.Prefix(), Timeout: c.Redis.CallTimeout(), TTL: c.TTL, NegativeTTL: c.NegativeTTL, Logger: a.log,
	})
	if err != nil {
		_ = client.Close()
		return fmt.Errorf("cache.redis: %w", err)
	}
	g.decisions = g.redis
	return nil
}

// redisCounts returns the Redis tier's failure counters since New, across reloads.
func (a *App) redisCounts() telemetry.RedisCounts {
	a.mu.Lock()
	c := a.pastRedis
	a.mu.Unlock()
	if t := a.cur.Load().redis; t != nil {
		s := t.Stats()
		c.Errors, c.Invalid = c.Errors+s.Errors, c.Invalid+s.Corrupt
	}
	return c
}
