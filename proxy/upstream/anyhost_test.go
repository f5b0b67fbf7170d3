package upstream_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy/upstream"
)

// TestAnyHostUnsafe checks the CLI's switch: a blob redirected to another host is followed
// with AnyHostUnsafe and refused without it.
func TestAnyHostUnsafe(t *testing.T) {
	blob := []byte("blob on a CDN")
	d := digest.FromBytes(blob)
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(blob) }))
	t.Cleanup(cdn.Close)
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") {
			// Another host name for the CDN, so that it is not the registry's own host.
			http.Redirect(w, r, strings.Replace(cdn.URL, "127.0.0.1", "localhost", 1)+"/cdn", http.StatusTemporaryRedirect)
		}
	}))
	t.Cleanup(reg.Close)
	for _, anyHost := range []bool{false, true} {
		c, err := upstream.New(upstream.Config{Name: "reg.test", URL: reg.URL, Insecure: true, AnyHostUnsafe: anyHost}, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Blob(t.Context(), "demo/app", d, 1<<10)
		if anyHost && (err != nil || string(got) != string(blob)) {
			t.Errorf("AnyHostUnsafe: %q, %v; want the CDN's blob", got, err)
		}
		if !anyHost && err == nil {
			t.Error("without AnyHostUnsafe the redirect to another host was followed")
		}
	}
}
