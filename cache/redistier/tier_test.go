package redistier_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/cache/redistier"
	"github.com/portcullis/portcullis/internal/testtool"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
)

var (
	_ policy.DecisionCache = (*redistier.Tier[policy.Decision])(nil)
	_ proxy.Forgetter      = (*redistier.Tier[policy.Decision])(nil)
)

type tier = redistier.Tier[policy.Decision]

// replica is one portcullis's decision cache: a Tier over its own Memory and client.
func replica(t *testing.T, addr string, o redistier.Options) *tier {
	t.Helper()
	return replicaAs(t, addr, "", "", o)
}

// replicaAs is replica with the client logged in as user with password pw.
func replicaAs(t *testing.T, addr, user, pw string, o redistier.Options) *tier {
	t.Helper()
	mem, err := cache.NewMemory[policy.Decision]()
	if err != nil {
		t.Fatal(err)
	}
	if o.Timeout == 0 {
		// Generous: these tests are about sharing, not about a loaded machine's first dial;
		// TestSlowRedisIsBounded and TestRedisDown test the bound.
		o.Timeout = time.Second
	}
	client, err := redistier.NewClient(&redistier.Config{Addr: addr, Timeout: o.Timeout, Username: user}, pw)
	if err != nil {
		t.Fatal(err)
	}
	if o.HealthCheck == 0 {
		o.HealthCheck = 200 * time.Millisecond
	}
	if o.Backoff == 0 {
		o.Backoff = 100 * time.Millisecond
	}
	tr, err := redistier.New(mem, client, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// waitSubscribed waits until every tier's invalidation subscription is up.
func waitSubscribed(t *testing.T, tiers ...*tier) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, tr := range tiers {
		for !tr.Subscribed() {
			if time.Now().After(deadline) {
				t.Fatal("the invalidation subscription did not come up within 5s")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// verifier is a fill that counts its runs and answers allowed or denied.
type verifier struct {
	runs  atomic.Int32
	allow atomic.Bool
	delay time.Duration
}

func (v *verifier) fill(context.Context) (policy.Decision, error) {
	v.runs.Add(1)
	time.Sleep(v.delay)
	if v.allow.Load() {
		return policy.Decision{Allowed: true, Verified: true, Policy: "p", Mode: "enforce", Reason: "verified", Signers: []string{`"k"`}, DecidedAt: time.Now().UTC()}, nil
	}
	return policy.Decision{Policy: "p", Mode: "enforce", Reason: "no signature", Unsatisfied: []string{"k"}, DecidedAt: time.Now().UTC()}, nil
}

func key(n int) cache.Key {
	return cache.Key{PolicyVersion: "v1", Repository: "upstream/repo", Digest: digest.FromString(strconv.Itoa(n))}
}

func TestSharedAcrossReplicas(t *testing.T) {
	r := testtool.StartRedis(t)
	a, b := replica(t, r.Addr, redistier.Options{}), replica(t, r.Addr, redistier.Options{})
	ctx := context.Background()
	tests := []struct {
		name    string
		allow   bool
		wantTTL time.Duration
	}{
		{name: "allowed", allow: true, wantTTL: cache.DefaultTTL},
		{name: "denied", allow: false, wantTTL: cache.DefaultNegativeTTL},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := key(i)
			v := &verifier{}
			v.allow.Store(tt.allow)
			d, cached, err := a.Do(ctx, k, v.fill)
			if err != nil || cached || d.Allowed != tt.allow {
				t.Fatalf("A: %+v cached %v err %v; want a fresh decision allowed=%v", d, cached, err, tt.allow)
			}
			before := b.Stats()
			d2, cached, err := b.Do(ctx, k, v.fill)
			if err != nil || !cached || d2.Allowed != tt.allow || d2.Reason != d.Reason || !d2.DecidedAt.Equal(d.DecidedAt) {
				t.Fatalf("B: %+v cached %v err %v; want A's decision %+v, cached", d2, cached, err, d)
			}
			if n := v.runs.Load(); n != 1 {
				t.Fatalf("verified %d times, want 1 (B must use A's decision)", n)
			}
			if got := b.Stats(); got.Shared != before.Shared+1 {
				t.Fatalf("B stats %+v, want one more shared (from %+v)", got, before)
			}
			if _, _, err := b.Do(ctx, k, v.fill); err != nil || b.Stats().Local != before.Local+1 {
				t.Fatalf("B's second lookup: err %v, stats %+v; want it from B's local tier", err, b.Stats())
			}
			// Stored for the TTL of its polarity.
			pttl, err := r.Do("PTTL", "portcullis:d:{"+string(k.Digest)+"}:2:v1:upstream/repo")
			if err != nil {
				t.Fatal(err)
			}
			ms, _ := strconv.Atoi(strings.TrimPrefix(pttl, ":"))
			if got := time.Duration(ms) * time.Millisecond; got <= tt.wantTTL-5*time.Second || got > tt.wantTTL {
				t.Fatalf("PTTL of the decision = %s (%q), want about %s", got, pttl, tt.wantTTL)
			}
		})
	}
}

func TestConcurrentColdMissesVerifyOnce(t *testing.T) {
	r := testtool.StartRedis(t)
	a, b := replica(t, r.Addr, redistier.Options{}), replica(t, r.Addr, redistier.Options{})
	v := &verifier{delay: 200 * time.Millisecond}
	v.allow.Store(true)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		tr := a
		if i%2 == 1 {
			tr = b
		}
		wg.Go(func() {
			d, _, err := tr.Do(context.Background(), key(1), v.fill)
			if err == nil && !d.Allowed {
				err = errors.New("denied")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := v.runs.Load(); n != 1 {
		t.Fatalf("20 concurrent cold lookups over two replicas verified %d times, want 1 (A %+v, B %+v)", n, a.Stats(), b.Stats())
	}
	if s := a.Stats().Shared + b.Stats().Shared; s == 0 {
		t.Fatalf("no replica took the other's decision from redis: A %+v B %+v", a.Stats(), b.Stats())
	}
}

func TestLockHolderGone(t *testing.T) {
	r := testtool.StartRedis(t)
	a := replica(t, r.Addr, redistier.Options{LockWait: 300 * time.Millisecond})
	k := key(2)
	lock := "portcullis:l:{" + string(k.Digest) + "}:2:v1:upstream/repo"
	if _, err := r.Do("SET", lock, "another-replica", "PX", "60000"); err != nil {
		t.Fatal(err)
	}
	v := &verifier{}
	v.allow.Store(true)
	start := time.Now()
	d, cached, err := a.Do(context.Background(), k, v.fill)
	took := time.Since(start)
	if err != nil || cached || !d.Allowed || v.runs.Load() != 1 {
		t.Fatalf("%+v cached %v err %v runs %d; want a fresh verification", d, cached, err, v.runs.Load())
	}
	if took < 300*time.Millisecond || took > 2*time.Second {
		t.Fatalf("took %s; want the lock wait (300ms) and then a local verification", took)
	}
	if got, _ := r.Do("GET", lock); got != "$15" {
		t.Fatalf("the other replica's lock was touched: GET answered %q", got)
	}
}

func TestForgetReachesEveryReplica(t *testing.T) {
	r := testtool.StartRedis(t)
	a, b := replica(t, r.Addr, redistier.Options{}), replica(t, r.Addr, redistier.Options{})
	waitSubscribed(t, a, b)
	ctx, k := context.Background(), key(3)
	v := &verifier{}
	if d, _, err := a.Do(ctx, k, v.fill); err != nil || d.Allowed {
		t.Fatalf("A: %+v %v; want a denial", d, err)
	}
	if d, cached, err := b.Do(ctx, k, v.fill); err != nil || d.Allowed || !cached {
		t.Fatalf("B: %+v cached %v %v; want A's denial", d, cached, err)
	}
	// A signature is pushed through B.
	v.allow.Store(true)
	b.Forget(ctx, "", k.Digest)
	deadline := time.Now().Add(2 * time.Second)
	for a.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("A's local tier still holds the decision 2s after B's Forget")
		}
		time.Sleep(2 * time.Millisecond)
	}
	for name, tr := range map[string]*tier{"A": a, "B": b} {
		d, cached, err := tr.Do(ctx, k, v.fill)
		if err != nil || !d.Allowed {
			t.Fatalf("%s after Forget: %+v cached %v err %v; want allowed", name, d, cached, err)
		}
	}
	if n := v.runs.Load(); n != 2 {
		t.Fatalf("verified %d times, want 2 (once before, once after the forget)", n)
	}
}

func TestForgetDuringVerification(t *testing.T) {
	r := testtool.StartRedis(t)
	a, b := replica(t, r.Addr, redistier.Options{}), replica(t, r.Addr, redistier.Options{})
	ctx, k := context.Background(), key(4)
	_, _, err := a.Do(ctx, k, func(context.Context) (policy.Decision, error) {
		b.Forget(ctx, "", k.Digest) // a signature lands while A verifies
		return policy.Decision{Reason: "no signature (stale)"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	v := &verifier{}
	v.allow.Store(true)
	if d, _, err := b.Do(ctx, k, v.fill); err != nil || !d.Allowed || v.runs.Load() != 1 {
		t.Fatalf("B: %+v %v runs %d; want a new verification, not A's stale denial", d, err, v.runs.Load())
	}
}

func TestCorruptValuesAreMisses(t *testing.T) {
	r := testtool.StartRedis(t)
	a := replica(t, r.Addr, redistier.Options{})
	ctx := context.Background()
	good := `{"key":{"policyVersion":"v1","repository":"upstream/repo","digest":"%s"},"inv":0,"value":{"allowed":true,"verified":true,"reason":"planted","decidedAt":"2026-01-01T00:00:00Z"}}`
	tests := []struct {
		name  string
		value func(k cache.Key) string
	}{
		{name: "not JSON", value: func(cache.Key) string { return "\x00\xffgarbage" }},
		{name: "truncated", value: func(k cache.Key) string { return strings.Replace(good, "%s", string(k.Digest), 1)[:60] }},
		{name: "another key's", value: func(cache.Key) string { return strings.Replace(good, "%s", string(digest.FromString("other")), 1) }},
		{name: "unknown field", value: func(k cache.Key) string {
			return strings.Replace(strings.Replace(good, "%s", string(k.Digest), 1), `"inv":0`, `"inv":0,"admin":true`, 1)
		}},
		{name: "trailing data", value: func(k cache.Key) string { return strings.Replace(good, "%s", string(k.Digest), 1) + `{}` }},
		{name: "stale invalidation count", value: func(k cache.Key) string {
			return strings.Replace(strings.Replace(good, "%s", string(k.Digest), 1), `"inv":0`, `"inv":7`, 1)
		}},
		{name: "oversized", value: func(k cache.Key) string {
			return strings.Replace(strings.Replace(good, "%s", string(k.Digest), 1), "planted", strings.Repeat("x", redistier.MaxValueSize), 1)
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := key(100 + i)
			vk := "portcullis:d:{" + string(k.Digest) + "}:2:v1:upstream/repo"
			if _, err := r.Do("SET", vk, tt.value(k)); err != nil {
				t.Fatal(err)
			}
			v := &verifier{} // the real verification denies
			d, cached, err := a.Do(ctx, k, v.fill)
			if err != nil || d.Allowed || cached || v.runs.Load() != 1 {
				t.Fatalf("%+v cached %v err %v runs %d; want the planted value ignored and a fresh denial", d, cached, err, v.runs.Load())
			}
			// The verification replaced it.
			got, err := r.Do("GET", vk)
			if err != nil || got == "$-1" {
				t.Fatalf("GET after the verification: %q %v", got, err)
			}
		})
	}
	// The control: the same planted envelope, valid, is used (so the cases above fail for
	// the reason they name).
	k := key(99)
	if _, err := r.Do("SET", "portcullis:d:{"+string(k.Digest)+"}:2:v1:upstream/repo", strings.Replace(good, "%s", string(k.Digest), 1)); err != nil {
		t.Fatal(err)
	}
	v := &verifier{}
	if d, cached, err := a.Do(ctx, k, v.fill); err != nil || !cached || d.Reason != "planted" || v.runs.Load() != 0 {
		t.Fatalf("valid envelope: %+v cached %v err %v runs %d; want it served from redis", d, cached, err, v.runs.Load())
	}
	if s := a.Stats(); s.Corrupt < uint64(len(tests)-1) {
		t.Fatalf("stats %+v: want the corrupt values counted", s)
	}
}

func TestRedisDown(t *testing.T) {
	r := testtool.StartRedis(t)
	a, b := replica(t, r.Addr, redistier.Options{}), replica(t, r.Addr, redistier.Options{})
	waitSubscribed(t, a, b)
	ctx := context.Background()
	deny := &verifier{}
	if d, _, err := a.Do(ctx, key(1), deny.fill); err != nil || d.Allowed {
		t.Fatalf("before: %+v %v; want a denial", d, err)
	}
	r.Stop()
	allow := &verifier{}
	allow.allow.Store(true)
	for i := range 20 {
		start := time.Now()
		d, _, err := b.Do(ctx, key(1000+i), allow.fill)
		if err != nil || !d.Allowed {
			t.Fatalf("lookup %d with redis down: %+v %v; want a local decision", i, d, err)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("lookup %d with redis down took %s; redis calls must be bounded by the timeout", i, took)
		}
	}
	if n := allow.runs.Load(); n != 20 {
		t.Fatalf("verified %d of 20 new digests with redis down", n)
	}
	// Denials stay denials: the cached one, and a fresh one on the other replica.
	for name, tr := range map[string]*tier{"A": a, "B": b} {
		if d, _, err := tr.Do(ctx, key(1), deny.fill); err != nil || d.Allowed {
			t.Fatalf("%s with redis down: %+v %v; want the denial", name, d, err)
		}
	}
	if s := b.Stats(); s.Errors == 0 {
		t.Fatalf("stats %+v: want the redis failures counted", s)
	}
	b.Forget(ctx, "", key(1).Digest) // bounded too, and never fails
	// Redis comes back (empty): the subscriptions come back and the tiers share again.
	r.Start()
	waitSubscribed(t, a, b)
	if a.Len() != 0 {
		t.Fatalf("A holds %d local decisions after its subscription came back; want them dropped", a.Len())
	}
	time.Sleep(150 * time.Millisecond) // past the backoff
	fresh := &verifier{}
	fresh.allow.Store(true)
	if _, _, err := a.Do(ctx, key(2000), fresh.fill); err != nil {
		t.Fatal(err)
	}
	if d, cached, err := b.Do(ctx, key(2000), fresh.fill); err != nil || !cached || !d.Allowed || fresh.runs.Load() != 1 {
		t.Fatalf("after redis came back: %+v cached %v err %v runs %d; want B to use A's decision", d, cached, err, fresh.runs.Load())
	}
}

func TestSlowRedisIsBounded(t *testing.T) {
	// A server that accepts and never answers: every call must end at the timeout.
	a := replica(t, blackhole(t), redistier.Options{Timeout: 50 * time.Millisecond})
	v := &verifier{}
	start := time.Now()
	d, cached, err := a.Do(context.Background(), key(1), v.fill)
	if err != nil || cached || d.Allowed || v.runs.Load() != 1 {
		t.Fatalf("%+v cached %v err %v; want a local denial", d, cached, err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Fatalf("took %s with a 50ms timeout", took)
	}
	if a.Stats().Errors == 0 {
		t.Fatal("the timeout was not counted")
	}
}

// blackhole returns the address of a listener that accepts connections and never answers.
func blackhole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().String()
}

func TestDecidedClaimsTheVerification(t *testing.T) {
	r := testtool.StartRedis(t)
	a, b := replica(t, r.Addr, redistier.Options{}), replica(t, r.Addr, redistier.Options{})
	ctx, k := context.Background(), key(5)
	if a.Decided(ctx, k) {
		t.Fatal("A: Decided before anything was decided")
	}
	if !b.Decided(ctx, k) {
		t.Fatal("B: not Decided while A holds the verification (B would look signatures up for nothing)")
	}
	if a.Decided(ctx, k) {
		t.Fatal("A: Decided reports A's own claim as another replica's")
	}
	v := &verifier{}
	v.allow.Store(true)
	if _, cached, err := a.Do(ctx, k, v.fill); err != nil || cached {
		t.Fatalf("A: cached %v err %v; want A's own verification (under its claim)", cached, err)
	}
	if _, cached, err := b.Do(ctx, k, v.fill); err != nil || !cached || v.runs.Load() != 1 {
		t.Fatalf("B: cached %v err %v runs %d; want A's decision", cached, err, v.runs.Load())
	}
	if got, _ := r.Do("EXISTS", "portcullis:l:{"+string(k.Digest)+"}:2:v1:upstream/repo"); got != ":0" {
		t.Fatalf("the lock is still there after A's verification: EXISTS answered %q", got)
	}
	if !b.Decided(ctx, key(5)) || b.Decided(ctx, key(6)) {
		t.Fatal("B: Decided wrong once the decision is in redis")
	}
	// DecidedLocally asks nothing of Redis: A and B hold key 5 (B since its Do), not key 7,
	// which a third replica's decision put in Redis only.
	c := replica(t, r.Addr, redistier.Options{})
	if _, _, err := c.Do(ctx, key(7), v.fill); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		tier *tier
		k    cache.Key
		want bool
	}{
		"A, its own": {a, key(5), true}, "B, A's": {b, key(5), true}, "A, only in redis": {a, key(7), false},
	} {
		if got := tc.tier.DecidedLocally(ctx, tc.k); got != tc.want {
			t.Errorf("%s: DecidedLocally %v, want %v", name, got, tc.want)
		}
	}
}

// countHook counts a client's round trips to Redis: one per command, one per pipeline. The
// tier's health check (PING, on its own schedule) is not counted: on a slow machine one lands
// inside the call being counted.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "ping" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// TestPutOneRoundTrip: Put (what the engine does for each platform manifest of an admitted
// index) writes a decision in one round trip, under the invalidation count Redis holds —
// so that another replica reads it after a Forget that came before the Put, and never one
// made before a Forget — and writes nothing over an invalidation count that is not one.
func TestPutOneRoundTrip(t *testing.T) {
	r := testtool.StartRedis(t)
	mem, err := cache.NewMemory[policy.Decision]()
	if err != nil {
		t.Fatal(err)
	}
	client, err := redistier.NewClient(&redistier.Config{Addr: r.Addr, Timeout: time.Second}, "")
	if err != nil {
		t.Fatal(err)
	}
	hook := &countHook{}
	client.AddHook(hook)
	a, err := redistier.New(mem, client, redistier.Options{Timeout: time.Second, Backoff: 100 * time.Millisecond, HealthCheck: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	b := replica(t, r.Addr, redistier.Options{})
	ctx := context.Background()
	v := &verifier{}
	v.allow.Store(true)
	d, _ := v.fill(ctx)

	// The first Put sends the script itself (EVALSHA, then EVAL): repeated until B reads its
	// decision, so that the script is loaded before anything is counted.
	testtool.Eventually(t, 10*time.Second, func() error {
		a.Put(ctx, key(20), d)
		if _, ok := b.Get(ctx, key(20)); !ok {
			return errors.New("A's first decision never reached B")
		}
		return nil
	})
	for i, tc := range []struct {
		name   string
		forget bool // Forget the digest on B before A's Put
	}{
		{"put", false},
		{"put after a forget", true},
	} {
		k := key(21 + i)
		if tc.forget {
			b.Forget(ctx, "", k.Digest)
		}
		before := hook.n.Load()
		a.Put(ctx, k, d)
		if got := hook.n.Load() - before; got != 1 {
			t.Errorf("%s: %d round trips to redis, want 1", tc.name, got)
		}
		if got, ok := b.Get(ctx, k); !ok || !got.Allowed {
			t.Errorf("%s: B got %+v, %v; want A's decision", tc.name, got, ok)
		}
	}

	// A decision put before a Forget is not served after it.
	k := key(23)
	a.Put(ctx, k, d)
	b.Forget(ctx, "", k.Digest)
	c := replica(t, r.Addr, redistier.Options{})
	if got, ok := c.Get(ctx, k); ok {
		t.Errorf("a decision put before a forget was read after it: %+v", got)
	}

	// An invalidation count that is not an integer: nothing is written, the failure counted.
	k = key(24)
	if _, err := r.Do("SET", "portcullis:i:{"+string(k.Digest)+"}", "garbage"); err != nil {
		t.Fatal(err)
	}
	errs := a.Stats().Errors
	a.Put(ctx, k, d)
	if got, _ := r.Do("EXISTS", "portcullis:d:{"+string(k.Digest)+"}:2:v1:upstream/repo"); got != ":0" {
		t.Errorf("a decision was written over a corrupt invalidation count: EXISTS answered %q", got)
	}
	if a.Stats().Errors != errs+1 {
		t.Errorf("errors %d, want %d", a.Stats().Errors, errs+1)
	}
}
