package testtool_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testtool"
)

// TestServe runs stand-ins for the portcullis binary (shell scripts) through Serve: the
// address comes from the first complete JSON "listening" line, however the process splits
// its writes; a process that exits before listening fails the test with its output; Exit
// reports how the process ended and waits for its last output.
func TestServe(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		wantHost     string // "" when Serve must fail the test
		wantFatal    string
	}{
		{"listening line", `echo '{"msg":"listening","addr":"127.0.0.1:1234"}'`, "127.0.0.1:1234", ""},
		{"line split over writes", `printf '{"msg":"listening","addr":"127.0.0.1:4'; sleep 0.2; printf '2"}\n'`, "127.0.0.1:42", ""},
		{"other lines first, stdout too", `echo '{"msg":"loaded","addr":"127.0.0.1:1"}' >&2; echo '{"msg":"listening","addr":"127.0.0.1:7"}'; echo '{"msg":"listening","addr":"127.0.0.1:8"}'`, "127.0.0.1:7", ""},
		{"exits first", `echo 'config: listen: bad address' >&2; exit 3`, "", "config: listen: bad address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "portcullis")
			script := "#!/bin/sh\ntrap 'echo stopping; exit 0' TERM\n" + tc.script + "\nwhile :; do sleep 0.05; done\n"
			if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			var s *testtool.Served
			r := run(t, func(tb testing.TB) { s = testtool.Serve(tb, bin, "cfg.yaml") })
			if tc.wantHost == "" {
				if r.ended != "fatal" || !strings.Contains(r.msg, tc.wantFatal) || !strings.Contains(r.msg, "exited") {
					t.Fatalf("ended %q with %q, want a failure saying it exited, with %q", r.ended, r.msg, tc.wantFatal)
				}
				return
			}
			if r.ended != "" || s.Host != tc.wantHost {
				t.Fatalf("ended %q (%s), host %q; want host %q", r.ended, r.msg, s.Host, tc.wantHost)
			}
			if err := s.Exit(100 * time.Millisecond); err == nil {
				t.Fatal("Exit reported a running process as exited")
			}
			if err := s.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := s.Exit(10 * time.Second); err != nil {
				t.Fatalf("exit after SIGTERM: %v", err)
			}
			if !strings.HasSuffix(s.Logs(), "stopping\n") {
				t.Errorf("logs after exit lack the last line:\n%s", s.Logs())
			}
		})
	}
}
