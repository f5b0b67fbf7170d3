package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/internal/sign"
)

// Triangulate prints on Stdout where image's cosign attachment of kind typ is stored (as
// cosign triangulate): the legacy tag for "signature", "attestation" and "sbom", the image by
// digest for "digest", each sigstore bundle referrer for "bundle" (an error when there is
// none). COSIGN_REPOSITORY changes the repository.
func Triangulate(ctx context.Context, e Env, reg RegistryOptions, typ, image string) error {
	suffix, legacy := map[string]string{"signature": cosign.SuffixSignature, "attestation": cosign.SuffixAttestation, "sbom": cosign.SuffixSBOM}[typ]
	if !legacy && typ != "digest" && typ != "bundle" {
		return fmt.Errorf("--type %q: want signature, attestation, sbom, digest or bundle", typ)
	}
	sigRepo, err := e.signaturesRepository(reg)
	if err != nil {
		return err
	}
	t, _, err := reg.resolveOne(ctx, image)
	if err != nil {
		return err
	}
	img := t.Ref
	if sigRepo.RepositoryStr() == "" {
		sigRepo = img.Context()
	}
	switch {
	case legacy:
		tag, err := sign.LegacyTag(img, sigRepo, suffix)
		if err != nil {
			return err
		}
		fmt.Fprintln(e.Stdout, tag)
	case typ == "digest":
		fmt.Fprintln(e.Stdout, img)
	default:
		regs, err := NewRegistries(reg)
		if err != nil {
			return err
		}
		refs, err := regs.Referrers(ctx, sigRepo.Name(), digest.Digest(img.DigestStr()))
		if err != nil {
			return fmt.Errorf("list referrers of %s: %w", img, err)
		}
		n := 0
		for _, m := range refs {
			if m.ArtifactType == cosign.MediaTypeSigstoreBundle {
				fmt.Fprintln(e.Stdout, sigRepo.Digest(m.Digest.String()))
				n++
			}
		}
		if n == 0 {
			return fmt.Errorf("no sigstore bundle referrers of %s in %s", img.DigestStr(), sigRepo)
		}
	}
	return nil
}

// CleanOptions are the flags of clean.
type CleanOptions struct {
	Registry RegistryOptions
	// Type is all, signature, attestation, sbom or referrer.
	Type string
	// Force skips the confirmation.
	Force bool
}

// Clean deletes image's cosign attachments of o.Type where the registry allows it (as cosign
// clean), reporting each removal on Stderr; it fails when something found could not be
// deleted. It asks for confirmation on the terminal unless Force.
func Clean(ctx context.Context, e Env, o CleanOptions, image string) error {
	switch sign.CleanKind(o.Type) {
	case sign.CleanAll, sign.CleanSignature, sign.CleanAttestation, sign.CleanSBOM, sign.CleanReferrer:
	default:
		return fmt.Errorf("--type %q: want all, signature, attestation, sbom or referrer", o.Type)
	}
	if err := e.confirm(o.Force, fmt.Sprintf("this will delete the %s attachments of %s", o.Type, image), "-f"); err != nil {
		return err
	}
	sigRepo, err := e.signaturesRepository(o.Registry)
	if err != nil {
		return err
	}
	t, ropts, err := o.Registry.resolveOne(ctx, image)
	if err != nil {
		return err
	}
	rs, err := sign.Clean(ctx, t.Ref, sigRepo, sign.CleanKind(o.Type), ropts...)
	var failed []string
	for _, r := range rs {
		if r.Err != nil {
			fmt.Fprintf(e.Stderr, "could not delete %s: %v\n", r.What, r.Err)
			failed = append(failed, r.What)
			continue
		}
		fmt.Fprintf(e.Stderr, "Removed %s\n", r.What)
	}
	if len(rs) == 0 && err == nil {
		fmt.Fprintf(e.Stderr, "nothing to remove for %s\n", t.Ref)
	}
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("could not delete %d of %d: %s", len(failed), len(rs), strings.Join(failed, ", "))
	}
	return nil
}
