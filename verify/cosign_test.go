package verify_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/internal/testtool"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
)

// cosignRun is one case's world for the real cosign CLI.
type cosignRun struct {
	path   string
	major  int
	u      upstream
	repo   string
	d      digest.Digest
	other  digest.Digest
	key    string // private key file
	pub    signature.Verifier
	wrong  signature.Verifier
	pubPEM string // public key file
	dir    string
}

func (c *cosignRun) ref(d digest.Digest) string { return c.u.host + "/" + c.repo + "@" + d.String() }

// sign runs cosign sign for d with extra flags before the reference.
func (c *cosignRun) sign(t *testing.T, d digest.Digest, extra ...string) {
	t.Helper()
	args := append(testtool.CosignSignArgs(c.major, c.key), extra...)
	testtool.Cosign(t, c.path, nil, append(args, c.ref(d))...)
}

// attest runs cosign attest for d with a SLSA provenance predicate.
func (c *cosignRun) attest(t *testing.T, d digest.Digest) {
	t.Helper()
	pred := filepath.Join(c.dir, "predicate.json")
	if err := os.WriteFile(pred, []byte(`{"builder":{"id":"https://builder.example.test"},"buildType":"https://build.example.test/v1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append(testtool.CosignAttestArgs(c.major, c.key), "--type", "slsaprovenance", "--predicate", pred, c.ref(d))
	testtool.Cosign(t, c.path, nil, args...)
}

func (c *cosignRun) auth(annotations map[string]string) verify.Authority {
	return verify.Authority{Name: "team", Key: c.pub, Annotations: annotations}
}

// cosignKey generates a cosign key pair and loads its public key as an authority would.
func cosignKey(t *testing.T, path string) (priv, pubFile string, pub signature.Verifier) {
	t.Helper()
	dir := t.TempDir()
	priv, pubFile = testtool.CosignKeyPair(t, path, dir)
	pemBytes, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		t.Fatalf("parse %s: %v", pubFile, err)
	}
	v, err := signature.LoadDefaultVerifier(pk)
	if err != nil {
		t.Fatal(err)
	}
	return priv, pubFile, v
}

// TestCosign signs with the real cosign v2 and v3 CLIs and checks that Verify agrees.
func TestCosign(t *testing.T) {
	type cosignCase struct {
		name     string
		major    int    // only for this cosign major version; 0 for both
		upstream string // "distribution" (referrers tag schema) or "ggcr" (referrers API)
		sign     func(t *testing.T, c *cosignRun)
		auths    func(c *cosignRun) []verify.Authority
		// cosignVerifies also checks that cosign verify itself accepts the signature.
		cosignVerifies bool
		wantSignatures int
		want           []want
	}
	one := func(c *cosignRun) []verify.Authority { return []verify.Authority{c.auth(nil)} }
	annotated := func(c *cosignRun) []verify.Authority {
		return []verify.Authority{c.auth(map[string]string{"env": "prod"}), c.auth(map[string]string{"env": "dev"})}
	}
	cases := []cosignCase{
		{
			name: "v3 bundle via referrers tag schema", major: 3, upstream: "distribution",
			sign:  func(t *testing.T, c *cosignRun) { c.sign(t, c.d) },
			auths: one, cosignVerifies: true,
			wantSignatures: 1, want: []want{{verified: true, format: "bundle"}},
		},
		{
			name: "v3 bundle via referrers api", major: 3, upstream: "ggcr",
			sign:  func(t *testing.T, c *cosignRun) { c.sign(t, c.d) },
			auths: one, cosignVerifies: true,
			wantSignatures: 1, want: []want{{verified: true, format: "bundle"}},
		},
		{
			name: "v3 legacy", major: 3, upstream: "distribution",
			sign:  func(t *testing.T, c *cosignRun) { c.sign(t, c.d, "--new-bundle-format=false") },
			auths: one, cosignVerifies: true,
			wantSignatures: 1, want: []want{{verified: true, format: "legacy"}},
		},
		{
			name: "v3 bundle annotations", major: 3, upstream: "ggcr",
			sign:           func(t *testing.T, c *cosignRun) { c.sign(t, c.d, "-a", "env=prod") },
			auths:          annotated,
			wantSignatures: 1,
			want:           []want{{verified: true, format: "bundle"}, {reason: `found 1 signature: annotation "env" is "prod", want "dev"`}},
		},
		{
			name: "v3 legacy annotations", major: 3, upstream: "distribution",
			sign:           func(t *testing.T, c *cosignRun) { c.sign(t, c.d, "--new-bundle-format=false", "-a", "env=prod") },
			auths:          annotated,
			wantSignatures: 1,
			want:           []want{{verified: true, format: "legacy"}, {reason: `found 1 signature: annotation "env" is "prod", want "dev"`}},
		},
		{
			name: "v2 legacy", major: 2, upstream: "distribution",
			sign:  func(t *testing.T, c *cosignRun) { c.sign(t, c.d) },
			auths: one, cosignVerifies: true,
			wantSignatures: 1, want: []want{{verified: true, format: "legacy"}},
		},
		{
			name: "v2 legacy annotations", major: 2, upstream: "ggcr",
			sign:           func(t *testing.T, c *cosignRun) { c.sign(t, c.d, "-a", "env=prod") },
			auths:          annotated,
			wantSignatures: 1,
			want:           []want{{verified: true, format: "legacy"}, {reason: `found 1 signature: annotation "env" is "prod", want "dev"`}},
		},
		{
			name: "v2 bundle", major: 2, upstream: "distribution",
			sign:           func(t *testing.T, c *cosignRun) { c.sign(t, c.d, "--new-bundle-format") },
			auths:          one,
			wantSignatures: 1, want: []want{{verified: true, format: "bundle"}},
		},
		{
			name: "unsigned", upstream: "distribution",
			sign:  func(t *testing.T, c *cosignRun) { c.sign(t, c.other) },
			auths: one,
			want:  []want{{reason: "no signatures found"}},
		},
		{
			name: "wrong key", upstream: "distribution",
			sign: func(t *testing.T, c *cosignRun) { c.sign(t, c.d) },
			auths: func(c *cosignRun) []verify.Authority {
				return []verify.Authority{{Name: "other", Key: c.wrong}}
			},
			wantSignatures: 1, want: []want{{reason: "found 1 signature: wrong key"}},
		},
		{
			name: "attestation is not a signature", upstream: "ggcr",
			sign:  func(t *testing.T, c *cosignRun) { c.attest(t, c.d) },
			auths: one,
			want:  []want{{reason: "no signatures found"}},
		},
		{
			name: "legacy signature copied from another digest", upstream: "distribution",
			sign: func(t *testing.T, c *cosignRun) {
				c.sign(t, c.other, "--new-bundle-format=false")
				reg := c.u.registry(t)
				m, err := reg.Manifest(context.Background(), c.repo, cosign.SignatureTag(c.other))
				if err != nil {
					t.Fatal(err)
				}
				putManifest(t, c.u.host, c.repo, cosign.SignatureTag(c.d), oci.MediaTypeOCIManifest, m.Bytes)
			},
			auths:          one,
			wantSignatures: 1, want: []want{{reason: "found 1 signature: payload digest mismatch"}},
		},
		{
			name: "bundle copied from another digest", major: 3, upstream: "distribution",
			sign: func(t *testing.T, c *cosignRun) {
				c.sign(t, c.other)
				copyBundleReferrer(t, c, c.other, c.d)
			},
			auths:          one,
			wantSignatures: 1, want: []want{{reason: "found 1 signature: statement subject mismatch"}},
		},
	}

	for _, tool := range []string{"cosign3", "cosign2"} {
		t.Run(tool, func(t *testing.T) {
			path := testtool.Path(t, tool)
			major := testtool.CosignMajor(t, path)
			key, pubFile, pub := cosignKey(t, path)
			_, _, wrong := cosignKey(t, path)
			ups := map[string]upstream{"distribution": newDistribution(t), "ggcr": newGGCR(t)}
			for i, tc := range cases {
				if tc.major != 0 && tc.major != major {
					continue
				}
				t.Run(tc.name, func(t *testing.T) {
					u := ups[tc.upstream]
					repo := fmt.Sprintf("cosign%d/app", i)
					c := &cosignRun{
						path: path, major: major, u: u, repo: repo,
						d: pushImage(t, u.host, repo), other: pushImage(t, u.host, repo),
						key: key, pub: pub, wrong: wrong, pubPEM: pubFile, dir: t.TempDir(),
					}
					tc.sign(t, c)
					res, err := verify.New().Verify(context.Background(), u.registry(t), verify.Subject{Repository: repo, Digest: c.d}, tc.auths(c))
					assertResult(t, res, err, tc.wantSignatures, tc.want, false)
					if tc.cosignVerifies {
						testtool.Cosign(t, path, nil, "verify", "--key", pubFile, "--insecure-ignore-tlog", "--allow-http-registry", c.ref(c.d))
					}
				})
			}
		})
	}
}

// copyBundleReferrer re-publishes the bundle referrer of from as a referrer of to: same
// bundle blob, manifest subject changed, as an attacker replaying a signature would.
func copyBundleReferrer(t *testing.T, c *cosignRun, from, to digest.Digest) {
	t.Helper()
	reg := c.u.registry(t)
	descs, err := reg.Referrers(context.Background(), c.repo, from)
	if err != nil || len(descs) != 1 {
		t.Fatalf("referrers of %s: %v %v", from, descs, err)
	}
	m, err := reg.Manifest(context.Background(), c.repo, descs[0].Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	var man map[string]any
	if err := jsonUnmarshal(m.Bytes, &man); err != nil {
		t.Fatal(err)
	}
	man["subject"].(map[string]any)["digest"] = to.String()
	putManifest(t, c.u.host, c.repo, "", oci.MediaTypeOCIManifest, mustJSON(t, man))
}
