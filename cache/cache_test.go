package cache_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/testtool"
)

var (
	digestA = digest.FromString("a")
	digestB = digest.FromString("b")
)

// decision is a value shaped like the policy's decisions, as the cache stores them.
type decision struct {
	Allowed, Verified, Warning bool
	Policy, Reason             string
	Signers                    []string
}

func (d decision) Negative() bool { return !d.Allowed || d.Warning }

func (d decision) Clone() decision {
	d.Signers = slices.Clone(d.Signers)
	return d
}

func key(version, repo string, d digest.Digest) cache.Key {
	return cache.Key{PolicyVersion: version, Repository: repo, Digest: d}
}

func newMemory(t testing.TB, opts ...cache.Option) *cache.Memory[decision] {
	t.Helper()
	c, err := cache.NewMemory[decision](opts...)
	if err != nil {
		t.Fatalf("NewMemory: %v", err)
	}
	return c
}

func TestNewMemoryOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    []cache.Option
		wantErr string
	}{
		{name: "defaults"},
		{name: "all set", opts: []cache.Option{cache.WithSize(10), cache.WithTTL(time.Minute), cache.WithNegativeTTL(time.Second), cache.WithFillTimeout(time.Second)}},
		{name: "short ttl lowers default negative ttl", opts: []cache.Option{cache.WithTTL(time.Second)}},
		{name: "zero size", opts: []cache.Option{cache.WithSize(0)}, wantErr: "size must be positive, got 0"},
		{name: "negative ttl value", opts: []cache.Option{cache.WithTTL(-time.Second)}, wantErr: "ttl must be positive, got -1s"},
		{name: "explicit zero negative ttl", opts: []cache.Option{cache.WithNegativeTTL(0)}, wantErr: "negative ttl must be positive, got 0s"},
		{name: "negative ttl longer than ttl", opts: []cache.Option{cache.WithTTL(time.Second), cache.WithNegativeTTL(time.Minute)}, wantErr: "negative ttl 1m0s is longer than ttl 1s"},
		{name: "zero fill timeout", opts: []cache.Option{cache.WithFillTimeout(0)}, wantErr: "fill timeout must be positive, got 0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cache.NewMemory[decision](tt.opts...)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("NewMemory: got error %v, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("NewMemory: got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestPutGet(t *testing.T) {
	allow := decision{Allowed: true, Verified: true, Policy: "prod", Signers: []string{"release-key"}}
	deny := decision{Allowed: false, Policy: "prod", Reason: "no signature"}
	tests := []struct {
		name   string
		puts   []decision // all under key(v1, repo, digestA)
		get    cache.Key
		want   decision
		wantOK bool
	}{
		{name: "allowed", puts: []decision{allow}, get: key("v1", "r", digestA), want: allow, wantOK: true},
		{name: "denied", puts: []decision{deny}, get: key("v1", "r", digestA), want: deny, wantOK: true},
		{name: "allowed replaces denied", puts: []decision{deny, allow}, get: key("v1", "r", digestA), want: allow, wantOK: true},
		{name: "denied replaces allowed", puts: []decision{allow, deny}, get: key("v1", "r", digestA), want: deny, wantOK: true},
		{name: "other policy version misses", puts: []decision{allow}, get: key("v2", "r", digestA)},
		{name: "other repository misses", puts: []decision{allow}, get: key("v1", "other", digestA)},
		{name: "other digest misses", puts: []decision{allow}, get: key("v1", "r", digestB)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newMemory(t)
			for _, d := range tt.puts {
				c.Put(t.Context(), key("v1", "r", digestA), d)
			}
			got, ok := c.Get(t.Context(), tt.get)
			if ok != tt.wantOK || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Get(%v) = %+v, %v; want %+v, %v", tt.get, got, ok, tt.want, tt.wantOK)
			}
			if got, want := c.Len(), 1; got != want {
				t.Fatalf("Len() = %d, want %d", got, want)
			}
		})
	}
}

func TestPutCopiesSlices(t *testing.T) {
	c := newMemory(t)
	signers := []string{"a"}
	c.Put(t.Context(), key("v1", "r", digestA), decision{Allowed: true, Signers: signers})
	signers[0] = "mutated"
	got, _ := c.Get(t.Context(), key("v1", "r", digestA))
	if got.Signers[0] != "a" {
		t.Fatalf("stored signers = %v, want [a]: Put must not alias the caller's slice", got.Signers)
	}
}

func TestForget(t *testing.T) {
	c := newMemory(t)
	allow := decision{Allowed: true}
	c.Put(t.Context(), key("v1", "r", digestA), allow)
	c.Put(t.Context(), key("v2", "r", digestA), decision{Allowed: false})
	c.Put(t.Context(), key("v1", "r", digestB), allow)
	c.Put(t.Context(), key("v1", "other", digestA), allow)

	c.Forget(t.Context(), "r", digestA)

	for _, tt := range []struct {
		key  cache.Key
		want bool
	}{
		{key("v1", "r", digestA), false},
		{key("v2", "r", digestA), false},
		{key("v1", "r", digestB), true},
		{key("v1", "other", digestA), true},
	} {
		if _, ok := c.Get(t.Context(), tt.key); ok != tt.want {
			t.Errorf("after Forget, Get(%v) found = %v, want %v", tt.key, ok, tt.want)
		}
	}
	if got, want := c.Len(), 2; got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
}

func TestForgetEveryRepository(t *testing.T) {
	c := newMemory(t)
	c.Put(t.Context(), key("v1", "r", digestA), decision{Allowed: false})
	c.Put(t.Context(), key("v1", "other", digestA), decision{Allowed: true})
	c.Put(t.Context(), key("v1", "r", digestB), decision{Allowed: true})
	c.Forget(t.Context(), "", digestA)
	if got, want := c.Len(), 1; got != want {
		t.Errorf("Len() = %d after forgetting %s everywhere, want %d", got, digestA, want)
	}
	if _, ok := c.Get(t.Context(), key("v1", "r", digestB)); !ok {
		t.Errorf("the decision about another digest was dropped")
	}
}

func TestDoCollapsesConcurrentMisses(t *testing.T) {
	const callers = 500
	c := newMemory(t)
	k := key("v1", "r", digestA)
	var fills atomic.Int32
	release := make(chan struct{})
	fill := func(ctx context.Context) (decision, error) {
		fills.Add(1)
		<-release
		return decision{Allowed: true, Reason: "filled"}, nil
	}

	var started, done sync.WaitGroup
	started.Add(callers)
	done.Add(callers)
	errs := make(chan error, callers)
	for range callers {
		go func() {
			defer done.Done()
			started.Done()
			d, _, err := c.Do(t.Context(), k, fill)
			if err != nil {
				errs <- err
				return
			}
			if d.Reason != "filled" {
				errs <- errors.New("got decision " + d.Reason + ", want filled")
			}
		}()
	}
	started.Wait()
	waitInDo(t, callers) // every caller waits on the one fill before it returns
	close(release)
	done.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := fills.Load(); got != 1 {
		t.Fatalf("fill ran %d times for %d concurrent callers, want 1", got, callers)
	}
	if _, cached, _ := c.Do(t.Context(), k, fill); !cached {
		t.Fatalf("Do after the fill: cached = false, want true")
	}
}

func TestDoDoesNotCacheErrors(t *testing.T) {
	c := newMemory(t)
	k := key("v1", "r", digestA)
	var fills int
	boom := errors.New("upstream down")
	fill := func(context.Context) (decision, error) {
		fills++
		return decision{}, boom
	}
	for i := range 2 {
		if _, _, err := c.Do(t.Context(), k, fill); !errors.Is(err, boom) {
			t.Fatalf("Do #%d: got error %v, want %v", i, err, boom)
		}
	}
	if fills != 2 {
		t.Fatalf("fill ran %d times, want 2 (errors must not be cached)", fills)
	}
	if c.Len() != 0 {
		t.Fatalf("Len() = %d after failed fills, want 0", c.Len())
	}
}

func TestDoFillOutlivesCancelledCaller(t *testing.T) {
	c := newMemory(t)
	k := key("v1", "r", digestA)
	release := make(chan struct{})
	filled := make(chan error, 1)
	fill := func(ctx context.Context) (decision, error) {
		<-release
		filled <- ctx.Err()
		return decision{Allowed: true}, nil
	}

	first, cancelFirst := context.WithCancel(t.Context())
	firstDone := make(chan error, 1)
	go func() {
		_, _, err := c.Do(first, k, fill)
		firstDone <- err
	}()
	// A second caller joins the same fill and gives up too.
	second, cancelSecond := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancelSecond()
	start := time.Now()
	if _, _, err := c.Do(second, k, fill); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting caller: got error %v, want context.DeadlineExceeded", err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Fatalf("waiting caller returned after %s, want promptly after its deadline", waited)
	}

	cancelFirst()
	select {
	case err := <-firstDone:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("first caller: got error %v, want context.Canceled", err)
		}
	case <-time.After(time.Second):
		t.Fatal("first caller did not return after its context was cancelled")
	}

	close(release)
	if err := <-filled; err != nil {
		t.Fatalf("fill context: got %v, want it not cancelled", err)
	}
	testtool.Eventually(t, time.Second, func() error {
		if _, ok := c.Get(t.Context(), k); !ok {
			return errors.New("the detached fill has not stored its decision")
		}
		return nil
	})
}

func TestDoFillTimeout(t *testing.T) {
	c := newMemory(t, cache.WithFillTimeout(10*time.Millisecond))
	_, _, err := c.Do(t.Context(), key("v1", "r", digestA), func(ctx context.Context) (decision, error) {
		<-ctx.Done()
		return decision{}, ctx.Err()
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got error %v, want context.DeadlineExceeded from the fill timeout", err)
	}
}

func TestDoCancelledBeforeStartRunsNoFill(t *testing.T) {
	c := newMemory(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, _, err := c.Do(ctx, key("v1", "r", digestA), func(context.Context) (decision, error) {
		t.Error("fill ran for a caller whose context was already cancelled")
		return decision{}, nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got error %v, want context.Canceled", err)
	}
}

func TestForgetDuringFillDiscardsResult(t *testing.T) {
	c := newMemory(t)
	k := key("v1", "r", digestA)
	entered := make(chan struct{})
	release := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _, _ = c.Do(context.Background(), k, func(context.Context) (decision, error) {
			close(entered)
			<-release
			return decision{Allowed: false, Reason: "stale: no signature yet"}, nil
		})
	}()
	<-entered
	c.Forget(t.Context(), "r", digestA)
	close(release)
	<-done
	if d, ok := c.Get(t.Context(), k); ok {
		t.Fatalf("Get after Forget during fill = %+v, want no decision", d)
	}
}

// TestExpiry checks both sides of each TTL. "Still there before the TTL" can only be
// checked when the machine was fast enough to look in time; when it was not, the check is
// run again with TTLs four times longer, and failing that the test fails: it never passes
// without having checked.
func TestExpiry(t *testing.T) {
	for attempt, scale := 0, time.Duration(1); ; attempt, scale = attempt+1, scale*4 {
		if attempt == 4 {
			t.Fatal("could not look up decisions before their TTL ran out, even with TTLs 64 times longer")
		}
		ttl, negativeTTL := 80*time.Millisecond*scale, 20*time.Millisecond*scale
		c := newMemory(t, cache.WithTTL(ttl), cache.WithNegativeTTL(negativeTTL))
		allowKey, denyKey, warnKey := key("v1", "r", digestA), key("v1", "r", digestB), key("v1", "w", digestA)

		start := time.Now()
		c.Put(t.Context(), allowKey, decision{Allowed: true})
		c.Put(t.Context(), denyKey, decision{Allowed: false})
		c.Put(t.Context(), warnKey, decision{Allowed: true, Warning: true})
		present := func(k cache.Key) bool { _, ok := c.Get(t.Context(), k); return ok }

		allowed, denied, warned := present(allowKey), present(denyKey), present(warnKey)
		if elapsed := time.Since(start); elapsed >= negativeTTL {
			t.Logf("looked %s after Put, negative TTL %s: again with longer TTLs", elapsed, negativeTTL)
			continue
		}
		if !(allowed && denied && warned) {
			t.Fatalf("right after Put: found allowed %v, denied %v, warned %v; want all", allowed, denied, warned)
		}
		time.Sleep(time.Until(start.Add(negativeTTL + 10*time.Millisecond)))
		if present(denyKey) || present(warnKey) {
			t.Fatalf("negative decisions still served after %s, negative TTL is %s", time.Since(start), negativeTTL)
		}
		allowed = present(allowKey)
		if elapsed := time.Since(start); elapsed >= ttl {
			t.Logf("looked %s after Put, TTL %s: again with longer TTLs", elapsed, ttl)
			continue
		}
		if !allowed {
			t.Fatalf("allowed decision expired before its TTL %s", ttl)
		}
		time.Sleep(time.Until(start.Add(ttl + 10*time.Millisecond)))
		if present(allowKey) {
			t.Fatalf("allowed decision still served after %s, TTL is %s", time.Since(start), ttl)
		}
		return
	}
}

// waitInDo waits until n goroutines are blocked in Memory.Do waiting for a fill: a check
// of the goroutines' stacks rather than a sleep that hopes they got there.
func waitInDo(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 64<<20)
	for {
		stacks := string(buf[:runtime.Stack(buf, true)])
		waiting := 0
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, " [select") && strings.Contains(g, "cache.(*Memory[...]).Do(") {
				waiting++
			}
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d callers waiting in Do after 10s", waiting, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	k := key("v1", "docker.io/library/alpine", digestA)
	for _, v := range []any{k} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", v, err)
		}
		got := reflect.New(reflect.TypeOf(v))
		if err := json.Unmarshal(b, got.Interface()); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if !reflect.DeepEqual(got.Elem().Interface(), v) {
			t.Fatalf("round trip of %s = %+v, want %+v", b, got.Elem().Interface(), v)
		}
	}
}

func BenchmarkCachedDecision(b *testing.B) {
	c := newMemory(b)
	k := key("0123456789abcdef", "docker.io/library/alpine", digestA)
	c.Put(context.Background(), k, decision{Allowed: true, Verified: true, Policy: "prod", Signers: []string{"release-key"}})
	fill := func(context.Context) (decision, error) {
		b.Fatal("fill ran on the hit path")
		return decision{}, nil
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, cached, err := c.Do(ctx, k, fill); err != nil || !cached {
			b.Fatalf("Do = cached %v, error %v; want a hit", cached, err)
		}
	}
}

// stamped is a decision with a time, stored split (cache.Splitter).
type stamped struct {
	decision
	At time.Time
}

func (s stamped) Clone() stamped { s.decision = s.decision.Clone(); return s }

func (s stamped) Split() (stamped, time.Time) {
	t := s.At
	s.At = time.Time{}
	return s, t
}

func (s stamped) Join(t time.Time) stamped {
	s.At = t
	return s
}

// TestSplitValues stores values that differ in their time only, or in more: each is read
// back exactly, whatever the others, and the LRU bound and Forget hold as for whole values.
func TestSplitValues(t *testing.T) {
	c, err := cache.NewMemory[stamped](cache.WithSize(3))
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	vals := []stamped{
		{decision{Allowed: true, Policy: "p", Signers: []string{"k"}}, base},
		{decision{Allowed: true, Policy: "p", Signers: []string{"k"}}, base.Add(time.Second)},
		{decision{Allowed: true, Policy: "p", Signers: []string{"other"}}, base.Add(2 * time.Second)},
	}
	digests := []digest.Digest{digestA, digestB, digest.FromString("c")}
	signers := vals[0].Signers
	for i, v := range vals {
		c.Put(t.Context(), key("v1", "r", digests[i]), v)
	}
	signers[0] = "mutated" // the cache has its own copy
	for i, want := range vals {
		if i == 0 {
			want.Signers = []string{"k"}
		}
		got, ok := c.Get(t.Context(), key("v1", "r", digests[i]))
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("value %d: got %+v, %v; want %+v", i, got, ok, want)
		}
	}
	c.Put(t.Context(), key("v1", "r", digest.FromString("d")), vals[2]) // evicts the least recently used (a)
	if _, ok := c.Get(t.Context(), key("v1", "r", digestA)); ok {
		t.Error("the least recently used value outlived the size bound")
	}
	c.Forget(t.Context(), "", digestB)
	if _, ok := c.Get(t.Context(), key("v1", "r", digestB)); ok || c.Len() != 2 {
		t.Errorf("after Forget: %d values, digest B found %v", c.Len(), ok)
	}
}

// BenchmarkGet looks up a cached split value among 10000 (cache.Splitter, as the policy's
// decisions are stored).
func BenchmarkGet(b *testing.B) {
	c, err := cache.NewMemory[stamped](cache.WithSize(10000))
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]cache.Key, 10000)
	for i := range keys {
		keys[i] = key("0123456789abcdef0123456789abcdef", "docker.io/library/app", digest.FromString(strings.Repeat("x", i)))
		c.Put(b.Context(), keys[i], stamped{decision{Allowed: true, Policy: "p", Signers: []string{"k"}}, time.Now()})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := c.Get(b.Context(), keys[i%len(keys)]); !ok {
			b.Fatal("miss")
		}
		i++
	}
}

func TestFillSource(t *testing.T) {
	tests := []struct {
		name      string
		fillSrc   cache.Source
		wantFirst cache.Source
	}{
		{name: "made here", fillSrc: cache.Fresh, wantFirst: cache.Fresh},
		{name: "found behind", fillSrc: cache.Shared, wantFirst: cache.Shared},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newMemory(t)
			ctx, k := context.Background(), key("v1", "r", digestA)
			var fills atomic.Int32
			fill := func(context.Context) (decision, cache.Source, error) {
				fills.Add(1)
				return decision{Allowed: true, Reason: "ok"}, tt.fillSrc, nil
			}
			if _, src, err := c.Fill(ctx, k, fill); err != nil || src != tt.wantFirst {
				t.Fatalf("first Fill: source %v, err %v; want %v", src, err, tt.wantFirst)
			}
			if d, src, err := c.Fill(ctx, k, fill); err != nil || src != cache.Local || d.Reason != "ok" {
				t.Fatalf("second Fill: %+v, source %v, err %v; want the stored decision from local", d, src, err)
			}
			if n := fills.Load(); n != 1 {
				t.Fatalf("fill ran %d times, want 1", n)
			}
		})
	}
}

func TestPurge(t *testing.T) {
	c := newMemory(t)
	ctx := context.Background()
	c.Put(ctx, key("v1", "r", digestA), decision{Allowed: true})
	c.Put(ctx, key("v1", "r", digestB), decision{})
	c.Purge(ctx)
	if n := c.Len(); n != 0 {
		t.Fatalf("Len after Purge = %d, want 0", n)
	}
	for _, d := range []digest.Digest{digestA, digestB} {
		if _, ok := c.Get(ctx, key("v1", "r", d)); ok {
			t.Fatalf("Get(%s) after Purge found a decision", d)
		}
	}
	// A fill running across the Purge answers its caller but is not stored.
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, _, err := c.Do(ctx, key("v1", "r", digestA), func(context.Context) (decision, error) {
			close(started)
			<-release
			return decision{Allowed: true}, nil
		})
		done <- err
	}()
	<-started
	c.Purge(ctx)
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Do: %v", err)
	}
	if _, ok := c.Get(ctx, key("v1", "r", digestA)); ok {
		t.Fatal("a fill that ran across Purge stored its result")
	}
}
