package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/internal/testtool"
)

// signer is a cosign key pair made by the real `cosign generate-key-pair`.
type signer struct {
	priv, pub string
}

func cosignKeys(t *testing.T, cosign string) signer {
	t.Helper()
	priv, pub := testtool.CosignKeyPair(t, cosign, t.TempDir())
	return signer{priv, pub}
}

// cosignSign signs image (host/repo@digest on the upstream) with the real cosign.
func cosignSign(t *testing.T, cosign string, k signer, image string, extra ...string) {
	t.Helper()
	args := testtool.CosignSignArgs(testtool.CosignMajor(t, cosign), k.priv)
	testtool.Cosign(t, cosign, nil, append(append(args, extra...), image)...)
}

// enforcing is an upstream with images signed in every way cosign signs, and a proxy whose
// policy trusts one key.
type enforcing struct {
	up            *upstream
	px            *proxyServer
	trusted       signer
	cosign2       string
	cosign3       string
	crane, skopeo string
}

func newEnforcing(t *testing.T, extraYAML string) *enforcing {
	t.Helper()
	e := &enforcing{up: newUpstream(t), cosign2: tool(t, "cosign2"), cosign3: tool(t, "cosign3"), crane: tool(t, "crane")}
	e.trusted = cosignKeys(t, e.cosign3)
	pol := fmt.Sprintf(`policies:
  - name: annotated
    images: ["%[1]s/annotated/**"]
    authorities:
      - name: release-key
        key: {path: %[2]s}
        annotations: {env: prod}
  - name: prod
    images: ["%[1]s/**"]
    authorities:
      - name: release-key
        key: {path: %[2]s}
defaultPolicy: deny
`, upstreamName, e.trusted.pub)
	e.px = startProxy(t, e.up, pol+extraYAML)
	return e
}

// push puts a fresh image at repo:v1 upstream and returns its upstream reference by digest.
func (e *enforcing) push(t *testing.T, repo string) string {
	t.Helper()
	d := e.up.pushImage(t, repo+":v1", testImage(t))
	return e.up.host + "/" + repo + "@" + d.String()
}

// pull pulls repo:v1 through the proxy with crane and returns its output and error.
func (e *enforcing) pull(t *testing.T, ref string) (string, error) {
	t.Helper()
	return testtool.Run(t, "", e.crane, nil, "pull", "--insecure", "--format", "oci", e.px.host+"/"+ref, filepath.Join(t.TempDir(), "out"))
}

func TestEnforceCosignSignatures(t *testing.T) {
	e := newEnforcing(t, "")
	other := cosignKeys(t, e.cosign3)

	for _, tc := range []struct {
		name      string
		repo      string
		prepare   func(t *testing.T, image string)
		admitted  bool
		reasonHas string
	}{
		{"cosign v2 legacy .sig", "v2/legacy", func(t *testing.T, img string) {
			cosignSign(t, e.cosign2, e.trusted, img)
		}, true, ""},
		{"cosign v3 bundle via referrers tag schema", "v3/bundle", func(t *testing.T, img string) {
			cosignSign(t, e.cosign3, e.trusted, img)
		}, true, ""},
		{"cosign v3 legacy format", "v3/legacy", func(t *testing.T, img string) {
			cosignSign(t, e.cosign3, e.trusted, img, "--new-bundle-format=false")
		}, true, ""},
		{"annotations match", "annotated/ok", func(t *testing.T, img string) {
			cosignSign(t, e.cosign3, e.trusted, img, "-a", "env=prod")
		}, true, ""},
		{"unsigned", "unsigned/app", func(*testing.T, string) {}, false, "no signatures found"},
		{"wrong key, v3 bundle", "wrongkey/bundle", func(t *testing.T, img string) {
			cosignSign(t, e.cosign3, other, img)
		}, false, `authority "release-key"`},
		{"wrong key, v2 legacy", "wrongkey/legacy", func(t *testing.T, img string) {
			cosignSign(t, e.cosign2, other, img)
		}, false, `authority "release-key"`},
		{"wrong annotation", "annotated/bad", func(t *testing.T, img string) {
			cosignSign(t, e.cosign3, e.trusted, img, "-a", "env=dev")
		}, false, "env"},
		{"signature replayed from another digest", "replayed/app", func(t *testing.T, img string) {
			// Sign another image, then copy its .sig manifest to this image's .sig tag.
			donor := e.push(t, "replayed/donor")
			cosignSign(t, e.cosign2, e.trusted, donor)
			dd := donor[strings.Index(donor, "@")+1:]
			id := img[strings.Index(img, "@")+1:]
			src, _ := name.ParseReference(e.up.host+"/replayed/donor:"+cosign.SignatureTag(digest.Digest(dd)), name.Insecure)
			dst, _ := name.ParseReference(e.up.host+"/replayed/app:"+cosign.SignatureTag(digest.Digest(id)), name.Insecure)
			sig, err := remote.Image(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.Write(dst, sig); err != nil {
				t.Fatal(err)
			}
		}, false, "digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := e.push(t, tc.repo)
			tc.prepare(t, img)
			out, err := e.pull(t, tc.repo+":v1")
			if tc.admitted {
				if err != nil {
					t.Fatalf("not admitted: %v\n%s", err, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("admitted, want DENIED")
			}
			if !strings.Contains(out, "DENIED") || !strings.Contains(out, "denied by policy") || !strings.Contains(out, tc.reasonHas) {
				t.Errorf("crane's error does not carry the reason (want %q):\n%s", tc.reasonHas, out)
			}
		})
	}
}

func TestSignedIndexAdmitsEachPlatform(t *testing.T) {
	e := newEnforcing(t, "")
	idx := testIndex(t)
	d := e.up.pushIndex(t, "multi/app:v1", idx)
	cosignSign(t, e.cosign3, e.trusted, e.up.host+"/multi/app@"+d.String())
	for _, platform := range []string{"linux/amd64", "linux/arm64"} {
		out, err := testtool.Run(t, "", e.crane, nil, "pull", "--insecure", "--platform", platform, "--format", "oci",
			e.px.host+"/multi/app:v1", filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Errorf("%s: %v\n%s", platform, err, out)
		}
	}
	// An unsigned index's children are not admitted by anything.
	e.up.pushIndex(t, "multi/unsigned:v1", testIndex(t))
	if out, err := e.pull(t, "multi/unsigned:v1"); err == nil {
		t.Errorf("unsigned index admitted:\n%s", out)
	}
}

func TestMovedTagNeverServesUnsignedBytes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		yaml     string
		wantSame bool // true: the verified digest is still served; false: denied
	}{
		{"tag TTL 0: moved tag is re-resolved and denied", "", false},
		{"tag TTL 1h: the verified digest keeps being served", "cache: {tagTTL: 1h}\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnforcing(t, tc.yaml)
			signed := e.push(t, "moving/app")
			cosignSign(t, e.cosign3, e.trusted, signed)
			first := get(t, e.px.host, "/v2/moving/app/manifests/v1")
			if first.status != 200 {
				t.Fatalf("signed: %d %s", first.status, first.body)
			}
			e.up.pushImage(t, "moving/app:v1", testImage(t)) // the tag moves to unsigned content
			second := get(t, e.px.host, "/v2/moving/app/manifests/v1")
			switch {
			case tc.wantSame && (second.status != 200 || !bytes.Equal(second.body, first.body)):
				t.Errorf("want the verified manifest again, got %d", second.status)
			case !tc.wantSame && second.status != http.StatusForbidden:
				t.Errorf("want 403, got %d %s", second.status, second.body)
			}
		})
	}
}

type response struct {
	status int
	body   []byte
}

func get(t *testing.T, host, path string) response {
	t.Helper()
	resp, err := http.Get("http://" + host + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return response{resp.StatusCode, b.Bytes()}
}
