package faults

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
)

// long reports whether the long variants run (FAULTS_LONG=1).
func long() bool { return os.Getenv("FAULTS_LONG") == "1" }

// stall answers matching requests only after d (or when the client gives up).
func stall(match func(*http.Request) bool, d time.Duration) rule {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if !match(r) {
			return false
		}
		select {
		case <-r.Context().Done():
		case <-time.After(d):
		}
		http.Error(w, "late", http.StatusServiceUnavailable)
		return true
	}
}

// status answers matching requests with code while budget lasts (budget < 0: for ever).
func status(match func(*http.Request) bool, code int, budget int64) rule {
	var left atomic.Int64
	left.Store(budget)
	return func(w http.ResponseWriter, r *http.Request) bool {
		if !match(r) || (budget >= 0 && left.Add(-1) < 0) {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, `{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}`)
		return true
	}
}

// cut serves matching GETs from the real upstream but sends only the first half of the body
// (with the full Content-Length announced), then resets the connection.
func cut(next http.Handler, match func(*http.Request) bool, reset bool) rule {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !match(r) {
			return false
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			return false
		}
		body := rec.Body.Bytes()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			if tc, ok := conn.(*net.TCPConn); ok && reset {
				_ = tc.SetLinger(0) // RST instead of FIN
			}
			conn.Close()
		}
		return true
	}
}

// replace answers matching GETs with body (and the given headers).
func replace(match func(*http.Request) bool, body []byte, hdr ...string) rule {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if !match(r) {
			return false
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
		return true
	}
}

// pathIs matches requests for exactly path.
func pathIs(path string) func(*http.Request) bool {
	return func(r *http.Request) bool { return r.URL.Path == path }
}

// counting counts the requests r answers.
func counting(n *atomic.Int64, r rule) rule {
	return func(w http.ResponseWriter, req *http.Request) bool {
		if r(w, req) {
			n.Add(1)
			return true
		}
		return false
	}
}

// observe counts the GETs match matches and lets the upstream answer them.
func observe(n *atomic.Int64, match func(*http.Request) bool) rule {
	return func(_ http.ResponseWriter, req *http.Request) bool {
		if req.Method == http.MethodGet && match(req) {
			n.Add(1)
		}
		return false
	}
}

// upstreamGet reads path from the upstream directly.
func upstreamGet(t *testing.T, url string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return b
}

func TestSlowUpstream(t *testing.T) {
	e := newEnv(t, opts{timeout: 300 * time.Millisecond})
	im := e.push("slow/app:v1")
	e.signBundle(im)
	mpath := "/v2/slow/app/manifests/" + im.digest.String()

	// Signature lookups slower than the upstream timeout: no decision, 503, nothing cached.
	e.f.set(stall(isSignatureLookup, 5*time.Second))
	start := time.Now()
	e.mustRefuse(mpath, http.StatusServiceUnavailable, http.StatusBadGateway)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("a stalled signature lookup held the client for %s", took)
	}
	// The manifest itself too slow.
	e.f.set(stall(pathHas("/manifests/v1"), 5*time.Second))
	e.mustRefuse("/v2/slow/app/manifests/v1", http.StatusServiceUnavailable)
	// Healed: the failure was not remembered as a denial.
	e.f.set()
	e.mustServe(mpath, im.manifest)
	e.mustServe("/v2/slow/app/manifests/v1", im.manifest)
}

func TestFiveXXBursts(t *testing.T) {
	t.Run("short burst is retried", func(t *testing.T) {
		e := newEnv(t, opts{retries: 3})
		im := e.push("burst/app:v1")
		e.signBundle(im)
		// Each kind of request fails twice before the upstream answers.
		var rules []rule
		for _, p := range []string{"/manifests/v1", ".sig", "/referrers/", "/manifests/sha256-", "/blobs/"} {
			rules = append(rules, status(pathHas(p), http.StatusServiceUnavailable, 2))
		}
		e.f.set(rules...)
		e.mustServe("/v2/burst/app/manifests/v1", im.manifest)
		layers, _ := im.img.Layers()
		ld, _ := layers[0].Digest()
		rc, _ := layers[0].Compressed()
		want, _ := io.ReadAll(rc)
		e.mustServe("/v2/burst/app/blobs/"+ld.String(), want)
	})
	t.Run("long outage fails closed and is not cached", func(t *testing.T) {
		e := newEnv(t, opts{retries: 1})
		im := e.push("burst/app:v1")
		e.signBundle(im)
		for _, code := range []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusTooManyRequests} {
			e.f.set(status(isSignatureLookup, code, -1))
			r := e.mustRefuse("/v2/burst/app/manifests/v1", http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusTooManyRequests)
			if r.status == http.StatusForbidden {
				t.Fatalf("an upstream %d during the signature lookup became a denial", code)
			}
		}
		e.f.set()
		e.mustServe("/v2/burst/app/manifests/v1", im.manifest)
	})
}

func TestCutBodies(t *testing.T) {
	for _, reset := range []bool{false, true} {
		t.Run(fmt.Sprintf("reset=%v", reset), func(t *testing.T) {
			e := newEnv(t, opts{retries: 0})
			img, err := random.Image(1<<20, 1) // a layer of several chunks
			if err != nil {
				t.Fatal(err)
			}
			im := e.write("cut/app:v1", img)
			e.signBundle(im)
			layers, _ := img.Layers()
			ld, _ := layers[0].Digest()
			rc, _ := layers[0].Compressed()
			blob, _ := io.ReadAll(rc)
			bpath := "/v2/cut/app/blobs/" + ld.String()

			// Manifest and signature bundle cut mid-body: an error, never content.
			e.f.set(cut(e.f.next, pathHas("/manifests/v1"), reset))
			e.mustRefuse("/v2/cut/app/manifests/v1", http.StatusBadGateway, http.StatusServiceUnavailable)
			e.f.set(cut(e.f.next, func(r *http.Request) bool {
				return strings.Contains(r.URL.Path, "/blobs/") && !strings.Contains(r.URL.Path, ld.String())
			}, reset))
			r := e.get("/v2/cut/app/manifests/" + im.digest.String())
			if r.status == http.StatusOK {
				t.Fatal("admitted with its signature bundle cut in half")
			}
			// Healed: the cache holds nothing broken, and the admitted manifest makes its
			// blobs servable.
			e.f.set()
			e.mustServe("/v2/cut/app/manifests/v1", im.manifest)

			// Blob cut mid-body: the client sees a failed download, never all the bytes.
			e.f.set(cut(e.f.next, pathHas(ld.String()), reset))
			for range 2 {
				r := e.get(bpath)
				if r.err == nil && r.status == http.StatusOK && len(r.body) == len(blob) {
					t.Fatalf("a blob cut upstream was served complete (%d bytes)", len(r.body))
				}
				if r.err == nil && r.status == http.StatusOK {
					t.Fatalf("a blob cut upstream was served as a complete 200 of %d bytes", len(r.body))
				}
			}
			e.f.set()
			e.mustServe(bpath, blob)
		})
	}
}

func TestWrongContent(t *testing.T) {
	e := newEnv(t, opts{retries: 0})
	signed := e.push("wrong/app:v1")
	e.signBundle(signed)
	other := e.push("wrong/app:other")
	e.signBundle(other)
	unsigned := e.push("wrong/app:unsigned")
	legacy := e.push("wrong/legacy:v1")
	e.signLegacy(legacy)
	legacyOther := e.push("wrong/legacy:other")
	e.signLegacy(legacyOther)

	t.Run("manifest by digest with other bytes", func(t *testing.T) {
		e.f.set(replace(pathHas("/manifests/"+signed.digest.String()), other.manifest,
			"Content-Type", "application/vnd.oci.image.manifest.v1+json", "Docker-Content-Digest", signed.digest.String()))
		r := e.mustRefuse("/v2/wrong/app/manifests/"+signed.digest.String(), http.StatusBadGateway)
		if bytes.Contains(r.body, other.manifest) {
			t.Fatal("the substituted manifest was served")
		}
	})
	t.Run("tag answered with unsigned bytes under the signed digest", func(t *testing.T) {
		e.f.set(replace(pathHas("/manifests/v1"), unsigned.manifest,
			"Content-Type", "application/vnd.oci.image.manifest.v1+json", "Docker-Content-Digest", signed.digest.String()))
		r := e.mustRefuse("/v2/wrong/app/manifests/v1", http.StatusForbidden)
		if ociError(r.body) != "DENIED" {
			t.Fatalf("got %s, want DENIED", r.body)
		}
	})
	// A replay must be read to be refused for the right reason: each one counts the upstream
	// answers it substituted and the fetches of the replayed signature itself, and is made
	// for an image never asked for before (the subtest above left a cached denial of the
	// unsigned image, which would answer without reading anything).
	t.Run("signature of another image replayed", func(t *testing.T) {
		unsigned := e.push("wrong/app:unsigned2")
		// The referrers tag schema index of the unsigned image lists the other image's bundle.
		idx := upstreamGet(t, e.up.URL+"/v2/wrong/app/manifests/sha256-"+other.digest.Hex)
		var listed struct {
			Manifests []struct{ Digest string } `json:"manifests"`
		}
		if err := jsonUnmarshal(idx, &listed); err != nil || len(listed.Manifests) != 1 {
			t.Fatalf("the other image's referrers index lists %d manifests (%v), want its one bundle", len(listed.Manifests), err)
		}
		var replayed, bundleRead atomic.Int64
		e.f.set(
			counting(&replayed, replace(pathIs("/v2/wrong/app/manifests/sha256-"+unsigned.digest.Hex), idx, "Content-Type", "application/vnd.oci.image.index.v1+json")),
			observe(&bundleRead, pathHas("/manifests/"+listed.Manifests[0].Digest)),
		)
		r := e.mustRefuse("/v2/wrong/app/manifests/"+unsigned.digest.String(), http.StatusForbidden)
		if replayed.Load() == 0 || bundleRead.Load() == 0 {
			t.Fatalf("the replayed index was served %d times and its bundle fetched %d times: the replay was never read (refusal: %s)",
				replayed.Load(), bundleRead.Load(), r.body)
		}
		if want := "subject mismatch: refers to " + other.digest.String()[:len("sha256:")+12]; !strings.Contains(string(r.body), want) {
			t.Errorf("refusal %s does not say %q", r.body, want)
		}
	})
	t.Run("legacy signature of another image replayed", func(t *testing.T) {
		sig := upstreamGet(t, e.up.URL+"/v2/wrong/legacy/manifests/sha256-"+legacyOther.digest.Hex+".sig")
		var layers struct {
			Layers []struct{ Digest string } `json:"layers"`
		}
		if err := jsonUnmarshal(sig, &layers); err != nil || len(layers.Layers) == 0 {
			t.Fatalf("the other image's .sig manifest has %d layers (%v)", len(layers.Layers), err)
		}
		unsignedLegacy := e.push("wrong/legacy:unsigned")
		var replayed, payloadRead atomic.Int64
		e.f.set(
			counting(&replayed, replace(pathHas("/manifests/sha256-"+unsignedLegacy.digest.Hex+".sig"), sig, "Content-Type", "application/vnd.oci.image.manifest.v1+json")),
			observe(&payloadRead, pathHas("/blobs/"+layers.Layers[0].Digest)),
		)
		r := e.mustRefuse("/v2/wrong/legacy/manifests/"+unsignedLegacy.digest.String(), http.StatusForbidden)
		if replayed.Load() == 0 || payloadRead.Load() == 0 {
			t.Fatalf("the replayed .sig manifest was served %d times and its payload fetched %d times: the replay was never read (refusal: %s)",
				replayed.Load(), payloadRead.Load(), r.body)
		}
		if want := "payload digest mismatch: signed " + legacyOther.digest.String()[:len("sha256:")+12]; !strings.Contains(string(r.body), want) {
			t.Errorf("refusal %s does not say %q", r.body, want)
		}
	})
	e.f.set()
	e.mustServe("/v2/wrong/app/manifests/v1", signed.manifest)
	e.mustServe("/v2/wrong/legacy/manifests/v1", legacy.manifest)
}

// TestTagSwapUnderLoad moves a tag back and forth between a signed and an unsigned image
// while clients pull it: every 200 must carry the signed bytes, everything else must be a
// refusal. The swaps run until both sides were seen (or 20s pass): with tagTTL 0 clients
// must get both signed answers and refusals, or the test exercised nothing; with tagTTL 1h
// the tag resolved before the swaps is trusted, so every answer is the signed image.
func TestTagSwapUnderLoad(t *testing.T) {
	for _, ttl := range []string{"0s", "1h"} {
		t.Run("tagTTL="+ttl, func(t *testing.T) {
			e := newEnv(t, opts{retries: 0, extra: "cache: {tagTTL: " + ttl + "}\n"})
			signed := e.push("swap/app:v1")
			e.signBundle(signed)
			unsignedImg, _ := random.Image(4096, 2)
			unsigned := e.write("swap/app:unsigned", unsignedImg)
			e.mustServe("/v2/swap/app/manifests/v1", signed.manifest)
			wantRefusals := ttl == "0s"

			d := 500 * time.Millisecond
			if long() {
				d = 10 * time.Second
			}
			stop, giveUp := time.Now().Add(d), time.Now().Add(20*time.Second)
			var ok, refused atomic.Int64
			running := func() bool {
				now := time.Now()
				seen := ok.Load() > 0 && (refused.Load() > 0 || !wantRefusals)
				return now.Before(giveUp) && (now.Before(stop) || !seen)
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 0; running(); i++ {
					if i%2 == 0 {
						e.write("swap/app:v1", unsignedImg)
					} else {
						e.write("swap/app:v1", signed.img)
					}
				}
			})
			for range 8 {
				wg.Go(func() {
					for running() {
						r := e.get("/v2/swap/app/manifests/v1")
						switch {
						case r.err != nil:
							t.Errorf("transport error: %v", r.err)
							return
						case r.status == http.StatusOK:
							if !bytes.Equal(r.body, signed.manifest) || r.header.Get("Docker-Content-Digest") != signed.digest.String() {
								t.Errorf("served %d bytes that are not the signed manifest (digest header %s; unsigned is %s)",
									len(r.body), r.header.Get("Docker-Content-Digest"), unsigned.digest)
								return
							}
							ok.Add(1)
						case r.status == http.StatusForbidden || r.status == http.StatusBadGateway || r.status == http.StatusNotFound:
							refused.Add(1)
						default:
							t.Errorf("unexpected answer %d %s", r.status, r.body)
							return
						}
					}
				})
			}
			wg.Wait()
			t.Logf("%d served signed, %d refused", ok.Load(), refused.Load())
			if ok.Load() == 0 {
				t.Errorf("no client was served the signed image while the tag moved")
			}
			if wantRefusals && refused.Load() == 0 {
				t.Errorf("no client was refused while the tag pointed at the unsigned image: the swap was never seen")
			}
			if !wantRefusals && refused.Load() != 0 {
				t.Errorf("%d refusals with the tag's signed digest trusted for an hour", refused.Load())
			}
		})
	}
}

func TestReferrersAPIHostile(t *testing.T) {
	many := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`
	for i := range 5000 {
		if i > 0 {
			many += ","
		}
		many += fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json","digest":"sha256:%064x","size":10}`, i)
	}
	many += "]}"
	for _, tc := range []struct {
		name string
		rule rule
		// bundle is what a bundle-signed image gets; a legacy-signed one is always served.
		bundle []int
	}{
		{"missing (404)", nil, []int{200}},
		{"not implemented (501)", status(pathHas("/referrers/"), http.StatusNotImplemented, -1), []int{200}},
		{"500", status(pathHas("/referrers/"), http.StatusInternalServerError, -1), []int{502, 503}},
		{"HTML 200", replace(pathHas("/referrers/"), []byte("<html>hello</html>"), "Content-Type", "text/html"), []int{502}},
		{"empty index", replace(pathHas("/referrers/"), []byte(`{"schemaVersion":2,"manifests":[]}`), "Content-Type", "application/vnd.oci.image.index.v1+json"), []int{403}},
		{"5000 bogus referrers", replace(pathHas("/referrers/"), []byte(many), "Content-Type", "application/vnd.oci.image.index.v1+json"), []int{403, 502, 503}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, opts{retries: 0})
			b := e.push("ref/bundle:v1")
			e.signBundle(b)
			l := e.push("ref/legacy:v1")
			e.signLegacy(l)
			u := e.push("ref/unsigned:v1")
			if tc.rule != nil {
				e.f.set(tc.rule)
			}
			r := e.get("/v2/ref/bundle/manifests/v1")
			if r.status == http.StatusOK && !bytes.Equal(r.body, b.manifest) || !containsInt(tc.bundle, r.status) {
				t.Errorf("bundle-signed image: %d %.200s, want one of %v", r.status, r.body, tc.bundle)
			}
			e.mustServe("/v2/ref/legacy/manifests/v1", l.manifest)
			e.mustRefuse("/v2/ref/unsigned/manifests/v1", http.StatusForbidden, http.StatusBadGateway, http.StatusServiceUnavailable)
			_ = u
		})
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestHugeTagLists(t *testing.T) {
	e := newEnv(t, opts{retries: 0, timeout: 30 * time.Second}) // about sizes, not time: no timeout under load
	n := 100_000
	if long() {
		n = 1_000_000
	}
	tags := make([]string, n)
	for i := range tags {
		tags[i] = fmt.Sprintf("v%07d", i)
	}
	list := []byte(fmt.Sprintf(`{"name":"big/app","tags":["%s"]}`, strings.Join(tags, `","`)))
	e.f.set(replace(pathHas("/big/app/tags/list"), list, "Content-Type", "application/json",
		"Link", `<http://evil.example/v2/big/app/tags/list?n=100&last=v9&x=1>; rel="next"`))
	r := e.get("/v2/big/app/tags/list")
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("%d tags: %d %v", n, r.status, r.err)
	}
	var got struct{ Tags []string }
	if err := jsonUnmarshal(r.body, &got); err != nil || len(got.Tags) != n || got.Tags[n-1] != tags[n-1] {
		t.Fatalf("%d tags: got %d (%v)", n, len(got.Tags), err)
	}
	if link := r.header.Get("Link"); strings.Contains(link, "evil.example") || !strings.HasPrefix(link, "</v2/big/app/tags/list?") {
		t.Errorf("next link %q points away from the proxy", link)
	}
	// Over the cap: refused without reading it all.
	huge := bytes.Repeat([]byte(`"x",`), 9<<20) // 36 MiB
	e.f.set(replace(pathHas("/huge/app/tags/list"), append(append([]byte(`{"tags":[`), huge...), `"y"]}`...), "Content-Type", "application/json"))
	e.mustRefuse("/v2/huge/app/tags/list", http.StatusBadGateway)
}

func TestRedirectToForeignHost(t *testing.T) {
	e := newEnv(t, opts{retries: 0})
	im := e.push("redir/app:v1")
	e.signBundle(im)
	var hits atomic.Int64
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "foreign content")
	}))
	t.Cleanup(foreign.Close)
	layers, _ := im.img.Layers()
	ld, _ := layers[0].Digest()
	e.f.set(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/blobs/") && !strings.Contains(r.URL.Path, "/manifests/v1") {
			return false
		}
		http.Redirect(w, r, foreign.URL+r.URL.Path, http.StatusTemporaryRedirect)
		return true
	})
	r := e.get("/v2/redir/app/blobs/" + ld.String())
	if r.status == http.StatusOK && r.err == nil {
		t.Fatalf("served a blob from a redirect to a foreign plain-http host: %q", r.body)
	}
	e.mustRefuse("/v2/redir/app/manifests/v1", http.StatusBadGateway, http.StatusServiceUnavailable)
	if n := hits.Load(); n != 0 {
		t.Fatalf("portcullis followed %d redirects to a host it was not configured with", n)
	}
}
