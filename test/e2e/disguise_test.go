package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/internal/testtool"
)

// The disguise tests push images that are shaped like cosign signature artifacts — every
// layer claims to be a simple-signing payload or a DSSE envelope — but whose layer is a
// gzip'd tar holding an executable /pwned and whose config may run it. portcullis must treat
// them as the unsigned images they are: crane, containerd, skopeo and podman configured as
// deploy/clients/ shows never obtain them, whether they are pulled by an ordinary tag or by a
// cosign ".sig" tag of a signed image. The CosignThrough tests show that real signatures and
// attestations made by cosign v2 and v3 are still served to cosign through portcullis.

const (
	mediaTypeSimpleSigning = types.MediaType(cosign.MediaTypeSimpleSigning)
	mediaTypeDSSE          = types.MediaType("application/vnd.dsse.envelope.v1+json")
)

// disguise is one way of dressing an image as a signature.
type disguise struct {
	docker     bool            // a Docker schema2 manifest and config, else OCI
	layerType  types.MediaType // what the executable layer claims to be
	entrypoint bool            // the config's Entrypoint is ["/pwned"]; else it runs nothing
	sigTag     bool            // pulled by the ".sig" tag of a signed image, else by a plain tag
}

func (d disguise) String() string {
	s := "oci"
	if d.docker {
		s = "docker"
	}
	if d.layerType == mediaTypeDSSE {
		s += "+dsse"
	} else {
		s += "+simplesigning"
	}
	if d.entrypoint {
		s += "+entrypoint"
	} else {
		s += "+noentrypoint"
	}
	if d.sigTag {
		return s + "@sig-tag"
	}
	return s + "@plain-tag"
}

// allDisguises is every combination of manifest type, layer type, config and tag kind.
func allDisguises() []disguise {
	var out []disguise
	for _, docker := range []bool{false, true} {
		for _, lt := range []types.MediaType{mediaTypeSimpleSigning, mediaTypeDSSE} {
			for _, ep := range []bool{true, false} {
				for _, sig := range []bool{false, true} {
					out = append(out, disguise{docker, lt, ep, sig})
				}
			}
		}
	}
	return out
}

// runtimeDisguises is the subset the runtimes pull: an OCI simple-signing manifest under a
// ".sig" tag, as a forged legacy signature, with and without an entrypoint (without, only
// the layer check refuses the exemption), and a Docker DSSE manifest under a plain tag.
func runtimeDisguises() []disguise {
	return []disguise{
		{docker: false, layerType: mediaTypeSimpleSigning, entrypoint: true, sigTag: true},
		{docker: false, layerType: mediaTypeSimpleSigning, entrypoint: false, sigTag: true},
		{docker: true, layerType: mediaTypeDSSE, entrypoint: true, sigTag: false},
	}
}

// disguised is a disguised image as pushed to the upstream.
type disguised struct {
	disguise
	ref    string // 127.0.0.1/evil/app:<tag>, as a runtime names it
	digest string // of the manifest
	config string // the config blob's digest
	layer  string // the executable layer's digest
	// signed is, for a ".sig" tag, the signed image (127.0.0.1/evil/app@digest) it claims to sign.
	signed string
}

// rawManifest is a manifest pushed as its bytes, with its media type.
type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// pwnedLayer is a gzip'd tar holding an executable /pwned that prints salt; it returns the
// compressed layer and the digest of the uncompressed tar (its diff ID).
func pwnedLayer(t *testing.T, salt string) ([]byte, string) {
	t.Helper()
	script := []byte("#!/bin/sh\necho pwned " + salt + "\n")
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Name: "pwned", Mode: 0o755, Size: int64(len(script)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(script); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(tb.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return gz.Bytes(), sha256Digest(tb.Bytes())
}

func sha256Digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// pushDisguised builds the image d describes and pushes its blobs and manifest to
// 127.0.0.1/repo:tag on the reachable upstream.
func pushDisguised(t *testing.T, d disguise, repo, tag string) *disguised {
	t.Helper()
	layer, diffID := pwnedLayer(t, repo+":"+tag)
	exec := map[string]any{}
	if d.entrypoint {
		exec["Entrypoint"] = []string{"/pwned"}
	}
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux", "config": exec,
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	if err != nil {
		t.Fatal(err)
	}
	manifestType, configType := types.OCIManifestSchema1, types.OCIConfigJSON
	if d.docker {
		manifestType, configType = types.DockerManifestSchema2, types.DockerConfigJSON
	}
	desc := func(mt types.MediaType, b []byte) v1.Descriptor {
		h, err := v1.NewHash(sha256Digest(b))
		if err != nil {
			t.Fatal(err)
		}
		return v1.Descriptor{MediaType: mt, Size: int64(len(b)), Digest: h}
	}
	ld := desc(d.layerType, layer)
	// What a cosign layer carries, so that it looks the part.
	ld.Annotations = map[string]string{cosign.AnnotationSignature: base64.StdEncoding.EncodeToString([]byte("not a signature"))}
	m, err := json.Marshal(v1.Manifest{SchemaVersion: 2, MediaType: manifestType, Config: desc(configType, config), Layers: []v1.Descriptor{ld}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.NewRepository(reachableName+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []struct {
		b  []byte
		mt types.MediaType
	}{{config, configType}, {layer, d.layerType}} {
		if err := remote.WriteLayer(r, static.NewLayer(b.b, b.mt)); err != nil {
			t.Fatal(err)
		}
	}
	if err := remote.Put(r.Tag(tag), rawManifest{m, manifestType}); err != nil {
		t.Fatal(err)
	}
	return &disguised{disguise: d, ref: reachableName + "/" + repo + ":" + tag, digest: sha256Digest(m),
		config: sha256Digest(config), layer: ld.Digest.String()}
}

// disguiseFixture is the reachable upstream holding disguised images in evil/app, beside the
// signed images whose ".sig" tags some of them take, and portcullis over HTTPS enforcing a
// key on everything from it, as newClientsFixture sets it up.
type disguiseFixture struct {
	*clientsFixture
	images []*disguised
}

const disguiseRepo = "evil/app"

func newDisguiseFixture(t *testing.T, ds []disguise) *disguiseFixture {
	t.Helper()
	cosign3 := tool(t, "cosign3")
	f := &disguiseFixture{clientsFixture: &clientsFixture{up: newReachable(t)}}
	keys := cosignKeys(t, cosign3)
	f.px = startTLSProxy(t, fmt.Sprintf(`policies:
  - name: prod
    images: ["%s/**"]
    authorities:
      - name: release-key
        key: {path: %s}
defaultPolicy: deny
`, reachableName, keys.pub))
	var toSign []string
	for i, d := range ds {
		tag := fmt.Sprintf("v%d", i)
		var signed string
		if d.sigTag {
			// A signed image in the same repository, signed as cosign v3 does by default (a
			// bundle referrer), so that its ".sig" tag is free for the forgery.
			img := testImage(t)
			ref, err := name.ParseReference(fmt.Sprintf("%s/%s:signed%d", reachableName, disguiseRepo, i), name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.Write(ref, img); err != nil {
				t.Fatal(err)
			}
			h, _ := img.Digest()
			signed = reachableName + "/" + disguiseRepo + "@" + h.String()
			toSign = append(toSign, signed)
			tag = cosign.SignatureTag(digest.Digest(h.String()))
		}
		img := pushDisguised(t, d, disguiseRepo, tag)
		img.signed = signed
		f.images = append(f.images, img)
	}
	if len(toSign) > 0 {
		testtool.Cosign(t, cosign3, nil, append(testtool.CosignSignArgs(3, keys.priv), toSign...)...)
	}
	return f
}

// craneEnv makes crane trust the fixture's portcullis.
func (f *disguiseFixture) craneEnv() []string { return []string{"SSL_CERT_FILE=" + f.px.caPath} }

// viaProxy is ref (127.0.0.1/repo:tag or @digest) as portcullis serves it, path-prefix style.
func (f *disguiseFixture) viaProxy(ref string) string { return f.px.host + "/" + ref }

// wantReason is what portcullis's denial of img must say.
func (img *disguised) wantReason() []string {
	want := []string{"image " + reachableName + "/" + disguiseRepo + "@" + img.digest + " denied by policy", "no signatures found", "not a signature artifact"}
	if img.entrypoint {
		return append(want, "config sets Entrypoint")
	}
	return append(want, "layer 0", "is not a "+string(img.layerType))
}

// TestDisguisedSignaturesDeniedToCrane fetches every disguise with crane through portcullis:
// its manifest is refused 403 DENIED by tag and by digest with the reason it is not a
// signature artifact, and neither its layer nor its config is served (404 BLOB_UNKNOWN), nor
// fetched from the upstream for the asking. The signed images whose ".sig" tags were forged
// stay admitted.
func TestDisguisedSignaturesDeniedToCrane(t *testing.T) {
	crane := tool(t, "crane")
	f := newDisguiseFixture(t, allDisguises())
	repo := reachableName + "/" + disguiseRepo
	for _, img := range f.images {
		t.Run(img.String(), func(t *testing.T) {
			for _, ref := range []string{img.ref, repo + "@" + img.digest} {
				out, err := testtool.Run(t, "", crane, f.craneEnv(), "manifest", f.viaProxy(ref))
				if err == nil {
					t.Fatalf("crane manifest %s: served:\n%s", ref, out)
				}
				for _, w := range append(img.wantReason(), "DENIED") {
					if !strings.Contains(out, w) {
						t.Errorf("crane manifest %s: output lacks %q:\n%s", ref, w, out)
					}
				}
			}
			// crane does not print the status: ask for the manifest by digest directly.
			f.wantError(t, "/v2/"+repo+"/manifests/"+img.digest, http.StatusForbidden, "DENIED")

			m := f.up.mark()
			for _, blob := range []string{img.layer, img.config} {
				ref := f.viaProxy(repo + "@" + blob)
				out, err := testtool.Run(t, "", crane, f.craneEnv(), "blob", ref)
				if err == nil {
					t.Fatalf("crane blob %s: served (%d bytes)", ref, len(out))
				}
				if !strings.Contains(out, "BLOB_UNKNOWN") {
					t.Errorf("crane blob %s: want BLOB_UNKNOWN:\n%s", ref, out)
				}
				f.wantError(t, "/v2/"+repo+"/blobs/"+blob, http.StatusNotFound, "BLOB_UNKNOWN")
			}
			all, _ := f.up.since(m)
			for _, q := range all {
				if strings.Contains(q.path, "/blobs/") {
					t.Errorf("portcullis fetched a blob of a denied manifest for the asking: %v", q)
				}
			}
			if img.signed != "" {
				if out, err := testtool.Run(t, "", crane, f.craneEnv(), "manifest", f.viaProxy(img.signed)); err != nil {
					t.Errorf("the signed image whose .sig tag was forged is no longer admitted: %v\n%s", err, out)
				}
			}
		})
	}
}

// wantError GETs path from portcullis over HTTPS and fails t unless the answer has status
// and the OCI error code.
func (f *disguiseFixture) wantError(t *testing.T, path string, status int, code string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "https://"+f.px.host+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", strings.Join([]string{string(types.OCIManifestSchema1), string(types.DockerManifestSchema2)}, ", "))
	resp, err := tlsClient(t, f.px.caPath).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Errors []struct{ Code, Message string }
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = json.Unmarshal(b, &body)
	if resp.StatusCode != status || len(body.Errors) == 0 || body.Errors[0].Code != code {
		t.Errorf("GET %s: %d %s, want %d %s", path, resp.StatusCode, b, status, code)
	}
}

// TestDisguisedSignaturesDeniedToContainerd pulls disguises with containerd configured by
// deploy/clients/containerd/certs.d/docker.io/hosts.toml.
func TestDisguisedSignaturesDeniedToContainerd(t *testing.T) {
	f := newDisguiseFixture(t, runtimeDisguises())
	toml := f.clientFile(t, "containerd/certs.d/docker.io/hosts.toml", "portcullis.example:5000", "/etc/portcullis/ca.crt")
	c := startContainerdHosts(t, map[string]string{reachableName: toml})
	for _, img := range f.images {
		t.Run(img.String(), func(t *testing.T) {
			m := f.up.mark()
			out, err := c.pullRef(t, img.ref)
			if err == nil {
				t.Fatalf("disguised image pulled:\n%s", out)
			}
			// containerd resolves with HEAD, whose 403 has no body, and reports only the
			// status line: portcullis puts its reason there.
			for _, w := range append(img.wantReason(), "403 Forbidden: image", f.px.host) {
				if !strings.Contains(out, w) {
					t.Errorf("ctr's error lacks %q:\n%s", w, out)
				}
			}
			t.Logf("ctr's error: %s", strings.TrimSpace(out))
			for _, d := range []string{img.digest, img.config, img.layer} {
				containerdLacks(t, c, img.ref, d)
			}
			noRuntimeRequests(t, f.up, m)
		})
	}
}

// TestDisguisedSignaturesDeniedToContainers pulls disguises with skopeo and podman
// configured by deploy/clients/containers/registries.conf.
func TestDisguisedSignaturesDeniedToContainers(t *testing.T) {
	f := newDisguiseFixture(t, runtimeDisguises())
	conf := writeFile(t, "registries.conf", f.clientFile(t, "containers/registries.conf", "portcullis.example:5000/docker.io", `prefix = "docker.io"`))
	for _, cc := range containersClients() {
		t.Run(cc.name, func(t *testing.T) {
			c := cc.start(t)
			for _, img := range f.images {
				t.Run(img.String(), func(t *testing.T) {
					m := f.up.mark()
					out, err := c.get(t, conf, f.px.caDir, img.ref)
					if err == nil {
						t.Fatalf("disguised image obtained:\n%s", out)
					}
					for _, w := range img.wantReason() {
						if !strings.Contains(out, w) {
							t.Errorf("%s's error lacks %q:\n%s", c.name, w, out)
						}
					}
					t.Logf("%s's error: %s", c.name, strings.TrimSpace(out))
					if c.has(t, img.ref, img.digest) {
						t.Errorf("%s stored the disguised image", c.name)
					}
					noRuntimeRequests(t, f.up, m)
				})
			}
			// The control: reaching the upstream directly, these runtimes take the OCI
			// disguises as images (the refusals above are portcullis's), and refuse the
			// Docker ones themselves: containers/image accepts only Docker layer types in a
			// Docker schema2 manifest.
			t.Run("control: directly from the upstream", func(t *testing.T) {
				direct := writeFile(t, "registries.conf", fmt.Sprintf("[[registry]]\nprefix = %[1]q\nlocation = %[1]q\ninsecure = true\n", reachableName))
				for _, img := range f.images {
					out, err := c.get(t, direct, f.px.caDir, img.ref)
					switch {
					case img.docker && (err == nil || !strings.Contains(out, "unsupported docker v2s2 media type")):
						t.Errorf("%s: want containers/image's own refusal, got %v\n%s", img, err, out)
					case !img.docker && err != nil:
						t.Errorf("%s: %v\n%s", img, err, out)
					case !img.docker && !c.has(t, img.ref, img.digest):
						t.Errorf("%s: %s reports success but has not stored it", img, c.name)
					}
				}
			})
		})
	}
}

// slsaPredicate is a small SLSA v0.2 provenance predicate for cosign attest --type slsaprovenance.
const slsaPredicate = `{
  "builder": {"id": "https://ci.example.test/portcullis-e2e"},
  "buildType": "https://ci.example.test/build/v1",
  "invocation": {"configSource": {"uri": "git+https://git.example.test/app", "digest": {"sha1": "0123456789abcdef0123456789abcdef01234567"}}},
  "materials": [{"uri": "git+https://git.example.test/app", "digest": {"sha1": "0123456789abcdef0123456789abcdef01234567"}}]
}`

const slsaBuilder = "https://ci.example.test/portcullis-e2e"

// TestCosignThroughPortcullis signs and attests images upstream with the real cosign v3
// (sigstore bundles, referrers tag schema) and v2 (legacy .sig and .att tags), and reads them
// back with cosign through portcullis: verify, verify-attestation, tree and download succeed,
// show the real signature and attestation, and print what they print when reading the
// upstream directly. portcullis serves blobs only of manifests it admitted or exempted, so
// each read also shows that the exempt signature artifacts grant their layers.
func TestCosignThroughPortcullis(t *testing.T) {
	e := newEnforcing(t, "")
	pred := writeFile(t, "provenance.json", slsaPredicate)
	emptyRoot := filepath.Join(t.TempDir(), "empty-trusted-root.json")
	testtool.Cosign(t, e.cosign2, nil, "trusted-root", "create", "--out", emptyRoot)
	type signed struct{ repo, digest string }
	sign := func(cosign, repo string) signed {
		up := e.push(t, repo)
		cosignSign(t, cosign, e.trusted, up)
		args := append(testtool.CosignAttestArgs(testtool.CosignMajor(t, cosign), e.trusted.priv), "--type", "slsaprovenance", "--predicate", pred, up)
		testtool.Cosign(t, cosign, nil, args...)
		return signed{repo, up[strings.Index(up, "@")+1:]}
	}
	images := map[string]signed{
		"bundle": sign(e.cosign3, "cosign/v3"), // cosign v3's default
		"legacy": sign(e.cosign2, "cosign/v2"), // cosign v2's default
	}
	offline := []string{"--insecure-ignore-tlog", "--allow-http-registry"}
	verify := slices.Concat([]string{"verify", "--key", e.trusted.pub}, offline)
	verifyAtt := slices.Concat([]string{"verify-attestation", "--key", e.trusted.pub, "--type", "slsaprovenance"}, offline)
	// cosign v2 reads bundles only when told to, and then needs a trusted root.
	v2Bundle := []string{"--new-bundle-format", "--trusted-root", emptyRoot}
	const (
		verified   = "The signatures were verified against the specified public key"
		signType   = "https://sigstore.dev/cosign/sign/v1"
		slsaType   = "https://slsa.dev/provenance/v0.2"
		legacyType = "cosign container image signature"
	)
	for _, tc := range []struct {
		name   string
		cosign string
		format string
		args   []string
		// want must each appear in the output or in a payload it prints (decoded);
		// {digest}, {hex} and {proxy} stand for the image's digest, its hex and the proxied
		// repository.
		want []string
	}{
		{"v3 verify", e.cosign3, "bundle", verify, []string{verified, `"docker-manifest-digest":"{digest}"`, `"type":"` + signType + `"`}},
		{"v3 verify", e.cosign3, "legacy", verify, []string{verified, `"docker-manifest-digest":"{digest}"`, `"type":"` + legacyType + `"`}},
		{"v2 verify", e.cosign2, "bundle", slices.Concat(verify, v2Bundle), []string{verified, `"docker-manifest-digest":"{digest}"`, `"type":"` + signType + `"`}},
		{"v2 verify", e.cosign2, "legacy", verify, []string{verified, `"docker-manifest-digest":"{digest}"`, `"type":"` + legacyType + `"`}},
		{"v3 verify-attestation", e.cosign3, "bundle", verifyAtt, []string{verified, `"predicateType":"` + slsaType + `"`, `"sha256":"{hex}"`, slsaBuilder}},
		{"v3 verify-attestation", e.cosign3, "legacy", verifyAtt, []string{verified, `"predicateType":"` + slsaType + `"`, `"sha256":"{hex}"`, slsaBuilder}},
		{"v2 verify-attestation", e.cosign2, "bundle", slices.Concat(verifyAtt, v2Bundle), []string{verified, `"predicateType":"` + slsaType + `"`, `"sha256":"{hex}"`, slsaBuilder}},
		{"v2 verify-attestation", e.cosign2, "legacy", verifyAtt, []string{verified, `"predicateType":"` + slsaType + `"`, `"sha256":"{hex}"`, slsaBuilder}},
		{"v3 tree", e.cosign3, "bundle", []string{"tree", "--allow-http-registry"}, []string{signType + " artifacts via OCI referrer: {proxy}@sha256:", slsaType + " artifacts via OCI referrer: {proxy}@sha256:"}},
		{"v3 tree", e.cosign3, "legacy", []string{"tree", "--allow-http-registry"}, []string{"Signatures for an image tag: {proxy}:sha256-{hex}.sig", "Attestations for an image tag: {proxy}:sha256-{hex}.att"}},
		// cosign v2 lists referrers only with --experimental-oci11, by artifact type.
		{"v2 tree", e.cosign2, "bundle", []string{"tree", "--allow-http-registry", "--experimental-oci11"}, []string{"application/vnd.dev.sigstore.bundle.v0.3+json artifacts via OCI referrer: {proxy}@sha256:"}},
		{"v2 tree", e.cosign2, "legacy", []string{"tree", "--allow-http-registry"}, []string{"Signatures for an image tag: {proxy}:sha256-{hex}.sig", "Attestations for an image tag: {proxy}:sha256-{hex}.att"}},
		{"v3 download signature", e.cosign3, "bundle", []string{"download", "signature", "--allow-http-registry"}, []string{`"predicateType":"` + signType + `"`, `"sha256":"{hex}"`}},
		{"v3 download signature", e.cosign3, "legacy", []string{"download", "signature", "--allow-http-registry"}, []string{`"Base64Signature":"M`, `"docker-manifest-digest":"{digest}"`, legacyType}},
		// cosign v2's download signature reads only .sig ("no signatures associated" for a bundle).
		{"v2 download signature", e.cosign2, "legacy", []string{"download", "signature", "--allow-http-registry"}, []string{`"Base64Signature":"M`, `"docker-manifest-digest":"{digest}"`, legacyType}},
		{"v3 download attestation", e.cosign3, "bundle", []string{"download", "attestation", "--allow-http-registry"}, []string{`"predicateType":"` + slsaType + `"`, `"sha256":"{hex}"`, slsaBuilder}},
		{"v3 download attestation", e.cosign3, "legacy", []string{"download", "attestation", "--allow-http-registry"}, []string{`"predicateType":"` + slsaType + `"`, `"sha256":"{hex}"`, slsaBuilder}},
		{"v2 download attestation", e.cosign2, "bundle", []string{"download", "attestation", "--allow-http-registry"}, []string{`"predicateType":"` + slsaType + `"`, `"sha256":"{hex}"`, slsaBuilder}},
		{"v2 download attestation", e.cosign2, "legacy", []string{"download", "attestation", "--allow-http-registry"}, []string{`"predicateType":"` + slsaType + `"`, `"sha256":"{hex}"`, slsaBuilder}},
	} {
		t.Run(tc.name+" "+tc.format, func(t *testing.T) {
			img := images[tc.format]
			proxied := e.px.host + "/" + img.repo
			out, err := testtool.Run(t, "", tc.cosign, nil, slices.Concat(tc.args, []string{proxied + "@" + img.digest})...)
			t.Logf("%s %s %s@%s:\n%s", filepath.Base(tc.cosign), strings.Join(tc.args, " "), proxied, img.digest, out)
			if err != nil {
				t.Fatalf("through portcullis: %v", err)
			}
			seen := out + "\n" + strings.Join(payloads(out), "\n")
			r := strings.NewReplacer("{digest}", img.digest, "{hex}", strings.TrimPrefix(img.digest, "sha256:"), "{proxy}", proxied)
			for _, w := range tc.want {
				if w = r.Replace(w); !strings.Contains(seen, w) {
					t.Errorf("cosign's output through portcullis lacks %q", w)
				}
			}
			// What cosign prints reading the upstream directly, but for the host it names and
			// the order of its lines (cosign v2's tree lists .sig and .att in map order).
			direct, err := testtool.Run(t, "", tc.cosign, nil, slices.Concat(tc.args, []string{e.up.host + "/" + img.repo + "@" + img.digest})...)
			if err != nil {
				t.Fatalf("directly upstream: %v\n%s", err, direct)
			}
			if got := strings.ReplaceAll(out, e.px.host, e.up.host); !sameLines(got, direct) {
				t.Errorf("cosign prints through portcullis:\n%s\nand directly upstream:\n%s", got, direct)
			}
		})
	}
}

// sameLines reports whether a and b have the same lines, in any order.
func sameLines(a, b string) bool {
	la, lb := slices.Collect(strings.Lines(a)), slices.Collect(strings.Lines(b))
	slices.Sort(la)
	slices.Sort(lb)
	return slices.Equal(la, lb)
}

// payloads returns the decoded payloads in the JSON lines of out: a legacy signature's
// "Payload", a DSSE envelope's "payload", a sigstore bundle's "dsseEnvelope.payload".
func payloads(out string) []string {
	var ps []string
	for line := range strings.Lines(out) {
		if !strings.HasPrefix(strings.TrimSpace(line), "{") {
			continue
		}
		var v struct {
			Payload string // matches "payload" too
			DSSE    *struct {
				Payload string `json:"payload"`
			} `json:"dsseEnvelope"`
		}
		if json.Unmarshal([]byte(line), &v) != nil {
			continue
		}
		p := v.Payload
		if v.DSSE != nil {
			p = v.DSSE.Payload
		}
		if b, err := base64.StdEncoding.DecodeString(p); err == nil {
			ps = append(ps, string(b))
		}
	}
	return ps
}
