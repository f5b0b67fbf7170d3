package sign

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/cosign"
)

// Target is one manifest to sign: its reference by digest and its descriptor (the subject of
// a bundle referrer).
type Target struct {
	Ref        name.Digest
	Descriptor v1.Descriptor
}

// MaxRecursiveTargets bounds how many manifests a recursive resolution returns.
const MaxRecursiveTargets = 1000

// Resolve turns ref (a tag or a digest) into the manifest to sign. With recursive, an index
// yields itself and then every manifest it lists, depth first (nested indexes too), as cosign
// sign --recursive; for an image manifest recursive changes nothing.
func Resolve(ctx context.Context, ref name.Reference, recursive bool, opts ...remote.Option) ([]Target, error) {
	opts = append(opts, remote.WithContext(ctx))
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", ref, err)
	}
	root := Target{Ref: ref.Context().Digest(desc.Digest.String()), Descriptor: desc.Descriptor}
	if d, ok := ref.(name.Digest); ok && d.DigestStr() != desc.Digest.String() {
		return nil, fmt.Errorf("resolve %s: registry returned %s", ref, desc.Digest)
	}
	out := []Target{root}
	if !recursive || !desc.MediaType.IsIndex() {
		return out, nil
	}
	seen := map[v1.Hash]bool{desc.Digest: true}
	var walk func(idx v1.ImageIndex) error
	walk = func(idx v1.ImageIndex) error {
		im, err := idx.IndexManifest()
		if err != nil {
			return err
		}
		for _, m := range im.Manifests {
			if seen[m.Digest] {
				continue
			}
			seen[m.Digest] = true
			if len(out) >= MaxRecursiveTargets {
				return fmt.Errorf("more than %d manifests", MaxRecursiveTargets)
			}
			out = append(out, Target{Ref: ref.Context().Digest(m.Digest.String()), Descriptor: v1.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: m.Size}})
			if m.MediaType.IsIndex() {
				child, err := idx.ImageIndex(m.Digest)
				if err != nil {
					return err
				}
				if err := walk(child); err != nil {
					return err
				}
			}
		}
		return nil
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("read index %s: %w", ref, err)
	}
	if err := walk(idx); err != nil {
		return nil, fmt.Errorf("walk index %s: %w", ref, err)
	}
	return out, nil
}

// Removal is the outcome of deleting one thing in Clean.
type Removal struct {
	// What names it, e.g. "repo:sha256-….sig" or "repo@sha256:… (bundle referrer)".
	What string
	// Err is why it could not be deleted; nil when deleted.
	Err error
}

// CleanKind selects what Clean deletes.
type CleanKind string

// Kinds of Clean.
const (
	CleanSignature   CleanKind = "signature"   // the legacy .sig tag
	CleanAttestation CleanKind = "attestation" // the legacy .att tag
	CleanSBOM        CleanKind = "sbom"        // the legacy .sbom tag
	CleanReferrer    CleanKind = "referrer"    // sigstore bundle referrers
	CleanAll         CleanKind = "all"         // all of the above
)

// Clean deletes img's cosign attachments of the given kind from sigRepo (img's repository
// when zero), where the registry allows it. Nothing found is not an error; each thing found
// and not deleted is reported with its error. The error is for failures before deleting
// anything (the referrers cannot be listed).
func Clean(ctx context.Context, img name.Digest, sigRepo name.Repository, kind CleanKind, opts ...remote.Option) ([]Removal, error) {
	if sigRepo.Name() == "" || sigRepo.RepositoryStr() == "" {
		sigRepo = img.Context()
	}
	opts = append(opts, remote.WithContext(ctx))
	var suffixes []string
	switch kind {
	case CleanSignature:
		suffixes = []string{cosign.SuffixSignature}
	case CleanAttestation:
		suffixes = []string{cosign.SuffixAttestation}
	case CleanSBOM:
		suffixes = []string{cosign.SuffixSBOM}
	case CleanAll:
		suffixes = []string{cosign.SuffixSignature, cosign.SuffixAttestation, cosign.SuffixSBOM}
	case CleanReferrer:
	default:
		return nil, fmt.Errorf("unknown clean type %q", kind)
	}
	var out []Removal
	for _, sfx := range suffixes {
		tag, err := LegacyTag(img, sigRepo, sfx)
		if err != nil {
			return nil, err
		}
		if r, found := deleteTag(tag, opts); found {
			out = append(out, r)
		}
	}
	if kind != CleanReferrer && kind != CleanAll {
		return out, nil
	}
	d, err := digest.Parse(img.DigestStr())
	if err != nil {
		return nil, fmt.Errorf("image digest: %w", err)
	}
	idx, err := remote.Referrers(sigRepo.Digest(img.DigestStr()), opts...)
	if err != nil {
		return out, fmt.Errorf("list referrers of %s in %s: %w", img.DigestStr(), sigRepo, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return out, err
	}
	failed := false
	for _, m := range im.Manifests {
		if string(m.ArtifactType) != "" && string(m.ArtifactType) != cosign.MediaTypeSigstoreBundle {
			continue // not ours to delete: SBOMs, provenance by other tools
		}
		ref := sigRepo.Digest(m.Digest.String())
		r := Removal{What: ref.String() + " (bundle referrer)"}
		if err := remote.Delete(ref, opts...); err != nil && !isNotFound(err) {
			r.Err, failed = err, true
		}
		out = append(out, r)
	}
	// Registries without the referrers API keep the list in a tag: it goes when it listed
	// only what was deleted.
	tag := sigRepo.Tag(cosign.ReferrersTag(d))
	if ti, err := remote.Index(tag, opts...); err == nil && !failed {
		tm, err := ti.IndexManifest()
		if err == nil && onlyBundles(tm) {
			if r, found := deleteTag(tag, opts); found {
				r.What += " (referrers tag)"
				out = append(out, r)
			}
		}
	}
	return out, nil
}

func onlyBundles(im *v1.IndexManifest) bool {
	for _, m := range im.Manifests {
		if string(m.ArtifactType) != "" && string(m.ArtifactType) != cosign.MediaTypeSigstoreBundle {
			return false
		}
	}
	return true
}

// deleteTag deletes what tag names: by digest first (distribution and most registries delete
// manifests only by digest, which removes the tag), then by tag name.
func deleteTag(tag name.Tag, opts []remote.Option) (Removal, bool) {
	r := Removal{What: tag.String()}
	desc, err := remote.Head(tag, opts...)
	if isNotFound(err) {
		return r, false
	}
	if err != nil {
		r.Err = err
		return r, true
	}
	err = remote.Delete(tag.Context().Digest(desc.Digest.String()), opts...)
	if err != nil && !isNotFound(err) {
		if err2 := remote.Delete(tag, opts...); err2 != nil {
			r.Err = errors.Join(err, err2)
		}
		return r, true
	}
	// Some registries (go-containerregistry's) keep a tag whose manifest was deleted by digest.
	if _, err := remote.Head(tag, opts...); err == nil {
		if err := remote.Delete(tag, opts...); err != nil && !isNotFound(err) {
			r.Err = fmt.Errorf("deleted the manifest, but the tag stays: %w", err)
		}
	}
	return r, true
}

func isNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}
