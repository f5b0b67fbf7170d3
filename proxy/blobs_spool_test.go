package proxy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/store"
	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/verify/oci"
)

// TestLateClientReadsWhatIsStored: a client that starts reading a cold 64 MiB blob only once
// the upstream has sent 60 MiB of it (far behind the 4 MiB ring, and more than the kernel's
// socket buffers take) is sent, on a filesystem store,
// everything stored so far but the last chunk (held back until the blob is checked) while
// the upstream still holds the rest back: it is served from the store's copy being written,
// not made to wait for the end of the download and its commit. On a store that cannot be
// read back before the commit (inmemory, as s3), it gets the rest once the blob is stored.
// Either way it then receives the exact blob.
func TestLateClientReadsWhatIsStored(t *testing.T) {
	const size, head = 64 << 20, 60<<20 + 100<<10
	for _, tc := range []struct {
		name     string
		driver   func(t *testing.T) storagedriver.StorageDriver
		readable int64 // what the client must get while the upstream holds the rest back
	}{
		{"filesystem", func(t *testing.T) storagedriver.StorageDriver {
			return filesystem.New(filesystem.DriverParameters{RootDirectory: t.TempDir(), MaxThreads: 100})
		}, 59 << 20},
		{"inmemory", func(*testing.T) storagedriver.StorageDriver { return inmemory.New() }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := generated{seed: 77, size: size}
			want := g.digest()
			sentHead, release := make(chan struct{}), make(chan struct{})
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
					body := g.reader()
					w.Header().Set("Content-Length", strconv.Itoa(size))
					if _, err := io.CopyN(w, body, head); err != nil {
						return
					}
					w.(http.Flusher).Flush()
					close(sentHead)
					select {
					case <-release:
					case <-r.Context().Done():
						return
					}
					_, _ = io.Copy(w, body)
				}
			}))
			t.Cleanup(up.Close)
			t.Cleanup(func() {
				select {
				case <-release:
				default:
					close(release)
				}
			})
			zero := 0
			u, err := upstream.New(upstream.Config{Name: upName, URL: up.URL, Insecure: true, Default: true, Timeout: time.Minute, Retries: &zero}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ups, _ := proxy.NewUpstreams(u)
			h, err := proxy.New(proxy.Options{Store: store.New(tc.driver(t)), Upstreams: ups, Gate: admitAll{}, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = h.Close(context.Background()) })
			px := httptest.NewServer(h)
			t.Cleanup(px.Close)

			getManifest(t, px.URL+"/v2/late/app/manifests/v1")
			resp, err := http.Get(px.URL + "/v2/late/app/blobs/" + want.String())
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			select {
			case <-sentHead:
			case <-time.After(time.Minute):
				t.Fatal("the upstream was not asked for the blob")
			}
			time.Sleep(500 * time.Millisecond) // the fill stores what the upstream sent; the client reads nothing yet
			got := make([]byte, 0, size)
			buf := make([]byte, 64<<10)
			readable := make(chan struct{})
			go func() {
				defer close(readable)
				for int64(len(got)) < tc.readable {
					n, err := resp.Body.Read(buf[:min(int64(len(buf)), tc.readable-int64(len(got)))])
					got = append(got, buf[:n]...)
					if err != nil {
						return
					}
				}
			}()
			select {
			case <-readable:
			case <-time.After(30 * time.Second):
				close(release)
				<-readable
				t.Fatalf("the client did not get the %d bytes stored but the last chunk in 30s while the upstream held the rest back", tc.readable)
			}
			close(release)
			rest, err := io.ReadAll(resp.Body)
			got = append(got, rest...)
			if err != nil || int64(len(got)) != size || digest.FromBytes(got) != want {
				t.Fatalf("the client got %d of %d bytes, %v; want the exact blob", len(got), size, err)
			}
		})
	}
}
