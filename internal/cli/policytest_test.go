package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/internal/app"
	"github.com/portcullis/portcullis/internal/cli"
	"github.com/portcullis/portcullis/internal/testtool"
)

// startRegistryBinary runs distribution's registry binary (bin/registry) on a free port of
// 127.0.0.1 and returns its host:port.
func startRegistryBinary(t *testing.T) string {
	t.Helper()
	bin := testtool.Path(t, "registry")
	host := fmt.Sprintf("127.0.0.1:%d", testtool.FreePort(t))
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf("version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\n"+
		"storage:\n  filesystem: {rootdirectory: %s}\nhttp: {addr: %s}\n", filepath.Join(dir, "data"), host)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Env = testtool.OfflineEnv(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) })
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			return host
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry did not come up: %v", err)
		}
	}
}

// policyTestFixture is a real registry with three images under its own name (host:port, as
// portcullis knows the upstream, so that each image names a registry that serves it): signed (cosign v3
// signature and SLSA v1 provenance attestation with the ci key), unsigned (nothing), and
// the name of one that does not exist; and portcullis configured to require both of the
// signed image's, as serve builds it.
type policyTestFixture struct {
	app                          *app.App
	host                         string // the registry's host:port, the upstream's name
	signed, unsigned, unknown    string // as given to policy test: "<host>/<repo>:v1"
	signedDigest, unsignedDigest string
}

func newPolicyTestFixture(t *testing.T) *policyTestFixture {
	t.Helper()
	cosign := testtool.Path(t, "cosign3")
	host := startRegistryBinary(t)
	dir := t.TempDir()
	priv, pub := testtool.CosignKeyPair(t, cosign, dir)
	signed := pushImage(t, host, "team/signed")
	unsigned := pushImage(t, host, "team/unsigned")
	env := []string{"COSIGN_PASSWORD="}
	testtool.Cosign(t, cosign, env, append(testtool.CosignSignArgs(3, priv), signed.String())...)
	pred := filepath.Join(dir, "provenance.json")
	if err := os.WriteFile(pred, []byte(`{"buildDefinition": {"buildType": "https://example.com/build/v1", "externalParameters": {"repo": "https://github.com/acme/app"}},
  "runDetails": {"builder": {"id": "https://github.com/actions/runner"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	testtool.Cosign(t, cosign, env, append(testtool.CosignAttestArgs(3, priv), "--type", "slsaprovenance1", "--predicate", pred, signed.String())...)

	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("ci:"+string(hash)+"\nother:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yml := fmt.Sprintf(`log: {format: text, level: error}
storage: {driver: inmemory}
upstreams:
  - {name: %[1]s, url: http://%[1]s, insecure: true}
push:
  htpasswd: %[2]s
  users: [{name: ci, images: ["%[1]s/team/**"]}, {name: other, images: ["%[1]s/elsewhere/**"]}]
defaultPolicy: deny
policies:
  - name: team
    images: ["%[1]s/team/**"]
    authorities: [{name: ci, key: {path: %[3]s}}]
    attestations:
      - name: built-by-actions
        predicateType: slsaprovenance1
        authority: ci
        policy: {cue: 'predicate: runDetails: builder: id: "https://github.com/actions/runner"'}
`, host, htpasswd, pub)
	return &policyTestFixture{
		app:  testtool.Portcullis(t, yml, nil),
		host: host, signed: host + "/team/signed:v1", unsigned: host + "/team/unsigned:v1", unknown: host + "/team/missing:v1",
		signedDigest: signed.DigestStr(), unsignedDigest: unsigned.DigestStr(),
	}
}

func TestPolicyTest(t *testing.T) {
	f := newPolicyTestFixture(t)
	ctx := context.Background()

	t.Run("text", func(t *testing.T) {
		tests := []struct {
			name   string
			images []string
			code   int
			want   []string // lines, in order, that the output contains
		}{
			{name: "admitted", images: []string{f.signed}, code: cli.PolicyTestAdmitted, want: []string{
				f.signed + ": ADMITTED",
				"  image:    " + f.host + "/team/signed@" + f.signedDigest,
				"  policy:   team (mode enforce,",
				"  requires: 1 of 1 authorities",
				"  authority ci (signature): satisfied",
				"    signature (bundle",
				": counted",
				"  attestation built-by-actions (https://slsa.dev/provenance/v1, signed by ci, cue policy): satisfied",
			}},
			{name: "denied", images: []string{f.unsigned}, code: cli.PolicyTestDenied, want: []string{
				f.unsigned + ": DENIED",
				"  image:    " + f.host + "/team/unsigned@" + f.unsignedDigest,
				"  policy:   team (mode enforce,",
				"  reason:   ",
				"  found:    0 signatures, 0 attestations",
				"  authority ci (signature): not satisfied",
				"  attestation built-by-actions (https://slsa.dev/provenance/v1, signed by ci, cue policy): not satisfied: none found",
			}},
			{name: "unknown", images: []string{f.unknown}, code: cli.PolicyTestError, want: []string{
				f.unknown + ": ERROR: ",
			}},
			{name: "the worst decides", images: []string{f.signed, f.unknown, f.unsigned}, code: cli.PolicyTestError, want: []string{
				f.signed + ": ADMITTED", f.unknown + ": ERROR: ", f.unsigned + ": DENIED",
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e, out, _ := testEnv(nil)
				code := cli.PolicyTest(ctx, e, cli.PolicyTestOptions{}, f.app, tt.images)
				t.Logf("portcullis policy test %s:\n%s", strings.Join(tt.images, " "), out)
				if code != tt.code {
					t.Errorf("exit code %d, want %d\n%s", code, tt.code, out)
				}
				rest := out.String()
				for _, w := range tt.want {
					i := strings.Index(rest, w)
					if i < 0 {
						t.Fatalf("output lacks %q (in order); output:\n%s", w, out)
					}
					rest = rest[i+len(w):]
				}
			})
		}
	})

	t.Run("json", func(t *testing.T) {
		e, out, _ := testEnv(nil)
		code := cli.PolicyTest(ctx, e, cli.PolicyTestOptions{Output: "json"}, f.app, []string{f.signed, f.unsigned, f.unknown})
		if code != cli.PolicyTestError {
			t.Errorf("exit code %d, want %d", code, cli.PolicyTestError)
		}
		// Read as a consumer would: the documented field names, not the Go types.
		var got []struct {
			Image       string `json:"image"`
			Outcome     string `json:"outcome"`
			Error       string `json:"error"`
			Explanation *struct {
				Image       string `json:"image"`
				Digest      string `json:"digest"`
				Policy      string `json:"policy"`
				Mode        string `json:"mode"`
				Signatures  int    `json:"signatures"`
				Authorities []struct {
					Name      string `json:"name"`
					Kind      string `json:"kind"`
					Satisfied bool   `json:"satisfied"`
					Examined  []struct {
						Kind    string `json:"kind"`
						Counted bool   `json:"counted"`
					} `json:"examined"`
				} `json:"authorities"`
				Attestations []struct {
					Name      string `json:"name"`
					Satisfied bool   `json:"satisfied"`
					Reason    string `json:"reason"`
				} `json:"attestations"`
				Decision struct {
					Allowed bool   `json:"allowed"`
					Reason  string `json:"reason"`
				} `json:"decision"`
			} `json:"explanation"`
		}
		if err := json.Unmarshal(out.Bytes(), &got); err != nil {
			t.Fatalf("output is not the documented JSON: %v\n%s", err, out)
		}
		if len(got) != 3 {
			t.Fatalf("%d results, want 3:\n%s", len(got), out)
		}
		admitted, denied, unknown := got[0], got[1], got[2]
		if admitted.Image != f.signed || admitted.Outcome != "admitted" || admitted.Explanation == nil ||
			!admitted.Explanation.Decision.Allowed || admitted.Explanation.Digest != f.signedDigest ||
			admitted.Explanation.Policy != "team" || admitted.Explanation.Mode != "enforce" ||
			len(admitted.Explanation.Authorities) != 1 || !admitted.Explanation.Authorities[0].Satisfied ||
			len(admitted.Explanation.Attestations) != 1 || !admitted.Explanation.Attestations[0].Satisfied {
			t.Errorf("admitted image: %+v\n%s", admitted, out)
		}
		counted := false
		if admitted.Explanation != nil && len(admitted.Explanation.Authorities) == 1 {
			for _, x := range admitted.Explanation.Authorities[0].Examined {
				counted = counted || x.Kind == "signature" && x.Counted
			}
		}
		if !counted {
			t.Errorf("the admitted image's explanation shows no counted signature:\n%s", out)
		}
		if denied.Outcome != "denied" || denied.Explanation == nil || denied.Explanation.Decision.Allowed ||
			denied.Explanation.Digest != f.unsignedDigest || denied.Explanation.Decision.Reason == "" ||
			len(denied.Explanation.Attestations) != 1 || denied.Explanation.Attestations[0].Reason != "none found" {
			t.Errorf("denied image: %+v\n%s", denied, out)
		}
		if unknown.Outcome != "error" || unknown.Error == "" || unknown.Explanation != nil {
			t.Errorf("unknown image: %+v\n%s", unknown, out)
		}
	})

	t.Run("bad options", func(t *testing.T) {
		e, _, errw := testEnv(nil)
		if code := cli.PolicyTest(ctx, e, cli.PolicyTestOptions{Output: "yaml"}, f.app, []string{f.signed}); code != cli.PolicyTestError || !strings.Contains(errw.String(), `-o "yaml": want text or json`) {
			t.Errorf("-o yaml: exit %d, stderr %q", code, errw)
		}
	})
}

// TestDecisionEndpoint: /debug/decision answers push users for the images they may push
// signatures for, with the explanation policy test prints as JSON.
func TestDecisionEndpoint(t *testing.T) {
	f := newPolicyTestFixture(t)
	srv := httptest.NewServer(f.app.Handler)
	t.Cleanup(srv.Close)
	tests := []struct {
		name, user, image string
		status            int
		want              string
	}{
		{name: "admitted", user: "ci", image: f.signed, status: http.StatusOK, want: `"allowed": true`},
		{name: "denied", user: "ci", image: f.unsigned, status: http.StatusOK, want: `"allowed": false`},
		{name: "unknown image", user: "ci", image: f.unknown, status: http.StatusNotFound, want: `{"error":"` + f.host + `/team/missing:v1: manifest team/missing:v1: upstream ` + f.host + ` answered 404`},
		{name: "no credentials", image: f.signed, status: http.StatusUnauthorized, want: "authentication required"},
		{name: "wrong password", user: "ci:wrong", image: f.signed, status: http.StatusUnauthorized, want: "invalid username or password"},
		{name: "another team's user", user: "other", image: f.signed, status: http.StatusForbidden, want: "user other may not push signatures for " + f.host + "/team/signed"},
		{name: "no image", user: "ci", status: http.StatusBadRequest, want: "the query parameter image is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, srv.URL+"/debug/decision?image="+tt.image, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.user != "" {
				user, pass, ok := strings.Cut(tt.user, ":")
				if !ok {
					pass = "s3cret"
				}
				req.SetBasicAuth(user, pass)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body strings.Builder
			if _, err := fmt.Fprint(&body, readAll(t, resp)); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status || !strings.Contains(body.String(), tt.want) {
				t.Fatalf("status %d, body:\n%s\nwant %d containing %q", resp.StatusCode, body.String(), tt.status, tt.want)
			}
			if tt.status == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without a challenge")
			}
		})
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}
