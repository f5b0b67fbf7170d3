package trustroot_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/portcullis/portcullis/verify/trustroot"
)

// trustedRootJSON is the trusted_root.json of a fresh virtual sigstore.
func trustedRootJSON(t *testing.T) []byte {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	return trustedRootOf(t, vs)
}

func trustedRootOf(t *testing.T, vs *ca.VirtualSigstore) []byte {
	t.Helper()
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), vs.CTLogs(), vs.TimestampingAuthorities(), vs.RekorLogs())
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// tufRepo is a TUF repository (consistent snapshots, one ed25519 key for every role) served
// on 127.0.0.1, publishing trusted_root.json.
type tufRepo struct {
	dir     string
	signer  signature.Signer
	root    *metadata.Metadata[metadata.RootType]
	version int64
	srv     *httptest.Server
	down    atomic.Bool
}

func newTUFRepo(t *testing.T) *tufRepo {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := signature.LoadSigner(priv, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	r := &tufRepo{dir: t.TempDir(), signer: signer}
	if err := os.MkdirAll(filepath.Join(r.dir, "targets"), 0o755); err != nil {
		t.Fatal(err)
	}
	key, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	r.root = metadata.Root(time.Now().AddDate(1, 0, 0))
	for _, role := range []string{"root", "targets", "snapshot", "timestamp"} {
		if err := r.root.Signed.AddKey(key, role); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.root.Sign(signer); err != nil {
		t.Fatal(err)
	}
	if err := r.root.ToFile(filepath.Join(r.dir, "1.root.json"), false); err != nil {
		t.Fatal(err)
	}
	files := http.FileServer(http.Dir(r.dir))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.down.Load() {
			http.Error(w, "mirror down", http.StatusServiceUnavailable)
			return
		}
		files.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// rootJSON is the initial root.json a client must be given.
func (r *tufRepo) rootJSON(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "root.json")
	b, err := os.ReadFile(filepath.Join(r.dir, "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// publish makes trustedRoot the repository's trusted_root.json target (a new version of
// targets, snapshot and timestamp).
func (r *tufRepo) publish(t *testing.T, trustedRoot []byte) {
	t.Helper()
	r.version++
	expires := time.Now().AddDate(0, 0, 7)
	tf, err := metadata.TargetFile().FromBytes(trustroot.TrustedRootTarget, trustedRoot, "sha256")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(trustedRoot)
	if err := os.WriteFile(filepath.Join(r.dir, "targets", hex.EncodeToString(sum[:])+"."+trustroot.TrustedRootTarget), trustedRoot, 0o644); err != nil {
		t.Fatal(err)
	}
	targets := metadata.Targets(expires)
	targets.Signed.Version = r.version
	targets.Signed.Targets[trustroot.TrustedRootTarget] = tf
	snapshot := metadata.Snapshot(expires)
	snapshot.Signed.Version = r.version
	snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(r.version)
	timestamp := metadata.Timestamp(expires)
	timestamp.Signed.Version = r.version
	timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(r.version)
	for _, m := range []struct {
		sign func(signature.Signer) (*metadata.Signature, error)
		save func(string, bool) error
		name string
	}{
		{targets.Sign, targets.ToFile, fmt.Sprintf("%d.targets.json", r.version)},
		{snapshot.Sign, snapshot.ToFile, fmt.Sprintf("%d.snapshot.json", r.version)},
		{timestamp.Sign, timestamp.ToFile, "timestamp.json"},
	} {
		if _, err := m.sign(r.signer); err != nil {
			t.Fatal(err)
		}
		if err := m.save(filepath.Join(r.dir, m.name), false); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTrustedRootFile(t *testing.T) {
	dir := t.TempDir()
	good := trustedRootJSON(t)
	for _, tt := range []struct {
		name    string
		content []byte
		want    string // error substring; "" for success
	}{
		{"valid", good, ""},
		{"not JSON", []byte("{"), "parse trusted root"},
		{"wrong media type", []byte(`{"mediaType":"application/json"}`), "parse trusted root"},
		{"too large", make([]byte, trustroot.MaxTrustedRootSize+1), "exceeds"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".json")
			if err := os.WriteFile(p, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := trustroot.NewManager().Root(context.Background(), trustroot.Config{Name: "corp", TrustedRootFile: p})
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Root: got %v, want an error containing %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Name() != "corp" || r.Digest() != digestOf(good) || len(r.Material().FulcioCertificateAuthorities()) != 1 {
				t.Errorf("root = %s %s with %d CAs, want corp %s with 1", r.Name(), r.Digest(), len(r.Material().FulcioCertificateAuthorities()), digestOf(good))
			}
		})
	}
	if _, err := trustroot.NewManager().Root(context.Background(), trustroot.Config{Name: "corp", TrustedRootFile: filepath.Join(dir, "missing.json")}); err == nil {
		t.Error("Root of a missing file: got no error")
	}
}

func TestTUF(t *testing.T) {
	ctx := context.Background()
	repo := newTUFRepo(t)
	first, second := trustedRootJSON(t), trustedRootJSON(t)
	repo.publish(t, first)
	cfg := trustroot.Config{Name: "private", TUF: &trustroot.TUFConfig{
		Mirror: repo.srv.URL, Root: repo.rootJSON(t), CacheDir: t.TempDir(), Refresh: time.Hour,
	}}
	now := time.Now()
	m := trustroot.NewManager(trustroot.WithClock(func() time.Time { return now }))

	r, err := m.Root(ctx, cfg)
	if err != nil {
		t.Fatalf("Root: %v", err)
	}
	if r.Digest() != digestOf(first) || !strings.HasPrefix(r.Source(), "tuf http://127.0.0.1:") {
		t.Fatalf("root %s from %s, want %s from the repository", r.Digest(), r.Source(), digestOf(first))
	}
	if p := m.Problems(); len(p) != 0 {
		t.Errorf("Problems = %q, want none", p)
	}

	// Not due yet: nothing is fetched and nothing changes.
	repo.publish(t, second)
	if m.Refresh(ctx, false) {
		t.Error("Refresh before the interval reported a change")
	}
	// Due: the new root is fetched and served.
	now = now.Add(time.Hour)
	if !m.Refresh(ctx, false) {
		t.Fatal("Refresh after the interval reported no change")
	}
	if r, _ := m.Root(ctx, cfg); r.Digest() != digestOf(second) {
		t.Fatalf("after refresh: root %s, want %s", r.Digest(), digestOf(second))
	}

	// The mirror goes down: the last good root keeps serving and Problems says so.
	repo.down.Store(true)
	now = now.Add(2 * time.Hour)
	if m.Refresh(ctx, false) {
		t.Error("failed Refresh reported a change")
	}
	if r, err := m.Root(ctx, cfg); err != nil || r.Digest() != digestOf(second) {
		t.Fatalf("mirror down: root %v, %v; want the last good %s", r, err, digestOf(second))
	}
	p := m.Problems()
	if len(p) != 1 || !strings.Contains(p[0], "trust root private: TUF repository "+repo.srv.URL+" unreachable since") || !strings.Contains(p[0], digestOf(second)) {
		t.Errorf("Problems = %q, want one naming the mirror and the root still served", p)
	}

	// A new process with the mirror still down starts from the on-disk cache.
	m2 := trustroot.NewManager()
	r2, err := m2.Root(ctx, cfg)
	if err != nil {
		t.Fatalf("restart with the mirror down: %v", err)
	}
	if r2.Digest() != digestOf(second) {
		t.Errorf("restart: root %s, want the cached %s", r2.Digest(), digestOf(second))
	}
	if len(m2.Problems()) != 1 {
		t.Errorf("restart: Problems = %q, want the mirror reported", m2.Problems())
	}

	// Back up: the next refresh clears the problem.
	repo.down.Store(false)
	now = now.Add(time.Hour)
	m.Refresh(ctx, false)
	if p := m.Problems(); len(p) != 0 {
		t.Errorf("mirror back: Problems = %q, want none", p)
	}
}

// TestTUFRootVerifies verifies a keyless signature with the root a TUF repository on
// 127.0.0.1 serves, and not with another root.
func TestTUFRootVerifies(t *testing.T) {
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	repo := newTUFRepo(t)
	repo.publish(t, trustedRootOf(t, vs))
	r, err := trustroot.NewManager().Root(context.Background(), trustroot.Config{Name: "private", TUF: &trustroot.TUFConfig{
		Mirror: repo.srv.URL, Root: repo.rootJSON(t), CacheDir: t.TempDir(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	stmt := []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"` + strings.Repeat("ab", 32) + `"}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}`)
	entity, err := vs.Attest("alice@example.com", "https://accounts.example.com", stmt)
	if err != nil {
		t.Fatal(err)
	}
	id, err := sgverify.NewShortCertificateIdentity("https://accounts.example.com", "", "alice@example.com", "")
	if err != nil {
		t.Fatal(err)
	}
	pol := sgverify.NewPolicy(sgverify.WithoutArtifactUnsafe(), sgverify.WithCertificateIdentity(id))
	v, err := sgverify.NewVerifier(r.Material(), sgverify.WithSignedTimestamps(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(entity, pol); err != nil {
		t.Errorf("signature of the TUF repository's sigstore: %v", err)
	}
	other, err := trustroot.Parse("other", "test", trustedRootJSON(t), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	v, _ = sgverify.NewVerifier(other.Material(), sgverify.WithSignedTimestamps(1))
	if _, err := v.Verify(entity, pol); err == nil {
		t.Error("verified with another sigstore's root")
	}
}

func TestTUFNeverReached(t *testing.T) {
	repo := newTUFRepo(t)
	repo.publish(t, trustedRootJSON(t))
	repo.down.Store(true)
	cfg := trustroot.Config{Name: "private", TUF: &trustroot.TUFConfig{Mirror: repo.srv.URL, Root: repo.rootJSON(t), CacheDir: t.TempDir()}}
	m := trustroot.NewManager()
	if r, err := m.Root(context.Background(), cfg); err == nil {
		t.Fatalf("Root with the mirror down and no cache: got %s, want an error", r.Digest())
	}
	if p := m.Problems(); len(p) != 1 || !strings.Contains(p[0], "no root was ever fetched") {
		t.Errorf("Problems = %q, want one saying no root was fetched", p)
	}
}

func TestTUFWrongRoot(t *testing.T) {
	// A repository signed by other keys than the configured root.json is refused.
	repo, other := newTUFRepo(t), newTUFRepo(t)
	repo.publish(t, trustedRootJSON(t))
	cfg := trustroot.Config{Name: "private", TUF: &trustroot.TUFConfig{Mirror: repo.srv.URL, Root: other.rootJSON(t), CacheDir: t.TempDir()}}
	if r, err := trustroot.NewManager().Root(context.Background(), cfg); err == nil {
		t.Fatalf("Root with a foreign root.json: got %s, want an error", r.Digest())
	}
}

func TestTUFMirrorHangs(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	repo := newTUFRepo(t)
	cfg := trustroot.Config{Name: "private", TUF: &trustroot.TUFConfig{Mirror: srv.URL, Root: repo.rootJSON(t), CacheDir: t.TempDir()}}

	// The client's timeout bounds each download.
	m := trustroot.NewManager(trustroot.WithHTTPClient(&http.Client{Timeout: 200 * time.Millisecond}))
	start := time.Now()
	if _, err := m.Root(context.Background(), cfg); err == nil {
		t.Fatal("Root from a mirror that never answers: got no error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Root took %s with a 200ms download timeout", d)
	}

	// So does the context.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := trustroot.NewManager().Root(ctx, cfg); err == nil {
		t.Fatal("Root with an expiring context: got no error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Root took %s with a 200ms context", d)
	}
}

func TestKeep(t *testing.T) {
	repo := newTUFRepo(t)
	repo.publish(t, trustedRootJSON(t))
	cfg := trustroot.Config{Name: "private", TUF: &trustroot.TUFConfig{Mirror: repo.srv.URL, Root: repo.rootJSON(t), CacheDir: t.TempDir()}}
	m := trustroot.NewManager()
	if _, err := m.Root(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	repo.down.Store(true)
	m.Refresh(context.Background(), true)
	if len(m.Problems()) != 1 {
		t.Fatalf("Problems = %q, want the mirror reported", m.Problems())
	}
	m.Keep([]trustroot.Config{cfg, {Name: "file", TrustedRootFile: "/x"}})
	if len(m.Statuses()) != 1 {
		t.Errorf("Keep of the root in use dropped it: %+v", m.Statuses())
	}
	// A configuration no longer using the root: it is neither refreshed nor reported.
	m.Keep(nil)
	if len(m.Statuses()) != 0 || len(m.Problems()) != 0 {
		t.Errorf("after Keep(nil): statuses %+v, problems %q; want none", m.Statuses(), m.Problems())
	}
}
