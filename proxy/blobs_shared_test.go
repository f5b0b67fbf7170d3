package proxy_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/verify/oci"
)

// TestConcurrentColdBlobOneDownload sends 100 concurrent GETs for one cold 64 MiB blob. The
// upstream sends its first 2 MiB and then waits until every client has received bytes, so
// the clients are all in flight together and each must be served while the download runs
// (a proxy that sent nothing before the end would stall here and fail). The upstream must
// see exactly one blob GET. One client stops reading after its first bytes until all the
// others are done: they must finish without it (a slow client never slows the download or
// the others), and it then gets the rest (from the store). A good blob reaches every client
// whole; a corrupt one (its last byte flipped) is cut for every client before its last chunk
// and is not stored.
func TestConcurrentColdBlobOneDownload(t *testing.T) {
	const clients, size, head = 100, 64 << 20, 2 << 20
	for _, corrupt := range []bool{false, true} {
		t.Run(fmt.Sprintf("corrupt=%v", corrupt), func(t *testing.T) {
			g := generated{seed: 4242, size: size}
			want := g.digest()
			var gets atomic.Int32
			var started sync.WaitGroup // every client has its first bytes
			started.Add(clients)
			allStarted := make(chan struct{})
			go func() { started.Wait(); close(allStarted) }()

			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch {
				case strings.Contains(r.URL.Path, "/manifests/"):
					m := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
						`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},`+
						`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`, digest.FromString("{}"), want, size)
					w.Header().Set("Content-Type", oci.MediaTypeOCIManifest)
					w.Header().Set("Content-Length", strconv.Itoa(len(m)))
					_, _ = w.Write(m)
				case strings.Contains(r.URL.Path, "/blobs/") && r.Method == http.MethodGet:
					gets.Add(1)
					body := g.reader()
					if corrupt {
						body = io.MultiReader(io.LimitReader(body, size-1), strings.NewReader(string(lastByte(g)^0xff)))
					}
					w.Header().Set("Content-Length", strconv.Itoa(size))
					if _, err := io.CopyN(w, body, head); err != nil {
						return
					}
					w.(http.Flusher).Flush()
					select {
					case <-allStarted:
					case <-r.Context().Done():
						return
					case <-time.After(time.Minute):
						t.Error("not every client received bytes while the download ran")
						return
					}
					_, _ = io.Copy(w, body)
				}
			}))
			t.Cleanup(up.Close)
			zero := 0
			u, err := upstream.New(upstream.Config{Name: upName, URL: up.URL, Insecure: true, Default: true, Timeout: 2 * time.Minute, Retries: &zero}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ups, _ := proxy.NewUpstreams(u)
			st := store.New(filesystem.New(filesystem.DriverParameters{RootDirectory: t.TempDir(), MaxThreads: 100}))
			h, err := proxy.New(proxy.Options{Store: st, Upstreams: ups, Gate: admitAll{}, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = h.Close(context.Background()) })
			px := httptest.NewServer(h)
			t.Cleanup(px.Close)
			getManifest(t, px.URL+"/v2/herd/app/manifests/v1") // grants the blob

			client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: clients, MaxIdleConnsPerHost: clients}}
			t.Cleanup(client.CloseIdleConnections)
			type result struct {
				n      int64
				digest digest.Digest
				err    error
			}
			results := make([]result, clients)
			var wg, others sync.WaitGroup
			others.Add(clients - 1)
			othersDone := make(chan struct{})
			go func() { others.Wait(); close(othersDone) }()
			for i := range clients {
				wg.Go(func() {
					if i > 0 {
						defer others.Done()
					}
					var once sync.Once
					first := func() { once.Do(started.Done) }
					defer first() // a client that fails before any byte must not hold the others
					resp, err := client.Get(px.URL + "/v2/herd/app/blobs/" + want.String())
					if err != nil {
						results[i].err = err
						return
					}
					defer resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						results[i].err = fmt.Errorf("status %d", resp.StatusCode)
						return
					}
					hs := sha256.New()
					buf := make([]byte, 256<<10)
					for {
						k, err := resp.Body.Read(buf)
						if k > 0 {
							first()
							hs.Write(buf[:k])
							results[i].n += int64(k)
							if i == 0 && results[i].n == int64(k) { // the slow client
								select {
								case <-othersDone:
								case <-time.After(2 * time.Minute):
									results[i].err = errors.New("the other clients did not finish while one client did not read")
									return
								}
							}
						}
						if err == io.EOF {
							break
						}
						if err != nil {
							results[i].err = err
							break
						}
					}
					results[i].digest = digest.NewDigest(digest.SHA256, hs)
				})
			}
			wg.Wait()
			if err := h.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := gets.Load(); n != 1 {
				t.Errorf("the upstream saw %d blob GETs for %d concurrent cold requests, want exactly 1", n, clients)
			}
			_, _, serr := st.BlobSize(context.Background(), upName, "herd/app", want)
			for i, r := range results {
				if !corrupt {
					if r.err != nil || r.n != size || r.digest != want {
						t.Fatalf("client %d: %d of %d bytes, digest %s, error %v; want the whole blob %s", i, r.n, size, r.digest, r.err, want)
					}
					continue
				}
				if r.err == nil || r.n > size-proxy.Chunk {
					t.Fatalf("client %d of a corrupt blob: %d of %d bytes, error %v; want a cut before the last chunk", i, r.n, size, r.err)
				}
			}
			switch {
			case !corrupt && serr != nil:
				t.Errorf("the blob is not stored after its download: %v", serr)
			case corrupt && !errors.Is(serr, oci.ErrNotFound):
				t.Errorf("the corrupt blob is in the store (%v)", serr)
			}
		})
	}
}

// lastByte is g's last byte.
func lastByte(g generated) byte {
	b, _ := io.ReadAll(g.reader())
	return b[len(b)-1]
}
