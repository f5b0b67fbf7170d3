package bench_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/time/rate"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/testtool"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/test/bench"
	"github.com/portcullis/portcullis/verify/oci"
)

// server is one registry process under measurement, or the upstream.
type server struct {
	name string
	url  string
	cmd  *exec.Cmd
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

// start runs bin with args, waits until url+probe answers 200 and stops it at cleanup.
func start(t *testing.T, name, addr, probe, bin string, args ...string) *server {
	t.Helper()
	cmd := exec.Command(bin, args...)
	// The report's own switches (PORTCULLIS_BENCH) are not configuration: portcullis reads
	// PORTCULLIS_* variables as configuration keys and refuses unknown ones.
	env := slices.DeleteFunc(os.Environ(), func(v string) bool { return strings.HasPrefix(v, "PORTCULLIS_") })
	cmd.Env = append(env, "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none")
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	s := &server{name: name, url: "http://" + addr, cmd: cmd}
	for i := 0; ; i++ {
		resp, err := http.Get(s.url + probe)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if i > 200 {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("%s did not start: %v\n%s", name, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// memory returns the process's memory figures from /proc/PID/status, in bytes, by field:
// VmRSS (resident now), VmHWM (peak resident), RssAnon (heap, stacks, runtime) and RssFile
// (the executable's pages it has touched). A process gone reads as zeros.
func (s *server) memory() map[string]int64 {
	m := map[string]int64{}
	if s.cmd == nil { // not a process of its own
		return m
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return m
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		m[strings.TrimSuffix(f[0], ":")] = kb << 10
	}
	return m
}

// copyFile copies src to a new executable dst as cp does (io.Copy between two files:
// copy_file_range on Linux).
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// distributionConfig configures distribution; quiet turns its access log off and its level
// to error (its default is info with the access log on).
func distributionConfig(t *testing.T, addr, remote string, quiet bool) string {
	t.Helper()
	dir := t.TempDir()
	logs := "log:\n  level: info\n"
	if quiet {
		logs = "log:\n  level: error\n  accesslog:\n    disabled: true\n"
	}
	yml := fmt.Sprintf(`version: 0.1
%sstorage:
  filesystem:
    rootdirectory: %s
  cache:
    blobdescriptor: inmemory
http:
  addr: %s
`, logs, filepath.Join(dir, "data"), addr)
	if remote != "" {
		yml += "proxy:\n  remoteurl: " + remote + "\n"
	}
	p := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// env is the measured set-up: the upstream and the two proxies in front of it.
type env struct {
	t           *testing.T
	registryBin string
	proxyBin    string
	slimBin     string // built with -tags no_kms,no_s3
	key         signingKey
	upstream    *server
	// ciSummary are the README rows of the containers/image comparison.
	ciSummary [][]string
}

func (e *env) distribution(remote string, quiet bool) *server {
	addr := freeAddr(e.t)
	return start(e.t, "distribution", addr, "/v2/", e.registryBin, "serve", distributionConfig(e.t, addr, remote, quiet))
}

// portcullis starts `portcullis serve` at the default log level (info), or at warn when quiet.
func (e *env) portcullis(remote string, quiet bool) *server {
	return e.portcullisBin(e.proxyBin, remote, quiet)
}

// portcullisBin starts `bin serve`, as portcullis does.
func (e *env) portcullisBin(bin, remote string, quiet bool) *server {
	addr := freeAddr(e.t)
	p := filepath.Join(e.t.TempDir(), "portcullis.yaml")
	extra := ""
	if quiet {
		extra = "log: {format: json, level: warn}\n"
	}
	yml := portcullisYAML(addr, filepath.Join(e.t.TempDir(), "store"), remote, e.key.pubPath, extra)
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return start(e.t, "portcullis", addr, "/healthz", bin, "serve", "--config", p)
}

// getter returns a request function that GETs url, checks the status and reads the body.
func getter(c *http.Client, u string, wantLen int) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		n, err := get(ctx, c, u, http.StatusOK, io.Discard)
		if err == nil && wantLen >= 0 && n != int64(wantLen) {
			err = fmt.Errorf("GET %s: %d bytes, want %d", u, n, wantLen)
		}
		return err
	}
}

// get GETs u accepting manifests, copies the body into body and checks the status.
func get(ctx context.Context, c *http.Client, u string, status int, body io.Writer) (int64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Accept", oci.MediaTypeOCIManifest+", "+oci.MediaTypeOCIIndex+", "+oci.MediaTypeDockerManifest)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(body, resp.Body)
	if err == nil && resp.StatusCode != status {
		err = fmt.Errorf("GET %s: status %d, want %d", u, resp.StatusCode, status)
	}
	return n, err
}

// table is a Markdown table.
type table struct {
	title string
	head  []string
	rows  [][]string
	notes []string
}

func (tb *table) add(cells ...string) { tb.rows = append(tb.rows, cells) }

func (tb *table) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n| %s |\n|%s\n", tb.title, strings.Join(tb.head, " | "), strings.Repeat("---|", len(tb.head)))
	for _, r := range tb.rows {
		fmt.Fprintf(&b, "| %s |\n", strings.Join(r, " | "))
	}
	for _, n := range tb.notes {
		fmt.Fprintf(&b, "\n%s\n", n)
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
func ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// mib formats n bytes in MiB; 0 (not measured) is "—".
func mib(n int64) string {
	if n == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

func envSize(t *testing.T, name string, def int64) int64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	mult := int64(1)
	for suffix, m := range map[string]int64{"GiB": 1 << 30, "MiB": 1 << 20, "KiB": 1 << 10} {
		if s, ok := strings.CutSuffix(v, suffix); ok {
			v, mult = s, m
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q is not a size like 64MiB", name, os.Getenv(name))
	}
	return n * mult
}

// installPortcullis builds cmd/portcullis with tags and installs it with a file-to-file
// copy; it returns the installed binary.
func installPortcullis(t *testing.T, root, tags string) string {
	linked := filepath.Join(t.TempDir(), "portcullis")
	build := exec.Command("go", "build", "-trimpath", "-tags", tags, "-ldflags=-s -w", "-o", linked, "./cmd/portcullis")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build portcullis (tags %q): %v\n%s", tags, err, out)
	}
	installed := filepath.Join(t.TempDir(), "portcullis")
	if err := copyFile(installed, linked); err != nil {
		t.Fatal(err)
	}
	return installed
}

// TestReport runs the benchmark scenarios and writes the tables to results.md and the
// README's table to summary.md (make bench splices it into README.md). It takes a few
// minutes and needs bin/registry; it runs only with PORTCULLIS_BENCH=1 (make bench).
func TestReport(t *testing.T) {
	if os.Getenv("PORTCULLIS_BENCH") != "1" {
		t.Skip("set PORTCULLIS_BENCH=1 (make bench) to run the benchmark report")
	}
	root, err := testtool.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, registryBin: testtool.Path(t, "registry"), key: newSigningKey(t)}
	// portcullis is the shipped command, built as the Dockerfile builds it (no cgo,
	// -trimpath, no symbol tables: every dependency linked, the KMS clients included) and
	// installed as cp or an image's extraction installs it (copied from file to file): how a
	// binary came into the page cache decides how much of it a process maps. Measured on this
	// kernel (6.18, ext4), the same bytes idle a few MiB higher run from the linker's output
	// and far higher written in one write(2) (the file-backed part, in large folios).
	// The slim build (-tags no_kms,no_s3, README "Slim builds") is measured idle only.
	e.proxyBin, e.slimBin = installPortcullis(t, root, ""), installPortcullis(t, root, "no_kms,no_s3")
	upAddr := freeAddr(t)
	e.upstream = start(t, "upstream", upAddr, "/v2/", e.registryBin, "serve", distributionConfig(t, upAddr, "", true))
	upHost := strings.TrimPrefix(e.upstream.url, "http://")
	// A counting reverse proxy in front of the upstream, for the scenarios that count.
	rp := httputil.NewSingleHostReverseProxy(mustURL(t, e.upstream.url))
	// Idle connections for parallel requests (the default transport keeps 2 per host, so a
	// proxy asking 3 things at once would pay a new upstream connection inside the hop).
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}
	cnt := &counter{next: rp}
	cntSrv := httptest.NewServer(cnt)
	t.Cleanup(cntSrv.Close)
	sum := &table{title: "", head: []string{"scenario", "direct", "distribution proxy", "portcullis", "portcullis vs peer", "target"}}

	var out strings.Builder
	fmt.Fprintf(&out, "## Benchmarks\n\nMeasured %s on %d CPUs (%s/%s), %s, all figures from this one run. Upstream: distribution v3.1.2 (`bin/registry`, filesystem storage, logs off) on 127.0.0.1. "+
		"Peer: the same distribution binary in proxy mode (`proxy.remoteurl`). portcullis: the shipped command (`portcullis serve`, built as the Dockerfile builds it) in its own process, "+
		"filesystem store, a policy requiring a key signature (cosign v3 bundle format, through the referrers tag schema, unless a table says otherwise). "+
		"Log levels: each proxy at its default unless a column says otherwise — portcullis at info (a JSON request line and a JSON audit line per manifest request, to a file), "+
		"distribution at info with its access log on; \"quiet\" is portcullis at warn and distribution at error with the access log off. Direct: the client talks to the upstream itself. "+
		"The load generator is test/bench/loadgen.go (loopback only). The machine's 2 cores are shared with the load generator, the upstream and the proxies, "+
		"and with whatever else runs: figures move by ±30%% between runs; ratios are from this run.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())

	// --- idle RSS ---
	idle, slim := e.portcullis(e.upstream.url, false), e.portcullisBin(e.slimBin, e.upstream.url, false)
	time.Sleep(time.Second)
	mem, slimMem := idle.memory(), slim.memory()
	idleRSS, idleAnon, idleFile := mem["VmRSS"], mem["RssAnon"], mem["RssFile"]

	// --- warm manifests ---
	warm := pushImage(t, upHost, "bench/warm", "v1", 1024, 2)
	signBundle(t, upHost, e.key, warm)
	dist, distQ := e.distribution(e.upstream.url, false), e.distribution(e.upstream.url, true)
	time.Sleep(time.Second)
	dmem := dist.memory() // the peer's idle RSS, before any load
	pc, pcQ := idle, e.portcullis(e.upstream.url, true)
	targets := []*server{e.upstream, dist, distQ, pc, pcQ}
	label := map[*server]string{e.upstream: "direct", dist: "distribution proxy", distQ: "distribution proxy (quiet)", pc: "portcullis", pcQ: "portcullis (quiet)"}
	dur := envDuration("BENCH_DURATION", 2*time.Second)
	wt := &table{title: "Warm manifest GET (decision and content cached)", head: []string{"ref", "clients", "direct req/s",
		"distribution req/s (p50 / p99), default logs", "portcullis req/s (p50 / p99), default logs", "portcullis / distribution",
		"distribution req/s, quiet", "portcullis req/s, quiet", "portcullis / distribution, quiet"}}
	var pcWarm time.Duration                 // portcullis's own warm latency, by digest, one client
	warmRates := map[string][]bench.Result{} // "digest"/"tag" → direct, dist, pc per client count
	for _, ref := range []string{"digest", "tag"} {
		r := warm.digest.String()
		if ref == "tag" {
			r = warm.tag
		}
		for _, c := range []int{1, 16, 64} {
			results := map[*server]bench.Result{}
			for _, s := range targets {
				u := s.url + "/v2/bench/warm/manifests/" + r
				if err := bench.CheckLoopback(u); err != nil {
					t.Fatal(err)
				}
				client := bench.Client(c)
				do := getter(client, u, len(warm.manifest))
				if err := do(context.Background()); err != nil { // warm up: fetch and verify once
					t.Fatalf("%s: %v", label[s], err)
				}
				res := bench.Run(context.Background(), bench.Load{Concurrency: c, Duration: dur, Requests: 500000}, do)
				client.CloseIdleConnections()
				if res.Errors > 0 {
					t.Errorf("%s %s c=%d: %d errors, first %v", label[s], ref, c, res.Errors, res.FirstErr)
				}
				results[s] = res
			}
			if ref == "digest" && c == 1 {
				pcWarm = results[pc].Percentile(0.5)
			}
			cell := func(s *server) string {
				r := results[s]
				return fmt.Sprintf("%.0f (%s / %s)", r.Throughput(), ms(r.Percentile(0.5)), ms(r.Percentile(0.99)))
			}
			rate := func(s *server) string { return fmt.Sprintf("%.0f", results[s].Throughput()) }
			wt.add(ref, strconv.Itoa(c), rate(e.upstream), cell(dist), cell(pc), ratio(results[pc].Throughput(), results[dist].Throughput()),
				rate(distQ), rate(pcQ), ratio(results[pcQ].Throughput(), results[distQ].Throughput()))
			warmRates[ref] = append(warmRates[ref], results[e.upstream], results[dist], results[pc])
		}
	}
	wt.notes = append(wt.notes, fmt.Sprintf("Each cell: %s of back-to-back GETs per client. Target: portcullis ≥ 3× distribution by digest at 64 clients, default logs. "+
		"By tag, both proxies ask the upstream for the tag's current digest on every request (portcullis: a HEAD, cache.tagTTL 0 by default).", dur))
	fmt.Fprintln(&out, wt.String())
	t.Log("\n" + wt.String())
	for _, ref := range []string{"digest", "tag"} {
		r := warmRates[ref] // per client count: direct, dist, pc
		tp := func(i int) string {
			return fmt.Sprintf("%.0f / %.0f / %.0f", r[i].Throughput(), r[3+i].Throughput(), r[6+i].Throughput())
		}
		target := ""
		if ref == "digest" {
			target = "≥ 3× at 64 " + check(r[8].Throughput() >= 3*r[7].Throughput())
		}
		sum.add(fmt.Sprintf("warm manifest by %s, 1 / 16 / 64 clients (req/s, default logs)", ref), tp(0), tp(1), tp(2),
			fmt.Sprintf("%s / %s / %s", ratio(r[2].Throughput(), r[1].Throughput()), ratio(r[5].Throughput(), r[4].Throughput()), ratio(r[8].Throughput(), r[7].Throughput())), target)
	}

	// --- cold pulls: timed with each proxy talking to the upstream itself (as cosign does),
	// and counted, on other images, with each proxy behind the counting reverse proxy ---
	const coldImages = 25 // a median on 2 shared cores: 5 moved it by ±40% between runs, 15 by ±25% (the upstream's blob GETs have a long tail)
	ct := &table{title: "Cold first pull of a signed image (2 × 256 KiB layers)", head: []string{"target", "manifest by tag p50", "manifest by digest p50", "whole image p50",
		"extra over distribution (manifest by tag)", "through the counting hop: manifest by tag / by digest p50", "upstream requests (manifest by tag)",
		"dependent upstream round trips (by tag / by digest)"}}
	signedImages := func(prefix string) (byTag, byDigest []pushed) {
		for i := range coldImages {
			p := pushImage(t, upHost, fmt.Sprintf("bench/%s%d", prefix, i), "v1", 256<<10, 2)
			signBundle(t, upHost, e.key, p)
			byTag = append(byTag, p)
			p = pushImage(t, upHost, fmt.Sprintf("bench/%sdigest%d", prefix, i), "v1", 256<<10, 2)
			signBundle(t, upHost, e.key, p)
			byDigest = append(byDigest, p)
		}
		return byTag, byDigest
	}
	images, digestImages := signedImages("cold")
	countedImages, countedDigestImages := signedImages("counted")
	var warmups []pushed
	for i := range 3 {
		w := pushImage(t, upHost, fmt.Sprintf("bench/coldwarmup%d", i), "v1", 256<<10, 2)
		signBundle(t, upHost, e.key, w)
		warmups = append(warmups, w)
	}
	// coldRun pulls each image cold through s: its manifest by digest (digestImages), and its
	// manifest by tag then its blobs (tagImages); requests and chains are counted at the
	// counting proxy (meaningful only for a target behind it).
	type coldRun struct {
		man, all, dig         []time.Duration
		reqs, chains, dchains []int
	}
	pull := func(s *server, tagImages, digestImages []pushed) coldRun {
		var r coldRun
		client := bench.Client(1)
		defer client.CloseIdleConnections()
		// Unmeasured pulls of other images first: a proxy's first contact with its upstream
		// (the /v2/ handshake, the referrers API probe) and a fresh process's first requests
		// (its heap growing) are not a cold image's cost.
		for _, w := range warmups {
			if err := getter(client, s.url+"/v2/"+w.repo+"/manifests/"+w.tag, len(w.manifest))(context.Background()); err != nil {
				t.Fatalf("%s warm-up pull: %v", label[s], err)
			}
		}
		// By digest and by tag alternate, so that neither is measured on a fresher process.
		for i, p := range digestImages {
			cnt.reset()
			t0 := time.Now()
			if err := getter(client, s.url+"/v2/"+p.repo+"/manifests/"+p.digest.String(), len(p.manifest))(context.Background()); err != nil {
				t.Fatalf("%s cold manifest by digest: %v", label[s], err)
			}
			r.dig = append(r.dig, time.Since(t0))
			r.dchains = append(r.dchains, cnt.chain())

			p = tagImages[i]
			base := s.url + "/v2/" + p.repo
			cnt.reset()
			t0 = time.Now()
			if err := getter(client, base+"/manifests/"+p.tag, len(p.manifest))(context.Background()); err != nil {
				t.Fatalf("%s cold manifest: %v", label[s], err)
			}
			r.man = append(r.man, time.Since(t0))
			r.reqs = append(r.reqs, cnt.total())
			r.chains = append(r.chains, cnt.chain())
			cfgName, _ := p.img.ConfigName()
			blobs := []string{cfgName.String()}
			layers, _ := p.img.Layers()
			for _, l := range layers {
				d, _ := l.Digest()
				blobs = append(blobs, d.String())
			}
			for _, b := range blobs {
				if err := getter(client, base+"/blobs/"+b, -1)(context.Background()); err != nil {
					t.Fatalf("%s cold blob: %v", label[s], err)
				}
			}
			r.all = append(r.all, time.Since(t0))
		}
		return r
	}
	cdist, cpc := e.distribution(e.upstream.url, false), e.portcullis(e.upstream.url, false)
	label[cdist], label[cpc] = "distribution proxy", "portcullis"
	timed := map[*server]coldRun{e.upstream: pull(e.upstream, images, digestImages), cdist: pull(cdist, images, digestImages), cpc: pull(cpc, images, digestImages)}
	kdist, kpc := e.distribution(cntSrv.URL, false), e.portcullis(cntSrv.URL, false)
	label[kdist], label[kpc] = "distribution proxy (counted)", "portcullis (counted)"
	counted := map[*server]coldRun{cdist: pull(kdist, countedImages, countedDigestImages), cpc: pull(kpc, countedImages, countedDigestImages)}
	for _, s := range []*server{e.upstream, cdist, cpc} {
		tr := timed[s]
		extra, hop, nreq, chain := "—", "—", "—", "—"
		if s != e.upstream {
			kr := counted[s]
			extra = ms(median(tr.man) - median(timed[cdist].man))
			hop = ms(median(kr.man)) + " / " + ms(median(kr.dig))
			nreq = strconv.Itoa(median(kr.reqs))
			chain = fmt.Sprintf("%d / %d", median(kr.chains), median(kr.dchains))
		}
		ct.add(label[s], ms(median(tr.man)), ms(median(tr.dig)), ms(median(tr.all)), extra, hop, nreq, chain)
	}
	// The same verification done by the real cosign, of the same images by tag and by digest
	// (cosign resolves a tag first, as portcullis does).
	var cosignTag, cosignDigest time.Duration
	if cosign := testtool.Path(t, "cosign3"); cosign != "" {
		verify := func(ps []pushed, ref func(pushed) string) time.Duration {
			var walls []time.Duration
			for _, p := range ps {
				t0 := time.Now()
				out, err := testtool.Run(t, "", cosign, nil, "verify", "--key", e.key.pubPath, "--insecure-ignore-tlog", "--allow-http-registry", upHost+"/"+p.repo+ref(p))
				if err != nil {
					t.Fatalf("cosign verify: %v\n%s", err, out)
				}
				walls = append(walls, time.Since(t0))
			}
			return median(walls)
		}
		cosignTag = verify(images[:5], func(p pushed) string { return ":" + p.tag })
		cosignDigest = verify(digestImages[:5], func(p pushed) string { return "@" + p.digest.String() })
		ct.add("`cosign verify` (v3.1.3, same images, direct)", ms(cosignTag), ms(cosignDigest), "—", "—", "—", "—", "—")
	}
	// The floor: the requests of the signature lookup alone, made straight to the upstream by
	// a plain client, on images of their own in the state the proxies found theirs in: the
	// manifest asked for before (by the direct pulls), the signature never.
	var floorTag, floorDigest []time.Duration
	floorImages, floorDigestImages := signedImages("floor")
	fc := bench.Client(1)
	for i := range floorDigestImages {
		for _, f := range []struct {
			p     pushed
			byTag bool
			into  *[]time.Duration
		}{{floorDigestImages[i], false, &floorDigest}, {floorImages[i], true, &floorTag}} {
			ref := f.p.digest.String()
			if f.byTag {
				ref = f.p.tag
			}
			if err := getter(fc, e.upstream.url+"/v2/"+f.p.repo+"/manifests/"+ref, len(f.p.manifest))(context.Background()); err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			if err := lookupChain(context.Background(), fc, e.upstream.url+"/v2/"+f.p.repo, f.p, f.byTag); err != nil {
				t.Fatalf("signature lookup, direct: %v", err)
			}
			*f.into = append(*f.into, time.Since(t0))
		}
	}
	fc.CloseIdleConnections()
	floorTagP50, floorDigestP50 := median(floorTag), median(floorDigest)
	ct.add("the lookup's upstream requests alone, direct (nothing verified)", ms(floorTagP50), ms(floorDigestP50), "—", "—", "—", "—", "4 / 3")
	ct.notes = append(ct.notes, fmt.Sprintf("Median of %d images, each cold for every target, after unmeasured pulls of 3 other images through each target (its first contact with the upstream, a fresh process's first requests); by digest and by tag alternate. "+
		"Timed columns: each proxy talks to the upstream itself, as `cosign verify` and a direct client do. The counting hop: the same pulls of %d other images, "+
		"each proxy reaching the upstream through a counting reverse proxy (which adds its own hop to each upstream request, and keeps idle connections for parallel ones), "+
		"which counts the upstream requests and the dependent round trips: the longest chain of upstream requests each sent after the previous one "+
		"had answered (requests in parallel count once), from the client's manifest GET to the proxy's answer. "+
		"portcullis's cold manifest includes the signature lookup (the manifest; the .sig tag and the referrers tag index in parallel; the bundle manifest; its blob) "+
		"and verification. By digest, the .sig tag and the referrers are asked together with the manifest: 3 dependent round trips for a bundle "+
		"(target ≤ 3; ≤ 2 for a legacy .sig, counted by TestColdDigestRoundTrips). Each by-digest image is another signed image, cold for every target.", coldImages, 2*coldImages))
	pcCold, pcColdDigest := median(timed[cpc].man), median(timed[cpc].dig)
	if cosignTag > 0 {
		ct.notes = append(ct.notes, fmt.Sprintf("`cosign verify` wall time (median of 5 images each) vs portcullis: a cold decision by tag (%s) %s faster, by digest (%s) %s faster "+
			"(target ≥ 20×, each against cosign given the same form of reference); a warm one (portcullis's own warm manifest-by-digest p50, one client, %s) %s faster than cosign by digest.",
			ms(pcCold), ratio(float64(cosignTag), float64(pcCold)), ms(pcColdDigest), ratio(float64(cosignDigest), float64(pcColdDigest)),
			ms(pcWarm), ratio(float64(cosignDigest), float64(pcWarm))))
	}
	ct.notes = append(ct.notes, fmt.Sprintf("The lookup's requests alone: a plain client asking the upstream for what a cold decision cannot do without, "+
		"one dependent step after another as portcullis does (by tag, the tag's manifest; then the manifest by digest, the .sig tag and the referrers tag index at once; "+
		"the bundle manifest; its blob), on %d + %d other signed images whose manifests were asked for once before (as the direct pulls do for the proxies) and their signatures never: "+
		"the floor of any verifier's cold decision against this upstream. "+
		"portcullis is %s / %s above it (by tag / by digest)%s.", coldImages, coldImages, ms(pcCold-floorTagP50), ms(pcColdDigest-floorDigestP50), cosignOverFloor(cosignTag, cosignDigest, floorTagP50, floorDigestP50)))
	ct.notes = append(ct.notes, fmt.Sprintf("Spread (p25–p75 of the %d images): portcullis by tag %s, by digest %s; distribution by tag %s, by digest %s.",
		coldImages, spread(timed[cpc].man), spread(timed[cpc].dig), spread(timed[cdist].man), spread(timed[cdist].dig)))
	fmt.Fprintln(&out, ct.String())
	t.Log("\n" + ct.String())
	sum.add("cold manifest of a signed image by tag / by digest (p50); dependent upstream round trips", ms(median(timed[e.upstream].man))+" / "+ms(median(timed[e.upstream].dig)),
		fmt.Sprintf("%s / %s; %d / %d", ms(median(timed[cdist].man)), ms(median(timed[cdist].dig)), median(counted[cdist].chains), median(counted[cdist].dchains)),
		fmt.Sprintf("%s / %s (verification included); %d / %d", ms(pcCold), ms(median(timed[cpc].dig)), median(counted[cpc].chains), median(counted[cpc].dchains)), "",
		"by digest ≤ 3 round trips "+check(median(counted[cpc].dchains) <= 3))
	sum.add("cold pull of the whole image (p50)", ms(median(timed[e.upstream].all)), ms(median(timed[cdist].all)), ms(median(timed[cpc].all)),
		ratio(float64(median(timed[cdist].all)), float64(median(timed[cpc].all))), "")
	if cosignTag > 0 {
		sum.add("`cosign verify` of the same image vs a portcullis decision, by tag / by digest", ms(cosignTag)+" / "+ms(cosignDigest), "",
			fmt.Sprintf("cold %s / %s; warm %s", ms(pcCold), ms(pcColdDigest), ms(pcWarm)),
			fmt.Sprintf("cold %s / %s faster; warm %s", ratio(float64(cosignTag), float64(pcCold)), ratio(float64(cosignDigest), float64(pcColdDigest)), ratio(float64(cosignDigest), float64(pcWarm))),
			"cold ≥ 20× "+check(float64(cosignTag) >= 20*float64(pcCold))+" / "+check(float64(cosignDigest) >= 20*float64(pcColdDigest)))
	}

	sum.add("a cold decision's upstream requests alone (the floor), by tag / by digest (p50)", ms(floorTagP50)+" / "+ms(floorDigestP50), "",
		fmt.Sprintf("%s / %s above it", ms(pcCold-floorTagP50), ms(pcColdDigest-floorDigestP50)), "", "")

	// --- containers/image (CRI-O, Podman) verifying on its own vs through portcullis ---
	if ct := containersImageTable(t, e, root, upHost); ct != nil {
		fmt.Fprintln(&out, ct.String())
		t.Log("\n" + ct.String())
		sum.rows = append(sum.rows, e.ciSummary...)
	}

	// --- 500 concurrent cold requests for one digest, upstream counted ---
	bt := &table{title: "500 concurrent cold requests for one digest", head: []string{"target", "wall", "p50", "p99", "errors", "upstream .sig GETs", "referrers API GETs", "referrers tag GETs", "other manifest GETs"}}
	for _, mk := range []struct {
		name string
		fn   func(string, bool) *server
	}{{"distribution proxy", e.distribution}, {"portcullis", e.portcullis}} {
		p := pushImage(t, upHost, "bench/burst-"+strings.Fields(mk.name)[0], "v1", 1024, 1)
		signBundle(t, upHost, e.key, p)
		s := mk.fn(cntSrv.URL, false)
		cnt.reset()
		client := bench.Client(500)
		res := bench.Burst(context.Background(), 500, getter(client, s.url+"/v2/"+p.repo+"/manifests/"+p.digest.String(), len(p.manifest)))
		client.CloseIdleConnections()
		bt.add(mk.name, ms(res.Elapsed), ms(res.Percentile(0.5)), ms(res.Percentile(0.99)), strconv.Itoa(res.Errors),
			strconv.Itoa(cnt.get(countSigTag)), strconv.Itoa(cnt.get(countReferrersAPI)), strconv.Itoa(cnt.get(countReferrersTag)), strconv.Itoa(cnt.get(countManifestGET)))
		if res.Errors > 0 {
			t.Errorf("%s burst: %d errors, first %v", mk.name, res.Errors, res.FirstErr)
		}
	}
	bt.notes = append(bt.notes, "Counted by a reverse proxy in front of the upstream. Target: one signature lookup for 500 cold requests "+
		"(distribution looks up no signatures). `other manifest GETs` are fetches of the image manifest itself.")
	fmt.Fprintln(&out, bt.String())
	t.Log("\n" + bt.String())

	// --- 100 concurrent cold GETs of one large blob, upstream counted ---
	large := envSize(t, "BENCH_BLOB_SIZE", 64<<20)
	ht := &table{title: fmt.Sprintf("100 concurrent cold GETs of one %s blob", mib(large)), head: []string{"target", "wall", "p50", "p99", "errors", "upstream blob GETs", "peak RSS of the proxy process (VmHWM)"}}
	herdSummary := []string{}
	for _, mk := range []struct {
		name string
		fn   func(string, bool) *server
	}{{"distribution proxy", e.distribution}, {"portcullis", e.portcullis}} {
		repo := "bench/herd-" + strings.Fields(mk.name)[0]
		ld := pushBlob(t, e.upstream.url, repo, large, 3)
		blobImage(t, upHost, repo, "v1", e.key, map[digest.Digest]int64{ld: large})
		s := mk.fn(cntSrv.URL, false)
		if err := getter(bench.Client(1), s.url+"/v2/"+repo+"/manifests/v1", -1)(context.Background()); err != nil { // grants the blob
			t.Fatal(err)
		}
		syscall.Sync()
		cnt.reset()
		client := bench.Client(100)
		res := bench.Burst(context.Background(), 100, getter(client, s.url+"/v2/"+repo+"/blobs/"+ld.String(), int(large)))
		client.CloseIdleConnections()
		peak := s.memory()["VmHWM"]
		ht.add(mk.name, ms(res.Elapsed), ms(res.Percentile(0.5)), ms(res.Percentile(0.99)), strconv.Itoa(res.Errors), strconv.Itoa(cnt.get(countBlobGET)), mib(peak))
		herdSummary = append(herdSummary, fmt.Sprintf("%d upstream GETs, %s wall", cnt.get(countBlobGET), ms(res.Elapsed)))
		if res.Errors > 0 {
			t.Errorf("%s herd: %d errors, first %v", mk.name, res.Errors, res.FirstErr)
		}
	}
	ht.notes = append(ht.notes, "Every client checks it received the whole blob. Counted by the reverse proxy in front of the upstream. Target (portcullis): exactly 1 upstream blob GET.")
	fmt.Fprintln(&out, ht.String())
	t.Log("\n" + ht.String())
	sum.add(fmt.Sprintf("100 concurrent cold GETs of one %s blob", mib(large)), "", herdSummary[0], herdSummary[1], "", "1 upstream GET "+check(strings.HasPrefix(herdSummary[1], "1 ")))

	// --- blob streaming ---
	// Cold: the median of coldBlobs first GETs, each of another blob, the targets taking
	// turns on each; warm: the median of 9 GETs of the first.
	const coldBlobs = 5
	small := min(int64(8<<20), large)
	smallD := pushBlob(t, e.upstream.url, "bench/blob", small, 1)
	layers := map[digest.Digest]int64{smallD: small}
	var largeDs []digest.Digest
	for i := range coldBlobs {
		d := pushBlob(t, e.upstream.url, "bench/blob", large, uint64(10+i))
		largeDs = append(largeDs, d)
		layers[d] = large
	}
	blobImage(t, upHost, "bench/blob", "v1", e.key, layers)
	blt := &table{title: fmt.Sprintf("Blob streaming (%s blob)", mib(large)), head: []string{"target", "cold MiB/s (median)", "cold range", "cold / direct", "warm MiB/s", "warm / direct",
		"peak RSS after " + mib(small), "peak RSS after " + mib(large), "process measured"}}
	fdist, fpc := e.distribution(e.upstream.url, false), e.portcullis(e.upstream.url, false)
	relay := &server{name: "relay", url: cntSrv.URL} // the counting hop: a byte relay in this process
	blobTargets := []*server{e.upstream, relay, fdist, fpc}
	clients, peakSmall, colds := map[*server]*http.Client{}, map[*server]int64{}, map[*server][]float64{}
	fetch := func(s *server, d digest.Digest, size int64) float64 {
		return blobMiB(t, clients[s], s.url+"/v2/bench/blob/blobs/"+d.String(), size)
	}
	for _, s := range blobTargets {
		clients[s] = bench.Client(1)
		if err := getter(clients[s], s.url+"/v2/bench/blob/manifests/v1", -1)(context.Background()); err != nil { // grants the blobs
			t.Fatal(err)
		}
		fetch(s, smallD, small)
		peakSmall[s] = s.memory()["VmHWM"]
	}
	for _, d := range largeDs {
		for _, s := range blobTargets {
			// Start each cold fetch with the page cache's dirty data written back: otherwise the
			// gigabytes written by the uploads and by the targets measured before slow this one down.
			syscall.Sync()
			colds[s] = append(colds[s], fetch(s, d, large))
		}
	}
	var directCold, directWarm float64
	blobRow := map[*server][]string{}
	for _, s := range blobTargets {
		var warms []float64
		for range 9 {
			warms = append(warms, fetch(s, largeDs[0], large))
		}
		warmMed, cold := median(warms), median(colds[s])
		peakLarge := s.memory()["VmHWM"]
		clients[s].CloseIdleConnections()
		name := map[*server]string{e.upstream: "direct", relay: "a byte relay (httputil.ReverseProxy)", fdist: "distribution proxy", fpc: "portcullis"}[s]
		proc := map[*server]string{e.upstream: "the upstream registry", relay: "— (in the load generator)", fdist: "distribution (proxy mode)", fpc: "portcullis (serve)"}[s]
		if s == e.upstream {
			directCold, directWarm = cold, warmMed
		}
		blt.add(name, fmt.Sprintf("%.0f", cold), rangeMiB(colds[s]), ratio(cold, directCold),
			fmt.Sprintf("%.0f", warmMed), ratio(warmMed, directWarm), mib(peakSmall[s]), mib(peakLarge), proc)
		blobRow[s] = []string{fmt.Sprintf("%.0f", cold), fmt.Sprintf("%.0f", warmMed), fmt.Sprintf("%s / %s", mib(peakSmall[s]), mib(peakLarge)),
			ratio(cold, directCold), ratio(warmMed, directWarm)}
	}
	blt.notes = append(blt.notes, fmt.Sprintf("Cold: the median of %d first GETs, each of another %s blob, the targets taking turns on each blob; "+
		"streamed from the upstream while being stored (and, for portcullis, digest-checked); the range is the slowest and fastest of the %d. ", coldBlobs, mib(large), coldBlobs)+
		"Warm: median of 9 GETs served from the proxy's store. Peak RSS is the VmHWM of the process named in the last column (fresh proxy processes; "+
		"for direct, the upstream registry serving the blob): flat memory means the two columns stay close however large the blob. "+
		"Dirty pages are written back (sync) before each cold GET. "+
		"The byte relay is the counting hop of the tables above, in the load generator's process: the upstream's bytes passed on, neither stored nor digest-checked, "+
		"so its \"cold\" GET is like its warm ones; it is the ceiling of any proxy in front of this upstream on these 2 cores (one more process copying every byte in and out). "+
		"Targets: cold ≥ 0.75× direct, warm ≥ 1× direct. BENCH_BLOB_SIZE=1GiB for the large run.")
	fmt.Fprintln(&out, blt.String())
	t.Log("\n" + blt.String())
	sum.add(fmt.Sprintf("%s blob, cold / warm (MiB/s)", mib(large)), blobRow[e.upstream][0]+" / "+blobRow[e.upstream][1],
		blobRow[fdist][0]+" / "+blobRow[fdist][1], fmt.Sprintf("%s / %s (%s / %s of direct)", blobRow[fpc][0], blobRow[fpc][1], blobRow[fpc][3], blobRow[fpc][4]),
		ratio(parseF(blobRow[fpc][0]), parseF(blobRow[fdist][0]))+" / "+ratio(parseF(blobRow[fpc][1]), parseF(blobRow[fdist][1])),
		"cold ≥ 0.75× direct "+check(parseF(blobRow[fpc][0]) >= 0.75*directCold)+", warm ≥ 1× "+check(parseF(blobRow[fpc][1]) >= directWarm))
	sum.add(fmt.Sprintf("%s blob through a byte relay, cold / warm (MiB/s): the ceiling of any proxy here", mib(large)), "", "",
		fmt.Sprintf("%s / %s (%s / %s of direct)", blobRow[relay][0], blobRow[relay][1], blobRow[relay][3], blobRow[relay][4]), "", "")
	// --- the same blobs over a paced upstream link ---
	lt, linkMiB := pacedLink(t, e, largeDs[:pacedBlobs], large)
	fmt.Fprintln(&out, lt.String())
	t.Log("\n" + lt.String())
	sum.add(fmt.Sprintf("%s blob, cold, over a %s upstream link (MiB/s, median of %d)", mib(large), linkName, pacedBlobs), linkMiB[0], linkMiB[1],
		fmt.Sprintf("%s (%s of direct)", linkMiB[2], ratio(parseF(linkMiB[2]), parseF(linkMiB[0]))), ratio(parseF(linkMiB[2]), parseF(linkMiB[1])), "")
	sum.add("peak RSS after an "+mib(small)+" / a "+mib(large)+" blob (VmHWM of the serving process)", blobRow[e.upstream][2]+" (upstream registry)",
		blobRow[fdist][2], blobRow[fpc][2], "", "flat")
	sum.add("idle RSS (a fresh process, VmRSS = anon + file-backed)", "",
		fmt.Sprintf("%s (%s + %s)", mib(dmem["VmRSS"]), mib(dmem["RssAnon"]), mib(dmem["RssFile"])),
		fmt.Sprintf("%s (%s + %s)", mib(idleRSS), mib(idleAnon), mib(idleFile)), "", "≤ 40 MiB "+check(idleRSS <= 40<<20))
	sum.add("idle RSS of the slim build (-tags no_kms,no_s3: no KMS clients, no s3 driver)", "", "",
		fmt.Sprintf("%s (%s + %s)", mib(slimMem["VmRSS"]), mib(slimMem["RssAnon"]), mib(slimMem["RssFile"])), "", "≤ 40 MiB "+check(slimMem["VmRSS"] <= 40<<20))

	// --- the handler alone ---
	hdt := &table{title: "Warm manifest through the HTTP handler alone (go test -bench BenchmarkWarmManifest ./test/bench)", head: []string{"ref", "log level", "ns/op (wall)", "CPU ns/op", "B/op", "allocs/op"}}
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelWarn} {
		for _, byTag := range []bool{false, true} {
			var cpu float64
			r := testing.Benchmark(func(b *testing.B) {
				warmManifest(b, byTag, level)
			})
			cpu = r.Extra["cpu-ns/op"]
			ref := "digest"
			if byTag {
				ref = "tag (cache.tagTTL 1h)"
			}
			lv := level.String()
			if level == slog.LevelInfo {
				lv += " (default)"
			}
			hdt.add(ref, lv, strconv.FormatInt(r.NsPerOp(), 10), fmt.Sprintf("%.0f", cpu), strconv.FormatInt(r.AllocedBytesPerOp(), 10), strconv.FormatInt(r.AllocsPerOp(), 10))
			if !byTag && level == slog.LevelInfo {
				sum.add("handler only, cached manifest by digest, default log level", "", "", fmt.Sprintf("%d ns wall, %.0f ns CPU, %d allocs per GET", r.NsPerOp(), cpu, r.AllocsPerOp()),
					"", "≤ 15 µs CPU "+check(cpu <= 15000)+", ≤ 40 allocs "+check(r.AllocsPerOp() <= 40))
			}
		}
	}
	hdt.notes = append(hdt.notes, "A real policy engine with a cached decision and the in-memory content store; no network between client and handler. "+
		"Logs are JSON lines to io.Discard (at info, the default: a request line and an audit line per GET). The counts include the benchmark's own "+
		"httptest.ResponseRecorder (about 7 allocations) and the app's ServeMux. CPU ns/op is the whole test process's user+system time per GET (GC included): "+
		"the cost, which the target is checked against, where wall time also counts the waits for the 2 shared cores.")
	fmt.Fprintln(&out, hdt.String())
	t.Log("\n" + hdt.String())

	// --- 1M cached decisions ---
	dt := decisionTable(t, 1_000_000)
	fmt.Fprintln(&out, dt.String())
	t.Log("\n" + dt.String())
	sum.add("1M cached decisions (`cache.Memory`)", "", "", dt.rows[0][2]+" B per decision, "+dt.rows[0][3]+" per Get", "", "≤ 256 B "+check(parseF(dt.rows[0][2]) <= 256))

	dst := os.Getenv("BENCH_OUT")
	if dst == "" {
		dst = filepath.Join(root, "test", "bench", "results.md")
	}
	if err := os.WriteFile(dst, []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	summary := fmt.Sprintf("Measured %s (%s, %d CPUs); every figure is from [`test/bench/results.md`](test/bench/results.md) of the same run, "+
		"which says what each row measured. Log levels: each proxy at its default (portcullis info, distribution info with access log).\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.Version(), runtime.NumCPU())
	summary += strings.TrimPrefix(sum.String(), "### \n\n")
	sdst := filepath.Join(filepath.Dir(dst), "summary.md")
	if err := os.WriteFile(sdst, []byte(summary), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s and %s", dst, sdst)
}

// median is the middle value of s (the upper one of an even count).
func median[T cmp.Ordered](s []T) T {
	s = slices.Clone(s)
	slices.Sort(s)
	return s[len(s)/2]
}

// spread is "p25–p75" of d.
func spread(d []time.Duration) string {
	d = slices.Clone(d)
	slices.Sort(d)
	return ms(d[len(d)/4]) + "–" + ms(d[len(d)*3/4])
}

// rangeMiB is "slowest–fastest" of rates in MiB/s.
func rangeMiB(rates []float64) string {
	return fmt.Sprintf("%.0f–%.0f", slices.Min(rates), slices.Max(rates))
}

// blobMiB GETs the blob at u (size bytes) with c and returns the rate in MiB/s.
func blobMiB(t *testing.T, c *http.Client, u string, size int64) float64 {
	t.Helper()
	t0 := time.Now()
	if err := getter(c, u, int(size))(context.Background()); err != nil {
		t.Fatalf("blob %s: %v", u, err)
	}
	return float64(size) / (1 << 20) / time.Since(t0).Seconds()
}

func check(ok bool) string {
	if ok {
		return "✔"
	}
	return "✘"
}

func parseF(s string) float64 {
	f, _ := strconv.ParseFloat(strings.Fields(s)[0], 64)
	return f
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// pushBlob uploads size pseudo-random bytes (seeded) to repo in one monolithic PUT,
// streaming them twice (once to compute the digest), and returns the digest.
func pushBlob(t *testing.T, base, repo string, size int64, seed uint64) digest.Digest {
	t.Helper()
	content := func() io.Reader {
		return io.LimitReader(rand.NewChaCha8([32]byte{byte(seed)}), size)
	}
	h := sha256.New()
	if _, err := io.Copy(h, content()); err != nil {
		t.Fatal(err)
	}
	d := digest.Digest("sha256:" + hex.EncodeToString(h.Sum(nil)))
	resp, err := http.Post(base+"/v2/"+repo+"/blobs/uploads/", "application/octet-stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %d", resp.StatusCode)
	}
	loc, err := mustURL(t, base).Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	req, _ := http.NewRequest(http.MethodPut, loc.String(), content())
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d %s", resp.StatusCode, b)
	}
	return d
}

// decisionBytes fills a cache.Memory with n allowed decisions shaped like the engine's and
// returns the heap they take per decision and the cost of a lookup. The keys (their digest
// strings included) are made before the fill, as the engine's come with the request.
func decisionBytes(tb testing.TB, n int) (perEntry float64, get time.Duration) {
	tb.Helper()
	version := strings.Repeat("ab", 32)
	keys := make([]cache.Key, n)
	for i := range keys {
		keys[i] = cache.Key{PolicyVersion: version, Repository: fmt.Sprintf("docker.io/myorg/app%d", i%1000), Digest: digest.FromString(strconv.Itoa(i))}
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c, err := cache.NewMemory[policy.Decision](cache.WithSize(n), cache.WithTTL(time.Hour), cache.WithNegativeTTL(time.Minute))
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	for i, k := range keys {
		c.Put(ctx, k, policy.Decision{
			Allowed: true, Verified: true, Policy: "prod", Mode: "enforce",
			Reason:    fmt.Sprintf("verified by authority %q", "release-key"),
			Signers:   []string{"release-key"},
			DecidedAt: now.Add(time.Duration(i)),
		})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if c.Len() != n {
		tb.Fatalf("cache holds %d decisions, want %d", c.Len(), n)
	}
	perEntry = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
	lookups := 1_000_000
	t0 := time.Now()
	for i := range lookups {
		if d, ok := c.Get(ctx, keys[(i*7919)%n]); !ok || d.Reason == "" {
			tb.Fatal("miss")
		}
	}
	get = time.Since(t0) / time.Duration(lookups)
	runtime.KeepAlive(keys)
	runtime.KeepAlive(c)
	return perEntry, get
}

// decisionTable reports decisionBytes for n decisions.
func decisionTable(t *testing.T, n int) *table {
	t.Helper()
	perEntry, get := decisionBytes(t, n)
	tb := &table{title: "Decision cache (cache.Memory)", head: []string{"decisions", "heap", "bytes per decision", "Get (one goroutine)"}}
	tb.add(strconv.Itoa(n), mib(int64(perEntry*float64(n))), fmt.Sprintf("%.0f", perEntry), fmt.Sprintf("%d ns", get.Nanoseconds()))
	tb.notes = append(tb.notes, "Keys and decisions shaped like the engine's (shared 64-character policy version, 1000 repositories, "+
		"one signer, a formatted reason, each its own decision time); the keys, digest strings included, are made before the fill "+
		"(the engine's come with the request), so the figure is what the cache adds. Target: ≤ 256 bytes (1M decisions ≤ 256 MiB).")
	return tb
}

// The paced upstream link: 1 Gbit/s, in bytes per second, and how many blobs are fetched
// cold over it.
const (
	linkRate   = 125_000_000
	linkName   = "1 Gbit/s"
	pacedBlobs = 3
)

// pacedLink measures cold GETs of blobs (size bytes each) with the upstream behind a link of
// linkRate: a relay passing the upstream's answers on no faster than that, as a registry
// across a network is reached. Direct (over the link), a fresh distribution proxy and a
// fresh portcullis, each reaching the upstream over the link, take turns on each blob. It
// returns the table and the median MiB/s of direct, distribution and portcullis.
func pacedLink(t *testing.T, e *env, blobs []digest.Digest, size int64) (*table, []string) {
	link := rate.NewLimiter(linkRate, 256<<10)
	rp := httputil.NewSingleHostReverseProxy(mustURL(t, e.upstream.url))
	rp.ModifyResponse = func(resp *http.Response) error {
		resp.Body = &pacedBody{ReadCloser: resp.Body, ctx: resp.Request.Context(), link: link}
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	direct := &server{name: "direct over the link", url: srv.URL}
	targets := []*server{direct, e.distribution(srv.URL, false), e.portcullis(srv.URL, false)}
	clients, colds := map[*server]*http.Client{}, map[*server][]float64{}
	for _, s := range targets {
		clients[s] = bench.Client(1)
		if err := getter(clients[s], s.url+"/v2/bench/blob/manifests/v1", -1)(context.Background()); err != nil { // grants the blobs
			t.Fatal(err)
		}
	}
	for _, d := range blobs {
		for _, s := range targets {
			syscall.Sync()
			colds[s] = append(colds[s], blobMiB(t, clients[s], s.url+"/v2/bench/blob/blobs/"+d.String(), size))
		}
	}
	lt := &table{title: fmt.Sprintf("Cold %s blob over a %s upstream link", mib(size), linkName), head: []string{"target", "cold MiB/s (median)", "cold range", "cold / direct"}}
	var medians []string
	directMed := median(colds[direct])
	for i, s := range targets {
		clients[s].CloseIdleConnections()
		m := median(colds[s])
		medians = append(medians, fmt.Sprintf("%.0f", m))
		lt.add([]string{"direct", "distribution proxy", "portcullis"}[i], medians[i], rangeMiB(colds[s]), ratio(m, directMed))
	}
	lt.notes = append(lt.notes, fmt.Sprintf("The same upstream reached through a relay that passes its answers on at no more than %s (%.0f MiB/s), "+
		"as a registry across a network is reached; fresh proxy processes, each reaching the upstream over the link. "+
		"Median of %d first GETs, each of another blob, the targets taking turns on each; the range is the slowest and fastest. "+
		"Over a link slower than this machine's loopback, what the proxy does per byte (hashing, storing) is done while the next bytes are on their way.",
		linkName, float64(linkRate)/(1<<20), len(blobs)))
	return lt, medians
}

// pacedBody passes a response body on no faster than link allows.
type pacedBody struct {
	io.ReadCloser
	ctx  context.Context
	link *rate.Limiter
}

func (b *pacedBody) Read(p []byte) (int, error) {
	p = p[:min(len(p), b.link.Burst())]
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		if werr := b.link.WaitN(b.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

// lookupChain makes, straight to the upstream at base and verifying nothing, the requests a
// cold decision for p cannot do without: by tag, the tag's manifest first (for the digest);
// then the manifest by digest (when asked by digest), the .sig tag (absent) and the referrers
// tag index at once; then the bundle manifest the index lists; then the bundle's blob. Its
// time is the floor of any verifier's cold decision against this upstream.
func lookupChain(ctx context.Context, c *http.Client, base string, p pushed, byTag bool) error {
	get := func(path string, status int) ([]byte, error) {
		var b bytes.Buffer
		_, err := get(ctx, c, base+path, status, &b)
		return b.Bytes(), err
	}
	if byTag {
		if _, err := get("/manifests/"+p.tag, http.StatusOK); err != nil {
			return err
		}
	}
	sigTag := "/manifests/sha256-" + p.digest.Hex
	var index []byte
	var errs [3]error
	var wg sync.WaitGroup
	if !byTag {
		wg.Go(func() { _, errs[0] = get("/manifests/"+p.digest.String(), http.StatusOK) })
	}
	wg.Go(func() { _, errs[1] = get(sigTag+".sig", http.StatusNotFound) })
	wg.Go(func() { index, errs[2] = get(sigTag, http.StatusOK) })
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return err
	}
	var listed struct {
		Manifests []struct{ Digest string } `json:"manifests"`
		Layers    []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal(index, &listed); err != nil || len(listed.Manifests) == 0 {
		return fmt.Errorf("referrers tag index of %s: %d manifests, %v", p.digest, len(listed.Manifests), err)
	}
	bundle, err := get("/manifests/"+listed.Manifests[0].Digest, http.StatusOK)
	if err != nil {
		return err
	}
	listed.Layers = nil
	if err := json.Unmarshal(bundle, &listed); err != nil || len(listed.Layers) == 0 {
		return fmt.Errorf("bundle manifest of %s: %d layers, %v", p.digest, len(listed.Layers), err)
	}
	_, err = get("/blobs/"+listed.Layers[0].Digest, http.StatusOK)
	return err
}

// cosignOverFloor says how much faster than cosign a verifier costing nothing but the
// upstream's round trips would be: the highest ratio this upstream allows.
func cosignOverFloor(cosignTag, cosignDigest, floorTag, floorDigest time.Duration) string {
	if cosignTag == 0 {
		return ""
	}
	return fmt.Sprintf("; a verifier costing nothing beyond these requests would be %s / %s faster than `cosign verify`",
		ratio(float64(cosignTag), float64(floorTag)), ratio(float64(cosignDigest), float64(floorDigest)))
}
