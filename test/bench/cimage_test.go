package bench_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/portcullis/portcullis/internal/sign"
)

// containersImageTable measures the pull-time verifier CRI-O and Podman run on every node:
// containers/image (test/bench/cimage, built with its pure-Go OpenPGP) copying a signed
// image with a policy.json that requires a sigstoreSigned key signature (found through
// use-sigstore-attachments), straight from the upstream, against the same copy through
// portcullis with no client-side policy. The image is signed in cosign's legacy format, the
// one containers/image reads. It returns nil (and says why) when cimage cannot be built
// outside CI.
func containersImageTable(t *testing.T, e *env, root, upHost string) *table {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cimage")
	build := exec.Command("go", "build", "-tags", "containers_image_openpgp", "-o", bin, ".")
	build.Dir = filepath.Join(root, "test", "bench", "cimage")
	if out, err := build.CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("build test/bench/cimage: %v\n%s", err, out)
		}
		t.Logf("containers/image comparison skipped: build test/bench/cimage: %v\n%s", err, out)
		return nil
	}
	p := pushImage(t, upHost, "bench/cimg", "v1", 256<<10, 2)
	img, err := name.NewDigest(upHost+"/bench/cimg@"+p.digest.String(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sign.Legacy(context.Background(), img, name.Repository{}, e.key.signer, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		f := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	verifying := write("verify/policy.json", fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"docker":{%q:[
		{"type":"sigstoreSigned","keyPath":%q,"signedIdentity":{"type":"matchRepository"}}]}}}`, upHost+"/bench/cimg", e.key.pubPath))
	write("verify/registries.d/default.yaml", fmt.Sprintf("docker:\n  %s:\n    use-sigstore-attachments: true\n", upHost))
	accepting := write("accept/policy.json", `{"default":[{"type":"insecureAcceptAnything"}]}`)
	write("accept/registries.d/default.yaml", "docker: {}\n")

	const copies = 6
	copyAll := func(policy, host string) []time.Duration {
		out, err := exec.Command(bin, "-policy", policy, "-registries.d", filepath.Join(filepath.Dir(policy), "registries.d"),
			"-n", strconv.Itoa(copies), "docker://"+host+"/bench/cimg:v1").CombinedOutput()
		if err != nil {
			t.Fatalf("cimage via %s: %v\n%s", host, err, out)
		}
		var ds []time.Duration
		for _, f := range strings.Fields(string(out)) {
			n, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				t.Fatalf("cimage output %q", out)
			}
			ds = append(ds, time.Duration(n))
		}
		return ds
	}
	// The policy is enforced: an unsigned image of the same repository is refused.
	pushImage(t, upHost, "bench/cimg", "unsigned", 1024, 1)
	if out, err := exec.Command(bin, "-policy", verifying, "-registries.d", filepath.Join(dir, "verify", "registries.d"),
		"docker://"+upHost+"/bench/cimg:unsigned").CombinedOutput(); err == nil || !strings.Contains(string(out), "signature") {
		t.Fatalf("containers/image under a sigstoreSigned policy, unsigned image: %v, want a signature error\n%s", err, out)
	}
	direct := copyAll(verifying, upHost)
	pc := e.portcullis(e.upstream.url, false)
	via := copyAll(accepting, strings.TrimPrefix(pc.url, "http://"))
	tb := &table{title: "containers/image (CRI-O, Podman) copying a signed image", head: []string{"how", "first copy", "repeated copies p50", "speed-up over verifying itself (repeated)"}}
	tb.add("containers/image verifies (policy.json sigstoreSigned), from the upstream", ms(direct[0]), ms(median(direct[1:])), "1.00×")
	tb.add("through portcullis (a fresh process, cold; no client policy)", ms(via[0]), ms(median(via[1:])), ratio(float64(median(direct[1:])), float64(median(via[1:]))))
	tb.notes = append(tb.notes, fmt.Sprintf("containers/image v5.36.2 (test/bench/cimage, `-tags containers_image_openpgp`), %d copies in one process, each into a new `dir:` "+
		"(so each downloads the image: 2 × 256 KiB layers), the policy enforced on each; the image is signed in cosign's legacy format (`.sig` tag), which "+
		"`use-sigstore-attachments` reads. Through portcullis the first copy is portcullis's cold path (manifest, signature lookup, verification, blobs "+
		"fetched and stored); the repeated ones are served from its caches. Target: through portcullis faster than containers/image verifying itself.", copies))
	e.ciSummary = append(e.ciSummary, []string{"containers/image copy of a signed image, first / repeated (p50)",
		fmt.Sprintf("%s / %s (verifying itself)", ms(direct[0]), ms(median(direct[1:]))), "",
		fmt.Sprintf("%s / %s (no client policy)", ms(via[0]), ms(median(via[1:]))),
		ratio(float64(median(direct[1:])), float64(median(via[1:]))) + " speed-up, repeated",
		"faster " + check(median(via[1:]) < median(direct[1:]))})
	return tb
}
