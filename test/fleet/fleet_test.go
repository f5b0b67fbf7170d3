package fleet

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/internal/testtool"
)

// process is a running `portcullis serve` and the name the test gives it.
type process struct {
	*testtool.Served
	name string
}

func serve(t *testing.T, bin, cfg, name string) *process {
	t.Helper()
	return &process{testtool.Serve(t, bin, cfg), name}
}

// manifest GETs repo@digest through p as a runtime would and returns the status and body.
func (p *process) manifest(t *testing.T, repo, digest string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.Host+"/v2/"+repo+"/manifests/"+digest, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s@%s through %s: %v", repo, digest, p.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// metric returns the sum of the samples of the Prometheus series whose line starts with
// prefix (name and, optionally, the start of its labels).
func (p *process) metric(t *testing.T, re *regexp.Regexp) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.Host + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics on %s: %v", p.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for line := range strings.Lines(string(b)) {
		if re.MatchString(line) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			sum += v
		}
	}
	return sum
}

// counting is a reverse proxy in front of the registry that counts signature lookups:
// requests for cosign's signature tags (sha256-<hex>.sig and friends) and for referrers.
type counting struct {
	srv     *httptest.Server
	lookups atomic.Int64
	mu      sync.Mutex
	paths   map[string]int // lookups by path
}

func newCounting(t *testing.T, registryHost string) *counting {
	t.Helper()
	c := &counting{paths: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: registryHost})
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/referrers/") || strings.Contains(r.URL.Path, "/manifests/sha256-") {
			c.lookups.Add(1)
			c.mu.Lock()
			c.paths[r.URL.Path]++
			c.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *counting) host() string { return strings.TrimPrefix(c.srv.URL, "http://") }

// TestFleetSharesDecisions: two `portcullis serve` processes sharing one redis-server, in
// front of distribution's registry (behind a reverse proxy that counts signature lookups)
// with images signed by cosign v3. A decision made through A is served by B without any
// signature lookup; 20 concurrent cold requests spread over A and B verify once; a signature
// pushed through B unblocks, on A, an image A had just denied (the negative TTL is an hour:
// only the invalidation can do it); with Redis killed both keep deciding, denials stay
// denials, and the failures are counted.
func TestFleetSharesDecisions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs redis-server, distribution's registry and cosign")
	}
	redis := testtool.StartRedis(t)
	cosign := testtool.Path(t, "cosign3")
	regHost, _ := testtool.Registry(t)
	up := newCounting(t, regHost)
	bin := testtool.BuildPortcullis(t)

	push := func(repo string, size int64) string {
		t.Helper()
		img := testtool.RandomImage(t, size, 1)
		ref, err := name.ParseReference(regHost+"/"+repo+":v1", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		return digestOf(t, img)
	}
	dir := t.TempDir()
	priv, pub := testtool.CosignKeyPair(t, cosign, dir)
	sign := func(registry, repo, digest string, extra ...string) {
		t.Helper()
		args := append(testtool.CosignSignArgs(3, priv), extra...)
		testtool.Cosign(t, cosign, nil, append(args, registry+"/"+repo+"@"+digest)...)
	}
	// Signed at the upstream before the fleet starts: app (decided through A, then B), burst
	// (the concurrent cold requests), after (decided with Redis down). Unsigned: later
	// (signed through B during the test), unsigned.
	app, burst, after := push("team/app", 2000), push("team/burst", 2100), push("team/after", 2200)
	later, unsigned := push("team/later", 2300), push("team/unsigned", 2400)
	for repo, d := range map[string]string{"team/app": app, "team/burst": burst, "team/after": after} {
		sign(regHost, repo, d)
	}

	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("ci:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Redis calls time out after 2s: generous, since this test is about sharing. On a loaded
	// machine a 200ms bound let a replica give up on a Redis call and verify on its own, which
	// is right but looks the signature up again; cache/redistier's TestSlowRedisIsBounded and
	// TestRedisDown test the bound.
	cfgFor := func(label string) string {
		yml := fmt.Sprintf(`listen: 127.0.0.1:0
log: {format: json, level: info}
storage: {driver: filesystem, params: {rootdirectory: %[4]s}}
upstreams:
  - {name: "%[1]s", url: "http://%[1]s", insecure: true, default: true}
cache:
  ttl: 1h
  negativeTTL: 1h
  redis: {addr: "%[2]s", timeout: 2s}
policies:
  - name: team
    images: ["%[1]s/team/**"]
    authorities:
      - {name: release, key: {path: %[3]s}}
defaultPolicy: deny
push:
  htpasswd: %[5]s
  users: [{name: ci, images: ["%[1]s/team/**"]}]
`, up.host(), redis.Addr, pub, filepath.Join(dir, "store-"+label), htpasswd)
		p := filepath.Join(dir, label+".yaml")
		if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b := serve(t, bin, cfgFor("a"), "A"), serve(t, bin, cfgFor("b"), "B")
	both := []*process{a, b}
	expect := func(p *process, repo, digest string, want int) {
		t.Helper()
		if code, body := p.manifest(t, repo, digest); code != want {
			t.Fatalf("GET %s@%s through %s: %d %s, want %d\n%s", repo, digest, p.name, code, body, want, p.Logs())
		}
	}

	// A decides; B serves A's decision with no signature lookup upstream.
	expect(a, "team/app", app, http.StatusOK)
	perVerification := up.lookups.Load()
	if perVerification == 0 {
		t.Fatal("A's verification made no signature lookup at the upstream: the count measures nothing")
	}
	expect(b, "team/app", app, http.StatusOK)
	if n := up.lookups.Load() - perVerification; n != 0 {
		t.Fatalf("B made %d signature lookups for the decision A had made, want 0\n%s", n, b.Logs())
	}

	// 20 concurrent cold requests for one digest over A and B: one verification.
	before := up.lookups.Load()
	var wg sync.WaitGroup
	codes := make(chan int, 20)
	for i := range 20 {
		p := both[i%2]
		wg.Go(func() {
			code, _ := p.manifest(t, "team/burst", burst)
			codes <- code
		})
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != http.StatusOK {
			t.Fatalf("a concurrent cold request got %d, want 200", code)
		}
	}
	// One verification: some lookups (at most as many as the first one made), none twice.
	up.mu.Lock()
	var burstPaths []string
	for p, n := range up.paths {
		if strings.Contains(p, "/team/burst/") {
			burstPaths = append(burstPaths, fmt.Sprintf("%s ×%d", p, n))
			if n != 1 {
				t.Errorf("%s looked up %d times by 20 concurrent cold requests over A and B; one verification looks it up once", p, n)
			}
		}
	}
	up.mu.Unlock()
	if n := up.lookups.Load() - before; n == 0 || n > perVerification {
		t.Fatalf("20 concurrent cold requests over A and B made %d signature lookups (%v); one verification makes %d\nA:\n%s\nB:\n%s",
			n, burstPaths, perVerification, a.Logs(), b.Logs())
	}

	// A denies an unsigned image (and keeps the denial for an hour); signed through B, it is
	// admitted on A at once.
	expect(a, "team/later", later, http.StatusForbidden)
	expect(b, "team/later", later, http.StatusForbidden)
	creds := []string{"--registry-username", "ci", "--registry-password", "s3cret"}
	sign(b.Host, "team/later", later, creds...)
	expect(a, "team/later", later, http.StatusOK)
	expect(b, "team/later", later, http.StatusOK)

	// Redis killed: both keep deciding, on their own; denials stay denials.
	redis.Stop()
	for _, p := range both {
		expect(p, "team/app", app, http.StatusOK)
		expect(p, "team/unsigned", unsigned, http.StatusForbidden)
		expect(p, "team/after", after, http.StatusOK)
		expect(p, "team/unsigned", unsigned, http.StatusForbidden)
	}
	unavailable := regexp.MustCompile(`^portcullis_cache_redis_errors_total\{.*reason="unavailable"`)
	for _, p := range both {
		if n := p.metric(t, unavailable); n == 0 {
			t.Errorf("%s: portcullis_cache_redis_errors_total{reason=\"unavailable\"} is 0 with redis killed", p.name)
		}
	}
}

func digestOf(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}
