package bench_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/portcullis/portcullis/internal/app"
	"github.com/portcullis/portcullis/internal/sign"
	"github.com/portcullis/portcullis/internal/testtool"
)

// upstreamName is how clients and policies name the upstream; it never resolves.
const upstreamName = "bench.invalid"

// signingKey is an ECDSA P-256 key as cosign generates, with its public key in a PEM file.
type signingKey struct {
	signer  signature.SignerVerifier
	pub     crypto.PublicKey
	pubPath string
}

func newSigningKey(tb testing.TB) signingKey {
	tb.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		tb.Fatal(err)
	}
	pem, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(tb.TempDir(), "cosign.pub")
	if err := os.WriteFile(p, pem, 0o600); err != nil {
		tb.Fatal(err)
	}
	return signingKey{signer: sv, pub: priv.Public(), pubPath: p}
}

// pushed is an image in the upstream.
type pushed struct {
	repo     string
	tag      string
	digest   v1.Hash
	manifest []byte
	img      v1.Image
}

// pushImage writes a random image (layers of layerSize bytes) to host/repo:tag.
func pushImage(tb testing.TB, host, repo, tag string, layerSize int64, layers int) pushed {
	tb.Helper()
	img := testtool.RandomImage(tb, layerSize, int64(layers))
	ref, err := name.ParseReference(host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		tb.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		tb.Fatal(err)
	}
	d, _ := img.Digest()
	raw, _ := img.RawManifest()
	return pushed{repo: repo, tag: tag, digest: d, manifest: raw, img: img}
}

// signBundle signs p as cosign v3 does by default: a sigstore bundle pushed as an OCI
// referrer (through the referrers tag schema on a registry without the referrers API).
func signBundle(tb testing.TB, host string, k signingKey, p pushed) {
	tb.Helper()
	repo, err := name.NewRepository(host+"/"+p.repo, name.Insecure)
	if err != nil {
		tb.Fatal(err)
	}
	mt, _ := p.img.MediaType()
	desc := v1.Descriptor{MediaType: mt, Digest: p.digest, Size: int64(len(p.manifest))}
	if _, err := sign.Bundle(context.Background(), repo, desc, k.signer, k.pub, nil); err != nil {
		tb.Fatal(err)
	}
}

// inProcessUpstream is distribution's registry app (v3.1.2, no referrers API) with
// in-memory storage, behind a request counter.
func inProcessUpstream(tb testing.TB) (*httptest.Server, *counter) {
	tb.Helper()
	c := &counter{next: testtool.Distribution(tb)}
	srv := httptest.NewServer(c)
	tb.Cleanup(srv.Close)
	return srv, c
}

// counter counts the requests an upstream receives by kind, and keeps when each started
// and ended (for the dependent round trips, see chain).
type counter struct {
	next  http.Handler
	delay time.Duration // added to every request, as a distant upstream's latency
	mu    sync.Mutex
	n     map[string]int
	spans []span
}

// span is one upstream request: its kind, path and time.
type span struct {
	kind, method, path string
	start, end         time.Time
}

// Kinds of upstream request counted.
const (
	countSigTag       = "GET .sig tag"      // legacy signature lookup
	countReferrersAPI = "GET referrers API" // bundle lookup, referrers API
	countReferrersTag = "GET referrers tag" // bundle lookup, tag schema fallback
	countManifestGET  = "GET manifest"      // any other manifest GET
	countManifestHEAD = "HEAD manifest"     // tag freshness checks
	countBlobGET      = "GET blob"          // blobs, including signature bundles
	countOther        = "other"             //
)

func classify(r *http.Request) string {
	p := r.URL.Path
	switch {
	case strings.Contains(p, "/referrers/"):
		return countReferrersAPI
	case strings.Contains(p, "/manifests/"):
		ref := p[strings.LastIndex(p, "/")+1:]
		switch {
		case r.Method == http.MethodHead:
			return countManifestHEAD
		case strings.HasSuffix(ref, ".sig"):
			return countSigTag
		case strings.HasPrefix(ref, "sha256-"):
			return countReferrersTag
		}
		return countManifestGET
	case strings.Contains(p, "/blobs/sha256:") && r.Method == http.MethodGet:
		return countBlobGET
	}
	return countOther
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	kind := classify(r)
	c.n[kind]++
	c.mu.Unlock()
	start := time.Now()
	time.Sleep(c.delay)
	c.next.ServeHTTP(w, r)
	end := time.Now()
	c.mu.Lock()
	c.spans = append(c.spans, span{kind: kind, method: r.Method, path: r.URL.Path, start: start, end: end})
	c.mu.Unlock()
}

// total is the number of requests counted.
func (c *counter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range c.n {
		n += k
	}
	return n
}

// chain is the number of dependent upstream round trips since the last reset: the longest
// sequence of requests each of which started after the one before it had ended. Requests
// that overlap (sent in parallel) count once.
func (c *counter) chain() int {
	c.mu.Lock()
	spans := slices.Clone(c.spans)
	c.mu.Unlock()
	slices.SortFunc(spans, func(a, b span) int { return a.start.Compare(b.start) })
	depth := make([]int, len(spans))
	longest := 0
	for i, s := range spans {
		depth[i] = 1
		for j := range i {
			if !spans[j].end.After(s.start) && depth[j]+1 > depth[i] {
				depth[i] = depth[j] + 1
			}
		}
		longest = max(longest, depth[i])
	}
	return longest
}

// timeline lists the requests since the last reset, in the order they started, with their
// times relative to the first start: what a chain longer than expected is made of.
func (c *counter) timeline() string {
	c.mu.Lock()
	spans := slices.Clone(c.spans)
	c.mu.Unlock()
	slices.SortFunc(spans, func(a, b span) int { return a.start.Compare(b.start) })
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "\n  %8.3f..%8.3f ms  %-17s %s %s", float64(s.start.Sub(spans[0].start).Microseconds())/1000,
			float64(s.end.Sub(spans[0].start).Microseconds())/1000, s.kind, s.method, s.path)
	}
	return b.String()
}

func (c *counter) get(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[kind]
}

func (c *counter) reset() {
	c.mu.Lock()
	c.n, c.spans = nil, nil
	c.mu.Unlock()
}

// portcullisYAML is the configuration of a portcullis that requires a signature by the key
// at pubPath for every image of the upstream at upstreamURL.
//
// The log level is the default (info: a request line and an audit line per request) unless
// extra sets another.
func portcullisYAML(listen, storeDir, upstreamURL, pubPath, extra string) string {
	storage := "storage: {driver: inmemory}\n"
	if storeDir != "" {
		storage = "storage: {driver: filesystem, params: {rootdirectory: " + storeDir + "}}\n"
	}
	if !strings.Contains(extra, "log:") {
		extra += "log: {format: json}\n"
	}
	return fmt.Sprintf(`listen: %s
%supstreams:
  - name: %s
    url: %s
    insecure: true
    default: true
policies:
  - name: bench
    images: ["%s/**"]
    authorities:
      - name: bench-key
        key: {path: %s}
defaultPolicy: deny
%s`, listen, storage, upstreamName, upstreamURL, upstreamName, pubPath, extra)
}

// inProcessPortcullis builds portcullis with internal/app, as `portcullis serve` does.
func inProcessPortcullis(tb testing.TB, yml string) *app.App {
	tb.Helper()
	return testtool.Portcullis(tb, yml, nil)
}

// blobImage pushes to host/repo:tag an image manifest whose layers are the given blobs
// (already in repo, each with its size), with an empty JSON config, and signs it as cosign
// v3 does, so that a proxy admits the manifest and then serves its blobs.
func blobImage(tb testing.TB, host, repo, tag string, k signingKey, layers map[digest.Digest]int64) {
	tb.Helper()
	ref, err := name.ParseReference(host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := []byte("{}")
	if err := remote.WriteLayer(ref.Context(), static.NewLayer(cfg, types.OCIConfigJSON)); err != nil {
		tb.Fatal(err)
	}
	var ls []string
	for d, n := range layers {
		ls = append(ls, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}`, d, n))
	}
	m := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[%s]}`,
		digest.FromBytes(cfg), len(cfg), strings.Join(ls, ","))
	if err := remote.Put(ref, rawManifest{m, types.OCIManifestSchema1}); err != nil {
		tb.Fatal(err)
	}
	repoRef := ref.Context()
	h, _ := v1.NewHash(digest.FromBytes(m).String())
	desc := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: h, Size: int64(len(m))}
	if _, err := sign.Bundle(context.Background(), repoRef, desc, k.signer, k.pub, nil); err != nil {
		tb.Fatal(err)
	}
}

type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// signLegacy signs p in cosign's legacy format (a "sha256-<hex>.sig" tag).
func signLegacy(tb testing.TB, host string, k signingKey, p pushed) {
	tb.Helper()
	img, err := name.NewDigest(host+"/"+p.repo+"@"+p.digest.String(), name.Insecure)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := sign.Legacy(context.Background(), img, name.Repository{}, k.signer, nil); err != nil {
		tb.Fatal(err)
	}
}
