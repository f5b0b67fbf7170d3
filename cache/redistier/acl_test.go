package redistier_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/cache/redistier"
	"github.com/portcullis/portcullis/internal/testtool"
)

// TestDocumentedACL: the ACL that deploy/kubernetes/redis (and the chart, which renders the
// same line) gives the user portcullis lets the tier do all it does — share a decision under
// the verification lock, forget one on every replica — and nothing else: no other key
// prefix, no administration, no reading of every key.
func TestDocumentedACL(t *testing.T) {
	const pw = "a-password-for-the-test"
	aclFile := filepath.Join(t.TempDir(), "users.acl")
	if err := os.WriteFile(aclFile, []byte(documentedACL(t, pw)), 0o600); err != nil {
		t.Fatal(err)
	}
	r := testtool.StartRedis(t, "--aclfile", aclFile)
	as := func() *tier { return replicaAs(t, r.Addr, "portcullis", pw, redistier.Options{}) }
	a, b := as(), as()
	waitSubscribed(t, a, b)
	ctx, k := context.Background(), key(40)
	v := &verifier{}
	v.allow.Store(true)
	if d, cached, err := a.Do(ctx, k, v.fill); err != nil || cached || !d.Allowed {
		t.Fatalf("A: %+v cached %v err %v; want a fresh admission", d, cached, err)
	}
	if d, cached, err := b.Do(ctx, k, v.fill); err != nil || !cached || !d.Allowed {
		t.Fatalf("B: %+v cached %v err %v; want A's admission from Redis", d, cached, err)
	}
	b.Forget(ctx, "", k.Digest)
	testtool.Eventually(t, 2*time.Second, func() error {
		if n := a.Len(); n != 0 {
			return fmt.Errorf("A's local tier holds %d decisions after B's Forget", n)
		}
		return nil
	})
	if _, cached, err := a.Do(ctx, k, v.fill); err != nil || cached {
		t.Fatalf("A after the Forget: cached %v err %v; want verified again", cached, err)
	}
	if n := v.runs.Load(); n != 2 {
		t.Errorf("verified %d times, want 2 (once, and once after the Forget)", n)
	}
	for name, tr := range map[string]*tier{"A": a, "B": b} {
		if s := tr.Stats(); s.Errors != 0 {
			t.Errorf("%s: %d failed Redis calls under the documented ACL", name, s.Errors)
		}
	}

	c := redis.NewClient(&redis.Options{Addr: r.Addr, Username: "portcullis", Password: pw, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	for _, cmd := range [][]any{
		{"SET", "elsewhere:key", "x"},
		{"KEYS", "*"},
		{"FLUSHALL"},
		{"CONFIG", "GET", "dir"},
		{"CLIENT", "KILL", "ID", "999999"},
		{"ACL", "LIST"},
		{"PUBLISH", "elsewhere", "x"},
	} {
		err := c.Do(ctx, cmd...).Err()
		if err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
			t.Errorf("%v as portcullis: %v, want NOPERM", cmd, err)
		}
	}
}

// documentedACL is the ACL file the commands in deploy/kubernetes/redis/kustomization.yaml
// make for password pw.
func documentedACL(t *testing.T, pw string) string {
	t.Helper()
	root, err := testtool.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "redis", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`printf '(user default off[^']*)'`).FindSubmatch(b)
	if m == nil {
		t.Fatal("kustomization.yaml shows no printf of the ACL file")
	}
	sum := sha256.Sum256([]byte(pw))
	return fmt.Sprintf(strings.ReplaceAll(string(m[1]), `\n`, "\n"), hex.EncodeToString(sum[:]))
}
