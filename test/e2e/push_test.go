package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/internal/testtool"
)

// pushing is an enforcing proxy that accepts signature pushes from user "ci" for
// <upstream>/signme/**, with a long negative TTL so that only the push can undo a
// cached denial.
type pushing struct {
	*enforcing
	dockerConfig string // DOCKER_CONFIG directory with ci's credentials for the proxy
}

func newPushing(t *testing.T) *pushing {
	t.Helper()
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("ci:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnforcing(t, fmt.Sprintf("cache: {negativeTTL: 1h, ttl: 1h}\npush:\n  htpasswd: %s\n  users:\n    - name: ci\n      images: [\"%s/signme/**\"]\n", htpasswd, upstreamName))
	dc := filepath.Join(dir, "docker")
	auth := base64.StdEncoding.EncodeToString([]byte("ci:s3cret"))
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{e.px.host: map[string]string{"auth": auth}}})
	if err := os.MkdirAll(dc, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dc, "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	return &pushing{enforcing: e, dockerConfig: dc}
}

func (p *pushing) asCI() []string { return []string{"DOCKER_CONFIG=" + p.dockerConfig} }

func TestSignThroughTheProxy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cosign func(*pushing) string
		extra  []string
	}{
		{"cosign v3 bundle", func(p *pushing) string { return p.cosign3 }, nil},
		{"cosign v3 legacy", func(p *pushing) string { return p.cosign3 }, []string{"--new-bundle-format=false"}},
		{"cosign v2 legacy", func(p *pushing) string { return p.cosign2 }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPushing(t)
			cosign := tc.cosign(p)
			upRef := p.push(t, "signme/app")
			digest := upRef[strings.Index(upRef, "@")+1:]
			viaProxy := p.px.host + "/signme/app@" + digest

			// Anonymous: denied, and the digest is not even resolvable.
			if out, err := p.pull(t, "signme/app:v1"); err == nil {
				t.Fatalf("unsigned image admitted:\n%s", out)
			}
			if r := get(t, p.px.host, "/v2/signme/app/manifests/v1"); r.status != http.StatusForbidden {
				t.Fatalf("anonymous GET of the unsigned manifest: %d", r.status)
			}
			// The push user resolves it through the proxy (signing needs the digest).
			out, err := testtool.Run(t, "", p.crane, p.asCI(), "digest", "--insecure", p.px.host+"/signme/app:v1")
			if err != nil || strings.TrimSpace(out) != digest {
				t.Fatalf("push user could not resolve the digest: %v\n%s", err, out)
			}

			args := append(testtool.CosignSignArgs(testtool.CosignMajor(t, cosign), p.trusted.priv), tc.extra...)
			testtool.Cosign(t, cosign, p.asCI(), append(args, viaProxy)...)

			// Admitted at once, although a denial was cached for an hour.
			if out, err := p.pull(t, "signme/app:v1"); err != nil {
				t.Fatalf("signed through the proxy but still denied: %v\n%s", err, out)
			}
			// The real cosign accepts the signature, read directly upstream and through portcullis.
			for _, ref := range []string{upRef, viaProxy} {
				testtool.Cosign(t, cosign, nil, "verify", "--key", p.trusted.pub, "--insecure-ignore-tlog", "--allow-http-registry", ref)
			}
		})
	}
}

func TestPushesPortcullisRefuses(t *testing.T) {
	p := newPushing(t)
	// Signed images, so that anyone may read them: what is refused below is the push.
	mine := p.push(t, "signme/app")
	cosignSign(t, p.cosign3, p.trusted, mine)
	theirs := p.push(t, "elsewhere/app")
	cosignSign(t, p.cosign3, p.trusted, theirs)
	viaProxy := func(upRef string) string { return p.px.host + upRef[strings.Index(upRef, "/"):] }
	other := cosignKeys(t, p.cosign3)

	for _, tc := range []struct {
		name  string
		env   []string
		image string
		want  string
	}{
		{"anonymous signature push", nil, viaProxy(mine), "UNAUTHORIZED"},
		{"signature outside the user's images", p.asCI(), viaProxy(theirs), "may not push"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(testtool.CosignSignArgs(3, other.priv), tc.image)
			out, err := testtool.Run(t, "", p.cosign3, tc.env, args...)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("want a refusal mentioning %q, got err %v:\n%s", tc.want, err, out)
			}
		})
	}
	t.Run("an image, not a signature", func(t *testing.T) {
		layout := filepath.Join(t.TempDir(), "img")
		if out, err := testtool.Run(t, "", p.crane, nil, "pull", "--insecure", "--format", "oci", mine, layout); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		out, err := testtool.Run(t, "", p.crane, p.asCI(), "push", "--insecure", layout, p.px.host+"/signme/app:evil")
		if err == nil || !strings.Contains(out, "accepts only signature pushes") {
			t.Fatalf("want DENIED for a non-signature push, got err %v:\n%s", err, out)
		}
	})
	t.Run("the /v2/ challenge", func(t *testing.T) {
		for _, tc := range []struct {
			name, user, pass string
			want             int
		}{
			{"anonymous", "", "", http.StatusUnauthorized},
			{"wrong password", "ci", "nope", http.StatusUnauthorized},
			{"unknown user", "root", "s3cret", http.StatusUnauthorized},
			{"right password", "ci", "s3cret", http.StatusOK},
		} {
			req, _ := http.NewRequest(http.MethodGet, "http://"+p.px.host+"/v2/", nil)
			if tc.user != "" {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic realm=") {
				t.Errorf("%s: no Basic challenge", tc.name)
			}
		}
	})
	// Pulls stay anonymous on a proxy that takes pushes, for crane and skopeo alike.
	if out, err := testtool.Run(t, "", p.crane, nil, "pull", "--insecure", viaProxy(mine), filepath.Join(t.TempDir(), "x")); err != nil {
		t.Fatalf("crane: anonymous pull of a signed image: %v\n%s", err, out)
	}
	skopeo := tool(t, "skopeo")
	conf := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("[[registry]]\nprefix = %[1]q\nlocation = %[1]q\ninsecure = true\n[[registry.mirror]]\nlocation = %[2]q\ninsecure = true\n",
		upstreamName, p.px.host)), 0o600); err != nil {
		t.Fatal(err)
	}
	p.up.noClientRequests(t, func() {
		out, err := testtool.Run(t, "", skopeo, nil, "--registries-conf", conf, "copy", "--retry-times", "0",
			"docker://"+upstreamName+"/signme/app:v1", "dir:"+filepath.Join(t.TempDir(), "d"))
		if err != nil {
			t.Fatalf("skopeo: anonymous pull of a signed image: %v\n%s", err, out)
		}
	})
}

// TestPortcullisSignThroughTheProxy signs with `portcullis sign` through an enforcing proxy
// (authenticated) with two keys made by `portcullis generate-key-pair`: the real cosign
// verifies both signatures and their -a annotations, and a policy that requires both keys
// admits the image at once, with no wait for the cached denial to expire.
func TestPortcullisSignThroughTheProxy(t *testing.T) {
	bin := buildBinary(t)
	cosign3, cosign2 := tool(t, "cosign3"), tool(t, "cosign2")
	crane := tool(t, "crane")
	dir := t.TempDir()
	keys := map[string]string{}
	for _, k := range []string{"alice", "bob"} {
		prefix := filepath.Join(dir, k)
		if out, err := testtool.Run(t, dir, bin, nil, "generate-key-pair", "--output-key-prefix", prefix); err != nil {
			t.Fatalf("generate-key-pair: %v\n%s", err, out)
		}
		keys[k] = prefix
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte("ci:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t)
	px := startProxy(t, up, fmt.Sprintf(`cache: {negativeTTL: 1h, ttl: 1h}
policies:
  - name: two-person
    images: ["%[1]s/**"]
    require: all
    authorities:
      - {name: alice, key: {path: %[2]s.pub}, annotations: {env: prod}}
      - {name: bob, key: {path: %[3]s.pub}}
push:
  htpasswd: %[4]s
  users: [{name: ci, images: ["%[1]s/**"]}]
`, upstreamName, keys["alice"], keys["bob"], filepath.Join(dir, "htpasswd")))
	d := up.pushImage(t, "team/app:v1", testImage(t))
	img := px.host + "/team/app@" + d.String()
	creds := []string{"--registry-username", "ci", "--registry-password", "s3cret", "--allow-http-registry"}
	pull := func() error {
		_, err := testtool.Run(t, "", crane, nil, "pull", "--insecure", "--format", "oci", px.host+"/team/app:v1", filepath.Join(t.TempDir(), "o"))
		return err
	}
	sign := func(key string, extra ...string) {
		t.Helper()
		args := append([]string{"sign", "--key", key + ".key", "--tlog-upload=false", "-y"}, creds...)
		args = append(append(args, extra...), img)
		if out, err := testtool.Run(t, "", bin, nil, args...); err != nil {
			t.Fatalf("portcullis sign: %v\n%s", err, out)
		}
	}

	if pull() == nil {
		t.Fatal("unsigned image admitted")
	}
	sign(keys["alice"], "-a", "env=prod") // bundle (cosign v3's default format)
	if pull() == nil {
		t.Fatal("admitted with one of the two required signatures")
	}
	sign(keys["bob"], "--new-bundle-format=false") // legacy .sig
	if err := pull(); err != nil {
		t.Fatalf("both keys signed through the proxy, still denied: %v", err)
	}

	upImg := up.host + "/team/app@" + d.String()
	verify := []string{"verify", "--insecure-ignore-tlog", "--allow-http-registry"}
	testtool.Cosign(t, cosign3, nil, append(verify, "--key", keys["alice"]+".pub", "-a", "env=prod", upImg)...)
	if out, err := testtool.Run(t, "", cosign3, nil, append(verify, "--key", keys["alice"]+".pub", "-a", "env=dev", upImg)...); err == nil {
		t.Errorf("cosign accepted a wrong annotation:\n%s", out)
	}
	// cosign reads .sig only when an image has no bundle referrers (cosign >= 2.6.4), so the
	// legacy signature is checked by cosign v2 on an image that has only that.
	d2 := up.pushImage(t, "team/legacy:v1", testImage(t))
	img = px.host + "/team/legacy@" + d2.String()
	sign(keys["bob"], "--new-bundle-format=false")
	testtool.Cosign(t, cosign2, nil, append(verify, "--key", keys["bob"]+".pub", up.host+"/team/legacy@"+d2.String())...)
}
