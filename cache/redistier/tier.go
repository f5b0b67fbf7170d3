package redistier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/cache"
)

// Options configure a Tier. The zero value of each field means its default.
type Options struct {
	// KeyPrefix starts every key and the channel. Default DefaultKeyPrefix.
	KeyPrefix string
	// Timeout bounds each Redis call. Default DefaultTimeout.
	Timeout time.Duration
	// TTL and NegativeTTL are how long decisions live in Redis, by polarity (see
	// cache.Value): give the local tier's. Defaults cache.DefaultTTL and
	// cache.DefaultNegativeTTL.
	TTL, NegativeTTL time.Duration
	// LockTTL is how long a replica holds the lock on a key it verifies. Default
	// DefaultLockTTL.
	LockTTL time.Duration
	// LockWait bounds how long a replica waits for another's verification before verifying
	// on its own. Default DefaultLockWait.
	LockWait time.Duration
	// PollInterval is how often a waiting replica looks for the result. Default
	// DefaultPollInterval.
	PollInterval time.Duration
	// HealthCheck is how long the invalidation subscription may stay silent before it is
	// pinged (and re-established if the ping is not answered in as long again). Default
	// DefaultHealthCheck.
	HealthCheck time.Duration
	// Backoff is how long Redis is left alone after a failed call (calls in that time are
	// skipped: portcullis decides locally). Default 1s.
	Backoff time.Duration
	// Logger receives the (rate-limited) reports of Redis failures. Default: discarded.
	Logger *slog.Logger
}

// Stats counts what a Tier did since it was made.
type Stats struct {
	// Local, Shared and Fresh count decisions Do returned by where they came from: this
	// replica's memory, Redis (another replica's verification), a verification here.
	Local, Shared, Fresh uint64
	// Errors counts failed Redis calls (timeouts, refused connections, lost
	// subscriptions); Corrupt counts values read from Redis that were not a valid decision
	// for their key.
	Errors, Corrupt uint64
}

// Tier is a decision cache of two tiers: a cache.Memory in front of Redis, which the
// replicas of a fleet share. It is safe for concurrent use. Close stops it.
type Tier[V cache.Value] struct {
	local  *cache.Memory[V]
	client redis.UniversalClient
	o      Options

	unlock *redis.Script
	// put is Put's write: the envelope completed with the invalidation count Redis holds.
	put *redis.Script

	nLocal, nShared, nFresh, nErrs, nCorrupt atomic.Uint64
	// down is when Redis may be called again (Unix nanoseconds) after a failure.
	down atomic.Int64
	// lastLog is when a failure was last logged (Unix nanoseconds); suppressed counts
	// failures since.
	lastLog    atomic.Int64
	suppressed atomic.Uint64

	// held maps the lock keys this process holds (taken by Decided ahead of the fill that
	// will use them) to their token and when they were taken.
	held sync.Map // string → heldLock

	subscribed atomic.Bool
	stop       context.CancelFunc
	done       sync.WaitGroup
	closeOnce  sync.Once
}

// New returns a Tier of local in front of client, and starts its invalidation subscriber.
// The Tier owns client: Close closes it.
func New[V cache.Value](local *cache.Memory[V], client redis.UniversalClient, o Options) (*Tier[V], error) {
	if local == nil || client == nil {
		return nil, errors.New("redis tier: nil local cache or client")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	def(&o.Timeout, DefaultTimeout)
	def(&o.TTL, cache.DefaultTTL)
	def(&o.NegativeTTL, min(cache.DefaultNegativeTTL, o.TTL))
	def(&o.LockTTL, DefaultLockTTL)
	def(&o.LockWait, DefaultLockWait)
	def(&o.PollInterval, DefaultPollInterval)
	def(&o.HealthCheck, DefaultHealthCheck)
	def(&o.Backoff, time.Second)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	for name, d := range map[string]time.Duration{"timeout": o.Timeout, "ttl": o.TTL, "negative ttl": o.NegativeTTL,
		"lock ttl": o.LockTTL, "lock wait": o.LockWait, "poll interval": o.PollInterval, "health check": o.HealthCheck, "backoff": o.Backoff} {
		if d < 0 {
			return nil, fmt.Errorf("redis tier: %s must not be negative", name)
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	t := &Tier[V]{
		local: local, client: client, o: o, stop: stop,
		// Deletes the lock only if it is still ours (it may have expired and been taken).
		unlock: redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`),
		// KEYS: the value and the invalidation count (one slot: the digest is their hash
		// tag); ARGV: the envelope before and after its count, the TTL in milliseconds. A
		// count that is not an integer stores nothing.
		put: redis.NewScript(`local inv = redis.call("GET", KEYS[2]) or "0"
if not string.match(inv, "^%-?%d+$") then return redis.error_reply("invalidation count is not an integer") end
redis.call("SET", KEYS[1], ARGV[1] .. inv .. ARGV[2], "PX", ARGV[3])
return 1`),
	}
	t.done.Go(func() { t.subscribe(ctx) })
	return t, nil
}

// Close stops the subscriber and closes the client. Decisions already made stay valid in
// Redis for the other replicas.
func (t *Tier[V]) Close() error {
	var err error
	t.closeOnce.Do(func() {
		t.stop()
		t.done.Wait()
		err = t.client.Close()
	})
	return err
}

// Stats returns the counters.
func (t *Tier[V]) Stats() Stats {
	return Stats{Local: t.nLocal.Load(), Shared: t.nShared.Load(), Fresh: t.nFresh.Load(), Errors: t.nErrs.Load(), Corrupt: t.nCorrupt.Load()}
}

// Subscribed reports whether the invalidation subscription is established: while it is
// not, invalidations published by other replicas are missed (and the local tier is emptied
// once it is back).
func (t *Tier[V]) Subscribed() bool { return t.subscribed.Load() }

// Len returns the number of decisions the local tier holds.
func (t *Tier[V]) Len() int { return t.local.Len() }

// Keys. The digest is the hash tag, so that a decision, its lock and its digest's
// invalidation counter are in one Redis Cluster slot.
func (t *Tier[V]) valueKey(k cache.Key) string {
	return t.o.KeyPrefix + "d:{" + string(k.Digest) + "}:" + strconv.Itoa(len(k.PolicyVersion)) + ":" + k.PolicyVersion + ":" + k.Repository
}

func (t *Tier[V]) lockKey(k cache.Key) string {
	return t.o.KeyPrefix + "l:{" + string(k.Digest) + "}:" + strconv.Itoa(len(k.PolicyVersion)) + ":" + k.PolicyVersion + ":" + k.Repository
}

func (t *Tier[V]) invKey(d digest.Digest) string { return t.o.KeyPrefix + "i:{" + string(d) + "}" }

func (t *Tier[V]) channel() string { return t.o.KeyPrefix + "forget" }

// envelope is a decision as stored in Redis: with its key, so that a value is never served
// for another, and the invalidation count of its digest when its verification started, so
// that a decision made before a Forget is never served after it.
type envelope[V any] struct {
	Key   cache.Key `json:"key"`
	Inv   int64     `json:"inv"`
	Value V         `json:"value"`
}

// Tiers, as DoTier names them.
const (
	TierLocal = "local" // this replica's memory
	TierRedis = "redis" // Redis: another replica's verification
)

// Do returns the decision under key: from the local tier, else from Redis, else from
// fill, whose result is stored in both. Concurrent misses in this process share one fill;
// across replicas, the first to miss takes a short lock and the others wait (at most
// LockWait) for its result before verifying on their own. cached reports a decision that
// fill did not make. Redis failures never fail Do: it decides locally.
func (t *Tier[V]) Do(ctx context.Context, key cache.Key, fill func(ctx context.Context) (V, error)) (V, bool, error) {
	d, tier, err := t.DoTier(ctx, key, fill)
	return d, tier != "", err
}

// DoTier is Do, naming the tier the decision came from: TierLocal, TierRedis, or "" when
// fill made it (the policy engine labels its metrics with it).
func (t *Tier[V]) DoTier(ctx context.Context, key cache.Key, fill func(ctx context.Context) (V, error)) (V, string, error) {
	d, src, err := t.local.Fill(ctx, key, func(ctx context.Context) (V, cache.Source, error) {
		return t.fill(ctx, key, fill)
	})
	if err != nil {
		return d, "", err
	}
	switch src {
	case cache.Local:
		t.nLocal.Add(1)
		return d, TierLocal, nil
	case cache.Shared:
		t.nShared.Add(1)
		return d, TierRedis, nil
	}
	t.nFresh.Add(1)
	return d, "", nil
}

// Get returns the decision under key from the local tier, else from Redis (storing it
// locally).
func (t *Tier[V]) Get(ctx context.Context, key cache.Key) (V, bool) {
	if d, ok := t.local.Get(ctx, key); ok {
		return d, true
	}
	r := t.read(ctx, key)
	if !r.found {
		var zero V
		return zero, false
	}
	t.local.Put(ctx, key, r.v)
	return r.v, true
}

// DecidedLocally reports whether a decision under key is in the local tier: no Redis call.
func (t *Tier[V]) DecidedLocally(ctx context.Context, key cache.Key) bool {
	_, ok := t.local.Get(ctx, key)
	return ok
}

// Decided reports whether a decision under key is known — in the local tier or in Redis
// (then kept locally) — or is being made by another replica (its lock is held): the proxy
// then starts no signature lookup ahead of the decision. With Redis unavailable it reports
// only the local tier.
func (t *Tier[V]) Decided(ctx context.Context, key cache.Key) bool {
	if _, ok := t.local.Get(ctx, key); ok {
		return true
	}
	if !t.available() {
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, t.o.Timeout)
	defer cancel()
	vals, err := t.client.MGet(cctx, t.valueKey(key), t.invKey(key.Digest), t.lockKey(key)).Result()
	if err != nil || len(vals) != 3 {
		if err == nil {
			err = fmt.Errorf("MGET returned %d values for 3 keys", len(vals))
		}
		t.failure("decided", err)
		return false
	}
	var inv int64
	if s, isStr := vals[1].(string); isStr {
		if inv, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.nCorrupt.Add(1)
			return false
		}
	}
	if s, isStr := vals[0].(string); isStr {
		if v, err := decode[V](s, key, inv); err == nil {
			t.local.Put(ctx, key, v)
			return true
		}
	}
	if vals[2] != nil {
		_, ours := t.heldToken(t.lockKey(key))
		return !ours // another replica verifies: its result will be shared
	}
	// Nobody verifies yet: claim the verification now, so that replicas asking from now on
	// start no lookup of their own; the fill that follows here uses the claim.
	if _, ok := t.lock(ctx, key); ok {
		return false
	}
	return t.available() // another replica claimed it first (unless Redis failed just now)
}

// Put stores d under key in both tiers: in Redis in one round trip, under its digest's
// invalidation count as Redis holds it then (see put).
func (t *Tier[V]) Put(ctx context.Context, key cache.Key, d V) {
	t.local.Put(ctx, key, d)
	if !t.available() {
		return
	}
	kb, err := json.Marshal(key)
	if err != nil {
		return
	}
	vb, err := json.Marshal(d)
	if err != nil {
		return
	}
	// The envelope around its invalidation count, which the script reads and puts between.
	before := `{"key":` + string(kb) + `,"inv":`
	after := `,"value":` + string(vb) + `}`
	if len(before)+len(after)+20 > MaxValueSize {
		t.o.Logger.DebugContext(ctx, "decision not shared: too large to store", slog.Int("bytes", len(before)+len(after)))
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.o.Timeout)
	defer cancel()
	err = t.put.Run(cctx, t.client, []string{t.valueKey(key), t.invKey(key.Digest)},
		before, after, t.ttl(d).Milliseconds()).Err()
	if err != nil {
		t.failure("write", err)
	}
}

// ttl is how long d lives in Redis: its polarity's TTL.
func (t *Tier[V]) ttl(d V) time.Duration {
	if d.Negative() {
		return t.o.NegativeTTL
	}
	return t.o.TTL
}

// Forget drops the decisions about digest d of repository (of every repository when empty)
// here and, through Redis, on every replica: it bumps d's invalidation count (which makes
// every stored decision about d a miss) and publishes the forget to the replicas'
// subscribers, which drop it from their local tiers.
func (t *Tier[V]) Forget(ctx context.Context, repository string, d digest.Digest) {
	t.local.Forget(ctx, repository, d)
	if !t.available() {
		t.o.Logger.WarnContext(ctx, "redis is unavailable: other replicas keep their decisions about this digest until their local TTL",
			slog.String("digest", string(d)))
		return
	}
	msg, err := json.Marshal(forgetMessage{Repository: repository, Digest: d})
	if err != nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.o.Timeout)
	defer cancel()
	pipe := t.client.Pipeline()
	pipe.Incr(cctx, t.invKey(d))
	// The count outlives every decision it invalidates; bumped again, it lives on.
	pipe.PExpire(cctx, t.invKey(d), 2*t.o.TTL+t.o.LockTTL)
	pipe.Publish(cctx, t.channel(), msg)
	if _, err := pipe.Exec(cctx); err != nil {
		t.failure("forget", err)
	}
}

// forgetMessage is what Forget publishes.
type forgetMessage struct {
	Repository string        `json:"repository,omitempty"`
	Digest     digest.Digest `json:"digest"`
}

// readResult is what read found: found with v, or a miss; ok false when Redis could not be
// asked (nothing may be written then: the invalidation count is unknown).
type readResult[V any] struct {
	v     V
	found bool
	inv   int64
	ok    bool
}

// read looks key up in Redis with its digest's invalidation count, in one MGET.
func (t *Tier[V]) read(ctx context.Context, key cache.Key) readResult[V] {
	var r readResult[V]
	if !t.available() {
		return r
	}
	cctx, cancel := context.WithTimeout(ctx, t.o.Timeout)
	defer cancel()
	vals, err := t.client.MGet(cctx, t.valueKey(key), t.invKey(key.Digest)).Result()
	if err != nil {
		t.failure("read", err)
		return r
	}
	r.ok = true
	if len(vals) != 2 {
		t.failure("read", fmt.Errorf("MGET returned %d values for 2 keys", len(vals)))
		r.ok = false
		return r
	}
	if s, isStr := vals[1].(string); isStr {
		if r.inv, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.nCorrupt.Add(1)
			r.ok = false // an invalidation count that is not one: trust nothing, write nothing
			return r
		}
	}
	s, isStr := vals[0].(string)
	if !isStr {
		return r
	}
	v, err := decode[V](s, key, r.inv)
	if err != nil {
		if !errors.Is(err, errStale) {
			t.nCorrupt.Add(1)
			t.o.Logger.WarnContext(ctx, "ignoring a decision in redis that is not valid; verifying again",
				slog.String("key", t.valueKey(key)), slog.String("error", err.Error()))
		}
		return r
	}
	r.v, r.found = v, true
	return r
}

var errStale = errors.New("decision made before its digest's last invalidation")

// decode parses a stored envelope, refusing anything but exactly an envelope for key made
// under invalidation count inv.
func decode[V any](s string, key cache.Key, inv int64) (V, error) {
	var zero V
	if len(s) > MaxValueSize {
		return zero, fmt.Errorf("value of %d bytes exceeds %d", len(s), MaxValueSize)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.DisallowUnknownFields()
	var e envelope[V]
	if err := dec.Decode(&e); err != nil {
		return zero, fmt.Errorf("decode: %w", err)
	}
	if _, err := dec.Token(); err == nil {
		return zero, errors.New("decode: data after the value")
	}
	if e.Key != key {
		return zero, fmt.Errorf("value is for %+v", e.Key)
	}
	if e.Inv != inv {
		return zero, errStale
	}
	return e.Value, nil
}

// write stores d under key, made under invalidation count inv, for its polarity's TTL.
func (t *Tier[V]) write(ctx context.Context, key cache.Key, inv int64, d V) {
	if !t.available() {
		return
	}
	b, err := json.Marshal(envelope[V]{Key: key, Inv: inv, Value: d})
	if err != nil || len(b) > MaxValueSize {
		t.o.Logger.DebugContext(ctx, "decision not shared: too large to store", slog.Int("bytes", len(b)))
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.o.Timeout)
	defer cancel()
	if err := t.client.Set(cctx, t.valueKey(key), b, t.ttl(d)).Err(); err != nil {
		t.failure("write", err)
	}
}

// fill runs on a local miss (once per key in this process at a time): Redis first, then a
// verification — after another replica's, when one holds the lock.
func (t *Tier[V]) fill(ctx context.Context, key cache.Key, verify func(context.Context) (V, error)) (V, cache.Source, error) {
	r := t.read(ctx, key)
	if r.found {
		return r.v, cache.Shared, nil
	}
	if !r.ok {
		d, err := verify(ctx)
		return d, cache.Fresh, err
	}
	inv := r.inv
	token, held := t.lock(ctx, key)
	if !held && t.available() {
		w := t.await(ctx, key)
		if w.found {
			return w.v, cache.Shared, nil
		}
		if !w.ok {
			d, err := verify(ctx)
			return d, cache.Fresh, err
		}
		inv = w.inv
		token, _ = t.lock(ctx, key) // the other replica gave up or is slow: ours now, if free
	}
	d, err := verify(ctx)
	if err == nil {
		t.write(ctx, key, inv, d)
	}
	if token != "" {
		t.release(ctx, key, token)
	}
	return d, cache.Fresh, err
}

// lock takes the verification lock on key: SET NX PX with a random token, returned when
// taken.
func (t *Tier[V]) lock(ctx context.Context, key cache.Key) (string, bool) {
	if token, ok := t.heldToken(t.lockKey(key)); ok {
		return token, true
	}
	if !t.available() {
		return "", false
	}
	token := strconv.FormatInt(time.Now().UnixNano(), 36) + "." + strconv.FormatUint(tokenSeq.Add(1), 36)
	cctx, cancel := context.WithTimeout(ctx, t.o.Timeout)
	defer cancel()
	ok, err := t.client.SetNX(cctx, t.lockKey(key), token, t.o.LockTTL).Result()
	if err != nil {
		t.failure("lock", err)
		return "", false
	}
	if !ok {
		return "", false
	}
	t.held.Store(t.lockKey(key), heldLock{token: token, at: time.Now()})
	return token, true
}

// heldLock is a lock this process took.
type heldLock struct {
	token string
	at    time.Time
}

// heldToken returns the token of the lock on lockKey this process holds, unless it has
// expired in Redis by now.
func (t *Tier[V]) heldToken(lockKey string) (string, bool) {
	v, ok := t.held.Load(lockKey)
	if !ok {
		return "", false
	}
	h := v.(heldLock)
	if time.Since(h.at) >= t.o.LockTTL {
		t.held.CompareAndDelete(lockKey, v)
		return "", false
	}
	return h.token, true
}

// tokenSeq makes lock tokens unique within the process (with the time, across processes in
// practice; a collision only lets one replica release another's lock early).
var tokenSeq atomic.Uint64

func (t *Tier[V]) release(ctx context.Context, key cache.Key, token string) {
	t.held.Delete(t.lockKey(key))
	if !t.available() {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.o.Timeout)
	defer cancel()
	if err := t.unlock.Run(cctx, t.client, []string{t.lockKey(key)}, token).Err(); err != nil {
		t.failure("unlock", err)
	}
}

// await polls Redis for the decision another replica is making, until it is there, the
// lock is gone without it, LockWait has passed or Redis fails.
func (t *Tier[V]) await(ctx context.Context, key cache.Key) readResult[V] {
	deadline := time.Now().Add(t.o.LockWait)
	tick := time.NewTicker(t.o.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return readResult[V]{}
		case <-tick.C:
		}
		if !t.available() {
			return readResult[V]{}
		}
		cctx, cancel := context.WithTimeout(ctx, t.o.Timeout)
		vals, err := t.client.MGet(cctx, t.valueKey(key), t.invKey(key.Digest), t.lockKey(key)).Result()
		cancel()
		if err != nil || len(vals) != 3 {
			if err == nil {
				err = fmt.Errorf("MGET returned %d values for 3 keys", len(vals))
			}
			t.failure("await", err)
			return readResult[V]{}
		}
		r := readResult[V]{ok: true}
		if s, isStr := vals[1].(string); isStr {
			if r.inv, err = strconv.ParseInt(s, 10, 64); err != nil {
				t.nCorrupt.Add(1)
				return readResult[V]{}
			}
		}
		if s, isStr := vals[0].(string); isStr {
			if v, err := decode[V](s, key, r.inv); err == nil {
				r.v, r.found = v, true
				return r
			} else if !errors.Is(err, errStale) {
				t.nCorrupt.Add(1)
			}
		}
		if vals[2] == nil || time.Now().After(deadline) {
			return r
		}
	}
}

// available reports whether Redis may be called: not within Backoff of a failure.
func (t *Tier[V]) available() bool { return time.Now().UnixNano() >= t.down.Load() }

// logEvery is the least time between two logged Redis failures.
const logEvery = 10 * time.Second

// failure counts a failed Redis call, leaves Redis alone for Backoff, and logs at most once
// per logEvery.
func (t *Tier[V]) failure(op string, err error) {
	t.nErrs.Add(1)
	now := time.Now()
	t.down.Store(now.Add(t.o.Backoff).UnixNano())
	t.logFailure(op, err, now)
}

func (t *Tier[V]) logFailure(op string, err error, now time.Time) {
	last := t.lastLog.Load()
	if now.UnixNano()-last < int64(logEvery) || !t.lastLog.CompareAndSwap(last, now.UnixNano()) {
		t.suppressed.Add(1)
		return
	}
	t.o.Logger.Warn("redis decision tier failed; deciding locally",
		slog.String("op", op), slog.String("error", err.Error()), slog.Uint64("failuresNotLogged", t.suppressed.Swap(0)))
}

// subscribe keeps the invalidation subscription up until ctx ends, re-establishing it after
// failures; every time it comes back after a loss, the local tier is emptied, since
// invalidations may have been published meanwhile.
func (t *Tier[V]) subscribe(ctx context.Context) {
	first := true
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		ps := t.client.Subscribe(ctx, t.channel())
		err := t.receive(ctx, ps, &first)
		_ = ps.Close()
		t.subscribed.Store(false)
		if ctx.Err() != nil {
			return
		}
		t.nErrs.Add(1)
		t.logFailure("subscribe", err, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// receive handles ps's messages until it fails.
func (t *Tier[V]) receive(ctx context.Context, ps *redis.PubSub, first *bool) error {
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, t.o.HealthCheck)
		if err != nil {
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() && ctx.Err() == nil {
				if pinged {
					return errors.New("subscription did not answer a ping")
				}
				pctx, cancel := context.WithTimeout(ctx, t.o.Timeout)
				err = ps.Ping(pctx)
				cancel()
				if err != nil {
					return err
				}
				pinged = true
				continue
			}
			return err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			if !*first {
				t.local.Purge(ctx)
				t.o.Logger.Info("redis invalidation subscription restored; local decisions dropped")
			}
			*first = false
			t.subscribed.Store(true)
		case *redis.Message:
			t.forgotten(ctx, m.Payload)
		}
	}
}

// forgotten applies a forget another replica (or this one) published.
func (t *Tier[V]) forgotten(ctx context.Context, payload string) {
	var m forgetMessage
	if len(payload) > 4096 || json.Unmarshal([]byte(payload), &m) != nil || m.Digest.Validate() != nil {
		// Not ours to understand: drop everything, the safe reading of an invalidation.
		t.nCorrupt.Add(1)
		t.local.Purge(ctx)
		return
	}
	t.local.Forget(ctx, m.Repository, m.Digest)
}
