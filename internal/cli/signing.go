package cli

import (
	"context"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/portcullis/portcullis/internal/sign"
)

// signing is what sign and attest prepare before they sign anything: the keyless signer
// (none with --key), where the signatures go, how to reach the registry, and the manifests
// to sign.
type signing struct {
	// keyless signs when no key was given; nil with a key.
	keyless *sign.Keyless
	// sigRepo is COSIGN_REPOSITORY, or zero for each image's own repository (see repoFor).
	sigRepo name.Repository
	ropts   []remote.Option
	// targets are the images resolved to digests, in the order given.
	targets []sign.Target
}

// prepareSigning builds the keyless signer when key is empty (first, so that a missing
// identity token is reported before the registry is asked), then resolves each image to
// the manifests to sign: its digest, and each manifest of an index with recursive.
func prepareSigning(ctx context.Context, e Env, reg RegistryOptions, key string, kl KeylessOptions, images []string, recursive bool) (signing, error) {
	var s signing
	var err error
	if key == "" {
		if s.keyless, err = kl.signer(ctx, e); err != nil {
			return signing{}, err
		}
	}
	if s.sigRepo, err = e.signaturesRepository(reg); err != nil {
		return signing{}, err
	}
	if s.ropts, err = reg.remoteOpts(ctx); err != nil {
		return signing{}, err
	}
	for _, a := range images {
		ref, err := reg.ParseRef(a)
		if err != nil {
			return signing{}, err
		}
		ts, err := sign.Resolve(ctx, ref, recursive, s.ropts...)
		if err != nil {
			return signing{}, err
		}
		s.targets = append(s.targets, ts...)
	}
	return s, nil
}

// repoFor is the repository t's signatures go to: sigRepo, else t's own.
func (s signing) repoFor(t sign.Target) name.Repository {
	if s.sigRepo.RepositoryStr() == "" {
		return t.Ref.Context()
	}
	return s.sigRepo
}
