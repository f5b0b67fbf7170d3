package proxy_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/pushauth"
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
