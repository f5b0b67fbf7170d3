// Package faults runs portcullis, with its real policy engine and verifier, against an
// in-process distribution upstream that misbehaves on purpose: slow answers, 5xx bursts,
// connections reset mid-body, truncated bodies, wrong digests, tags swapped to unsigned
// content, a broken referrers API, huge tag lists, redirects to foreign hosts. Every test
// checks that the client gets the right content or an error — never unverified or corrupt
// content — and that no goroutine outlives it.
package faults

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/portcullis/portcullis/internal/app"
	"github.com/portcullis/portcullis/internal/sign"
	"github.com/portcullis/portcullis/internal/testtool"
	"github.com/portcullis/portcullis/verify/oci"
)

const upstreamName = "faulty.invalid"

// rule may answer a request itself (returning true) instead of the upstream.
type rule func(w http.ResponseWriter, r *http.Request) bool

// faulty is the upstream: distribution's app behind a list of rules.
type faulty struct {
	next  http.Handler
	mu    sync.Mutex
	rules []rule
}

func (f *faulty) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	rules := slices.Clone(f.rules)
	f.mu.Unlock()
	for _, fn := range rules {
		if fn(w, r) {
			return
		}
	}
	f.next.ServeHTTP(w, r)
}

// set replaces the rules; no rules heals the upstream.
func (f *faulty) set(rules ...rule) {
	f.mu.Lock()
	f.rules = rules
	f.mu.Unlock()
}

// env is a faulty upstream and portcullis in front of it.
type env struct {
	t      *testing.T
	up     *httptest.Server
	f      *faulty
	host   string
	px     *httptest.Server
	app    *app.App
	client *http.Client
	key    signature.SignerVerifier
	pub    crypto.PublicKey
}

type opts struct {
	timeout time.Duration
	retries int
	extra   string
}

func newEnv(t *testing.T, o opts) *env {
	t.Helper()
	checkGoroutines(t)
	if o.timeout == 0 {
		o.timeout = 2 * time.Second
	}
	e := &env{t: t, f: &faulty{next: testtool.Distribution(t)}}
	e.up = httptest.NewServer(e.f)
	e.host = strings.TrimPrefix(e.up.URL, "http://")

	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e.key, _ = signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	e.pub = priv.Public()
	pem, _ := cryptoutils.MarshalPublicKeyToPEM(e.pub)
	dir := t.TempDir()
	pubPath := filepath.Join(dir, "cosign.pub")
	if err := os.WriteFile(pubPath, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	yml := fmt.Sprintf(`listen: 127.0.0.1:0
log: {format: text, level: error}
storage: {driver: inmemory}
upstreams:
  - name: %[1]s
    url: %[2]s
    insecure: true
    default: true
    timeout: %[3]s
    retries: %[4]d
policies:
  - name: signed
    images: ["%[1]s/**"]
    authorities:
      - name: key
        key: {path: %[5]s}
defaultPolicy: deny
%[6]s`, upstreamName, e.up.URL, o.timeout, o.retries, pubPath, o.extra)
	e.app = testtool.Portcullis(t, yml, nil)
	e.px = httptest.NewServer(e.app.Handler)
	e.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	t.Cleanup(func() {
		e.client.CloseIdleConnections()
		e.px.Close()
		e.up.CloseClientConnections()
		e.up.Close()
	})
	return e
}

// image is a pushed image.
type image struct {
	repo     string
	digest   v1.Hash
	manifest []byte
	img      v1.Image
}

func (e *env) push(repoTag string) image {
	e.t.Helper()
	return e.write(repoTag, testtool.RandomImage(e.t, 4096, 2))
}

func (e *env) write(repoTag string, img v1.Image) image {
	e.t.Helper()
	ref, err := name.ParseReference(e.host+"/"+repoTag, name.Insecure)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		e.t.Fatal(err)
	}
	d, _ := img.Digest()
	raw, _ := img.RawManifest()
	return image{repo: ref.Context().RepositoryStr(), digest: d, manifest: raw, img: img}
}

// signBundle signs im as cosign v3 does (sigstore bundle referrer).
func (e *env) signBundle(im image) {
	e.t.Helper()
	repo, _ := name.NewRepository(e.host+"/"+im.repo, name.Insecure)
	mt, _ := im.img.MediaType()
	if _, err := sign.Bundle(context.Background(), repo, v1.Descriptor{MediaType: mt, Digest: im.digest, Size: int64(len(im.manifest))}, e.key, e.pub, nil); err != nil {
		e.t.Fatal(err)
	}
}

// signLegacy signs im as cosign v2 does (".sig" tag).
func (e *env) signLegacy(im image) {
	e.t.Helper()
	ref, _ := name.NewDigest(e.host+"/"+im.repo+"@"+im.digest.String(), name.Insecure)
	if _, err := sign.Legacy(context.Background(), ref, name.Repository{}, e.key, nil); err != nil {
		e.t.Fatal(err)
	}
}

// response is what a client got; err is set when the body could not be read completely.
type response struct {
	status int
	header http.Header
	body   []byte
	err    error
}

func (e *env) get(path string) response {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.px.URL+path, nil)
	req.Header.Set("Accept", strings.Join([]string{oci.MediaTypeOCIManifest, oci.MediaTypeOCIIndex, oci.MediaTypeDockerManifest}, ", "))
	resp, err := e.client.Do(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

// ociError returns the first OCI error code of a response body.
func ociError(b []byte) string {
	var body struct{ Errors []struct{ Code string } }
	if json.Unmarshal(b, &body) != nil || len(body.Errors) == 0 {
		return ""
	}
	return body.Errors[0].Code
}

// mustServe checks that path is answered 200 with exactly want.
func (e *env) mustServe(path string, want []byte) {
	e.t.Helper()
	r := e.get(path)
	if r.err != nil || r.status != http.StatusOK || !bytes.Equal(r.body, want) {
		e.t.Fatalf("GET %s: status %d, err %v, %d bytes (want 200 with the %d expected bytes): %.300s", path, r.status, r.err, len(r.body), len(want), r.body)
	}
}

// mustRefuse checks that path is answered with one of the statuses and an OCI error body,
// never with content.
func (e *env) mustRefuse(path string, statuses ...int) response {
	e.t.Helper()
	r := e.get(path)
	if r.err != nil {
		e.t.Fatalf("GET %s: %v (want an OCI error answer)", path, r.err)
	}
	if !slices.Contains(statuses, r.status) || ociError(r.body) == "" {
		e.t.Fatalf("GET %s: status %d %.300s, want one of %v with an OCI error", path, r.status, r.body, statuses)
	}
	return r
}

// Request matchers.
func isSignatureLookup(r *http.Request) bool {
	p := r.URL.Path
	ref := p[strings.LastIndex(p, "/")+1:]
	return strings.Contains(p, "/referrers/") ||
		(strings.Contains(p, "/manifests/") && (strings.HasSuffix(ref, ".sig") || strings.HasPrefix(ref, "sha256-")))
}

func pathHas(s string) func(*http.Request) bool {
	return func(r *http.Request) bool { return strings.Contains(r.URL.Path, s) }
}

// checkGoroutines fails the test if goroutines started during it are still running once it
// is over (after a settle period). Goroutines that live as long as the process by design are
// not counted: the expiring LRUs' janitors (decision cache, tag and transport caches).
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := goroutines()
	t.Cleanup(func() {
		var leaked []string
		for range 100 {
			leaked = leaked[:0]
			for id, stack := range goroutines() {
				if _, ok := before[id]; !ok && !lifetime(stack) {
					leaked = append(leaked, stack)
				}
			}
			if len(leaked) == 0 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("%d goroutines leaked:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
	})
}

func lifetime(stack string) bool {
	return strings.Contains(stack, "golang-lru/v2/expirable") ||
		strings.Contains(stack, "registry/handlers.startUploadPurger") ||
		strings.Contains(stack, "docker/go-events") || // the upstream distribution app's notifications
		strings.Contains(stack, "testing.(*T)") || strings.Contains(stack, "testing.tRunner")
}

func goroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[string]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		head, _, _ := strings.Cut(g, " [")
		out[head] = g
	}
	return out
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
