package testtool

import (
	"testing"
	"time"
)

// poll is how long Eventually waits between two calls of its condition.
const poll = 10 * time.Millisecond

// Eventually calls cond until it returns nil, sleeping 10 ms between calls, and fails t with
// the last error cond returned once timeout has passed without it returning nil. cond is
// called at least once, and in the test's goroutine, so it may itself fail t. Its error says
// what was last observed, e.g. "request metric error classes [], want [\"none\"]".
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", timeout, err)
		}
		time.Sleep(poll)
	}
}
