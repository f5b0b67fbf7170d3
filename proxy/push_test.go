package proxy_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/pushauth"
	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/verify"
)

// denyGate refuses everything it has not been told to allow, like an enforcing policy.
type denyGate struct {
	mu      sync.Mutex
	allowed map[digest.Digest]bool
	err     error  // returned instead of a decision when set
	reason  string // of denials; default "unsigned"
}

func (g *denyGate) Admit(_ context.Context, req policy.Request) (policy.Decision, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return policy.Decision{}, g.err
	}
	if g.allowed[req.Manifest.Digest] {
		return policy.Decision{Allowed: true}, nil
	}
	reason := g.reason
	if reason == "" {
		reason = "unsigned"
	}
	return policy.Decision{}, &policy.DenyError{Image: req.Image, Digest: req.Manifest.Digest, Policy: "test", Reason: reason}
}

// forgetter records what it is told to forget.
type forgetter struct {
	mu     sync.Mutex
	forgot []digest.Digest
}

func (f *forgetter) Forget(_ context.Context, _ string, d digest.Digest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgot = append(f.forgot, d)
}

func pushEnv(t *testing.T, gate *denyGate, f *forgetter) *env {
	t.Helper()
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	p, err := pushauth.New(pushauth.Config{
		Htpasswd: "htpasswd",
		Users:    []pushauth.User{{Name: "ci", Images: []string{upName + "/signed/**"}}},
	}, []byte("ci:"+string(hash)+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	return newEnv(t, func(_ *upstream.Config, o *proxy.Options) {
		o.Gate, o.Pushers, o.Decisions, o.Artifacts = gate, p, f, verify.New()
	})
}

func (e *env) do(t *testing.T, method, path string, body []byte, auth bool, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, e.proxy.URL+path, bytes.NewReader(body))
	if auth {
		req.SetBasicAuth("ci", "pw")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestDeniedManifest(t *testing.T) {
	gate := &denyGate{}
	e := pushEnv(t, gate, &forgetter{})
	e.push(t, "signed/app:v1", randomImage(t))
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		resp, b := e.do(t, method, "/v2/signed/app/manifests/v1", nil, false)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", method, resp.StatusCode)
		}
		if method == http.MethodGet && (errCode(t, b) != "DENIED" || !strings.Contains(string(b), `denied by policy \"test\": unsigned`)) {
			t.Errorf("GET: body %s", b)
		}
		// A HEAD has no body: the reason is in the status line, which is all containerd shows.
		if method == http.MethodHead && !strings.HasSuffix(resp.Status, `denied by policy "test": unsigned`) {
			t.Errorf("HEAD: status line %q does not carry the reason", resp.Status)
		}
		if resp.Header.Get("Docker-Content-Digest") != "" {
			t.Errorf("%s: a denial names the digest", method)
		}
		// A user who may push signatures for the image resolves it, to sign it.
		resp, _ = e.do(t, method, "/v2/signed/app/manifests/v1", nil, true)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") == "" {
			t.Errorf("%s by the push user: status %d", method, resp.StatusCode)
		}
	}
	gate.mu.Lock()
	gate.err = &upstream.UnavailableError{Upstream: upName, Err: errors.New("signature lookup timed out")}
	gate.mu.Unlock()
	resp, b := e.do(t, http.MethodGet, "/v2/signed/app/manifests/v1", nil, false)
	if resp.StatusCode != http.StatusServiceUnavailable || errCode(t, b) != "UNAVAILABLE" {
		t.Errorf("undecidable: %d %s, want 503 UNAVAILABLE", resp.StatusCode, b)
	}
}

func TestBlobUploadProtocol(t *testing.T) {
	e := pushEnv(t, &denyGate{}, &forgetter{})
	blob := bytes.Repeat([]byte("portcullis"), 1000)
	d := digest.FromBytes(blob)
	upstreamHas := func(t *testing.T, d digest.Digest) bool {
		t.Helper()
		resp, err := http.Head(e.up.URL + "/v2/signed/app/blobs/" + d.String())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}

	t.Run("monolithic", func(t *testing.T) {
		resp, b := e.do(t, "POST", "/v2/signed/app/blobs/uploads/?digest="+d.String(), blob, true)
		if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != d.String() || !upstreamHas(t, d) {
			t.Fatalf("status %d %s", resp.StatusCode, b)
		}
	})
	t.Run("chunked", func(t *testing.T) {
		blob := append(bytes.Clone(blob), "chunked"...)
		d := digest.FromBytes(blob)
		resp, _ := e.do(t, "POST", "/v2/signed/app/blobs/uploads/", nil, true)
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusAccepted || loc == "" {
			t.Fatalf("start: %d", resp.StatusCode)
		}
		resp, _ = e.do(t, "PATCH", loc, blob[:4000], true, "Content-Range", "0-3999")
		if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Range") != "0-3999" {
			t.Fatalf("chunk 1: %d range %q", resp.StatusCode, resp.Header.Get("Range"))
		}
		resp, _ = e.do(t, "PATCH", loc, blob[4000:], true, "Content-Range", "10-20")
		if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
			t.Fatalf("out-of-order chunk: %d, want 416", resp.StatusCode)
		}
		resp, _ = e.do(t, "PATCH", loc, blob[4000:8000], true, "Content-Range", "4000-7999")
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("chunk 2: %d", resp.StatusCode)
		}
		resp, _ = e.do(t, "GET", loc, nil, true)
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Range") != "0-7999" {
			t.Fatalf("status: %d %q", resp.StatusCode, resp.Header.Get("Range"))
		}
		resp, b := e.do(t, "PUT", loc+"?digest="+d.String(), blob[8000:], true)
		if resp.StatusCode != http.StatusCreated || !upstreamHas(t, d) {
			t.Fatalf("finish: %d %s", resp.StatusCode, b)
		}
	})
	t.Run("wrong digest", func(t *testing.T) {
		wrong := digest.FromString("something else")
		resp, b := e.do(t, "POST", "/v2/signed/app/blobs/uploads/?digest="+wrong.String(), blob, true)
		if resp.StatusCode != http.StatusBadRequest || errCode(t, b) != "DIGEST_INVALID" || upstreamHas(t, wrong) {
			t.Fatalf("status %d %s", resp.StatusCode, b)
		}
	})
	for _, tc := range []struct {
		name   string
		path   string
		auth   bool
		status int
		code   string
	}{
		{"anonymous", "/v2/signed/app/blobs/uploads/", false, 401, "UNAUTHORIZED"},
		{"outside the user's images", "/v2/other/app/blobs/uploads/", true, 403, "DENIED"},
		{"unknown session", "/v2/signed/app/blobs/uploads/nope", true, 404, "BLOB_UPLOAD_UNKNOWN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := "POST"
			if strings.HasSuffix(tc.path, "nope") {
				method = "PATCH"
			}
			resp, b := e.do(t, method, tc.path, blob, tc.auth)
			if resp.StatusCode != tc.status || errCode(t, b) != tc.code {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, b, tc.status, tc.code)
			}
		})
	}
}

func TestManifestPush(t *testing.T) {
	f := &forgetter{}
	e := pushEnv(t, &denyGate{}, f)
	img := randomImage(t)
	d := e.push(t, "signed/app:v1", img)
	raw, _ := img.RawManifest()

	// A cosign bundle referrer of the image (blobs pushed first, as cosign does).
	bundle := []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"aGludA=="}},` +
		`"dsseEnvelope":{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"c2ln"}]}}`)
	for _, b := range [][]byte{bundle, []byte("{}")} {
		if resp, body := e.do(t, "POST", "/v2/signed/app/blobs/uploads/?digest="+digest.FromBytes(b).String(), b, true); resp.StatusCode != 201 {
			t.Fatalf("blob: %d %s", resp.StatusCode, body)
		}
	}
	referrer := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json",`+
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},`+
		`"layers":[{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","digest":%q,"size":%d}],`+
		`"subject":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":%q,"size":%d}}`,
		digest.FromBytes([]byte("{}")), digest.FromBytes(bundle), len(bundle), d, len(raw))
	rd := digest.FromString(referrer)
	resp, b := e.do(t, "PUT", "/v2/signed/app/manifests/"+rd.String(), []byte(referrer), true, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("OCI-Subject") != d.String() {
		t.Fatalf("bundle referrer: %d %s (OCI-Subject %q)", resp.StatusCode, b, resp.Header.Get("OCI-Subject"))
	}
	if len(f.forgot) != 1 || f.forgot[0].String() != d.String() {
		t.Errorf("forgot %v, want the subject %s", f.forgot, d)
	}
	// The upstream (this one has the referrers API) lists it.
	ref, _ := name.ParseReference(e.host+"/signed/app@"+d.String(), name.Insecure)
	idx, err := remote.Referrers(ref.(name.Digest))
	if err != nil {
		t.Fatal(err)
	}
	if im, _ := idx.IndexManifest(); len(im.Manifests) != 1 || im.Manifests[0].Digest.String() != rd.String() {
		t.Errorf("upstream referrers: %+v", im)
	}

	// An image is not a signature, by tag or by digest.
	for _, ref := range []string{"v2", digest.FromBytes(raw).String()} {
		resp, b = e.do(t, "PUT", "/v2/signed/app/manifests/"+ref, raw, true, "Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "only signature pushes") {
			t.Errorf("image pushed as %s: %d %s", ref, resp.StatusCode, b)
		}
	}
	// A runnable image disguised as a signature (a gzip'd tar labelled as a simple signing
	// payload, an image config with an entrypoint) is refused under a cosign tag and by
	// digest, with the reason.
	layer := gzipTar(t, "run.sh", "#!/bin/sh\necho pwned\n")
	config := []byte(`{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/run.sh"]},"rootfs":{"type":"layers","diff_ids":[]}}`)
	for _, b := range [][]byte{layer, config} {
		if resp, body := e.do(t, "POST", "/v2/signed/app/blobs/uploads/?digest="+digest.FromBytes(b).String(), b, true); resp.StatusCode != 201 {
			t.Fatalf("blob: %d %s", resp.StatusCode, body)
		}
	}
	disguised := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":%q,"size":%d}]}`,
		digest.FromBytes(config), len(config), digest.FromBytes(layer), len(layer))
	for _, ref := range []string{cosign.SignatureTag(digest.Digest(d.String())), digest.FromString(disguised).String()} {
		resp, b = e.do(t, "PUT", "/v2/signed/app/manifests/"+ref, []byte(disguised), true, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
		if resp.StatusCode != http.StatusForbidden || errCode(t, b) != "DENIED" || !strings.Contains(string(b), "shaped like a signature but is not a signature artifact") {
			t.Errorf("disguised image pushed as %s: %d %s", ref, resp.StatusCode, b)
		}
	}
	if resp, err := http.Head(e.up.URL + "/v2/signed/app/manifests/" + digest.FromString(disguised).String()); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("the upstream has the disguised image: %v %v", resp, err)
	}
	// A signature manifest under an ordinary tag is refused too.
	resp, b = e.do(t, "PUT", "/v2/signed/app/manifests/latest", []byte(referrer), true, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("signature under tag latest: %d %s", resp.StatusCode, b)
	}
	// Oversized.
	resp, b = e.do(t, "PUT", "/v2/signed/app/manifests/"+cosign.SignatureTag(digest.Digest(d.String())), bytes.Repeat([]byte(" "), 4<<20+1), true)
	if resp.StatusCode != http.StatusBadRequest || errCode(t, b) != "MANIFEST_INVALID" {
		t.Errorf("oversized: %d %s", resp.StatusCode, b)
	}
}

// gzipTar is a gzip'd tar with one executable file.
func gzipTar(t *testing.T, name, content string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(tw, content)
	_ = tw.Close()
	_ = zw.Close()
	return buf.Bytes()
}

// TestDenialReasonInStatusLine checks that a reason carrying line breaks and non-ASCII text
// (reasons can quote upstream content) cannot inject headers into a HEAD's status line.
func TestDenialReasonInStatusLine(t *testing.T) {
	gate := &denyGate{}
	e := newEnv(t, func(_ *upstream.Config, o *proxy.Options) { o.Gate = gate })
	e.push(t, "demo/app:v1", randomImage(t))
	gate.mu.Lock()
	gate.reason = "payload type \"x\"\r\nX-Injected: yes\r\n\r\n☠ " + strings.Repeat("long ", 400)
	gate.mu.Unlock()
	resp, _ := e.get(t, http.MethodHead, "/v2/demo/app/manifests/v1")
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Injected") != "" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	if !strings.Contains(resp.Status, `payload type "x"??X-Injected: yes????`) || !strings.HasSuffix(resp.Status, "...") || len(resp.Status) > 1100 {
		t.Errorf("status line %q", resp.Status)
	}
	// The connection was handed back closed, and the next request works.
	if resp, _ := e.get(t, http.MethodGet, "/v2/demo/app/tags/list"); resp.StatusCode != http.StatusOK {
		t.Errorf("next request: %d", resp.StatusCode)
	}
}

// pushUsersEnv is a proxy with push users ci (signed/** and scratch/**) and ops (private/**),
// whose password is their name; scratch/** is open to plain push-through.
func pushUsersEnv(t *testing.T, gate proxy.Gate, opts ...pushauth.Option) (*env, *pushauth.Pushers) {
	t.Helper()
	var file strings.Builder
	for _, user := range []string{"ci", "ops"} {
		hash, _ := bcrypt.GenerateFromPassword([]byte(user), bcrypt.MinCost)
		fmt.Fprintf(&file, "%s:%s\n", user, hash)
	}
	p, err := pushauth.New(pushauth.Config{
		Htpasswd: "htpasswd",
		Users: []pushauth.User{
			{Name: "ci", Images: []string{upName + "/signed/**", upName + "/scratch/**"}},
			{Name: "ops", Images: []string{upName + "/private/**"}},
		},
		PassThrough: pushauth.PassThrough{Images: []string{upName + "/scratch/**"}, Allow: "any"},
	}, []byte(file.String()), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return newEnv(t, func(uc *upstream.Config, o *proxy.Options) {
		// Blobs of the push limit's size: the upstream (under the race detector) may take
		// more than the usual 2s to answer their upload, and the in-memory driver is slow
		// with them, so the store is on disk.
		uc.Timeout = 30 * time.Second
		o.Store = store.New(filesystem.New(filesystem.DriverParameters{RootDirectory: t.TempDir(), MaxThreads: 100}))
		o.Gate, o.Pushers, o.Artifacts = gate, p, verify.New()
	}), p
}

// send makes a request as user (password: its name; "" for none).
func (e *env) send(t *testing.T, method, path, user string, body io.Reader, size int64) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, e.proxy.URL+path, body)
	req.ContentLength = size
	if user != "" {
		req.SetBasicAuth(user, user)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func (e *env) upstreamHas(t *testing.T, repo string, d digest.Digest) bool {
	t.Helper()
	resp, err := http.Head(e.up.URL + "/v2/" + repo + "/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func TestMount(t *testing.T) {
	gate := &denyGate{allowed: map[digest.Digest]bool{}}
	e, _ := pushUsersEnv(t, gate)
	upload := func(t *testing.T, user, repo string, blob []byte) digest.Digest {
		t.Helper()
		d := digest.FromBytes(blob)
		if resp, b := e.send(t, "POST", "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), user, bytes.NewReader(blob), int64(len(blob))); resp.StatusCode != http.StatusCreated {
			t.Fatalf("push to %s: %d %s", repo, resp.StatusCode, b)
		}
		return d
	}
	// Linked to signed/a (pushed there by ci), to private/x (pushed by ops), to scratch/big.
	mine := upload(t, "ci", "signed/a", []byte("a signature of ci's"))
	theirs := upload(t, "ops", "private/x", []byte("a private blob of ops's"))
	big := upload(t, "ci", "scratch/big", bytes.Repeat([]byte("x"), 16<<20+1))
	// Linked to public/img and granted there: an admitted image was pulled through portcullis.
	img := randomImage(t)
	id := e.push(t, "public/img:v1", img)
	gate.allowed[digest.Digest(id.String())] = true
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	public := digest.Digest(ld.String())
	if resp, _ := e.get(t, "GET", "/v2/public/img/manifests/v1"); resp.StatusCode != 200 {
		t.Fatalf("pull of the admitted image: %d", resp.StatusCode)
	}
	if resp, _ := e.get(t, "GET", "/v2/public/img/blobs/"+public.String()); resp.StatusCode != 200 {
		t.Fatalf("pull of its layer: %d", resp.StatusCode)
	}

	for _, tc := range []struct {
		name     string
		d        digest.Digest
		from, to string
		want     int
	}{
		{"from a repository it was pushed to", mine, "signed/a", "signed/b", http.StatusCreated},
		{"with the upstream's path prefix", mine, upName + "/signed/a", upName + "/signed/c", http.StatusCreated},
		{"from an admitted image's repository", public, "public/img", "signed/d", http.StatusCreated},
		{"without from", mine, "", "signed/e", http.StatusAccepted},
		{"from a repository it is not linked to", public, "signed/a", "signed/f", http.StatusAccepted},
		{"from another user's repository", theirs, "private/x", "signed/g", http.StatusAccepted},
		{"from a repository on an upstream that is not configured", mine, "other.example/signed/a", "signed/i", http.StatusAccepted},
		{"over the signature limit", big, "scratch/big", "signed/j", http.StatusAccepted},
		{"to a pass-through image", big, "scratch/big", "scratch/copy", http.StatusCreated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pushes atomic.Int64
			target := "/v2/" + strings.TrimPrefix(tc.to, upName+"/") + "/blobs/"
			e.faults.set(func(_ http.ResponseWriter, r *http.Request) bool {
				if strings.HasPrefix(r.URL.Path, target) {
					pushes.Add(1)
				}
				return false
			})
			defer e.faults.set(nil)
			path := "/v2/" + tc.to + "/blobs/uploads/?mount=" + tc.d.String()
			if tc.from != "" {
				path += "&from=" + tc.from
			}
			resp, b := e.send(t, "POST", path, "ci", nil, 0)
			if resp.StatusCode != tc.want {
				t.Fatalf("mount: %d %s, want %d", resp.StatusCode, b, tc.want)
			}
			// The fake upstream keeps blobs for all repositories at once, so the push of a
			// mounted blob ends at its existence check: count requests for the target.
			if n := pushes.Load(); (n > 0) != (tc.want == http.StatusCreated) {
				t.Errorf("%d requests to push the blob to the upstream's %s", n, tc.to)
			}
			if tc.want == http.StatusAccepted && resp.Header.Get("Location") == "" {
				t.Errorf("no upload session offered")
			}
		})
	}
	// The target must be the user's: a mount is a push.
	if resp, b := e.send(t, "POST", "/v2/private/z/blobs/uploads/?mount="+mine.String()+"&from=signed/a", "ci", nil, 0); resp.StatusCode != http.StatusForbidden {
		t.Errorf("mount into another user's repository: %d %s, want 403", resp.StatusCode, b)
	}
}

// slowReader hides its size, so that the proxy cannot refuse by Content-Length.
type slowReader struct{ io.Reader }

func TestPushSizeLimit(t *testing.T) {
	e, _ := pushUsersEnv(t, &denyGate{})
	const limit = 16 << 20
	over := bytes.Repeat([]byte("s"), limit+1)
	d := digest.FromBytes(over)
	for _, tc := range []struct {
		name  string
		repo  string
		known bool // Content-Length sent
		want  int
	}{
		{"signature image, monolithic", "signed/app", true, http.StatusBadRequest},
		{"signature image, streamed", "signed/app", false, http.StatusBadRequest},
		{"pass-through image", "scratch/app", true, http.StatusCreated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			size := int64(len(over))
			var body io.Reader = bytes.NewReader(over)
			if !tc.known {
				size, body = -1, slowReader{body}
			}
			resp, b := e.send(t, "POST", "/v2/"+tc.repo+"/blobs/uploads/?digest="+d.String(), "ci", body, size)
			if resp.StatusCode != tc.want {
				t.Fatalf("push of %d bytes: %d %s, want %d", len(over), resp.StatusCode, b, tc.want)
			}
			if tc.want == http.StatusBadRequest {
				if errCode(t, b) != "SIZE_INVALID" || !strings.Contains(string(b), "16777216 byte (16 MiB) limit for signature pushes") {
					t.Errorf("body %s, want SIZE_INVALID naming the limit", b)
				}
				if e.upstreamHas(t, tc.repo, d) {
					t.Errorf("the upstream got the oversized blob")
				}
			}
		})
	}
	// Chunked: the chunk that goes over the limit is refused and the session is gone.
	resp, _ := e.send(t, "POST", "/v2/signed/app/blobs/uploads/", "ci", nil, 0)
	loc := resp.Header.Get("Location")
	if resp, b := e.send(t, "PATCH", loc, "ci", bytes.NewReader(over[:limit]), limit); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("chunk up to the limit: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.send(t, "PATCH", loc, "ci", slowReader{bytes.NewReader(over[limit:])}, -1); resp.StatusCode != http.StatusBadRequest || errCode(t, b) != "SIZE_INVALID" {
		t.Fatalf("chunk over the limit: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.send(t, "GET", loc, "ci", nil, 0); resp.StatusCode != http.StatusNotFound {
		t.Errorf("session after the refused chunk: %d %s, want 404", resp.StatusCode, b)
	}
	// A signature-sized blob still goes through.
	ok := over[:limit]
	if resp, b := e.send(t, "POST", "/v2/signed/app/blobs/uploads/?digest="+digest.FromBytes(ok).String(), "ci", bytes.NewReader(ok), limit); resp.StatusCode != http.StatusCreated {
		t.Errorf("push of exactly the limit: %d %s", resp.StatusCode, b)
	}
}

// clientFrom is an HTTP client whose connections come from ip (any 127/8 address works on
// loopback), so that the proxy sees distinct client addresses.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// timed makes a request from c and returns its status and duration.
func timed(t *testing.T, c *http.Client, url, user, pass string) (int, http.Header, time.Duration) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header, time.Since(start)
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// TestLoginThrottle checks the login defences end to end: /v2/ without credentials hashes
// nothing; an unknown user costs what a known one does; a burst of bad logins from one
// address is throttled (429 with Retry-After, without hashing, fast) while anonymous pulls
// keep their latency and another address logs in as before.
func TestLoginThrottle(t *testing.T) {
	const cost, burst = 8, 4
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), cost)
	p, err := pushauth.New(pushauth.Config{
		Htpasswd: "htpasswd",
		Users:    []pushauth.User{{Name: "ci", Images: []string{upName + "/signed/**"}}},
	}, []byte("ci:"+string(hash)+"\n"), pushauth.WithFailedLoginLimit(time.Hour, burst))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(_ *upstream.Config, o *proxy.Options) { o.Pushers, o.Artifacts = p, verify.New() })
	d := e.push(t, "demo/app:v1", randomImage(t))
	pullURL := e.proxy.URL + "/v2/demo/app/manifests/" + d.String()
	attacker, puller, other := clientFrom("127.0.0.2"), clientFrom("127.0.0.3"), clientFrom("127.0.0.4")

	// /v2/ without credentials: a challenge, and nothing hashed.
	for range 20 {
		if status, hd, _ := timed(t, puller, e.proxy.URL+"/v2/", "", ""); status != http.StatusUnauthorized || hd.Get("WWW-Authenticate") == "" {
			t.Fatalf("anonymous /v2/: %d %v", status, hd)
		}
	}
	if s := p.Stats(); s.Hashes != 0 {
		t.Fatalf("anonymous /v2/ hashed %d times", s.Hashes)
	}

	pulls := func(n int) []time.Duration {
		var ds []time.Duration
		for range n {
			status, _, dur := timed(t, puller, pullURL, "", "")
			if status != http.StatusOK {
				t.Fatalf("anonymous pull: %d", status)
			}
			ds = append(ds, dur)
		}
		return ds
	}
	pulls(5) // warm: the manifest is in the store
	before := median(pulls(30))

	// The burst: the first attempts are hashed (unknown and known users alike), the rest
	// are refused at once.
	var hashed []time.Duration
	for i := range burst {
		user := []string{"ci", "eve"}[i%2]
		status, _, dur := timed(t, attacker, e.proxy.URL+"/v2/", user, "guess")
		if status != http.StatusUnauthorized {
			t.Fatalf("failed login %d: %d, want 401", i, status)
		}
		hashed = append(hashed, dur)
	}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		refused   []time.Duration
		statuses  = map[int]int{}
		attacking atomic.Bool
	)
	attacking.Store(true)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; attacking.Load(); i++ {
				status, hd, dur := timed(t, attacker, e.proxy.URL+"/v2/", fmt.Sprintf("user%d-%d", w, i), "guess")
				mu.Lock()
				statuses[status]++
				if status == http.StatusTooManyRequests && hd.Get("Retry-After") != "" {
					refused = append(refused, dur)
				}
				mu.Unlock()
			}
		})
	}
	during := median(pulls(30))
	// Another address logs in as ever, right and wrong.
	if status, _, _ := timed(t, other, e.proxy.URL+"/v2/", "ci", "pw"); status != http.StatusOK {
		t.Errorf("login from another address during the attack: %d, want 200", status)
	}
	if status, _, _ := timed(t, other, e.proxy.URL+"/v2/", "ci", "wrong"); status != http.StatusUnauthorized {
		t.Errorf("bad login from another address during the attack: %d, want 401", status)
	}
	attacking.Store(false)
	wg.Wait()

	s := p.Stats()
	t.Logf("anonymous pull median %s before, %s during the attack; hashed failed login median %s, throttled %s (%d refused; statuses %v); stats %+v",
		before, during, median(hashed), median(refused), len(refused), statuses, s)
	if len(refused) == 0 || statuses[http.StatusTooManyRequests] != len(refused) || len(statuses) != 1 {
		t.Fatalf("attack statuses %v: want only 429 with Retry-After", statuses)
	}
	// burst attempts from the attacker, two from the other address.
	if s.Hashes != burst+2 {
		t.Errorf("%d bcrypt comparisons, want %d: throttled attempts were hashed", s.Hashes, burst+2)
	}
	if m := median(refused); m > median(hashed)/2 {
		t.Errorf("throttled attempts take %s, hashed ones %s: throttling should be far cheaper", m, median(hashed))
	}
	// The attack's own requests cost some CPU on a small machine, but pulls must stay far
	// from bcrypt's scale: unthrottled (and without the cap on concurrent hashing), the same
	// attack takes pulls from 0.2ms to 30ms, above the time of one hashed login.
	if limit := 4*before + median(hashed)/8; during > limit {
		t.Errorf("anonymous pull median %s during the attack, %s before: want under %s", during, before, limit)
	}
	// From the throttled address, new credentials are refused unchecked, and remembered ones
	// (here: just verified for the other address) still work, so that a CI job behind the
	// attacker's NAT keeps its session.
	if status, _, _ := timed(t, attacker, e.proxy.URL+"/v2/", "ci", "pw2"); status != http.StatusTooManyRequests {
		t.Errorf("new credentials from the throttled address: %d, want 429", status)
	}
	if status, _, _ := timed(t, attacker, e.proxy.URL+"/v2/", "ci", "pw"); status != http.StatusOK {
		t.Errorf("remembered credentials from the throttled address: %d, want 200", status)
	}
}
