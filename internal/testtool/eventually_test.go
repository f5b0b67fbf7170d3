package testtool_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testtool"
)

// TestEventually: Eventually returns as soon as the condition holds, however late, and
// otherwise fails the test after the timeout with the condition's last error.
func TestEventually(t *testing.T) {
	for _, tc := range []struct {
		name      string
		holdsFrom int // the condition holds from this call on (1 is the first); 0: never
		timeout   time.Duration
		wantCalls int    // 0: any number
		wantFatal string // "" when Eventually must return
	}{
		{name: "holds at once", holdsFrom: 1, timeout: time.Second, wantCalls: 1},
		{name: "holds at once, no time", holdsFrom: 1, timeout: 0, wantCalls: 1},
		{name: "holds later", holdsFrom: 4, timeout: 10 * time.Second, wantCalls: 4},
		{name: "never holds", timeout: 100 * time.Millisecond, wantFatal: "not within 100ms: call "},
		{name: "never holds, no time", timeout: 0, wantFatal: "not within 0s: call 1 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			start := time.Now()
			r := run(t, func(tb testing.TB) {
				testtool.Eventually(tb, tc.timeout, func() error {
					calls++
					if tc.holdsFrom != 0 && calls >= tc.holdsFrom {
						return nil
					}
					return fmt.Errorf("call %d did not hold", calls)
				})
			})
			elapsed := time.Since(start)
			if tc.wantCalls != 0 && calls != tc.wantCalls {
				t.Errorf("%d calls, want %d", calls, tc.wantCalls)
			}
			if tc.wantFatal == "" {
				if r.ended != "" {
					t.Fatalf("ended %q (%s), want a return", r.ended, r.msg)
				}
				return
			}
			if r.ended != "fatal" {
				t.Fatalf("ended %q (%s), want a failure", r.ended, r.msg)
			}
			// The message carries the last error: that of the last call.
			want := fmt.Sprintf("call %d did not hold", calls)
			if !strings.HasPrefix(r.msg, tc.wantFatal) || !strings.HasSuffix(r.msg, want) {
				t.Errorf("failed with %q, want %q…%q", r.msg, tc.wantFatal, want)
			}
			if elapsed < tc.timeout {
				t.Errorf("failed after %v, before the timeout %v", elapsed, tc.timeout)
			}
		})
	}
}
