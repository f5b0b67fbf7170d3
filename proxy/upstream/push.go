package upstream

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/verify/oci"
)

// remote names repo for go-containerregistry's remote package, with the options that push
// there with the upstream's credentials.
func (u *Client) remote(ctx context.Context, repo string) (name.Repository, []remote.Option, error) {
	var nopts []name.Option
	if u.base.Scheme == "http" {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.NewRepository(u.reg.Name()+"/"+repo, nopts...)
	if err != nil {
		return r, nil, err
	}
	t, err := u.transport(ctx, repo, true)
	if err != nil {
		return r, nil, err
	}
	return r, []remote.Option{remote.WithTransport(t), remote.WithContext(ctx)}, nil
}

// PushBlob uploads l to repo (unless the upstream has it already). Authentication is bounded
// by the upstream timeout, and so is each wait for an answer; the upload itself is not (a
// large blob takes as long as it takes). Upload locations on other hosts than the upstream
// and its allowedHosts are refused.
func (u *Client) PushBlob(ctx context.Context, repo string, l v1.Layer) error {
	r, opts, err := u.remote(ctx, repo)
	if err != nil {
		return err
	}
	if err := remote.WriteLayer(r, l, opts...); err != nil {
		d, _ := l.Digest()
		return u.wrapErr(fmt.Errorf("push blob %s: %w", d, err))
	}
	return nil
}

// PutManifest puts m in repo under ref, a tag or m's digest, within the upstream timeout.
func (u *Client) PutManifest(ctx context.Context, repo, ref string, m oci.Manifest) error {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	r, opts, err := u.remote(ctx, repo)
	if err != nil {
		return err
	}
	var target name.Reference = r.Tag(ref)
	if strings.Contains(ref, ":") {
		target = r.Digest(ref)
	}
	if err := remote.Put(target, rawManifest{raw: m.Bytes, mt: types.MediaType(m.MediaType)}, opts...); err != nil {
		return u.wrapErr(fmt.Errorf("push manifest %s: %w", ref, err))
	}
	return nil
}

// Delete deletes ref (a digest, or a tag for manifests) of kind "manifests" or "blobs" in
// repo, where the upstream allows it, within the upstream timeout.
func (u *Client) Delete(ctx context.Context, repo, kind, ref string) error {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	t, err := u.transport(ctx, repo, true)
	if err != nil {
		return err
	}
	target := *u.base
	target.Path = "/v2/" + repo + "/" + kind + "/" + ref
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, target.String(), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: t, CheckRedirect: u.checkRedirect}).Do(req)
	if err != nil {
		return u.wrapErr(err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusAccepted, http.StatusOK, http.StatusNoContent:
		return nil
	}
	b, _ := oci.ReadCapped(resp.Body, 64<<10)
	return &Error{Upstream: u.name, Status: resp.StatusCode, Message: printable(strings.TrimSpace(string(b)))}
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }
