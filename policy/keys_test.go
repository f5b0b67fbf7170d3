package policy_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/kms/fake"

	"github.com/portcullis/portcullis/policy"
)

// signerFor returns the signer sigstore uses by default for priv's algorithm, as cosign does.
func signerFor(t *testing.T, priv crypto.Signer) signature.Signer {
	t.Helper()
	s, err := signature.LoadDefaultSignerVerifier(priv)
	if err != nil {
		t.Fatalf("LoadDefaultSignerVerifier: %v", err)
	}
	return s
}

func TestCompileLoadsKeys(t *testing.T) {
	gen := map[string]func() (crypto.Signer, error){
		"ecdsa-p256": func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) },
		"ecdsa-p384": func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P384(), rand.Reader) },
		"rsa-2048":   func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) },
		"ed25519": func() (crypto.Signer, error) {
			_, k, err := ed25519.GenerateKey(rand.Reader)
			return k, err
		},
	}
	sources := map[string]func(t *testing.T, pem string) (policy.KeyConfig, []policy.Option){
		"path": func(t *testing.T, pem string) (policy.KeyConfig, []policy.Option) {
			p := filepath.Join(t.TempDir(), "cosign.pub")
			if err := os.WriteFile(p, []byte(pem), 0o600); err != nil {
				t.Fatal(err)
			}
			return policy.KeyConfig{Path: p}, nil
		},
		"data": func(t *testing.T, pem string) (policy.KeyConfig, []policy.Option) {
			return policy.KeyConfig{Data: pem}, nil
		},
		"env": func(t *testing.T, pem string) (policy.KeyConfig, []policy.Option) {
			lookup := func(name string) (string, bool) {
				if name == "COSIGN_PUBLIC_KEY" {
					return pem, true
				}
				return "", false
			}
			return policy.KeyConfig{Env: "COSIGN_PUBLIC_KEY"}, []policy.Option{policy.WithLookupEnv(lookup)}
		},
	}
	for alg, newKey := range gen {
		priv, err := newKey()
		if err != nil {
			t.Fatalf("generate %s key: %v", alg, err)
		}
		pem := publicPEM(t, priv.Public())
		msg := []byte(`{"critical":{"type":"cosign container image signature"}}`)
		sig, err := signerFor(t, priv).SignMessage(bytes.NewReader(msg))
		if err != nil {
			t.Fatalf("sign with %s: %v", alg, err)
		}
		var versions []string
		for src, keyConfig := range sources {
			t.Run(alg+"/"+src, func(t *testing.T) {
				kc, opts := keyConfig(t, pem)
				set := compile(t, policy.Config{Policies: []policy.PolicyConfig{{
					Name: "p", Images: []string{"**"}, Authorities: []policy.AuthorityConfig{{Name: "a", Key: kc}},
				}}}, opts...)
				key := set.Policies()[0].Authorities()[0].Key
				if err := key.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)); err != nil {
					t.Fatalf("loaded %s key does not verify a signature made by its private key: %v", alg, err)
				}
				if err := key.VerifySignature(bytes.NewReader(sig), strings.NewReader("other")); err == nil {
					t.Fatalf("loaded %s key verifies a signature over another message", alg)
				}
				versions = append(versions, set.Version())
			})
		}
		for _, v := range versions[1:] {
			if v != versions[0] {
				t.Errorf("%s: versions %q differ by key source; want the same key to give the same version", alg, versions)
			}
		}
	}
}

func TestCompileKeyErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pub")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.pub")
	if err := os.WriteFile(big, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pub")
	noEnv := func(string) (string, bool) { return "", false }
	tests := []struct {
		name string
		key  policy.KeyConfig
		opts []policy.Option
		want string
	}{
		{"missing file", policy.KeyConfig{Path: missing}, nil, "policies[1].authorities[0].key.path: stat " + missing + ": no such file or directory"},
		{"not PEM", policy.KeyConfig{Path: garbage}, nil, "policies[1].authorities[0].key.path: parse PEM public key: PEM decoding failed"},
		{"file too large", policy.KeyConfig{Path: big}, nil, "policies[1].authorities[0].key.path: " + big + " is larger than 65536 bytes"},
		{"weak RSA", policy.KeyConfig{Data: publicPEM(t, weak.Public())}, nil, "policies[1].authorities[0].key.data: unsupported public key"},
		{"env without lookup", policy.KeyConfig{Env: "COSIGN_PUB"}, nil, "policies[1].authorities[0].key.env: cannot read environment variable COSIGN_PUB: no environment lookup was given"},
		{"env unset", policy.KeyConfig{Env: "COSIGN_PUB"}, []policy.Option{policy.WithLookupEnv(noEnv)}, "policies[1].authorities[0].key.env: environment variable COSIGN_PUB is not set"},
		{"kms provider not linked", policy.KeyConfig{KMS: "awskms:///arn:aws:kms:eu-west-1:1:key/x"}, nil, `policies[1].authorities[0].key.kms: no KMS provider for "awskms:///arn:aws:kms:eu-west-1:1:key/x" in this build`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := policy.Config{Policies: []policy.PolicyConfig{
				{Name: "ok", Images: []string{"ghcr.io/**"}, Authorities: authorities(t, "a")},
				{Name: "bad", Images: []string{"docker.io/**"}, Authorities: []policy.AuthorityConfig{{Name: "a", Key: tt.key}}},
			}}
			_, err := policy.Compile(context.Background(), cfg, tt.opts...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Compile: got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestCompileKMS(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// The fake provider, linked by this test, serves the private key found in ctx.
	ctx := context.WithValue(context.Background(), fake.KmsCtxKey{}, crypto.PrivateKey(priv))
	cfg := func(key policy.KeyConfig) policy.Config {
		return policy.Config{Policies: []policy.PolicyConfig{{
			Name: "p", Images: []string{"**"}, Authorities: []policy.AuthorityConfig{{Name: "kms", Key: key}},
		}}}
	}
	kmsSet, err := policy.Compile(ctx, cfg(policy.KeyConfig{KMS: fake.ReferenceScheme + "key"}))
	if err != nil {
		t.Fatalf("Compile with a KMS key: %v", err)
	}
	msg := []byte("payload")
	sig, err := signerFor(t, priv).SignMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if err := kmsSet.Policies()[0].Authorities()[0].Key.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)); err != nil {
		t.Fatalf("KMS public key does not verify: %v", err)
	}
	pemSet := compile(t, cfg(policy.KeyConfig{Data: publicPEM(t, priv.Public())}))
	if kmsSet.Version() != pemSet.Version() {
		t.Errorf("the same key from KMS and from PEM gives versions %s and %s, want equal", kmsSet.Version(), pemSet.Version())
	}
}

func TestVersion(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cosign.pub")
	write := func(pem string) {
		if err := os.WriteFile(path, []byte(pem), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := func(mutate func(*policy.PolicyConfig)) policy.Config {
		p := policy.PolicyConfig{
			Name: "p", Images: []string{"docker.io/**"},
			Authorities: []policy.AuthorityConfig{{Name: "a", Key: policy.KeyConfig{Path: path}, Annotations: map[string]string{"env": "prod", "team": "x"}}},
		}
		if mutate != nil {
			mutate(&p)
		}
		return policy.Config{Policies: []policy.PolicyConfig{p}}
	}
	write(newKeyPEM(t))
	base := compile(t, cfg(nil)).Version()
	if again := compile(t, cfg(nil)).Version(); again != base {
		t.Fatalf("compiling the same config twice gave versions %s and %s", base, again)
	}
	explicit := compile(t, cfg(func(p *policy.PolicyConfig) {
		p.Mode, p.Require, p.Indexes = policy.ModeEnforce, "1", policy.IndexesSigned
	})).Version()
	if explicit != base {
		t.Errorf("spelling out the defaults changed the version: %s, want %s", explicit, base)
	}
	changes := map[string]func(*policy.PolicyConfig){
		"mode":        func(p *policy.PolicyConfig) { p.Mode = policy.ModeWarn },
		"images":      func(p *policy.PolicyConfig) { p.Images = append(p.Images, "ghcr.io/**") },
		"annotations": func(p *policy.PolicyConfig) { p.Authorities[0].Annotations["env"] = "dev" },
		"indexes":     func(p *policy.PolicyConfig) { p.Indexes = policy.IndexesPerPlatform },
		"sig repo":    func(p *policy.PolicyConfig) { p.Authorities[0].SignaturesRepository = "myorg/sigs" },
	}
	for name, mutate := range changes {
		if v := compile(t, cfg(mutate)).Version(); v == base {
			t.Errorf("changing %s kept version %s", name, v)
		}
	}
	write(newKeyPEM(t))
	if v := compile(t, cfg(nil)).Version(); v == base {
		t.Errorf("a new key in the same file kept version %s", v)
	}
}

func TestCompileCollectsAllKeyErrors(t *testing.T) {
	cfg := policy.Config{Policies: []policy.PolicyConfig{{
		Name: "p", Images: []string{"**"}, Require: "all",
		Authorities: []policy.AuthorityConfig{
			{Name: "a", Key: policy.KeyConfig{Data: "bad"}},
			{Name: "b", Key: policy.KeyConfig{Env: "X"}},
		},
	}}}
	_, err := policy.Compile(context.Background(), cfg)
	for _, want := range []string{"policies[0].authorities[0].key.data:", "policies[0].authorities[1].key.env:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Compile: got %v, want it to contain %q", err, want)
		}
	}
}
