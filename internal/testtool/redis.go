package testtool

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Redis is a redis-server started for one test, on 127.0.0.1, persisting nothing.
type Redis struct {
	// Addr is its host:port.
	Addr string

	t    testing.TB
	path string
	dir  string
	args []string // more redis-server arguments

	mu  sync.Mutex
	cmd *exec.Cmd
}

// StartRedis starts redis-server (Debian's package; hack/tools.sh installs it) on a free
// port of 127.0.0.1 with --save "" and --appendonly no, and args after them (an --aclfile,
// say), and stops it when the test ends. It skips the test when the binary is missing, or
// fails it when CI=true.
func StartRedis(t testing.TB, args ...string) *Redis {
	t.Helper()
	r := &Redis{t: t, path: Path(t, "redis-server"), dir: t.TempDir(), args: args}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redis: free port: %v", err)
	}
	r.Addr = l.Addr().String()
	_ = l.Close()
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Start starts the server again on its address (after Stop), with no data, and waits until
// it answers PING.
func (r *Redis) Start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		r.t.Fatalf("redis %s: already running", r.Addr)
	}
	_, port, _ := net.SplitHostPort(r.Addr)
	cmd := exec.Command(r.path, append([]string{"--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--protected-mode", "yes", "--loglevel", "warning"}, r.args...)...)
	cmd.Dir = r.dir
	out := &redisLog{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("redis: start: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := ping(r.Addr); err == nil {
			break
		} else if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			r.t.Fatalf("redis %s did not answer PING within 10s: %v\n%s", r.Addr, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.cmd = cmd
}

// Stop kills the server (SIGKILL: the way a crashed Redis goes) and waits for it to exit. It
// does nothing when the server is not running.
func (r *Redis) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// Do sends one command (inline arguments, no spaces inside one) and returns its reply's
// first line, for tests that plant or inspect data the way another client would.
func (r *Redis) Do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", r.Addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	msg := "*" + strconv.Itoa(len(args)) + "\r\n"
	for _, a := range args {
		msg += "$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n"
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return line[:len(line)-2], nil
}

func ping(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	// A server whose default user is off answers NOAUTH: it is up all the same.
	if line != "+PONG\r\n" && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// redisLog collects a server's output, written by exec's copying goroutine.
type redisLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *redisLog) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *redisLog) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
