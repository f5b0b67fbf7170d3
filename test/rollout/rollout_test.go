package rollout_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/portcullis/portcullis/internal/testtool"
)

// replica is one `portcullis serve` process, restarted on the same address.
type replica struct {
	name, bin, config, addr string
	cmd                     *exec.Cmd
	logs                    *bytes.Buffer
	exited                  chan error
}

func (r *replica) start(t *testing.T) {
	t.Helper()
	r.logs = &bytes.Buffer{}
	r.cmd = exec.Command(r.bin, "serve", "--watch=false", "--config", r.config)
	r.cmd.Stdout, r.cmd.Stderr = r.logs, r.logs
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.exited = make(chan error, 1)
	go func() { r.exited <- r.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + r.addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("replica %s did not become ready:\n%s", r.name, r.logs)
}

// stop sends SIGTERM and waits for a clean exit.
func (r *replica) stop(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.exited:
		if err != nil {
			t.Errorf("replica %s exited with %v after SIGTERM:\n%s", r.name, err, r.logs)
		}
	case <-time.After(60 * time.Second):
		_ = r.cmd.Process.Kill()
		t.Fatalf("replica %s did not exit after SIGTERM:\n%s", r.name, r.logs)
	}
}

// balancer is a loopback load balancer that sends each request to the next ready backend,
// as a Kubernetes Service does with the endpoints whose readiness probe passes: /readyz
// every 50ms with a 1s timeout, unready after 3 failures in a row, ready after 1 success
// (Kubernetes' defaults but the period). Like a Service, it never retries: a request a
// backend fails is a failed request.
type balancer struct {
	backends []string
	mu       sync.Mutex
	ready    map[string]bool
	failures map[string]int
	next     atomic.Uint64
	served   sync.Map // backend -> *atomic.Int64
	proxy    *httputil.ReverseProxy
}

func newBalancer(t *testing.T, backends ...string) *httptest.Server {
	b := &balancer{backends: backends, ready: map[string]bool{}, failures: map[string]int{}}
	b.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: "http", Host: pr.In.Context().Value(backendKey{}).(string)})
			pr.Out.Host = pr.In.Host
		},
		Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second},
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go b.probe(ctx)
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	return srv
}

type backendKey struct{}

func (b *balancer) probe(ctx context.Context) {
	client := &http.Client{Timeout: time.Second}
	for ctx.Err() == nil {
		for _, be := range b.backends {
			ok := false
			if resp, err := client.Get("http://" + be + "/readyz"); err == nil {
				ok = resp.StatusCode == http.StatusOK
				resp.Body.Close()
			}
			b.mu.Lock()
			if ok {
				b.failures[be] = 0
				b.ready[be] = true
			} else if b.failures[be]++; b.failures[be] >= 3 {
				b.ready[be] = false
			}
			b.mu.Unlock()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	var ready []string
	for _, be := range b.backends {
		if b.ready[be] {
			ready = append(ready, be)
		}
	}
	b.mu.Unlock()
	if len(ready) == 0 {
		http.Error(w, "no ready backend", http.StatusServiceUnavailable)
		return
	}
	be := ready[b.next.Add(1)%uint64(len(ready))]
	n, _ := b.served.LoadOrStore(be, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
	b.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), backendKey{}, be)))
}

// waitReady waits until the balancer sends to every backend.
func waitReady(t *testing.T, lb *httptest.Server) {
	t.Helper()
	b := lb.Config.Handler.(*balancer)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b.mu.Lock()
		n := 0
		for _, ok := range b.ready {
			if ok {
				n++
			}
		}
		b.mu.Unlock()
		if n == len(b.backends) {
			return
		}
	}
	t.Fatal("the balancer does not see every backend ready")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRollingRestart restarts each of two replicas in turn (SIGTERM, wait for the exit,
// start it again, wait until the balancer sends to it) while a load generator pulls an
// image (manifest by tag and by digest, config and layer blobs, each body checked against
// its digest) through the balancer without pause: no request fails.
func TestRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin := testtool.BuildPortcullis(t)
	up := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(up.Close)
	img := testtool.RandomImage(t, 256<<10, 2)
	ref, err := name.ParseReference(strings.TrimPrefix(up.URL, "http://") + "/demo/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	md, _ := img.Digest()
	cfgName, _ := img.ConfigName()
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	paths := []string{"/v2/demo/app/manifests/v1", "/v2/demo/app/manifests/" + md.String(),
		"/v2/demo/app/blobs/" + cfgName.String(), "/v2/demo/app/blobs/" + ld.String()}

	dir := t.TempDir()
	var replicas []*replica
	for _, n := range []string{"a", "b"} {
		r := &replica{name: n, bin: bin, addr: freeAddr(t), config: filepath.Join(dir, n+".yaml")}
		yml := fmt.Sprintf(`listen: %q
log: {level: warn}
storage:
  driver: filesystem
  params: {rootdirectory: %q}
upstreams:
  - name: upstream.test
    url: %s
    insecure: true
    default: true
defaultPolicy: allow
server:
  shutdownDelay: 1s
  shutdownGrace: 20s
`, r.addr, filepath.Join(dir, n+"-store"), up.URL)
		if err := os.WriteFile(r.config, []byte(yml), 0o600); err != nil {
			t.Fatal(err)
		}
		r.start(t)
		t.Cleanup(func() {
			if r.cmd.ProcessState == nil {
				_ = r.cmd.Process.Kill()
				<-r.exited
			}
		})
		replicas = append(replicas, r)
	}
	lb := newBalancer(t, replicas[0].addr, replicas[1].addr)
	waitReady(t, lb)

	// The load: 4 clients pulling without pause.
	var (
		total, failed atomic.Int64
		failMu        sync.Mutex
		failures      []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 30 * time.Second}
	for range 4 {
		wg.Go(func() {
			for {
				for _, p := range paths {
					select {
					case <-stop:
						return
					default:
					}
					total.Add(1)
					if err := pull(client, lb.URL+p); err != nil {
						failed.Add(1)
						failMu.Lock()
						if len(failures) < 10 {
							failures = append(failures, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), p, err))
						}
						failMu.Unlock()
					}
				}
			}
		})
	}
	time.Sleep(time.Second)
	for _, r := range replicas {
		t.Logf("%s: SIGTERM replica %s", time.Now().Format("15:04:05.000"), r.name)
		r.stop(t)
		t.Logf("%s: replica %s exited; starting it again", time.Now().Format("15:04:05.000"), r.name)
		r.start(t)
		waitReady(t, lb)
		time.Sleep(500 * time.Millisecond) // under load on both again
	}
	close(stop)
	wg.Wait()

	t.Logf("%d requests, %d failed", total.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d of %d requests failed during the rolling restart:\n%s", failed.Load(), total.Load(), strings.Join(failures, "\n"))
	}
	if total.Load() < 200 {
		t.Errorf("only %d requests during the restarts: the load generator did not load", total.Load())
	}
	b := lb.Config.Handler.(*balancer)
	for _, r := range replicas {
		n, ok := b.served.Load(r.addr)
		if !ok || n.(*atomic.Int64).Load() == 0 {
			t.Errorf("replica %s served nothing: the balancer did not spread the load", r.name)
		}
	}
}

// pull GETs u and checks the answer: 200 with a body whose sha256 is the digest the path
// names (or, for a tag, the Docker-Content-Digest).
func pull(c *http.Client, u string) error {
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading the body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
	}
	want := u[strings.LastIndex(u, "/")+1:]
	if !strings.HasPrefix(want, "sha256:") {
		want = resp.Header.Get("Docker-Content-Digest")
	}
	sum := sha256.Sum256(body)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != want {
		return errors.New("body digest " + got + ", want " + want)
	}
	return nil
}
