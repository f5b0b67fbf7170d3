package main

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/internal/sign"
)

func newTriangulate(e *cliEnv) *cobra.Command {
	var reg registryOptions
	var typ string
	cmd := &cobra.Command{
		Use:   "triangulate [--type signature|attestation|sbom|digest|bundle] IMAGE",
		Short: "Print where an image's signatures are stored (as cosign triangulate)",
		Long: `Prints the location of IMAGE's cosign attachment: the legacy tag
"<repo>:sha256-<hex>.sig" (signature), ".att" (attestation), ".sbom" (sbom), the image by
digest (digest), or, for bundle, each sigstore bundle referrer as "<repo>@sha256:…" (an error
when there is none). COSIGN_REPOSITORY changes the repository.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			sigRepo, err := e.signaturesRepository(&reg)
			if err != nil {
				return err
			}
			t, ropts, err := reg.resolveOne(ctx, args[0])
			if err != nil {
				return err
			}
			img := t.Ref
			if sigRepo.RepositoryStr() == "" {
				sigRepo = img.Context()
			}
			out := cmd.OutOrStdout()
			switch typ {
			case "signature", "attestation", "sbom":
				tag, err := sign.LegacyTag(img, sigRepo, map[string]string{"signature": cosign.SuffixSignature, "attestation": cosign.SuffixAttestation, "sbom": cosign.SuffixSBOM}[typ])
				if err != nil {
					return err
				}
				fmt.Fprintln(out, tag)
			case "digest":
				fmt.Fprintln(out, img)
			case "bundle":
				idx, err := remote.Referrers(sigRepo.Digest(img.DigestStr()), ropts...)
				if err != nil {
					return fmt.Errorf("list referrers of %s: %w", img, err)
				}
				im, err := idx.IndexManifest()
				if err != nil {
					return err
				}
				n := 0
				for _, m := range im.Manifests {
					if m.ArtifactType == cosign.MediaTypeSigstoreBundle {
						fmt.Fprintln(out, sigRepo.Digest(m.Digest.String()))
						n++
					}
				}
				if n == 0 {
					return fmt.Errorf("no sigstore bundle referrers of %s in %s", img.DigestStr(), sigRepo)
				}
			default:
				return fmt.Errorf("--type %q: want signature, attestation, sbom, digest or bundle", typ)
			}
			return nil
		},
	}
	reg.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&typ, "type", "signature", "related attachment to triangulate (signature|attestation|sbom|digest|bundle)")
	return cmd
}

func newClean(e *cliEnv) *cobra.Command {
	var reg registryOptions
	var typ string
	var force bool
	cmd := &cobra.Command{
		Use:   "clean [--type all|signature|attestation|sbom|referrer] [-f] IMAGE",
		Short: "Delete an image's signatures and other cosign attachments (as cosign clean)",
		Long: `Deletes the legacy tags (.sig, .att, .sbom) and the sigstore bundle referrers of IMAGE
where the registry allows it, reporting each removal on stderr. Exits non-zero when something
found could not be deleted. Asks for confirmation unless -f.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			errw := cmd.ErrOrStderr()
			switch sign.CleanKind(typ) {
			case sign.CleanAll, sign.CleanSignature, sign.CleanAttestation, sign.CleanSBOM, sign.CleanReferrer:
			default:
				return fmt.Errorf("--type %q: want all, signature, attestation, sbom or referrer", typ)
			}
			if err := e.confirm(errw, force, fmt.Sprintf("this will delete the %s attachments of %s", typ, args[0]), "-f"); err != nil {
				return err
			}
			sigRepo, err := e.signaturesRepository(&reg)
			if err != nil {
				return err
			}
			t, ropts, err := reg.resolveOne(ctx, args[0])
			if err != nil {
				return err
			}
			rs, err := sign.Clean(ctx, t.Ref, sigRepo, sign.CleanKind(typ), ropts...)
			var failed []string
			for _, r := range rs {
				if r.Err != nil {
					fmt.Fprintf(errw, "could not delete %s: %v\n", r.What, r.Err)
					failed = append(failed, r.What)
					continue
				}
				fmt.Fprintf(errw, "Removed %s\n", r.What)
			}
			if len(rs) == 0 && err == nil {
				fmt.Fprintf(errw, "nothing to remove for %s\n", t.Ref)
			}
			if err != nil {
				return err
			}
			if len(failed) > 0 {
				return fmt.Errorf("could not delete %d of %d: %s", len(failed), len(rs), strings.Join(failed, ", "))
			}
			return nil
		},
	}
	reg.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&typ, "type", "all", "type of attachment to clean (all|signature|attestation|sbom|referrer)")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	return cmd
}
