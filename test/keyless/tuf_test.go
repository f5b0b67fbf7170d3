package keyless

import (
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
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/portcullis/portcullis/internal/testtool"
)

// serveTUF serves on 127.0.0.1 a TUF repository (consistent snapshots, one ed25519 key for
// every role) whose one target is trustedRoot as "trusted_root.json", as sigstore's TUF
// repositories publish it. It returns the mirror's URL and the path of its initial root.json.
func serveTUF(t *testing.T, trustedRoot []byte) (mirror, rootJSON string) {
	t.Helper()
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := signature.LoadSigner(priv, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	key, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	expires := time.Now().AddDate(0, 0, 7)
	root := metadata.Root(expires)
	for _, role := range []string{"root", "targets", "snapshot", "timestamp"} {
		if err := root.Signed.AddKey(key, role); err != nil {
			t.Fatal(err)
		}
	}
	const target = "trusted_root.json"
	tf, err := metadata.TargetFile().FromBytes(target, trustedRoot, "sha256")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "targets"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(trustedRoot)
	if err := os.WriteFile(filepath.Join(dir, "targets", hex.EncodeToString(sum[:])+"."+target), trustedRoot, 0o644); err != nil {
		t.Fatal(err)
	}
	targets := metadata.Targets(expires)
	targets.Signed.Targets[target] = tf
	snapshot := metadata.Snapshot(expires)
	snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(1)
	timestamp := metadata.Timestamp(expires)
	timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(1)
	for _, m := range []struct {
		sign func(signature.Signer) (*metadata.Signature, error)
		save func(string, bool) error
		name string
	}{
		{root.Sign, root.ToFile, "1.root.json"},
		{targets.Sign, targets.ToFile, "1.targets.json"},
		{snapshot.Sign, snapshot.ToFile, "1.snapshot.json"},
		{timestamp.Sign, timestamp.ToFile, "timestamp.json"},
	} {
		if _, err := m.sign(signer); err != nil {
			t.Fatal(err)
		}
		if err := m.save(filepath.Join(dir, m.name), false); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	rootJSON = filepath.Join(t.TempDir(), "root.json")
	b, err := os.ReadFile(filepath.Join(dir, "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rootJSON, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return srv.URL, rootJSON
}

// TestTUFTrustRoot: the stack's trusted root served by a TUF repository on 127.0.0.1 is a
// trust root of keyless authorities: a cosign v3 bundle of the named identity is admitted
// through portcullis, another identity's is denied.
func TestTUFTrustRoot(t *testing.T) {
	s := needStack(t)
	crane := testtool.Path(t, "crane")
	tr, err := os.ReadFile(s.trustedRoot)
	if err != nil {
		t.Fatal(err)
	}
	mirror, rootJSON := serveTUF(t, tr)
	up := newUpstream(t)
	px := startProxy(t, up, fmt.Sprintf(`trustRoots:
  - name: private
    tuf: {mirror: %s, root: %s, cacheDir: %s, refresh: 1h}
defaultPolicy: deny
policies:
  - name: tuf
    images: ["%s/**"]
    authorities: [{name: alice, keyless: {trustRoot: private, identities: [{issuer: %q, subject: alice@example.com}]}}]
`, mirror, rootJSON, t.TempDir(), up.name, s.oidc.url("email")))
	for _, tc := range []struct {
		signer   string
		admitted bool
	}{{"alice@example.com", true}, {"mallory@example.com", false}} {
		t.Run(tc.signer, func(t *testing.T) {
			repo := "tuf/" + strings.Split(tc.signer, "@")[0]
			s.cosignSignKeyless(t, s.oidc.emailToken(tc.signer), up.push(t, repo), true)
			out, err := testtool.Run(t, "", crane, nil, "pull", "--insecure", "--format", "oci", px.host+"/"+repo+":v1", filepath.Join(t.TempDir(), "out"))
			switch {
			case tc.admitted && err != nil:
				t.Fatalf("not admitted: %v\n%s", err, out)
			case !tc.admitted && err == nil:
				t.Fatal("admitted, want DENIED")
			case !tc.admitted && !strings.Contains(out, "subject mallory@example.com is not alice@example.com"):
				t.Errorf("denied without the reason:\n%s", out)
			}
		})
	}
}
