package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/portcullis/portcullis/internal/testtool"
)

// TestDeniedImageBlobsNeverLeave checks that nothing of a denied image leaves portcullis as
// loose blobs, nor any blob that no admitted manifest references, while an admitted image
// still pulls whole.
func TestDeniedImageBlobsNeverLeave(t *testing.T) {
	e := newEnforcing(t, "")
	signedImg, unsignedImg := testImage(t), testImage(t)
	sd := e.up.pushImage(t, "gate/signed:v1", signedImg)
	cosignSign(t, e.cosign3, e.trusted, e.up.host+"/gate/signed@"+sd.String())
	e.up.pushImage(t, "gate/unsigned:v1", unsignedImg)
	e.up.pushImage(t, "gate/other:v1", signedImg) // the signed image's blobs, in another repository

	if out, err := e.pull(t, "gate/signed:v1"); err != nil {
		t.Fatalf("signed image: %v\n%s", err, out)
	}
	if out, err := e.pull(t, "gate/unsigned:v1"); err == nil || !strings.Contains(out, "DENIED") {
		t.Fatalf("unsigned image: %v\n%s", err, out)
	}
	blob := func(repo, d string) (string, error) {
		return testtool.Run(t, "", e.crane, nil, "blob", "--insecure", e.px.host+"/"+repo+"@"+d)
	}
	for d, want := range fetchImage(t, signedImg) {
		if d == sd.String() {
			continue // the manifest
		}
		if out, err := blob("gate/signed", d); err != nil || out != string(want) {
			t.Errorf("admitted blob %s: %v (%d bytes, want %d)", d, err, len(out), len(want))
		}
		// Granted where its manifest was admitted, not in a repository whose manifest was not.
		if out, err := blob("gate/other", d); err == nil || !strings.Contains(out, "BLOB_UNKNOWN") {
			t.Errorf("blob %s through gate/other: %v\n%.300s", d, err, out)
		}
	}
	ud, _ := unsignedImg.Digest()
	for d := range fetchImage(t, unsignedImg) {
		if d == ud.String() {
			continue
		}
		out, err := blob("gate/unsigned", d)
		if err == nil || !strings.Contains(out, "BLOB_UNKNOWN") {
			t.Errorf("blob %s of the denied image: %v\n%.300s", d, err, out)
		}
		if r := get(t, e.px.host, "/v2/gate/unsigned/blobs/"+d); r.status != http.StatusNotFound {
			t.Errorf("GET blob %s of the denied image: %d", d, r.status)
		}
	}
}

// TestContainerdPlatformsAcrossRestart pulls one platform at a time of a signed
// multi-platform index with containerd (configured by the deploy hosts.toml), restarts
// portcullis on the same filesystem store, and pulls again with a fresh containerd: every
// pull of the admitted image works, and the blobs portcullis admitted before the restart are
// still served before any manifest is asked for again.
func TestContainerdPlatformsAcrossRestart(t *testing.T) {
	cosign3 := tool(t, "cosign3")
	up := newReachable(t)
	keys := cosignKeys(t, cosign3)
	policy := fmt.Sprintf("policies:\n  - name: prod\n    images: [\"%s/**\"]\n    authorities:\n"+
		"      - name: release-key\n        key: {path: %s}\ndefaultPolicy: deny\n", reachableName, keys.pub)
	store := filepath.Join(t.TempDir(), "store")
	idx := testIndex(t)
	ref := reachableName + "/gate/multi:v1"
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	cosignSign(t, cosign3, keys, reachableName+"/gate/multi@"+d.String())
	want := blobsOf(t, nil, idx)

	pullPlatforms := func(t *testing.T, px *tlsProxy) map[string][]byte {
		t.Helper()
		f := &clientsFixture{up: up, px: px}
		toml := f.clientFile(t, "containerd/certs.d/docker.io/hosts.toml", "portcullis.example:5000", "/etc/portcullis/ca.crt")
		c := startContainerdHosts(t, map[string]string{reachableName: toml})
		m := up.mark()
		for _, platform := range []string{"linux/amd64", "linux/arm64"} {
			if out, err := c.run(t, "images", "pull", "--platform", platform, "--hosts-dir", c.hostsDir, "--snapshotter", "native", ref); err != nil {
				t.Fatalf("ctr pull --platform %s: %v\n%s", platform, err, out)
			}
		}
		noRuntimeRequests(t, up, m)
		return c.exportedRef(t, ref)
	}

	first := startTLSProxyStore(t, store, policy)
	sameContent(t, pullPlatforms(t, first), want)
	first.stop()

	second := startTLSProxyStore(t, store, policy)
	client := tlsClient(t, second.caPath)
	im, _ := idx.IndexManifest()
	child, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := child.Layers()
	ld, _ := layers[0].Digest()
	resp, err := client.Get("https://" + second.host + "/v2/" + reachableName + "/gate/multi/blobs/" + ld.String())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(b, want[ld.String()]) {
		t.Errorf("after the restart, a blob admitted before it: status %d, %d bytes", resp.StatusCode, len(b))
	}
	sameContent(t, pullPlatforms(t, second), want)
}

// tlsClient trusts only the CA at caPath.
func tlsClient(t *testing.T, caPath string) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(mustRead(t, caPath)) {
		t.Fatal("no CA certificate in " + caPath)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}
