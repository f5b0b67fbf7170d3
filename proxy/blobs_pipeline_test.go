package proxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/proxy/upstream"
)

// blobProxy starts an upstream that answers every blob GET with blob() and every manifest
// request with an image manifest whose one layer is ref() (so that, once a client fetched
// that manifest through the proxy, the proxy may serve the blob), and a proxy in front of
// it with a filesystem store at root. It returns both base URLs.
func blobProxy(tb testing.TB, root string, blob func() []byte, ref func() digest.Digest) (upURL, proxyURL string) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/manifests/") {
			m := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
				`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},`+
				`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":1}]}`, digest.FromString("{}"), ref())
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Header().Set("Docker-Content-Digest", digest.FromBytes(m).String())
			w.Header().Set("Content-Length", strconv.Itoa(len(m)))
			_, _ = w.Write(m)
			return
		}
		if !strings.Contains(r.URL.Path, "/blobs/") {
			return // the /v2/ ping
		}
		b := blob()
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
	}))
	tb.Cleanup(up.Close)
	zero := 0
	u, err := upstream.New(upstream.Config{Name: upName, URL: up.URL, Insecure: true, Default: true, Timeout: 10 * time.Second, Retries: &zero}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	ups, err := proxy.NewUpstreams(u)
	if err != nil {
		tb.Fatal(err)
	}
	store := store.New(filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}))
	h, err := proxy.New(proxy.Options{Store: store, Upstreams: ups, Gate: admitAll{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = h.Close(context.Background()) })
	px := httptest.NewServer(h)
	tb.Cleanup(px.Close)
	return up.URL, px.URL
}

// TestStreamBlobChunks streams good and corrupt blobs of sizes around chunk boundaries: a
// good one arrives whole, a corrupt one is cut without its last chunk and is not stored.
func TestStreamBlobChunks(t *testing.T) {
	const chunk = proxy.Chunk
	for _, size := range []int{0, 1, chunk, 3 * chunk, 5 * chunk / 2} {
		for _, corrupt := range []bool{false, true} {
			if size == 0 && corrupt {
				continue
			}
			t.Run(fmt.Sprintf("size=%d,corrupt=%v", size, corrupt), func(t *testing.T) {
				want := make([]byte, size)
				_, _ = rand.Read(want)
				served := bytes.Clone(want)
				if corrupt {
					served[size-1] ^= 0xff
				}
				_, px := blobProxy(t, t.TempDir(), func() []byte { return served }, func() digest.Digest { return digest.FromBytes(want) })
				getManifest(t, px+"/v2/chunks/app/manifests/v1")
				url := px + "/v2/chunks/app/blobs/" + digest.FromBytes(want).String()
				for range 2 { // the second GET must not find a poisoned store
					resp, err := http.Get(url)
					if err != nil {
						if corrupt {
							continue // cut before any byte was sent
						}
						t.Fatal(err)
					}
					got, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if !corrupt {
						if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
							t.Fatalf("status %d, %d of %d bytes, %v", resp.StatusCode, len(got), size, err)
						}
						continue
					}
					if last := (size-1)%chunk + 1; err == nil || len(got) > size-last || !bytes.Equal(got, want[:len(got)]) {
						t.Fatalf("corrupt blob: %d of %d bytes served (error %v); want at most %d", len(got), size, err, size-last)
					}
				}
			})
		}
	}
}

// getManifest GETs a manifest through the proxy, as a runtime does before its blobs.
func getManifest(tb testing.TB, url string) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
}
