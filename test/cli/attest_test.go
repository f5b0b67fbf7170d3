package cli_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/internal/testtool"
)

// provenance is a SLSA provenance v1 predicate, as a build system writes it.
const provenance = `{
  "buildDefinition": {"buildType": "https://example.com/build/v1", "externalParameters": {"repo": "https://github.com/acme/app"}},
  "runDetails": {"builder": {"id": "https://github.com/actions/runner"}}
}`

// attestProxy is portcullis (built as `portcullis serve` builds it) in front of a real
// distribution registry (no referrers API: bundles land on the referrers tag schema), with a
// push user "ci" (password s3cret) who may push signatures for attest/**.
type attestProxy struct {
	// host is portcullis's host:port; upstream the registry's, reachable directly too.
	host, upstream string
	// dockerConfig is a DOCKER_CONFIG directory holding ci's credentials for host.
	dockerConfig string
}

// startAttestProxy starts the upstream and portcullis with the policies (YAML flow-style
// items of the policies list, for the upstream's registry name: its reachable host:port),
// defaultPolicy deny.
func startAttestProxy(t *testing.T, policies func(upstream string) string) *attestProxy {
	t.Helper()
	dir := t.TempDir()
	up := httptest.NewServer(testtool.Distribution(t))
	t.Cleanup(up.Close)
	upHost := strings.TrimPrefix(up.URL, "http://")
	pols := ""
	if policies != nil {
		pols = policies(upHost)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("ci:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yml := fmt.Sprintf(`listen: 127.0.0.1:0
log: {format: text, level: warn}
storage: {driver: filesystem, params: {rootdirectory: %s}}
upstreams:
  - {name: %[2]s, url: %[3]s, insecure: true, default: true}
push:
  htpasswd: %[4]s
  users: [{name: ci, images: ["%[2]s/attest/**"]}]
defaultPolicy: deny
policies: [%[5]s]
`, filepath.Join(dir, "store"), upHost, up.URL, htpasswd, pols)
	a := testtool.Portcullis(t, yml, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: a.Handler}}
	srv.Start()
	t.Cleanup(srv.Close)
	px := &attestProxy{host: ln.Addr().String(), upstream: upHost, dockerConfig: filepath.Join(dir, "docker")}
	auth := base64.StdEncoding.EncodeToString([]byte("ci:s3cret"))
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{px.host: map[string]string{"auth": auth}}})
	if err := os.MkdirAll(px.dockerConfig, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(px.dockerConfig, "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	return px
}

// ci is the environment of a CI job that pushes through the proxy as ci.
func (px *attestProxy) ci() []string { return []string{"DOCKER_CONFIG=" + px.dockerConfig} }

// push puts a fresh image at repo:v1 upstream; it returns the image by digest upstream and
// by tag through portcullis.
func (px *attestProxy) push(t *testing.T, repo string) (upstreamRef, viaProxy string) {
	t.Helper()
	return pushImage(t, px.upstream, repo), px.host + "/" + repo + ":v1"
}

// attestKeyDir is a directory with a portcullis key pair (cosign.key, cosign.pub, empty
// password) and the provenance predicate (provenance.json).
func attestKeyDir(t *testing.T, pc string) string {
	t.Helper()
	dir := t.TempDir()
	must(t, dir, pc, nil, "generate-key-pair")
	if err := os.WriteFile(filepath.Join(dir, "provenance.json"), []byte(provenance), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// cosignVerifyAttestation runs the real cosign verify-attestation of image with the key,
// and returns the in-toto statements of the attestations it verified.
func cosignVerifyAttestation(t *testing.T, dir, cosign, typ string, legacy bool, image string) []map[string]any {
	t.Helper()
	major := testtool.CosignMajor(t, cosign)
	args := []string{"verify-attestation", "--key", "cosign.pub", "--insecure-ignore-tlog", "--allow-http-registry", "--type", typ}
	if major == 3 && legacy {
		args = append(args, "--new-bundle-format=false")
	}
	r := must(t, dir, cosign, nil, append(args, image)...)
	return statements(t, r.stdout)
}

// statements decodes cosign verify-attestation's output: one JSON object per line, a DSSE
// envelope whose payload is the statement.
func statements(t *testing.T, out string) []map[string]any {
	t.Helper()
	var sts []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var env struct {
			PayloadType string `json:"payloadType"`
			Payload     string `json:"payload"`
		}
		if err := json.Unmarshal([]byte(line), &env); err != nil {
			t.Fatalf("verify-attestation output line is not a DSSE envelope: %v\n%s", err, line)
		}
		var st map[string]any
		if err := json.Unmarshal(decodeB64(t, env.Payload), &st); err != nil {
			t.Fatalf("DSSE payload is not JSON: %v", err)
		}
		sts = append(sts, st)
	}
	return sts
}

// TestAttestVerifiedByCosign: `portcullis attest` through portcullis, as its push user, with
// a key, in both formats; the real cosign verifies the attestation (v3 the bundle; v2, and v3
// with --new-bundle-format=false, the legacy .att), finds the statement cosign writes
// (subject: the repository and the digest; the predicate as given), and refuses it for
// another predicate type. Without the push user's credentials nothing is written.
func TestAttestVerifiedByCosign(t *testing.T) {
	pc := portcullis(t)
	cosign3 := testtool.Path(t, "cosign3")
	cosign2 := testtool.Path(t, "cosign2")
	crane := testtool.Path(t, "crane")
	dir := attestKeyDir(t, pc)
	px := startAttestProxy(t, nil)
	for _, tc := range []struct {
		name      string
		legacy    bool
		verifiers []string
	}{
		{"bundle", false, []string{cosign3}},
		{"legacy", true, []string{cosign2, cosign3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := "attest/" + tc.name
			upRef, viaProxy := px.push(t, repo)
			args := []string{"attest", "--key", "cosign.key", "--predicate", "provenance.json", "--type", "slsaprovenance1",
				"--new-bundle-format=" + fmt.Sprint(!tc.legacy), viaProxy}

			mustFail(t, dir, pc, nil, "DENIED", args...)
			if tags := must(t, dir, crane, nil, "ls", "--insecure", px.upstream+"/"+repo).stdout; strings.TrimSpace(tags) != "v1" {
				t.Fatalf("an attest without credentials wrote something: tags %q", tags)
			}

			r := must(t, dir, pc, px.ci(), args...)
			if !strings.Contains(r.stderr, "Pushing attestation to: "+px.host+"/"+repo) {
				t.Errorf("attest did not say where it pushed:\n%s", r.stderr)
			}
			digest := upRef[strings.Index(upRef, "@")+1:]
			for _, cosign := range tc.verifiers {
				sts := cosignVerifyAttestation(t, dir, cosign, "slsaprovenance1", tc.legacy, upRef)
				if len(sts) != 1 {
					t.Fatalf("%s verified %d attestations, want 1", filepath.Base(cosign), len(sts))
				}
				st := sts[0]
				subj := st["subject"].([]any)[0].(map[string]any)
				if got, want := subj["name"], px.host+"/"+repo; got != want {
					t.Errorf("subject name %v, want %s (the repository attested)", got, want)
				}
				if got := subj["digest"].(map[string]any)["sha256"]; "sha256:"+fmt.Sprint(got) != digest {
					t.Errorf("subject digest %v, want %s", got, digest)
				}
				if st["_type"] != "https://in-toto.io/Statement/v1" || st["predicateType"] != "https://slsa.dev/provenance/v1" {
					t.Errorf("statement _type %v, predicateType %v", st["_type"], st["predicateType"])
				}
				var want map[string]any
				_ = json.Unmarshal([]byte(provenance), &want)
				if got, _ := json.Marshal(st["predicate"]); string(got) != string(mustJSON(t, want)) {
					t.Errorf("predicate %s, want the file's %s", got, mustJSON(t, want))
				}
				args := []string{"verify-attestation", "--key", "cosign.pub", "--insecure-ignore-tlog", "--allow-http-registry", "--type", "slsaprovenance02"}
				if tc.legacy && cosign == cosign3 {
					args = append(args, "--new-bundle-format=false")
				}
				mustFail(t, dir, cosign, nil, "https://slsa.dev/provenance/v1", append(args, upRef)...)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAttestReplace: in the legacy format, --replace keeps one attestation per predicate type
// in the .att manifest (through portcullis, which must accept the rewritten manifest); without
// it attestations accumulate, as cosign's do.
func TestAttestReplace(t *testing.T) {
	pc := portcullis(t)
	cosign2 := testtool.Path(t, "cosign2")
	dir := attestKeyDir(t, pc)
	if err := os.WriteFile(filepath.Join(dir, "vex.json"), []byte(`{"@context": "https://openvex.dev/ns/v0.2.0", "statements": []}`), 0o600); err != nil {
		t.Fatal(err)
	}
	px := startAttestProxy(t, nil)
	upRef, viaProxy := px.push(t, "attest/replace")
	attest := func(typ, file string, extra ...string) {
		t.Helper()
		must(t, dir, pc, px.ci(), append([]string{"attest", "--key", "cosign.key", "--new-bundle-format=false", "--type", typ, "--predicate", file}, append(extra, viaProxy)...)...)
	}
	types := func() []string {
		t.Helper()
		d, err := name.NewDigest(upRef, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		tag := d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".att")
		img, err := remote.Image(tag)
		if err != nil {
			t.Fatal(err)
		}
		mf, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range mf.Layers {
			out = append(out, l.Annotations["predicateType"])
		}
		return out
	}
	for _, step := range []struct {
		typ, file string
		replace   bool
		want      []string
	}{
		{"slsaprovenance1", "provenance.json", false, []string{"https://slsa.dev/provenance/v1"}},
		{"openvex", "vex.json", false, []string{"https://slsa.dev/provenance/v1", "https://openvex.dev/ns"}},
		{"slsaprovenance1", "provenance.json", true, []string{"https://openvex.dev/ns", "https://slsa.dev/provenance/v1"}},
		{"slsaprovenance1", "provenance.json", true, []string{"https://openvex.dev/ns", "https://slsa.dev/provenance/v1"}},
		{"slsaprovenance1", "provenance.json", false, []string{"https://openvex.dev/ns", "https://slsa.dev/provenance/v1", "https://slsa.dev/provenance/v1"}},
		{"slsaprovenance1", "provenance.json", true, []string{"https://openvex.dev/ns", "https://slsa.dev/provenance/v1"}},
	} {
		var extra []string
		if step.replace {
			extra = []string{"--replace"}
		}
		attest(step.typ, step.file, extra...)
		if got := types(); strings.Join(got, " ") != strings.Join(step.want, " ") {
			t.Fatalf("after attest --type %s replace=%v: .att layers of types %v, want %v", step.typ, step.replace, got, step.want)
		}
	}
	// cosign reads what is left: both predicate types verify.
	for _, typ := range []string{"slsaprovenance1", "openvex"} {
		if n := len(cosignVerifyAttestation(t, dir, cosign2, typ, true, upRef)); n == 0 {
			t.Errorf("cosign v2 verified no %s attestation", typ)
		}
	}
}

// TestAttestInputs: the predicate from stdin, cosign's custom type (the file wrapped as
// {Data, Timestamp}) and -a annotations on the subject; bad input fails with a message
// that says what to fix, before anything is pushed.
func TestAttestInputs(t *testing.T) {
	pc := portcullis(t)
	cosign3 := testtool.Path(t, "cosign3")
	dir := attestKeyDir(t, pc)
	host := newRegistry(t)
	img := pushImage(t, host, "demo/app")

	cmd := run(t, dir, "/bin/sh", nil, "-c", fmt.Sprintf("printf 'built by hand' | %s attest --key cosign.key --predicate - -a team=a %s", pc, img))
	if cmd.err != nil {
		t.Fatalf("attest from stdin: %v\n%s", cmd.err, cmd.stderr)
	}
	sts := cosignVerifyAttestation(t, dir, cosign3, "custom", false, img)
	if len(sts) != 1 {
		t.Fatalf("cosign verified %d custom attestations, want 1", len(sts))
	}
	pred := sts[0]["predicate"].(map[string]any)
	if pred["Data"] != "built by hand" || pred["Timestamp"] == nil {
		t.Errorf("custom predicate %v, want cosign's {Data: the input, Timestamp}", pred)
	}
	if ann := sts[0]["subject"].([]any)[0].(map[string]any)["annotations"]; fmt.Sprint(ann) != "map[team:a]" {
		t.Errorf("subject annotations %v, want team=a", ann)
	}

	if err := os.WriteFile(filepath.Join(dir, "notjson.txt"), []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no predicate", []string{"--key", "cosign.key"}, "--predicate is required"},
		{"missing file", []string{"--key", "cosign.key", "--predicate", "nope.json"}, "no such file"},
		{"unknown type", []string{"--key", "cosign.key", "--predicate", "provenance.json", "--type", "slsa"}, `predicate type "slsa"`},
		{"not JSON", []string{"--key", "cosign.key", "--predicate", "notjson.txt", "--type", "slsaprovenance1"}, "must be a JSON object"},
		{"replace with bundles", []string{"--key", "cosign.key", "--predicate", "provenance.json", "--replace"}, "--new-bundle-format=false"},
		{"tlog with a key", []string{"--key", "cosign.key", "--predicate", "provenance.json", "--tlog-upload=true"}, "with --key, portcullis attests offline"},
		{"bad annotation", []string{"--key", "cosign.key", "--predicate", "provenance.json", "-a", "novalue"}, "novalue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustFail(t, dir, pc, nil, tc.want, append(append([]string{"attest"}, tc.args...), img)...)
		})
	}
	// Only the stdin attestation was pushed.
	if n := len(cosignVerifyAttestation(t, dir, cosign3, "custom", false, img)); n != 1 {
		t.Errorf("%d custom attestations after the refused runs, want 1", n)
	}
}

// TestAttestAdmitsAtOnce: an image whose policy requires a SLSA provenance attestation signed
// by the CI key (and whose builder a CUE policy checks) is denied until `portcullis attest`
// pushes one through portcullis, and admitted right after, in both formats; an attestation
// whose predicate fails the CUE policy, or of another predicate type, admits nothing.
func TestAttestAdmitsAtOnce(t *testing.T) {
	pc := portcullis(t)
	crane := testtool.Path(t, "crane")
	dir := attestKeyDir(t, pc)
	if err := os.WriteFile(filepath.Join(dir, "other-builder.json"), []byte(strings.Replace(provenance, "actions/runner", "evil/runner", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	px := startAttestProxy(t, func(upstream string) string {
		return fmt.Sprintf(`{name: provenance, images: ["%s/attest/**"],
    authorities: [{name: ci, key: {path: %s}, attestations: [{name: built-by-actions, predicateType: slsaprovenance1,
      policy: {cue: 'predicate: runDetails: builder: id: "https://github.com/actions/runner"'}}]}]}`, upstream, filepath.Join(dir, "cosign.pub"))
	})
	for _, tc := range []struct {
		name   string
		legacy bool
	}{{"bundle", false}, {"legacy", true}} {
		t.Run(tc.name, func(t *testing.T) {
			_, viaProxy := px.push(t, "attest/admit-"+tc.name)
			pull := func() result {
				return run(t, dir, crane, nil, "pull", "--insecure", "--format", "oci", viaProxy, filepath.Join(t.TempDir(), "out"))
			}
			attest := func(typ, file string) {
				t.Helper()
				must(t, dir, pc, px.ci(), "attest", "--key", "cosign.key", "--type", typ, "--predicate", file,
					"--new-bundle-format="+fmt.Sprint(!tc.legacy), viaProxy)
			}
			if r := pull(); r.err == nil {
				t.Fatalf("unattested image admitted:\n%s", r.stderr)
			}
			attest("slsaprovenance02", "provenance.json")
			if r := pull(); r.err == nil {
				t.Fatalf("admitted with an attestation of another predicate type:\n%s", r.stderr)
			}
			attest("slsaprovenance1", "other-builder.json")
			if r := pull(); r.err == nil {
				t.Fatalf("admitted with a provenance whose builder the policy refuses:\n%s", r.stderr)
			} else if !strings.Contains(r.stderr, "built-by-actions") {
				t.Errorf("the denial does not name the attestation requirement:\n%s", r.stderr)
			}
			attest("slsaprovenance1", "provenance.json")
			if r := pull(); r.err != nil {
				t.Fatalf("attested through portcullis but denied: %v\n%s", r.err, r.stderr)
			}
		})
	}
}

// Predicate policies over the provenance statement: CUE and Rego (policy-controller's
// conventions: package sigstore, isCompliant as a boolean or a {result, error, warning}).
var predicatePolicies = map[string]string{
	"good.cue": `predicateType: "https://slsa.dev/provenance/v1"
predicate: runDetails: builder: id: "https://github.com/actions/runner"
`,
	"bad.cue": `predicate: runDetails: builder: id: "https://ci.example.com/trusted"
`,
	"good.rego": `package sigstore
isCompliant {
  input.predicate.runDetails.builder.id == "https://github.com/actions/runner"
}
`,
	"bad.rego": `package sigstore
isCompliant = {"result": input.predicate.runDetails.builder.id == "https://ci.example.com/trusted", "error": "the builder is not the trusted CI", "warning": ""}
`,
	"policy.txt": `anything`,
}

// TestVerifyAttestationCosignAttested: attestations made by the real cosign v3 attest (a
// bundle referrer and a legacy .att layer on the same image) are verified by `portcullis
// verify-attestation`, which prints each as cosign does (a DSSE envelope JSON line whose
// payload is the statement) and holds them to CUE and Rego policies, failing with the
// policy's message; another predicate type, another key, an image with only a signature, or
// a policy of an unknown format fail with a message that says so.
func TestVerifyAttestationCosignAttested(t *testing.T) {
	pc := portcullis(t)
	cosign3 := testtool.Path(t, "cosign3")
	dir := attestKeyDir(t, pc)
	must(t, dir, pc, nil, "generate-key-pair", "--output-key-prefix", "other")
	for f, src := range predicatePolicies {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	host := newRegistry(t)
	img := pushImage(t, host, "demo/attested")
	for _, format := range []string{"--new-bundle-format=true", "--new-bundle-format=false"} {
		must(t, dir, cosign3, nil, append(testtool.CosignAttestArgs(3, "cosign.key"), "--predicate", "provenance.json", "--type", "slsaprovenance1", format, img)...)
	}
	signedOnly := pushImage(t, host, "demo/signed")
	must(t, dir, cosign3, nil, append(testtool.CosignSignArgs(3, "cosign.key"), signedOnly)...)
	digest := img[strings.Index(img, "@")+1:]

	verifyArgs := func(extra ...string) []string {
		return append([]string{"verify-attestation", "--key", "cosign.pub", "--insecure-ignore-tlog", "--type", "slsaprovenance1"}, extra...)
	}
	r := must(t, dir, pc, nil, append(verifyArgs(), img)...)
	sts := statements(t, r.stdout)
	if len(sts) != 2 {
		t.Fatalf("verified %d attestations, want 2 (the bundle and the .att layer):\n%s", len(sts), r.stdout)
	}
	for _, st := range sts {
		subj := st["subject"].([]any)[0].(map[string]any)
		if st["predicateType"] != "https://slsa.dev/provenance/v1" || "sha256:"+fmt.Sprint(subj["digest"].(map[string]any)["sha256"]) != digest {
			t.Errorf("printed statement of type %v about %v, want slsa v1 about %s", st["predicateType"], subj["digest"], digest)
		}
	}
	if !strings.Contains(r.stderr, "The signatures were verified against the specified public key") {
		t.Errorf("no cosign summary on stderr:\n%s", r.stderr)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string // "" when it must pass
	}{
		{"cue and rego policies hold", []string{"--policy", "good.cue", "--policy", "good.rego", img}, ""},
		{"cue policy fails", []string{"--policy", "good.rego", "--policy", "bad.cue", img}, "conflicting values"},
		{"rego policy fails", []string{"--policy", "bad.rego", img}, "the builder is not the trusted CI"},
		{"unknown policy format", []string{"--policy", "policy.txt", img}, "expected .cue or .rego"},
		{"another predicate type", []string{"--type", "slsaprovenance02", img}, "none of the attestations matched the predicate type: slsaprovenance02, found: https://slsa.dev/provenance/v1"},
		{"another key", []string{"--key", "other.pub", img}, "no matching attestations"},
		{"a signature is not an attestation", []string{signedOnly}, "no attestations found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := verifyArgs(tc.args...)
			if tc.want == "" {
				if n := len(statements(t, must(t, dir, pc, nil, args...).stdout)); n != 2 {
					t.Errorf("verified %d attestations, want 2", n)
				}
				return
			}
			r := mustFail(t, dir, pc, nil, tc.want, args...)
			if r.stdout != "" {
				t.Errorf("printed attestations although it failed:\n%s", r.stdout)
			}
		})
	}
}
