package keys_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/keys"
)

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		password  string
		pemType   string
		try       string
		wantError error
	}{
		{"password", "s3cret", keys.PEMTypeEncrypted, "s3cret", nil},
		{"empty password", "", keys.PEMTypeEncrypted, "", nil},
		{"old cosign PEM type", "pw", keys.PEMTypeEncryptedCosign, "pw", nil},
		{"wrong password", "s3cret", keys.PEMTypeEncrypted, "nope", keys.ErrWrongPassword},
		{"empty instead of password", "s3cret", keys.PEMTypeEncrypted, "", keys.ErrWrongPassword},
	} {
		t.Run(tc.name, func(t *testing.T) {
			priv, pub, err := keys.GenerateKeyPair([]byte(tc.password))
			if err != nil {
				t.Fatal(err)
			}
			if tc.pemType != keys.PEMTypeEncrypted {
				b, _ := pem.Decode(priv)
				b.Type = tc.pemType
				priv = pem.EncodeToMemory(b)
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "k.key")
			if err := os.WriteFile(path, priv, 0o600); err != nil {
				t.Fatal(err)
			}
			pass := func(bool) ([]byte, error) { return []byte(tc.try), nil }
			env := func(k string) (string, bool) {
				if k == "PUB" {
					return string(pub), true
				}
				return "", false
			}
			s, err := keys.LoadSigner(ctx, path, pass, env)
			if !errors.Is(err, tc.wantError) {
				t.Fatalf("LoadSigner: got error %v, want %v", err, tc.wantError)
			}
			if err != nil {
				return
			}
			v, err := keys.LoadPublicKey(ctx, "env://PUB", env)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := s.SignMessage(strings.NewReader("hello"))
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Verifier.VerifySignature(bytes.NewReader(sig), strings.NewReader("hello")); err != nil {
				t.Errorf("signature by the loaded key does not verify with the public key: %v", err)
			}
		})
	}
}

func TestRefErrors(t *testing.T) {
	ctx := context.Background()
	plain := filepath.Join(t.TempDir(), "plain.key")
	if err := os.WriteFile(plain, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), 0o600); err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) (string, bool) { return "", false }
	pass := func(bool) ([]byte, error) { return nil, nil }
	for _, tc := range []struct {
		ref, want string
	}{
		{"", "no key given"},
		{"env://MISSING", "environment variable MISSING is not set"},
		{filepath.Join(t.TempDir(), "absent.key"), "no such file"},
		{plain, `unsupported private key type "PRIVATE KEY"`},
		{"hashivault://k", "kms"},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			_, err := keys.LoadSigner(ctx, tc.ref, pass, noEnv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadSigner(%q): got %v, want an error containing %q", tc.ref, err, tc.want)
			}
		})
	}
	if !keys.IsKMS("awskms:///arn") || keys.IsKMS("cosign.key") || keys.IsKMS("env://X") {
		t.Error("IsKMS misclassifies references")
	}
}

// TestKMSPluginsNotRunUnlessAllowed puts sigstore-kms-* plugins on PATH: sigstore's kms.Get
// would execute them for any reference no linked provider claims (here none is linked, as
// in every package but main). They run only when the caller opts in with WithKMSPlugins.
func TestKMSPluginsNotRunUnlessAllowed(t *testing.T) {
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran")
	for _, name := range []string{"sigstore-kms-hashivault", "sigstore-kms-foo"} {
		script := "#!/bin/sh\necho " + name + " >> " + ran + "\nexit 1\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		load    func(opts ...keys.KMSOption) error
		allowed bool
	}{
		{"public key, linked scheme without provider", func(o ...keys.KMSOption) error {
			_, err := keys.LoadPublicKey(ctx, "hashivault://k", nil, o...)
			return err
		}, false},
		{"public key, unknown scheme", func(o ...keys.KMSOption) error {
			_, err := keys.KMSPublicKey(ctx, "foo://k", o...)
			return err
		}, false},
		{"signer", func(o ...keys.KMSOption) error {
			_, err := keys.LoadSigner(ctx, "hashivault://k", nil, nil, o...)
			return err
		}, false},
		{"create key", func(o ...keys.KMSOption) error {
			_, err := keys.CreateKMSKey(ctx, "hashivault://k", o...)
			return err
		}, false},
		{"public key, plugins allowed", func(o ...keys.KMSOption) error {
			_, err := keys.KMSPublicKey(ctx, "foo://k", append(o, keys.WithKMSPlugins())...)
			return err
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_ = os.Remove(ran)
			err := tc.load()
			if err == nil {
				t.Fatal("loading a key through a failing plugin succeeded")
			}
			_, statErr := os.Stat(ran)
			if executed := statErr == nil; executed != tc.allowed {
				t.Fatalf("plugin executed = %v, want %v (error: %v)", executed, tc.allowed, err)
			}
			if !tc.allowed && !strings.Contains(err.Error(), "no KMS provider") {
				t.Errorf("error %q does not say that no provider is linked", err)
			}
		})
	}
}

// TestKMSTimeout: a KMS lookup that never answers is abandoned at the context's deadline.
func TestKMSTimeout(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sigstore-kms-slow"), []byte("#!/bin/sh\nexec sleep 20 2>/dev/null\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := keys.KMSPublicKey(ctx, "slow://k", keys.WithKMSPlugins())
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("KMSPublicKey of a hanging KMS: error %v after %s, want an error within the 300ms deadline", err, time.Since(start))
	}
}

// TestReadFileRefusesNonRegular: a FIFO named as a key would block the reader forever.
func TestReadFileRefusesNonRegular(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "key.pub")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	done := make(chan error, 1)
	go func() { _, err := keys.ReadFile(fifo); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("ReadFile(FIFO) = %v, want a not-a-regular-file error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFile of a FIFO blocked")
	}
}
