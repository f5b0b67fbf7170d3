package keys_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
