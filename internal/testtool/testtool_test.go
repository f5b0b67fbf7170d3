package testtool_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/testtool"
)

// recorder is a testing.TB that records how a helper ended the test.
type recorder struct {
	testing.TB
	ended string // "skip", "fatal" or ""
	msg   string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.ended, r.msg = "skip", fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.ended, r.msg = "fatal", fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls f with a recorder in its own goroutine, as the testing package would.
func run(t *testing.T, f func(tb testing.TB)) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

func TestPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "tool")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\necho hello \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	notExe := filepath.Join(dir, "data")
	if err := os.WriteFile(notExe, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		env, ci   string
		wantEnded string
		wantPath  string
	}{
		{name: "from env", env: exe, wantPath: exe},
		{name: "missing skips", env: "", wantEnded: "skip"},
		{name: "missing fails in CI", env: "", ci: "true", wantEnded: "fatal"},
		{name: "not executable skips", env: notExe, wantEnded: "skip"},
		{name: "not executable fails in CI", env: notExe, ci: "true", wantEnded: "fatal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PORTCULLIS_NO_SUCH_TOOL", tt.env)
			t.Setenv("CI", tt.ci)
			var got string
			r := run(t, func(tb testing.TB) { got = testtool.Path(tb, "portcullis-no-such-tool") })
			if r.ended != tt.wantEnded {
				t.Errorf("ended with %q (%s), want %q", r.ended, r.msg, tt.wantEnded)
			}
			if got != tt.wantPath {
				t.Errorf("path = %q, want %q", got, tt.wantPath)
			}
		})
	}
}

func TestRunIsOffline(t *testing.T) {
	out, err := testtool.Run(t, "", "/bin/sh", []string{"EXTRA=1"}, "-c", "echo $HTTPS_PROXY $NO_PROXY $EXTRA; test -z \"$COSIGN_PASSWORD\"")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if want := "http://127.0.0.1:9 127.0.0.1,localhost 1"; strings.TrimSpace(out) != want {
		t.Errorf("output = %q, want %q", out, want)
	}
}

func TestCosignSignArgs(t *testing.T) {
	for _, tt := range []struct {
		major int
		want  string
	}{
		{2, "sign --key k --tlog-upload=false --allow-http-registry -y"},
		{3, "sign --key k --tlog-upload=false --allow-http-registry -y --use-signing-config=false"},
	} {
		if got := strings.Join(testtool.CosignSignArgs(tt.major, "k"), " "); got != tt.want {
			t.Errorf("v%d: got %q, want %q", tt.major, got, tt.want)
		}
	}
}
