package s3store

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/testtool"
)

// process is a running `portcullis serve`.
type process struct{ *testtool.Served }

// get GETs path on p and returns the status, the body (nil if it was cut) and the read error.
func (p *process) get(t *testing.T, path string) (int, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.Host+path, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// blobs returns the config and layers of img by digest.
func blobs(t *testing.T, img v1.Image) map[digest.Digest][]byte {
	t.Helper()
	out := map[digest.Digest][]byte{}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	out[digest.FromBytes(cfg)] = cfg
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[digest.FromBytes(b)] = b
	}
	return out
}

// fleet is an upstream registry with a signed and an unsigned image, and two portcullis
// processes on one MinIO bucket (and, with redis set, one Redis) in front of it.
type fleet struct {
	minio                  *testtool.MinIO
	up                     string
	stopUpstream           func()
	signedImg, unsignedImg v1.Image
	signed, unsigned       string // digests
	a, b                   *process
	crane                  string
}

func newFleet(t *testing.T, extraYAML string) *fleet {
	t.Helper()
	f := &fleet{minio: testtool.StartMinIO(t), crane: testtool.Path(t, "crane")}
	cosign := testtool.Path(t, "cosign3")
	f.up, f.stopUpstream = testtool.Registry(t)
	bin := testtool.BuildPortcullis(t)

	f.signedImg = testtool.RandomImage(t, 300<<10, 2)
	f.unsignedImg = testtool.RandomImage(t, 1000, 1)
	push := func(repo string, img v1.Image) string {
		ref, err := name.ParseReference(f.up+"/"+repo+":v1", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		return d.String()
	}
	f.signed, f.unsigned = push("team/app", f.signedImg), push("team/unsigned", f.unsignedImg)
	priv, pub := testtool.CosignKeyPair(t, cosign, t.TempDir())
	testtool.Cosign(t, cosign, nil, append(testtool.CosignSignArgs(3, priv), f.up+"/team/app@"+f.signed)...)

	dir := t.TempDir()
	secretFile := filepath.Join(dir, "s3.secret")
	if err := os.WriteFile(secretFile, []byte(f.minio.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yml := "listen: 127.0.0.1:0\nlog: {format: json, level: debug}\n" + f.minio.YAML(f.minio.Bucket, secretFile) +
		fmt.Sprintf("upstreams:\n  - name: %[1]s\n    url: http://%[1]s\n    insecure: true\n    default: true\n"+
			"policies:\n  - name: team\n    images: [\"%[1]s/team/**\"]\n    authorities:\n      - name: release\n        key: {path: %[2]s}\n"+
			"defaultPolicy: deny\n", f.up, pub) + extraYAML
	cfg := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	f.a, f.b = &process{testtool.Serve(t, bin, cfg)}, &process{testtool.Serve(t, bin, cfg)}
	for _, p := range []*process{f.a, f.b} {
		if code, body, _ := p.get(t, "/readyz"); code != http.StatusOK {
			t.Fatalf("readyz on the s3 store: %d %s\n%s", code, body, p.Logs())
		}
	}

	// Through A, with the upstream up: the signed image is admitted and stored, the unsigned
	// one denied.
	if out, err := f.pull(t, f.a, "team/app:v1"); err != nil {
		t.Fatalf("crane pull of the signed image through A: %v\n%s\n%s", err, out, f.a.Logs())
	}
	if out, err := f.pull(t, f.a, "team/unsigned:v1"); err == nil || !strings.Contains(out, "DENIED") {
		t.Fatalf("crane pull of the unsigned image through A: %v, want DENIED\n%s", err, out)
	}
	time.Sleep(time.Second) // writes behind the responses (manifests, grants) land in the bucket
	return f
}

// pull pulls ref through p with crane.
func (f *fleet) pull(t *testing.T, p *process, ref string) (string, error) {
	t.Helper()
	return testtool.Run(t, "", f.crane, nil, "pull", "--insecure", "--format", "oci", p.Host+"/"+ref, filepath.Join(t.TempDir(), "out"))
}

// checkNoSecret fails t if a process logged the s3 secret key.
func (f *fleet) checkNoSecret(t *testing.T) {
	t.Helper()
	for name, p := range map[string]*process{"A": f.a, "B": f.b} {
		if strings.Contains(p.Logs(), f.minio.SecretKey) {
			t.Errorf("%s logged the s3 secret key", name)
		}
	}
}

// TestReplicasShareOneBucket: two portcullis processes on one MinIO bucket. What A pulled
// and stored — manifests, blobs, the grants that let a repository serve them — B serves with
// the upstream stopped; what A denied, B does not serve; content corrupted in the bucket is
// never served whole, and removed; the secret key is in no log line.
func TestReplicasShareOneBucket(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs MinIO, distribution's registry and cosign")
	}
	f := newFleet(t, "")
	a, b, minio := f.a, f.b, f.minio
	signedImg, unsignedImg, signed, unsigned := f.signedImg, f.unsignedImg, f.signed, f.unsigned
	_ = a
	f.stopUpstream()

	t.Run("B serves A's blobs with the upstream stopped", func(t *testing.T) {
		for d, want := range blobs(t, signedImg) {
			code, body, err := b.get(t, "/v2/team/app/blobs/"+d.String())
			if code != http.StatusOK || err != nil || digest.FromBytes(body) != d || len(body) != len(want) {
				t.Errorf("blob %s through B: %d, %d bytes, %v; want the %d bytes A stored\n%s", d, code, len(body), err, len(want), b.Logs())
			}
		}
	})
	t.Run("B does not serve what A denied", func(t *testing.T) {
		for d := range blobs(t, unsignedImg) {
			if code, body, _ := b.get(t, "/v2/team/unsigned/blobs/"+d.String()); code == http.StatusOK {
				t.Errorf("blob %s of the denied image served by B: %d bytes", d, len(body))
			}
		}
		if code, body, _ := b.get(t, "/v2/team/unsigned/manifests/"+unsigned); code == http.StatusOK {
			t.Errorf("the denied manifest served by B: %s", body)
		}
	})
	t.Run("B's manifest is A's or a refusal", func(t *testing.T) {
		// B has no decision of its own for the signed manifest and cannot verify it with the
		// upstream down: it may only serve it from what the fleet shares (a decision or an
		// admission record), and then byte for byte; otherwise it refuses with a 5xx.
		code, body, _ := b.get(t, "/v2/team/app/manifests/"+signed)
		switch {
		case code == http.StatusOK && digest.FromBytes(body).String() != signed:
			t.Fatalf("B served a manifest of digest %s for %s", digest.FromBytes(body), signed)
		case code != http.StatusOK && code < 500:
			t.Fatalf("B answered %d for an admitted manifest with the upstream down: %s", code, body)
		}
		t.Logf("B's answer for the signed manifest with the upstream down: %d", code)
	})
	t.Run("corrupt content in the bucket is never served whole", func(t *testing.T) {
		drv, err := s3.FromParameters(context.Background(), minio.Params(minio.Bucket))
		if err != nil {
			t.Fatal(err)
		}
		var d digest.Digest
		var want []byte
		for k, v := range blobs(t, signedImg) {
			if len(v) > len(want) {
				d, want = k, v
			}
		}
		e := d.Encoded()
		bad := append([]byte{want[0] ^ 0xff}, want[1:]...)
		if err := drv.PutContent(context.Background(), "/blobs/sha256/"+e[:2]+"/"+e+"/data", bad); err != nil {
			t.Fatal(err)
		}
		code, body, err := b.get(t, "/v2/team/app/blobs/"+d.String())
		if code == http.StatusOK && err == nil {
			t.Fatalf("B served the corrupt blob whole: %d bytes", len(body))
		}
		// It was removed: with the upstream down, B now has nothing to serve.
		if code, body, err := b.get(t, "/v2/team/app/blobs/"+d.String()); code == http.StatusOK {
			t.Fatalf("after the corrupt read: %d, %d bytes, %v; want it gone from the store", code, len(body), err)
		}
		if _, err := drv.Stat(context.Background(), "/blobs/sha256/"+e[:2]+"/"+e+"/data"); err == nil {
			t.Fatal("the corrupt blob is still in the bucket")
		}
	})
	f.checkNoSecret(t)
}

// TestFleetServesWithTheUpstreamStopped: with Redis sharing decisions and the bucket sharing
// content, an image pulled through A is pulled through B, by digest, with the upstream
// stopped — its decision from Redis, its manifest and blobs from the bucket — and what A
// denied is still refused by B.
func TestFleetServesWithTheUpstreamStopped(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs MinIO, Redis, distribution's registry and cosign")
	}
	redis := testtool.StartRedis(t)
	f := newFleet(t, "cache:\n  redis: {addr: \""+redis.Addr+"\"}\n")
	f.stopUpstream()
	if out, err := f.pull(t, f.b, "team/app@"+f.signed); err != nil {
		t.Fatalf("crane pull by digest through B with the upstream stopped: %v\n%s\n%s", err, out, f.b.Logs())
	}
	if out, err := f.pull(t, f.b, "team/unsigned@"+f.unsigned); err == nil {
		t.Fatalf("B served the image A denied, with the upstream stopped:\n%s", out)
	}
	f.checkNoSecret(t)
}
