package pushauth_test

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/proxy/pushauth"
)

func newPushers(t *testing.T) *pushauth.Pushers {
	t.Helper()
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	p, err := pushauth.New(pushauth.Config{
		Htpasswd:    "htpasswd",
		Users:       []pushauth.User{{Name: "ci", Images: []string{"docker.io/myorg/**"}}},
		PassThrough: pushauth.PassThrough{Images: []string{"docker.io/myorg/scratch/**"}, Allow: "any"},
	}, []byte("# comment\nci:"+string(hash)+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAuthenticate(t *testing.T) {
	p := newPushers(t)
	for _, tc := range []struct {
		name, user, pass string
		basic            bool
		want             string
		wantErr          bool
	}{
		{name: "no credentials"},
		{name: "empty user name", basic: true, pass: "pw"},
		{name: "right password", basic: true, user: "ci", pass: "pw", want: "ci"},
		{name: "right password again (remembered)", basic: true, user: "ci", pass: "pw", want: "ci"},
		{name: "wrong password", basic: true, user: "ci", pass: "nope", wantErr: true},
		{name: "unknown user", basic: true, user: "eve", pass: "pw", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "http://portcullis/v2/", nil)
			if tc.basic {
				r.SetBasicAuth(tc.user, tc.pass)
			}
			got, err := p.Authenticate(r)
			if got != tc.want || (err != nil) != tc.wantErr || (tc.wantErr && !errors.Is(err, pushauth.ErrBadCredentials)) {
				t.Fatalf("Authenticate = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestGrants(t *testing.T) {
	p := newPushers(t)
	for _, tc := range []struct {
		user, image   string
		push, passThr bool
	}{
		{"ci", "docker.io/myorg/app", true, false},
		{"ci", "docker.io/myorg/scratch/tmp", true, true},
		{"ci", "docker.io/other/app", false, false},
		{"eve", "docker.io/myorg/app", false, false},
	} {
		if got := p.MayPush(tc.user, tc.image); got != tc.push {
			t.Errorf("MayPush(%s, %s) = %v, want %v", tc.user, tc.image, got, tc.push)
		}
		if got := p.PlainPush(tc.image); got != tc.passThr {
			t.Errorf("PlainPush(%s) = %v, want %v", tc.image, got, tc.passThr)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, htpasswd, want string
		users                []pushauth.User
	}{
		{"not bcrypt", "ci:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "only bcrypt", nil},
		{"not user:hash", "ci\n", "not user:hash", nil},
		{"user not in the file", "", "not in the htpasswd file", []pushauth.User{{Name: "ci", Images: []string{"a.io/**"}}}},
		{"user without images", "", "at least one image glob", []pushauth.User{{Name: "ci"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pushauth.New(pushauth.Config{Htpasswd: "htpasswd", Users: tc.users}, []byte(tc.htpasswd))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// login is a Basic-authenticated request from addr.
func login(addr, user, pass string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://portcullis/v2/", nil)
	r.RemoteAddr = addr
	if user != "" || pass != "" {
		r.SetBasicAuth(user, pass)
	}
	return r
}

// TestLoginTiming checks that an unknown user costs what a known one does: the decoy hash
// takes the cost of the file's hashes (here 7, below bcrypt's default 10, so that a decoy of
// the default cost would take 8 times as long).
func TestLoginTiming(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), 7)
	low, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	p, err := pushauth.New(pushauth.Config{Htpasswd: "htpasswd"}, []byte("ci:"+string(hash)+"\nold:"+string(low)+"\n"),
		pushauth.WithFailedLoginLimit(time.Millisecond, 1000))
	if err != nil {
		t.Fatal(err)
	}
	// Interleaved, so that a busy machine slows both alike; the median discards the outliers.
	var knownD, unknownD []time.Duration
	for i := range 16 {
		for _, user := range []string{"ci", "eve"} {
			start := time.Now()
			if _, err := p.Authenticate(login("192.0.2.1:1234", user, "wrong")); !errors.Is(err, pushauth.ErrBadCredentials) {
				t.Fatalf("%s: %v, want ErrBadCredentials", user, err)
			}
			if i == 0 {
				continue // warm-up
			}
			if user == "ci" {
				knownD = append(knownD, time.Since(start))
			} else {
				unknownD = append(unknownD, time.Since(start))
			}
		}
	}
	median := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	known, unknown := median(knownD), median(unknownD)
	t.Logf("median of 15 failed logins each: known user %s, unknown user %s", known, unknown)
	if ratio := float64(max(known, unknown)) / float64(min(known, unknown)); ratio > 2 {
		t.Errorf("known user %s, unknown user %s: %.1f× apart, want within 2×", known, unknown, ratio)
	}
}

// clock is a settable time for the throttle.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestLoginThrottle(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	clk := &clock{now: time.Unix(1e9, 0)}
	p, err := pushauth.New(pushauth.Config{Htpasswd: "htpasswd"}, []byte("ci:"+string(hash)+"\n"),
		pushauth.WithFailedLoginLimit(time.Minute, 3), pushauth.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	try := func(addr, user, pass string) (string, error) {
		t.Helper()
		before := p.Stats().Hashes
		u, err := p.Authenticate(login(addr, user, pass))
		var te *pushauth.ThrottledError
		if hashed := p.Stats().Hashes - before; errors.As(err, &te) != (hashed == 0) && err != nil {
			t.Fatalf("%s %s: %v after %d hashes", addr, user, err, hashed)
		}
		return u, err
	}
	throttled := func(err error) bool {
		var te *pushauth.ThrottledError
		return errors.As(err, &te) && te.RetryAfter > 0 && te.RetryAfter <= time.Minute
	}

	// No credentials: nothing hashed, nothing spent, however many.
	for range 10 {
		if u, err := try("192.0.2.1:1", "", ""); u != "" || err != nil {
			t.Fatalf("anonymous: %q %v", u, err)
		}
		if u, err := try("192.0.2.1:1", "", "pw"); u != "" || err != nil {
			t.Fatalf("empty user: %q %v", u, err)
		}
	}
	if s := p.Stats(); s.Hashes != 0 {
		t.Fatalf("requests without credentials hashed %d times", s.Hashes)
	}
	// A successful login costs nothing from the budget.
	if u, err := try("192.0.2.1:1", "ci", "pw"); u != "ci" || err != nil {
		t.Fatalf("good login: %q %v", u, err)
	}
	for i, user := range []string{"ci", "eve", "ci"} {
		if _, err := try("192.0.2.1:2", user, "bad"); !errors.Is(err, pushauth.ErrBadCredentials) {
			t.Fatalf("failed login %d: %v, want ErrBadCredentials", i, err)
		}
	}
	// The budget (3) is spent: known, unknown and even right (not yet remembered) credentials
	// from that address are refused without hashing, whatever the port.
	for _, tc := range []struct{ user, pass string }{{"ci", "bad"}, {"eve", "bad"}, {"ci", "pw2"}} {
		if _, err := try("192.0.2.1:3", tc.user, tc.pass); !throttled(err) {
			t.Fatalf("%s after the burst: %v, want a ThrottledError", tc.user, err)
		}
	}
	// Remembered credentials still work from there; other addresses are unaffected; an IPv6
	// address counts by its /64.
	if u, err := try("192.0.2.1:4", "ci", "pw"); u != "ci" || err != nil {
		t.Fatalf("remembered credentials from a throttled address: %q %v", u, err)
	}
	if _, err := try("192.0.2.2:1", "ci", "bad"); !errors.Is(err, pushauth.ErrBadCredentials) {
		t.Fatalf("another address: %v, want ErrBadCredentials", err)
	}
	for range 3 {
		try("[2001:db8:1:2::1]:1", "eve", "bad")
	}
	if _, err := try("[2001:db8:1:2::ffff]:1", "eve", "bad"); !throttled(err) {
		t.Fatalf("same /64: %v, want a ThrottledError", err)
	}
	if _, err := try("[2001:db8:1:3::1]:1", "eve", "bad"); !errors.Is(err, pushauth.ErrBadCredentials) {
		t.Fatalf("another /64: %v, want ErrBadCredentials", err)
	}
	// One attempt comes back a minute later.
	clk.Advance(time.Minute)
	if _, err := try("192.0.2.1:5", "ci", "bad"); !errors.Is(err, pushauth.ErrBadCredentials) {
		t.Fatalf("a minute later: %v, want ErrBadCredentials", err)
	}
	if _, err := try("192.0.2.1:5", "ci", "bad"); !throttled(err) {
		t.Fatalf("again: %v, want a ThrottledError", err)
	}
	if s := p.Stats(); s.Throttled != 5 || s.Failures != 9 {
		t.Errorf("stats %+v, want 5 throttled and 9 failures", s)
	}
}

// TestLoginThrottleConcurrent checks that simultaneous attempts cannot overrun the budget.
func TestLoginThrottleConcurrent(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	p, err := pushauth.New(pushauth.Config{Htpasswd: "htpasswd"}, []byte("ci:"+string(hash)+"\n"),
		pushauth.WithFailedLoginLimit(time.Hour, 5))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() { _, _ = p.Authenticate(login(fmt.Sprintf("198.51.100.7:%d", 1000+i), "ci", "bad")) })
	}
	wg.Wait()
	if s := p.Stats(); s.Hashes != 5 || s.Throttled != 45 {
		t.Errorf("50 simultaneous bad logins: %+v, want 5 hashed and 45 throttled", s)
	}
}

func TestOptionsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []pushauth.Option
	}{
		{"zero burst", []pushauth.Option{pushauth.WithFailedLoginLimit(time.Second, 0)}},
		{"no interval", []pushauth.Option{pushauth.WithFailedLoginLimit(0, 3)}},
		{"limit twice", []pushauth.Option{pushauth.WithFailedLoginLimit(time.Second, 3), pushauth.WithFailedLoginLimit(time.Second, 4)}},
		{"no hashing", []pushauth.Option{pushauth.WithHashConcurrency(0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := pushauth.New(pushauth.Config{Htpasswd: "htpasswd"}, nil, tc.opts...); err == nil {
				t.Fatal("New accepted the options")
			}
		})
	}
}

// TestLoginThrottleFromConfig: the configuration's loginThrottle sets the budget (here 2
// at once, one more a minute later), and an option still overrides it.
func TestLoginThrottleFromConfig(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	for _, tc := range []struct {
		name      string
		throttle  pushauth.LoginThrottle
		opts      []pushauth.Option
		wantBurst int
	}{
		{"config", pushauth.LoginThrottle{Burst: 2, Every: time.Minute}, nil, 2},
		{"defaults", pushauth.LoginThrottle{}, nil, pushauth.DefaultFailedLoginBurst},
		{"option beats config", pushauth.LoginThrottle{Burst: 2, Every: time.Minute}, []pushauth.Option{pushauth.WithFailedLoginLimit(time.Minute, 4)}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{now: time.Unix(1e9, 0)}
			p, err := pushauth.New(pushauth.Config{Htpasswd: "htpasswd", LoginThrottle: tc.throttle}, []byte("ci:"+string(hash)+"\n"),
				append([]pushauth.Option{pushauth.WithClock(clk.Now)}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			for range tc.wantBurst + 3 {
				_, _ = p.Authenticate(login("192.0.2.9:1", "ci", "bad"))
			}
			if s := p.Stats(); s.Hashes != uint64(tc.wantBurst) || s.Throttled != 3 {
				t.Errorf("%d bad logins: %+v, want %d hashed and 3 throttled", tc.wantBurst+3, s, tc.wantBurst)
			}
		})
	}
	if err := (pushauth.Config{Htpasswd: "h", LoginThrottle: pushauth.LoginThrottle{Burst: -1}}).Validate(); err == nil || !strings.Contains(err.Error(), "loginThrottle.burst") {
		t.Errorf("negative burst: %v, want a loginThrottle.burst error", err)
	}
}
