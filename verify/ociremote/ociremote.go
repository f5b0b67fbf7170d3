// Package ociremote implements verify.Registry over go-containerregistry's remote package, for
// clients of any registry (the CLI's verify command), where the proxy uses its own upstream
// client.
//
// Repositories are full names ("registry.example/team/app", "127.0.0.1:5000/demo/app"), so
// one Registry serves images and signatures stored in different registries
// (COSIGN_REPOSITORY). Authentication, TLS and plain-HTTP permission come from the
// remote.Options and name.Options given to New. Absence (404 for a tag, manifest, blob) is
// reported wrapping oci.ErrNotFound; manifests and blobs are capped and checked against their
// digest, as verify.Registry requires.
package ociremote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
)

// Registry reads manifests, blobs and referrers from any registry. It is safe for concurrent
// use.
type Registry struct {
	nameOpts   []name.Option
	remoteOpts []remote.Option
}

var _ verify.Registry = (*Registry)(nil)

// New returns a Registry that parses repository names with nameOpts (e.g. name.Insecure for
// plain HTTP) and talks to registries with remoteOpts (auth, transport).
func New(nameOpts []name.Option, remoteOpts []remote.Option) *Registry {
	return &Registry{nameOpts: nameOpts, remoteOpts: remoteOpts}
}

func (r *Registry) repo(repo string) (name.Repository, error) {
	return name.NewRepository(repo, r.nameOpts...)
}

func (r *Registry) opts(ctx context.Context) []remote.Option {
	return append(append([]remote.Option{}, r.remoteOpts...), remote.WithContext(ctx))
}

// Manifest fetches a manifest by tag or digest.
func (r *Registry) Manifest(ctx context.Context, repo, ref string) (oci.Manifest, error) {
	rp, err := r.repo(repo)
	if err != nil {
		return oci.Manifest{}, err
	}
	var nr name.Reference
	var want digest.Digest
	if d, err := digest.Parse(ref); err == nil {
		nr, want = rp.Digest(ref), d
	} else {
		nr = rp.Tag(ref)
	}
	desc, err := remote.Get(nr, r.opts(ctx)...)
	if err != nil {
		return oci.Manifest{}, wrap(err)
	}
	if len(desc.Manifest) > oci.MaxManifestSize {
		return oci.Manifest{}, fmt.Errorf("manifest %s is larger than %d bytes", nr, oci.MaxManifestSize)
	}
	return oci.NewManifest(desc.Manifest, string(desc.MediaType), want)
}

// Blob fetches a blob of at most limit bytes and checks it against d.
func (r *Registry) Blob(ctx context.Context, repo string, d digest.Digest, limit int64) ([]byte, error) {
	rp, err := r.repo(repo)
	if err != nil {
		return nil, err
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	l, err := remote.Layer(rp.Digest(d.String()), r.opts(ctx)...)
	if err != nil {
		return nil, wrap(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, wrap(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, wrap(err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("blob %s is larger than %d bytes", d, limit)
	}
	if got := d.Algorithm().FromBytes(b); got != d {
		return nil, fmt.Errorf("blob digest mismatch: asked for %s, content is %s", d, got)
	}
	return b, nil
}

// Referrers lists the referrers of d: the referrers API, else the referrers tag schema index.
func (r *Registry) Referrers(ctx context.Context, repo string, d digest.Digest) ([]ocispec.Descriptor, error) {
	rp, err := r.repo(repo)
	if err != nil {
		return nil, err
	}
	idx, err := remote.Referrers(rp.Digest(d.String()), r.opts(ctx)...)
	if err != nil {
		if errors.Is(wrap(err), oci.ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	raw, err := idx.RawManifest()
	if err != nil {
		return nil, err
	}
	var im ocispec.Index
	if err := json.Unmarshal(raw, &im); err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", d, err)
	}
	return im.Manifests, nil
}

func wrap(err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %w", oci.ErrNotFound, err)
	}
	return err
}
