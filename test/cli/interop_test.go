package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/testtool"
)

// keyPairCases are the cosign versions and passwords key pairs are exchanged with.
var keyPairCases = []struct {
	name, cosign, password string
}{
	{"v3 password", "cosign3", "s3cret"},
	{"v3 empty password", "cosign3", ""},
	{"v2 password", "cosign2", "s3cret"},
	{"v2 empty password", "cosign2", ""},
}

// TestCosignKeysSignHere: key pairs made by the real cosign generate-key-pair (v2, v3; with
// a password and with an empty one) sign with portcullis sign, and portcullis verify accepts.
func TestCosignKeysSignHere(t *testing.T) {
	pc := portcullis(t)
	for _, tc := range keyPairCases {
		t.Run(tc.name, func(t *testing.T) {
			cosign := testtool.Path(t, tc.cosign)
			dir := t.TempDir()
			env := []string{"COSIGN_PASSWORD=" + tc.password}
			must(t, dir, cosign, env, "generate-key-pair")
			img := pushImage(t, newRegistry(t), "demo/app")
			for _, format := range []string{"--new-bundle-format=true", "--new-bundle-format=false"} {
				must(t, dir, pc, env, "sign", "--key", "cosign.key", format, img)
			}
			r := must(t, dir, pc, nil, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog", img)
			if got := len(payloads(t, r.stdout)); got != 2 {
				t.Errorf("verified %d signatures, want 2 (one per format)\n%s", got, r.stdout)
			}
		})
	}
}

// TestPortcullisKeysSignInCosign: key pairs made by portcullis generate-key-pair sign in the
// real cosign v2 and v3, whose verify accepts, as does portcullis verify.
func TestPortcullisKeysSignInCosign(t *testing.T) {
	pc := portcullis(t)
	for _, tc := range keyPairCases {
		t.Run(tc.name, func(t *testing.T) {
			cosign := testtool.Path(t, tc.cosign)
			major := testtool.CosignMajor(t, cosign)
			dir := t.TempDir()
			env := []string{"COSIGN_PASSWORD=" + tc.password}
			must(t, dir, pc, env, "generate-key-pair")
			key, err := os.ReadFile(filepath.Join(dir, "cosign.key"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(key), "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----") {
				t.Fatalf("cosign.key is not an encrypted sigstore key:\n%s", key)
			}
			if fi, _ := os.Stat(filepath.Join(dir, "cosign.key")); fi.Mode().Perm() != 0o600 {
				t.Errorf("cosign.key mode %v, want 0600", fi.Mode().Perm())
			}
			img := pushImage(t, newRegistry(t), "demo/app")
			must(t, dir, cosign, env, append(testtool.CosignSignArgs(major, "cosign.key"), "-a", "team=a", img)...)
			must(t, dir, cosign, nil, append(cosignVerifyArgs(t, cosign, major, "cosign.pub", major == 3), "-a", "team=a", img)...)
			must(t, dir, pc, nil, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog", "-a", "team=a", img)
		})
	}
}

// TestSignVerifiedByCosign: portcullis sign, in both formats, with two keys and -a, is
// accepted by the real cosign verify (v3; v2 for both formats, bundles with a trusted root)
// for each key; a wrong -a is refused by both cosign and portcullis.
func TestSignVerifiedByCosign(t *testing.T) {
	pc := portcullis(t)
	for _, tc := range []struct {
		name, cosign string
		bundle       bool
	}{
		{"v3 bundle", "cosign3", true},
		{"v3 legacy", "cosign3", false},
		{"v2 legacy", "cosign2", false},
		{"v2 bundle", "cosign2", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cosign := testtool.Path(t, tc.cosign)
			major := testtool.CosignMajor(t, cosign)
			dir := t.TempDir()
			img := pushImage(t, newRegistry(t), "demo/app")
			format := "--new-bundle-format=" + map[bool]string{true: "true", false: "false"}[tc.bundle]
			for _, k := range []string{"alice", "bob"} {
				must(t, dir, pc, nil, "generate-key-pair", "--output-key-prefix", k)
				// cosign v3's offline flags are accepted.
				must(t, dir, pc, nil, "sign", "--key", k+".key", "--tlog-upload=false", "--use-signing-config=false",
					"--allow-http-registry", "-y", "-a", "env=prod", "-a", "signer="+k, format, img)
			}
			for _, k := range []string{"alice", "bob"} {
				args := cosignVerifyArgs(t, cosign, major, k+".pub", tc.bundle)
				if major == 2 && tc.bundle {
					must(t, dir, cosign, nil, append(args, img)...) // cosign v2 ignores -a on bundles
				} else {
					r := must(t, dir, cosign, nil, append(args, "-a", "env=prod", "-a", "signer="+k, img)...)
					if got := len(payloads(t, r.stdout)); got != 1 {
						t.Errorf("cosign verified %d signatures with %s, want 1", got, k)
					}
					mustFail(t, dir, cosign, nil, "", append(args, "-a", "env=dev", img)...)
				}
				r := must(t, dir, pc, nil, "verify", "--key", k+".pub", "--insecure-ignore-tlog", "-a", "env=prod", "-a", "signer="+k, img)
				ps := payloads(t, r.stdout)
				if len(ps) != 1 {
					t.Fatalf("portcullis verified %d signatures with %s, want 1:\n%s", len(ps), k, r.stdout)
				}
				if got := ps[0]["optional"].(map[string]any)["signer"]; got != k {
					t.Errorf("verified payload names signer %v, want %s", got, k)
				}
				if !strings.Contains(r.stderr, "The signatures were verified against the specified public key") {
					t.Errorf("no cosign summary on stderr:\n%s", r.stderr)
				}
				mustFail(t, dir, pc, nil, `annotation "env"`, "verify", "--key", k+".pub", "--insecure-ignore-tlog", "-a", "env=dev", img)
			}
		})
	}
}

// TestOpenSSLFlow: generate the payload, sign it with openssl and an EC P-256 key, attach the
// signature; portcullis verify and cosign verify accept it.
func TestOpenSSLFlow(t *testing.T) {
	pc := portcullis(t)
	openssl := testtool.Path(t, "openssl")
	cosign := testtool.Path(t, "cosign3")
	dir := t.TempDir()
	img := pushImage(t, newRegistry(t), "demo/app")
	must(t, dir, openssl, nil, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "key.pem")
	must(t, dir, openssl, nil, "ec", "-in", "key.pem", "-pubout", "-out", "key.pub")
	r := must(t, dir, pc, nil, "generate", "-a", "built-by=ci", img)
	if err := os.WriteFile(filepath.Join(dir, "payload.json"), []byte(r.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	must(t, dir, openssl, nil, "dgst", "-sha256", "-sign", "key.pem", "-out", "payload.sig", "payload.json")
	must(t, dir, pc, nil, "attach", "signature", "--payload", "payload.json", "--signature", "payload.sig", img)
	r = must(t, dir, pc, nil, "verify", "--key", "key.pub", "--insecure-ignore-tlog", "-a", "built-by=ci", img)
	if got := len(payloads(t, r.stdout)); got != 1 {
		t.Errorf("verified %d signatures, want 1", got)
	}
	must(t, dir, cosign, nil, "verify", "--key", "key.pub", "--insecure-ignore-tlog", "--allow-http-registry", "-a", "built-by=ci", img)

	// A signature over another payload is refused at attach time when it names another digest.
	other := pushImage(t, strings.SplitN(img, "/", 2)[0], "demo/other")
	mustFail(t, dir, pc, nil, "not the image's", "attach", "signature", "--payload", "payload.json", "--signature", "payload.sig", other)
}

// TestRecursive: sign --recursive signs the index and each child; each verifies in portcullis
// and cosign v3. Without --recursive only the index is signed.
func TestRecursive(t *testing.T) {
	pc := portcullis(t)
	cosign := testtool.Path(t, "cosign3")
	dir := t.TempDir()
	host := newRegistry(t)
	must(t, dir, pc, nil, "generate-key-pair")
	idx, children := pushIndex(t, host, "demo/multi")
	must(t, dir, pc, nil, "sign", "--key", "cosign.key", "--recursive", strings.Replace(idx, "@sha256:", ":v1@sha256:", 1))
	for _, ref := range append([]string{idx}, children...) {
		must(t, dir, pc, nil, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog", ref)
		must(t, dir, cosign, nil, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog", "--allow-http-registry", ref)
	}
	idx2, children2 := pushIndex(t, host, "demo/multi2")
	must(t, dir, pc, nil, "sign", "--key", "cosign.key", idx2)
	must(t, dir, pc, nil, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog", idx2)
	mustFail(t, dir, pc, nil, "no signatures found", "verify", "--key", "cosign.pub", "--insecure-ignore-tlog", children2[0])
}

// TestUploadFalseAndEnvKey: --upload=false writes the signature and pushes nothing; a key
// given as env://VAR signs; COSIGN_REPOSITORY stores signatures elsewhere, where verify finds
// them; triangulate names the tag; clean removes everything.
func TestUploadFalseAndEnvKey(t *testing.T) {
	pc := portcullis(t)
	openssl := testtool.Path(t, "openssl")
	dir := t.TempDir()
	host := newRegistry(t)
	img := pushImage(t, host, "demo/app")
	must(t, dir, pc, nil, "generate-key-pair")
	keyPEM, _ := os.ReadFile(filepath.Join(dir, "cosign.key"))
	pubPEM, _ := os.ReadFile(filepath.Join(dir, "cosign.pub"))
	env := []string{"SIGNING_KEY=" + string(keyPEM), "VERIFY_KEY=" + string(pubPEM)}

	must(t, dir, pc, env, "sign", "--key", "env://SIGNING_KEY", "--upload=false", "--new-bundle-format=false",
		"--output-signature", "sig.b64", "--output-payload", "payload.json", img)
	mustFail(t, dir, pc, env, "no signatures found", "verify", "--key", "env://VERIFY_KEY", "--insecure-ignore-tlog", img)
	// The written signature is cosign's base64 ECDSA signature over the payload.
	b64, _ := os.ReadFile(filepath.Join(dir, "sig.b64"))
	raw := filepath.Join(dir, "sig.der")
	if err := os.WriteFile(raw, decodeB64(t, string(b64)), 0o600); err != nil {
		t.Fatal(err)
	}
	must(t, dir, openssl, nil, "dgst", "-sha256", "-verify", "cosign.pub", "-signature", "sig.der", "payload.json")
	// and attach accepts it as written.
	must(t, dir, pc, nil, "attach", "signature", "--payload", "payload.json", "--signature", "sig.b64", img)
	must(t, dir, pc, env, "verify", "--key", "env://VERIFY_KEY", "--insecure-ignore-tlog", img)

	// COSIGN_REPOSITORY.
	sigs := []string{"COSIGN_REPOSITORY=" + host + "/signatures"}
	must(t, dir, pc, sigs, "sign", "--key", "cosign.key", img)
	must(t, dir, pc, sigs, "sign", "--key", "cosign.key", "--new-bundle-format=false", img)
	r := must(t, dir, pc, sigs, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog", img)
	if got := len(payloads(t, r.stdout)); got != 2 {
		t.Errorf("verified %d signatures in COSIGN_REPOSITORY, want 2", got)
	}
	r = must(t, dir, pc, sigs, "triangulate", img)
	if want := host + "/signatures:sha256-"; !strings.HasPrefix(r.stdout, want) || !strings.HasSuffix(strings.TrimSpace(r.stdout), ".sig") {
		t.Errorf("triangulate = %q, want %s<hex>.sig", r.stdout, want)
	}
	must(t, dir, pc, sigs, "triangulate", "--type", "bundle", img)

	// clean: refused without -f when not interactive; then removes both formats.
	mustFail(t, dir, pc, sigs, "pass -f", "clean", img)
	r = must(t, dir, pc, sigs, "clean", "-f", img)
	if !strings.Contains(r.stderr, "Removed") {
		t.Errorf("clean reported no removal:\n%s", r.stderr)
	}
	mustFail(t, dir, pc, sigs, "no signatures found", "verify", "--key", "cosign.pub", "--insecure-ignore-tlog", img)
	must(t, dir, pc, nil, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog", img) // the image's own stay
}

// TestErrors: each failure exits non-zero with a message that says what to do.
func TestErrors(t *testing.T) {
	pc := portcullis(t)
	dir := t.TempDir()
	host := newRegistry(t)
	img := pushImage(t, host, "demo/app")
	must(t, dir, pc, []string{"COSIGN_PASSWORD=right"}, "generate-key-pair")
	for _, tc := range []struct {
		name string
		env  []string
		want string
		args []string
	}{
		{"wrong password", []string{"COSIGN_PASSWORD=wrong"}, "incorrect password", []string{"sign", "--key", "cosign.key", img}},
		{"no password, no terminal", []string{"-COSIGN_PASSWORD"}, "COSIGN_PASSWORD is not set", []string{"sign", "--key", "cosign.key", img}},
		{"no key, no keyless services", nil, "keyless signing needs a Fulcio URL", []string{"sign", img}},
		{"tlog upload with a key", []string{"COSIGN_PASSWORD=right"}, "with --key, portcullis signs offline", []string{"sign", "--key", "cosign.key", "--tlog-upload=true", img}},
		{"bad image ref", []string{"COSIGN_PASSWORD=right"}, "invalid image reference", []string{"sign", "--key", "cosign.key", "Not/A:Valid@@ref"}},
		{"unreachable registry", []string{"COSIGN_PASSWORD=right"}, "127.0.0.1:1", []string{"sign", "--key", "cosign.key", "127.0.0.1:1/demo/app:v1"}},
		{"missing key file", nil, "no such file", []string{"sign", "--key", "nope.key", img}},
		{"unset env key", nil, "environment variable NOPE is not set", []string{"verify", "--key", "env://NOPE", "--insecure-ignore-tlog", img}},
		{"verify needs ignore-tlog", nil, "--insecure-ignore-tlog", []string{"verify", "--key", "cosign.pub", img}},
		{"verify unsigned", nil, "no signatures found", []string{"verify", "--key", "cosign.pub", "--insecure-ignore-tlog", img}},
		// Only the four linked providers serve KMS keys; another scheme is neither a file nor
		// a sigstore-kms-* plugin run from PATH.
		{"kms scheme not linked", nil, `no KMS provider for "yubikms://nope" in this build (linked: [awskms:// azurekms:// gcpkms:// hashivault:// openbao://])`, []string{"sign", "--key", "yubikms://nope", img}},
		{"verify, kms scheme not linked", nil, `no KMS provider for "yubikms://nope" in this build`, []string{"verify", "--key", "yubikms://nope", "--insecure-ignore-tlog", img}},
		// hashivault is linked: its error names the Vault it could not reach.
		{"kms provider unreachable", []string{"VAULT_ADDR=http://127.0.0.1:1", "VAULT_TOKEN=t"}, "http://127.0.0.1:1/v1/transit/keys/nope", []string{"sign", "--key", "hashivault://nope", img}},
		{"overwrite without -y", []string{"COSIGN_PASSWORD=x"}, "pass --yes", []string{"generate-key-pair"}},
		{"payload with bundle", []string{"COSIGN_PASSWORD=right"}, "--new-bundle-format=false", []string{"sign", "--key", "cosign.key", "--payload", "x.json", img}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustFail(t, dir, pc, tc.env, tc.want, tc.args...)
			if lines := strings.Count(strings.TrimSpace(r.stderr), "\n"); lines > 1 {
				t.Errorf("error is %d lines, want one:\n%s", lines+1, r.stderr)
			}
		})
	}
	// -y overwrites.
	must(t, dir, pc, []string{"COSIGN_PASSWORD=new"}, "generate-key-pair", "-y")
	must(t, dir, pc, []string{"COSIGN_PASSWORD=new"}, "sign", "--key", "cosign.key", img)
}
