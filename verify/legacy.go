package verify

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/sync/errgroup"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/internal/strictjson"
	"github.com/portcullis/portcullis/verify/oci"
)

// discoverLegacy reads the ".sig" manifest of dgst in repo and fetches the payload of each of
// its simple signing layers.
func (v *Verifier) discoverLegacy(ctx context.Context, reg Registry, repo string, dgst digest.Digest) ([]*candidate, []error) {
	tag := cosign.SignatureTag(dgst)
	m, err := reg.Manifest(ctx, repo, tag)
	if errors.Is(err, oci.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, []error{&LookupError{Repository: repo, What: "legacy signature tag " + tag, Err: err}}
	}
	where := repo + ":" + tag
	brokenManifest := func(format string, args ...any) []*candidate {
		return []*candidate{{format: FormatLegacy, where: where, broken: fmt.Sprintf(format, args...)}}
	}

	if m.MediaType != "" && m.MediaType != oci.MediaTypeOCIManifest && m.MediaType != oci.MediaTypeDockerManifest {
		return brokenManifest("signature tag %s is a %s, not an image manifest", tag, m.MediaType), nil
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(m.Bytes, &man); err != nil {
		return brokenManifest("invalid signature manifest %s: %v", tag, err), nil
	}
	if man.MediaType != "" && man.MediaType != oci.MediaTypeOCIManifest && man.MediaType != oci.MediaTypeDockerManifest {
		return brokenManifest("signature tag %s is a %s, not an image manifest", tag, man.MediaType), nil
	}
	if len(man.Layers) > v.cfg.maxLayers {
		return brokenManifest("signature manifest %s has %d layers, more than the limit of %d", tag, len(man.Layers), v.cfg.maxLayers), nil
	}

	var cands []*candidate
	for i, l := range man.Layers {
		if l.MediaType != cosign.MediaTypeSimpleSigning {
			continue
		}
		c := &candidate{format: FormatLegacy, where: fmt.Sprintf("%s layer %d", where, i)}
		cands = append(cands, c)
		b64, ok := l.Annotations[cosign.AnnotationSignature]
		if !ok || b64 == "" {
			c.broken = "layer has no signature annotation"
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			c.broken = "signature annotation is not base64"
			continue
		}
		c.sig, c.blob = sig, l.Digest
		c.legacy = legacyMaterial{
			cert:        l.Annotations[cosign.AnnotationCertificate],
			chain:       l.Annotations[cosign.AnnotationChain],
			rekorBundle: l.Annotations[cosign.AnnotationRekorBundle],
			timestamp:   l.Annotations[cosign.AnnotationRFC3161Timestamp],
		}
		if err := l.Digest.Validate(); err != nil {
			c.broken = "invalid payload digest in signature manifest"
			continue
		}
		if l.Size > v.cfg.maxBlobSize {
			c.broken = fmt.Sprintf("payload of %d bytes exceeds the limit of %d", l.Size, v.cfg.maxBlobSize)
			continue
		}
	}

	errs := v.fetchBlobs(ctx, reg, repo, cands, "payload", "signature payload", func(c *candidate, b []byte) { c.payload = b })
	return cands, errs
}

// fetchBlobs fetches the blob of every candidate that is not broken, a few at a time, and
// hands it to use; noun names the blob in reasons ("payload"), what in errors ("signature
// payload"). A missing blob breaks the candidate, a failed fetch too and is returned as a
// *LookupError.
func (v *Verifier) fetchBlobs(ctx context.Context, reg Registry, repo string, cands []*candidate, noun, what string, use func(c *candidate, b []byte)) []error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(v.cfg.concurrency)
	errs := make([]error, len(cands))
	for i, c := range cands {
		if c.broken != "" {
			continue
		}
		g.Go(func() error {
			b, err := reg.Blob(gctx, repo, c.blob, v.cfg.maxBlobSize)
			switch {
			case errors.Is(err, oci.ErrNotFound):
				c.broken = noun + " blob missing"
			case err != nil:
				c.broken = noun + " could not be fetched"
				errs[i] = &LookupError{Repository: repo, What: what + " " + c.blob.String(), Err: err}
				v.cfg.logger.DebugContext(ctx, "fetch "+what, slog.String("repository", repo),
					slog.String("digest", c.blob.String()), slog.Any("error", err))
			default:
				use(c, b)
			}
			return nil
		})
	}
	_ = g.Wait()
	return compact(errs)
}

func compact(errs []error) []error {
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// checkLegacy checks one legacy signature against an authority; "" means verified.
func checkLegacy(keys []signature.Verifier, want map[string]string, c *candidate, dgst digest.Digest) string {
	verified := false
	for _, k := range keys {
		if k.VerifySignature(bytes.NewReader(c.sig), bytes.NewReader(c.payload)) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return "wrong key"
	}
	return checkLegacyClaims(want, c, dgst)
}

// checkLegacyClaims checks the payload of a legacy signature whose signature verified: its
// type, the signed digest and the wanted annotations; "" means it satisfies.
func checkLegacyClaims(want map[string]string, c *candidate, dgst digest.Digest) string {
	// Only signed bytes are interpreted from here on.
	p, err := strictjson.ParseObject(c.payload)
	if err != nil {
		return "invalid payload: " + err.Error()
	}
	critical, err := p.ObjectMember("critical", false)
	if err != nil {
		return "invalid payload: " + err.Error()
	}
	typ, err := critical.StringMember("type")
	if err != nil {
		return "invalid payload: critical: " + err.Error()
	}
	if typ != cosign.SimpleSigningType {
		return fmt.Sprintf("payload type %q is not a cosign image signature", typ)
	}
	image, err := critical.ObjectMember("image", false)
	if err != nil {
		return "invalid payload: critical: " + err.Error()
	}
	signed, err := image.StringMember("docker-manifest-digest")
	if err != nil {
		return "invalid payload: critical.image: " + err.Error()
	}
	if signed != dgst.String() {
		return "payload digest mismatch: signed " + short(signed)
	}
	optional, err := p.ObjectMember("optional", true)
	if err != nil {
		return "invalid payload: " + err.Error()
	}
	reason, err := matchAnnotations(want, optional)
	if err != nil {
		return "invalid payload: optional: " + err.Error()
	}
	return reason
}
