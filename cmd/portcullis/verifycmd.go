package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/sign"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
	"github.com/portcullis/portcullis/verify/ociremote"
)

type verifyOptions struct {
	reg         registryOptions
	key         string
	annotations []string
	ignoreTlog  bool
	output      string
}

func newVerify(e *cliEnv) *cobra.Command {
	o := &verifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify --key REF --insecure-ignore-tlog [-a key=value]... IMAGE...",
		Short: "Verify the cosign signatures of images (as cosign verify, offline)",
		Long: `Resolves each IMAGE to a digest and checks its signatures in both cosign formats (legacy
.sig and sigstore bundle referrers) with portcullis's verifier, the one the mirror enforces:
the signature, the signed digest, cosign's signing predicate for bundles, and each -a
annotation. Prints the verified payloads as a JSON array on stdout, as cosign does, and a
summary on stderr. Exits 0 only when every IMAGE has at least one verified signature.
Transparency log checks are not supported yet, so --insecure-ignore-tlog is required.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVerify(cmd.Context(), e, cmd, o, args)
		},
	}
	fs := cmd.Flags()
	o.reg.addFlags(fs)
	fs.StringVar(&o.key, "key", "", "public key: a PEM file, env://VAR holding the PEM, or awskms:// gcpkms:// azurekms:// hashivault:// URI")
	fs.StringSliceVarP(&o.annotations, "annotations", "a", nil, "extra key=value pairs the signature must carry")
	fs.BoolVar(&o.ignoreTlog, "insecure-ignore-tlog", false, "ignore transparency log verification (required: portcullis has no transparency log support yet)")
	fs.StringVarP(&o.output, "output", "o", "json", "output format for the signing image information (json|text)")
	fs.Bool("insecure-ignore-sct", false, "accepted for cosign compatibility; certificates are not verified yet")
	fs.Bool("new-bundle-format", false, "accepted for cosign compatibility; both formats are always read")
	fs.Bool("check-claims", true, "accepted for cosign compatibility; claims are always checked")
	return cmd
}

func runVerify(ctx context.Context, e *cliEnv, cmd *cobra.Command, o *verifyOptions, args []string) error {
	errw := cmd.ErrOrStderr()
	if o.key == "" {
		return errors.New("--key is required: keyless verification (certificate identities) is not supported yet")
	}
	if !o.ignoreTlog {
		return errors.New("transparency log verification is not supported yet: pass --insecure-ignore-tlog to verify against the key alone")
	}
	if o.output != "json" && o.output != "text" {
		return fmt.Errorf("--output %q: want json or text", o.output)
	}
	ann, err := parseAnnotations(o.annotations)
	if err != nil {
		return err
	}
	key, err := keys.LoadPublicKey(ctx, o.key, e.lookupEnv)
	if err != nil {
		return err
	}
	sigRepo, err := e.signaturesRepository(&o.reg)
	if err != nil {
		return err
	}
	ropts, err := o.reg.remoteOpts(ctx)
	if err != nil {
		return err
	}
	reg := ociremote.New(o.reg.nameOpts(), ropts)
	v := verify.New()
	fmt.Fprintln(errw, "WARNING: Skipping tlog verification is an insecure practice that lacks transparency and auditability verification for the signature.")
	for _, a := range args {
		ref, err := o.reg.parseRef(a)
		if err != nil {
			return err
		}
		ts, err := sign.Resolve(ctx, ref, false, ropts...)
		if err != nil {
			return err
		}
		desc := ts[0].Descriptor
		subj := verify.Subject{Repository: ref.Context().Name(), Digest: digest.Digest(desc.Digest.String())}
		auth := verify.Authority{Name: o.key, Key: key.Verifier, Annotations: ann}
		if sigRepo.RepositoryStr() != "" {
			auth.SignaturesRepository = sigRepo.Name()
		}
		res, err := v.Verify(ctx, reg, subj, []verify.Authority{auth})
		if err != nil {
			return fmt.Errorf("verify %s: %w", a, err)
		}
		if r := res.Authorities[0]; !r.Verified {
			return fmt.Errorf("no matching signatures for %s@%s: %s", ref.Context(), desc.Digest, r.Reason)
		}
		payloads, err := verifiedPayloads(ctx, v, reg, subj, auth, ref.Context().Digest(desc.Digest.String()))
		if err != nil {
			return fmt.Errorf("verify %s: %w", a, err)
		}
		fmt.Fprintf(errw, "\nVerification for %s --\n", ref)
		fmt.Fprintln(errw, "The following checks were performed on each of these signatures:")
		if len(ann) > 0 {
			fmt.Fprintln(errw, "  - The specified annotations were verified.")
		}
		fmt.Fprintln(errw, "  - The cosign claims were validated")
		fmt.Fprintln(errw, "  - The signatures were verified against the specified public key")
		if err := printPayloads(cmd.OutOrStdout(), o.output, payloads); err != nil {
			return err
		}
	}
	return nil
}

func printPayloads(w io.Writer, format string, payloads []json.RawMessage) error {
	if format == "text" {
		for _, p := range payloads {
			if _, err := fmt.Fprintln(w, string(p)); err != nil {
				return err
			}
		}
		return nil
	}
	b, err := json.Marshal(payloads)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// verifiedPayloads checks each signature of the subject on its own, by showing the verifier
// a view of the registry that holds only that one, and returns the payload of each that
// verifies, as cosign prints it: the simple signing payload of a legacy signature; for a
// bundle, cosign's rendering of its in-toto statement in the same shape (type = the
// predicate type, optional = the subject's annotations).
func verifiedPayloads(ctx context.Context, v *verify.Verifier, reg verify.Registry, subj verify.Subject, auth verify.Authority, img name.Digest) ([]json.RawMessage, error) {
	repo := subj.Repository
	if auth.SignaturesRepository != "" {
		repo = auth.SignaturesRepository
	}
	tag := cosign.SignatureTag(subj.Digest)
	var views []*oneSignature
	m, err := reg.Manifest(ctx, repo, tag)
	switch {
	case err == nil:
		var man ocispec.Manifest
		if err := json.Unmarshal(m.Bytes, &man); err == nil {
			for i, l := range man.Layers {
				if l.MediaType == cosign.MediaTypeSimpleSigning {
					views = append(views, &oneSignature{Registry: reg, repo: repo, tag: tag, manifest: m, man: man, layer: i})
				}
			}
		}
	case !errors.Is(err, oci.ErrNotFound):
		return nil, err
	}
	refs, err := reg.Referrers(ctx, repo, subj.Digest)
	if err != nil {
		return nil, err
	}
	for _, d := range refs {
		views = append(views, &oneSignature{Registry: reg, repo: repo, tag: tag, layer: -1, referrer: &d})
	}
	var out []json.RawMessage
	for _, view := range views {
		res, err := v.Verify(ctx, view, subj, []verify.Authority{auth})
		if err != nil || !res.Authorities[0].Verified {
			continue
		}
		p, err := view.payload(ctx, img)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// oneSignature is a view of a registry in which the subject has exactly one signature: one
// layer of the legacy manifest (layer ≥ 0) or one referrer.
type oneSignature struct {
	verify.Registry
	repo, tag string
	manifest  oci.Manifest
	man       ocispec.Manifest
	layer     int
	referrer  *ocispec.Descriptor
}

func (s *oneSignature) Manifest(ctx context.Context, repo, ref string) (oci.Manifest, error) {
	if repo != s.repo || ref != s.tag {
		return s.Registry.Manifest(ctx, repo, ref)
	}
	if s.layer < 0 {
		return oci.Manifest{}, fmt.Errorf("%s: %w", ref, oci.ErrNotFound)
	}
	man := s.man
	man.Layers = []ocispec.Descriptor{s.man.Layers[s.layer]}
	b, err := json.Marshal(man)
	if err != nil {
		return oci.Manifest{}, err
	}
	return oci.NewManifest(b, s.manifest.MediaType, "")
}

func (s *oneSignature) Referrers(ctx context.Context, repo string, d digest.Digest) ([]ocispec.Descriptor, error) {
	if repo != s.repo {
		return s.Registry.Referrers(ctx, repo, d)
	}
	if s.referrer == nil {
		return nil, nil
	}
	return []ocispec.Descriptor{*s.referrer}, nil
}

// payload returns what cosign prints for this (verified) signature.
func (s *oneSignature) payload(ctx context.Context, img name.Digest) (json.RawMessage, error) {
	if s.layer >= 0 {
		b, err := s.Blob(ctx, s.repo, s.man.Layers[s.layer].Digest, verify.DefaultMaxBlobSize)
		if err != nil {
			return nil, err
		}
		return json.RawMessage(b), nil
	}
	m, err := s.Registry.Manifest(ctx, s.repo, s.referrer.Digest.String())
	if err != nil {
		return nil, err
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(m.Bytes, &man); err != nil || len(man.Layers) != 1 {
		return nil, fmt.Errorf("bundle referrer %s: unexpected manifest", s.referrer.Digest)
	}
	raw, err := s.Blob(ctx, s.repo, man.Layers[0].Digest, verify.DefaultMaxBlobSize)
	if err != nil {
		return nil, err
	}
	var pb protobundle.Bundle
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, &pb); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", man.Layers[0].Digest, err)
	}
	var stmt struct {
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Digest      map[string]string `json:"digest"`
			Annotations map[string]any    `json:"annotations"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(pb.GetDsseEnvelope().GetPayload(), &stmt); err != nil {
		return nil, fmt.Errorf("bundle %s: statement: %w", man.Layers[0].Digest, err)
	}
	var optional map[string]any
	h := img.DigestStr()
	for _, sub := range stmt.Subject {
		for alg, hex := range sub.Digest {
			if alg+":"+hex == h && len(sub.Annotations) > 0 {
				optional = sub.Annotations
			}
		}
	}
	out := map[string]any{
		"critical": map[string]any{
			"identity": map[string]string{"docker-reference": img.String()},
			"image":    map[string]string{"docker-manifest-digest": h},
			"type":     stmt.PredicateType,
		},
		"optional": optional,
	}
	b, err := json.Marshal(out)
	return json.RawMessage(b), err
}
