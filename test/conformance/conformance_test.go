// Package conformance runs the OCI distribution-spec conformance suite against a
// distribution registry on its own and through portcullis in front of it, and checks that
// portcullis loses nothing: every test the upstream passes on its own passes through
// portcullis too, and the referrers API, which the upstream lacks, works through portcullis.
package conformance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/internal/testtool"
)

// startRegistry runs distribution's registry binary on a free loopback port.
func startRegistry(t *testing.T) string {
	t.Helper()
	bin := testtool.Path(t, "registry")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	err = os.WriteFile(cfg, []byte(fmt.Sprintf("version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\n"+
		"storage:\n  filesystem: {rootdirectory: %s}\n  delete: {enabled: true}\nhttp: {addr: %s}\n", filepath.Join(dir, "data"), addr)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, "http://"+addr+"/v2/")
	return addr
}

func waitFor(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not come up: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startPortcullis runs portcullis in front of upstream with the conformance namespace under
// a warn policy and opted into plain push-through for user "conformance".
func startPortcullis(t *testing.T, upstream string) string {
	t.Helper()
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("conformance"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte("conformance:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cryptoutils.MarshalPublicKeyToPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	yml := fmt.Sprintf(`listen: 127.0.0.1:0
storage: {driver: filesystem, params: {rootdirectory: %s}}
upstreams:
  - {name: %[2]s, url: "http://%[2]s", insecure: true, default: true}
policies:
  - name: conformance
    images: ["%[2]s/conformance/**"]
    mode: warn
    authorities: [{name: test-key, key: {data: %[3]q}}]
push:
  htpasswd: %[4]s
  users: [{name: conformance, images: ["%[2]s/conformance/**"]}]
  passThrough: {images: ["%[2]s/conformance/**"], allow: any}
`, filepath.Join(dir, "store"), upstream, string(pub), filepath.Join(dir, "htpasswd"))
	a := testtool.Portcullis(t, yml, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: a.Handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

var (
	junitSuites = regexp.MustCompile(`<testsuites[^>]*>`)
	junitAttr   = regexp.MustCompile(`(\w+)="(\d+)"`)
)

var resultLine = regexp.MustCompile(`^\s*(OCI Conformance Test(?:/.*)?): (Pass|FAIL|Skip|Disabled)\s*$`)

// suite runs the conformance binary against registry and returns each test's outcomes.
func suite(t *testing.T, registry string, env ...string) map[string][]string {
	t.Helper()
	bin := testtool.Path(t, "oci-conformance")
	dir := t.TempDir()
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"OCI_REGISTRY=" + registry, "OCI_TLS=disabled", "OCI_REPO1=conformance/repo1", "OCI_REPO2=conformance/repo2",
		"OCI_RESULTS_DIR=" + filepath.Join(dir, "results"), "OCI_LOG=error"}, env...)
	out, _ := cmd.CombinedOutput() // it exits non-zero when any test fails
	res := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		if m := resultLine.FindStringSubmatch(line); m != nil {
			res[m[1]] = append(res[m[1]], m[2])
		}
	}
	if len(res) == 0 {
		t.Fatalf("no results from the conformance suite:\n%s", out)
	}
	junit, err := os.ReadFile(filepath.Join(dir, "results", "junit.xml"))
	totals := map[string]string{"tests": "0", "failures": "0", "skipped": "0"}
	for _, m := range junitAttr.FindAllStringSubmatch(junitSuites.FindString(string(junit)), -1) {
		totals[m[1]] = m[2]
	}
	t.Logf("%s: junit.xml (%v): %s tests, %s failed, %s skipped", registry, err, totals["tests"], totals["failures"], totals["skipped"])
	return res
}

func count(res map[string][]string, status string) int {
	n := 0
	for _, v := range res {
		for _, s := range v {
			if s == status {
				n++
			}
		}
	}
	return n
}

func passed(v []string) bool {
	for _, s := range v {
		if s != "Pass" {
			return false
		}
	}
	return len(v) > 0
}

func TestConformanceThroughPortcullis(t *testing.T) {
	alone := suite(t, startRegistry(t))
	through := suite(t, startPortcullis(t, startRegistry(t)), "OCI_USERNAME=conformance", "OCI_PASSWORD=conformance")

	t.Logf("distribution v3.1.2 alone:   %d results, %d pass, %d fail, %d skip", count(alone, "Pass")+count(alone, "FAIL")+count(alone, "Skip"), count(alone, "Pass"), count(alone, "FAIL"), count(alone, "Skip"))
	t.Logf("through portcullis:          %d results, %d pass, %d fail, %d skip", count(through, "Pass")+count(through, "FAIL")+count(through, "Skip"), count(through, "Pass"), count(through, "FAIL"), count(through, "Skip"))

	var lost []string
	for name, v := range alone {
		if passed(v) && !passed(through[name]) {
			lost = append(lost, fmt.Sprintf("%s: alone %v, through portcullis %v", name, v, through[name]))
		}
	}
	sort.Strings(lost)
	if len(lost) > 0 {
		t.Errorf("%d tests pass against the upstream alone but not through portcullis:\n%s", len(lost), strings.Join(lost, "\n"))
	}
	// The upstream has no referrers API; portcullis answers it.
	for _, name := range []string{"OCI Conformance Test/empty/referrers", "OCI Conformance Test/artifacts-with-subject/referrers", "OCI Conformance Test/index-with-subject/referrers"} {
		if v := through[name]; !passed(v) {
			t.Errorf("%s through portcullis: %v", name, v)
		}
	}
	if n := count(through, "Pass"); n <= count(alone, "Pass") {
		t.Errorf("through portcullis %d tests pass, alone %d: portcullis should add the referrers API", n, count(alone, "Pass"))
	}
}
