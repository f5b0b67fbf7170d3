package testtool

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// BuildPortcullis builds cmd/portcullis into a temporary directory and returns the binary.
func BuildPortcullis(t testing.TB) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "portcullis")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/portcullis")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// Served is a running `portcullis serve`.
type Served struct {
	// Host is the address it listens on (127.0.0.1:port).
	Host string
	cmd  *exec.Cmd
	logs *processLog
	// exited is closed when the process has exited, with its error in exitErr.
	exited  chan struct{}
	exitErr error
}

// Logs returns everything the process wrote so far (stdout and stderr).
func (s *Served) Logs() string { return s.logs.String() }

// Signal sends sig to the process.
func (s *Served) Signal(sig os.Signal) error { return s.cmd.Process.Signal(sig) }

// Exit waits at most d for the process to exit and returns how it ended: nil for exit
// status 0, an error saying so when it is still running.
func (s *Served) Exit(d time.Duration) error {
	select {
	case <-s.exited:
		return s.exitErr
	case <-time.After(d):
		return fmt.Errorf("portcullis still running after %s", d)
	}
}

// Serve runs `bin serve --config cfg extra...` in the offline environment and waits (at most
// a minute) until it logs that it listens; the configuration must log in JSON (log.format:
// json) and may listen on port 0. The process is killed when the test ends.
func Serve(t testing.TB, bin, cfg string, extra ...string) *Served {
	t.Helper()
	listening := make(chan string, 1)
	logs := &processLog{listening: listening}
	cmd := exec.Command(bin, append([]string{"serve", "--config", cfg}, extra...)...)
	cmd.Env = OfflineEnv(t)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &Served{cmd: cmd, logs: logs, exited: make(chan struct{})}
	go func() { s.exitErr = cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-s.exited })
	select {
	case s.Host = <-listening:
		return s
	case <-s.exited:
		t.Fatalf("portcullis serve --config %s exited: %v\n%s", cfg, cmd.ProcessState, logs)
	case <-time.After(time.Minute):
		t.Fatalf("portcullis serve --config %s did not start:\n%s", cfg, logs)
	}
	return nil
}

// processLog collects a process's output (safe for concurrent readers) and sends, once, the
// address of its JSON "listening" line.
type processLog struct {
	mu        sync.Mutex
	b         strings.Builder
	listening chan<- string // buffered, sent to once
	sent      bool
}

func (l *processLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	start := l.b.Len()
	l.b.Write(p)
	if l.sent {
		return len(p), nil
	}
	// Complete lines only: look back to the start of the line p continues.
	s := l.b.String()
	from := strings.LastIndexByte(s[:start], '\n') + 1
	for line := range strings.Lines(s[from:]) {
		i := strings.Index(line, `"addr":"`)
		if !strings.HasSuffix(line, "\n") || i < 0 || !strings.Contains(line, "listening") {
			continue
		}
		addr, _, _ := strings.Cut(line[i+len(`"addr":"`):], `"`)
		l.listening <- addr
		l.sent = true
		break
	}
	return len(p), nil
}

func (l *processLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Registry runs distribution's registry binary (registry) with filesystem storage, deletes
// enabled, on a free port of 127.0.0.1, and returns its host once it answers /v2/. stop kills
// it (the test's cleanup does too).
func Registry(t testing.TB) (host string, stop func()) {
	t.Helper()
	bin := Path(t, "registry")
	host = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	yml := fmt.Sprintf("version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\n"+
		"storage:\n  filesystem: {rootdirectory: %s}\n  delete: {enabled: true}\nhttp: {addr: %s}\n", filepath.Join(dir, "data"), host)
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Env = OfflineEnv(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) }
	t.Cleanup(stop)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			return host, stop
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry did not come up: %v", err)
		}
	}
}
