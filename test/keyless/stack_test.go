package keyless

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testtool"
)

// stack is a local sigstore on 127.0.0.1, started once per test binary (see TestMain):
// the in-process OIDC issuer, a static CT log (tesseract, POSIX storage), Fulcio with a file
// CA and that CT log, an RFC 3161 timestamp authority, and Rekor v2 (rekor-tiles, POSIX
// storage). Rekor v1 (trillian and a database) is not started: legacy-format keyless
// signatures are timestamped by the TSA instead of logged.
type stack struct {
	dir    string
	pki    *pki
	oidc   *issuer
	procs  []*proc
	fulcio string // http://127.0.0.1:port
	ct     string
	tsa    string // …/api/v1/timestamp
	rekor  string
	// trustedRoot holds the stack's CA, CT log, TSA and Rekor; byoRoot only the BYO CA;
	// signingConfig names Fulcio, Rekor v2 and the TSA, signingConfigNoTlog no Rekor.
	trustedRoot, byoRoot, signingConfig, signingConfigNoTlog string
	cosign3                                                  string
	tsaLock                                                  *os.File
}

// A proc is one service of the stack, its output captured in a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// missingToolError is a tool the stack needs that cannot be found: the tests skip (or, with
// CI=true, fail).
type missingToolError struct{ name string }

func (e missingToolError) Error() string {
	return "tool " + e.name + " not in $" + envName(e.name) + ", bin/ or PATH (run hack/tools.sh)"
}

func envName(tool string) string {
	return strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(tool))
}

// lookTool finds a tool as testtool.Path does, without a test to skip.
func lookTool(name string) (string, error) {
	if p := os.Getenv(envName(name)); p != "" {
		if isExec(p) {
			return p, nil
		}
		return "", missingToolError{name}
	}
	if root, err := testtool.ModuleRoot(); err == nil {
		if p := filepath.Join(root, "bin", name); isExec(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", missingToolError{name}
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

var (
	stackOnce sync.Once
	shared    *stack
	sharedErr error
)

// TestMain stops the shared stack after the tests (it is started by the first test that
// needs it, so that `go test -run` of other tests costs nothing) and removes the portcullis
// binary.
func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	cancelBuild()
	buildOnce.Do(func() {}) // waits for a build in progress
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// needStack returns the shared stack, starting it on first use. A missing tool skips the
// test (fails it when CI=true); a stack that does not start fails it.
func needStack(t *testing.T) *stack {
	t.Helper()
	stackOnce.Do(func() {
		go buildPortcullis() // while the stack starts and the cosign tests run
		start := time.Now()
		shared, sharedErr = startStack(context.Background())
		if sharedErr == nil {
			fmt.Fprintf(os.Stderr, "keyless: sigstore stack up in %s (%s)\n", time.Since(start).Round(time.Millisecond), shared.dir)
		}
	})
	var mt missingToolError
	switch {
	case errors.As(sharedErr, &mt) && os.Getenv("CI") != "true":
		t.Skipf("keyless stack: %v", sharedErr)
	case sharedErr != nil:
		t.Fatalf("keyless stack: %v", sharedErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			shared.dumpLogs(t)
		}
	})
	return shared
}

func startStack(ctx context.Context) (s *stack, err error) {
	tools := map[string]string{}
	for _, name := range []string{"fulcio", "timestamp-server", "rekor-tiles", "tesseract", "cosign3"} {
		if tools[name], err = lookTool(name); err != nil {
			return nil, err
		}
	}
	// timestamp-server v2.1.3 always serves its metrics on :2112 (no flag), so only one runs
	// per host: take a host-wide lock, then wait for the port.
	lock, err := lockTSA(ctx, 3*time.Minute)
	if err != nil {
		return nil, err
	}
	// Holding the lock, no other stack runs: directories of stacks whose test binary was
	// killed before it could clean up are removed.
	if stale, _ := filepath.Glob(filepath.Join(os.TempDir(), "portcullis-keyless-[0-9]*")); len(stale) > 0 {
		for _, d := range stale {
			_ = os.RemoveAll(d)
		}
	}
	dir, err := os.MkdirTemp("", "portcullis-keyless-")
	if err != nil {
		lock.Close()
		return nil, err
	}
	s = &stack{dir: dir, cosign3: tools["cosign3"], tsaLock: lock}
	defer func() {
		if err != nil {
			s.stop()
			s = nil
		}
	}()
	if s.pki, err = newPKI(dir); err != nil {
		return s, fmt.Errorf("pki: %w", err)
	}
	if s.oidc, err = newIssuer(); err != nil {
		return s, err
	}
	ports, err := freePorts(8)
	if err != nil {
		return s, err
	}
	const h = "http://127.0.0.1:"
	ctPort, fulcioPort, fulcioGRPC, fulcioMetrics, tsaPort, rekorPort, rekorGRPC, rekorMetrics :=
		ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6], ports[7]
	s.ct, s.fulcio, s.tsa, s.rekor = h+ctPort, h+fulcioPort, h+tsaPort+"/api/v1/timestamp", h+rekorPort
	p := s.pki.path
	for _, d := range []string{"ct-data", "rekor-data"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return s, err
		}
	}
	fulcioConfig := filepath.Join(dir, "fulcio-config.yaml")
	if err := os.WriteFile(fulcioConfig, []byte(fulcioConfigYAML(s.oidc)), 0o600); err != nil {
		return s, err
	}
	type service struct {
		name, ready string
		args        []string
	}
	services := []service{
		{"tesseract", s.ct + "/ct/v1/get-roots", []string{"--private_key", p(ctKeyPEM), "--origin", "127.0.0.1",
			"--storage_dir", filepath.Join(dir, "ct-data"), "--roots_pem_file", p(fulcioRootPEM),
			"--ext_key_usages", "CodeSigning", "--http_endpoint", "127.0.0.1:" + ctPort}},
		{"fulcio", s.fulcio + "/api/v2/configuration", []string{"serve", "--host", "127.0.0.1", "--port", fulcioPort,
			"--grpc-host", "127.0.0.1", "--grpc-port", fulcioGRPC, "--metrics-port", fulcioMetrics,
			// The default is an abstract socket shared by every Fulcio of the host.
			"--legacy-unix-domain-socket", filepath.Join(dir, "fulcio.sock"),
			"--ca", "fileca", "--fileca-cert", p(fulcioChainPEM), "--fileca-key", p(fulcioKeyPEM),
			"--fileca-key-passwd", "", "--fileca-watch=false",
			"--ct-log-url", s.ct, "--ct-log-public-key-path", p(ctPubPEM), "--config-path", fulcioConfig}},
		{"timestamp-server", s.tsa + "/certchain", []string{"serve", "--host", "127.0.0.1", "--port", tsaPort,
			"--timestamp-signer", "file", "--file-signer-key-path", p(tsaKeyPEM),
			"--certificate-chain-path", p(tsaChainPEM), "--disable-ntp-monitoring"}},
		// The checkpoint origin is --hostname; verifiers take it from the host of the URL in
		// the trusted root, so it must be 127.0.0.1.
		{"rekor-tiles", s.rekor + "/healthz", []string{"serve", "--hostname", "127.0.0.1",
			"--http-address", "127.0.0.1", "--http-port", rekorPort,
			"--grpc-address", "127.0.0.1", "--grpc-port", rekorGRPC, "--http-metrics-port", rekorMetrics,
			"--storage-dir", filepath.Join(dir, "rekor-data"), "--signer-filepath", p(rekorKeyPEM),
			"--checkpoint-interval", "1s"}},
	}
	for _, svc := range services {
		pr, err := s.spawn(svc.name, tools[svc.name], svc.args...)
		if err != nil {
			return s, err
		}
		s.procs = append(s.procs, pr)
	}
	for i, svc := range services {
		if err := waitHTTP(ctx, s.procs[i], svc.ready, 60*time.Second); err != nil {
			return s, fmt.Errorf("%w\n%s", err, tail(s.procs[i].log, 30))
		}
	}
	return s, s.trustFiles(ctx)
}

// trustFiles writes the trusted roots and signing configs with the real cosign v3.
func (s *stack) trustFiles(ctx context.Context) error {
	p := s.pki.path
	st := time.Now().Add(-24 * time.Hour).UTC().Format(time.RFC3339)
	s.trustedRoot = filepath.Join(s.dir, "trusted_root.json")
	s.byoRoot = filepath.Join(s.dir, "trusted_root.byo.json")
	s.signingConfig = filepath.Join(s.dir, "signing_config.json")
	s.signingConfigNoTlog = filepath.Join(s.dir, "signing_config.notlog.json")
	oidcURL := s.oidc.url("email")
	common := []string{
		"--fulcio", "url=" + s.fulcio + ",api-version=1,start-time=" + st + ",operator=keyless-test",
		"--oidc-provider", "url=" + oidcURL + ",api-version=1,start-time=" + st + ",operator=keyless-test",
		"--tsa", "url=" + s.tsa + ",api-version=1,start-time=" + st + ",operator=keyless-test", "--tsa-config", "ANY",
	}
	runs := [][]string{
		{"trusted-root", "create",
			"--fulcio", "url=" + s.fulcio + ",certificate-chain=" + p(fulcioChainPEM),
			"--tsa", "url=" + s.tsa + ",certificate-chain=" + p(tsaChainPEM),
			// No origin for the CT log: the SCT's log ID is the SHA-256 of its key.
			"--ctfe", "url=" + s.ct + ",public-key=" + p(ctPubPEM) + ",start-time=" + st,
			// origin makes the log ID the checkpoint note's key hash.
			"--rekor", "url=" + s.rekor + ",public-key=" + p(rekorPubPEM) + ",start-time=" + st + ",origin=127.0.0.1",
			"--out", s.trustedRoot},
		{"trusted-root", "create", "--fulcio", "url=https://byo.invalid,certificate-chain=" + p(byoChainPEM), "--out", s.byoRoot},
		append(append([]string{"signing-config", "create"}, common...),
			"--rekor", "url="+s.rekor+",api-version=2,start-time="+st+",operator=keyless-test", "--rekor-config", "ANY",
			"--out", s.signingConfig),
		append(append([]string{"signing-config", "create"}, common...), "--out", s.signingConfigNoTlog),
	}
	for _, args := range runs {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		cmd := exec.CommandContext(cctx, s.cosign3, args...)
		cmd.Env = s.env()
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// env is the environment of the stack's tools: no proxy beyond loopback, a TUF cache that
// is never the user's (nothing may reach the public-good instance).
func (s *stack) env() []string {
	home := filepath.Join(s.dir, "home")
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TUF_ROOT=" + filepath.Join(home, ".sigstore", "root"),
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=127.0.0.1,localhost"}
}

func fulcioConfigYAML(is *issuer) string {
	email, gha := is.url("email"), is.url("gha")
	return `oidc-issuers:
  ` + email + `:
    issuer-url: ` + email + `
    client-id: sigstore
    type: email
  ` + gha + `:
    issuer-url: ` + gha + `
    client-id: sigstore
    type: ci-provider
    ci-provider: github-workflow
ci-issuer-metadata:
  github-workflow:
    default-template-values:
      url: "https://github.com"
      environment: ""
    extension-templates:
      github-workflow-trigger: "event_name"
      github-workflow-sha: "sha"
      github-workflow-name: "workflow"
      github-workflow-repository: "repository"
      github-workflow-ref: "ref"
      build-signer-uri: "{{ .url }}/{{ .job_workflow_ref }}"
      build-signer-digest: "job_workflow_sha"
      runner-environment: "runner_environment"
      source-repository-uri: "{{ .url }}/{{ .repository }}"
      source-repository-digest: "sha"
      source-repository-ref: "ref"
      source-repository-identifier: "repository_id"
      source-repository-owner-uri: "{{ .url }}/{{ .repository_owner }}"
      source-repository-owner-identifier: "repository_owner_id"
      build-config-uri: "{{ .url }}/{{ .workflow_ref }}"
      build-config-digest: "workflow_sha"
      build-trigger: "event_name"
      run-invocation-uri: "{{ .url }}/{{ .repository }}/actions/runs/{{ .run_id }}/attempts/{{ .run_attempt }}"
      source-repository-visibility-at-signing: "repository_visibility"
      deployment-environment: "environment"
    subject-alternative-name-template: "{{ .url }}/{{ .job_workflow_ref }}"
`
}

func (s *stack) spawn(name, path string, args ...string) (*proc, error) {
	logPath := filepath.Join(s.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = s.dir, s.env(), f, f
	// Killed with the test binary when it dies without stopping the stack (a timeout, a
	// SIGKILL): an orphaned timestamp-server would hold :2112 for every later run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	pr := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(pr.done) }()
	return pr, nil
}

// stop ends every service (SIGTERM, then SIGKILL after 5 s), the issuer and the TSA lock,
// and removes the stack's directory.
func (s *stack) stop() {
	for _, pr := range s.procs {
		_ = pr.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, pr := range s.procs {
		select {
		case <-pr.done:
		case <-time.After(5 * time.Second):
			_ = pr.cmd.Process.Kill()
			<-pr.done
		}
	}
	if s.oidc != nil {
		s.oidc.close()
	}
	if s.tsaLock != nil {
		s.tsaLock.Close() // releases the flock
	}
	if os.Getenv("KEYLESS_KEEP") == "" {
		_ = os.RemoveAll(s.dir)
	}
}

// dumpLogs logs the end of each service's log.
func (s *stack) dumpLogs(t *testing.T) {
	for _, pr := range s.procs {
		t.Logf("--- %s (%s):\n%s", pr.name, pr.log, tail(pr.log, 40))
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func waitHTTP(ctx context.Context, pr *proc, url string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
		}
		select {
		case <-pr.done:
			return fmt.Errorf("%s exited before answering %s", pr.name, url)
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer %s within %s", pr.name, url, within)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1 (free when asked: the services
// bind them a moment later).
func freePorts(n int) ([]string, error) {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out = append(out, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	return out, nil
}

// lockTSA takes the host-wide lock for port 2112 (held until the returned file is closed)
// and waits until nothing listens there.
func lockTSA(ctx context.Context, within time.Duration) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "portcullis-keyless-tsa-2112.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(within)
	for syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("another keyless test run holds %s (timestamp-server v2.1.3 needs port 2112) for more than %s", f.Name(), within)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:2112", time.Second)
		if err != nil {
			return f, nil
		}
		c.Close()
		if time.Now().After(deadline) {
			f.Close()
			return nil, errors.New("port 2112 is in use; timestamp-server v2.1.3 binds it for metrics and exits when it cannot")
		}
		time.Sleep(500 * time.Millisecond)
	}
}
