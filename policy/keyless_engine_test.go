package policy_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
	"github.com/portcullis/portcullis/verify/trustroot"
)

// memRegistry is an in-memory verify.Registry holding one image's bundle referrers.
type memRegistry struct {
	manifests map[string][]byte
	blobs     map[digest.Digest][]byte
	referrers []ocispec.Descriptor
}

func (m *memRegistry) Manifest(_ context.Context, _, ref string) (oci.Manifest, error) {
	b, ok := m.manifests[ref]
	if !ok {
		return oci.Manifest{}, fmt.Errorf("manifest %s: %w", ref, oci.ErrNotFound)
	}
	return oci.NewManifest(b, oci.MediaTypeOCIManifest, "")
}

func (m *memRegistry) Blob(_ context.Context, _ string, d digest.Digest, _ int64) ([]byte, error) {
	b, ok := m.blobs[d]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", d, oci.ErrNotFound)
	}
	return b, nil
}

func (m *memRegistry) Referrers(context.Context, string, digest.Digest) ([]ocispec.Descriptor, error) {
	return m.referrers, nil
}

// signKeyless stores a cosign v3 keyless signature of d by subject (a TSA timestamp, no log
// entry) made with vs.
func (m *memRegistry) signKeyless(t *testing.T, vs *ca.VirtualSigstore, d digest.Digest, subject string) {
	t.Helper()
	stmt := fmt.Appendf(nil, `{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":%q}}],"predicateType":%q,"predicate":{}}`,
		d.Encoded(), cosign.PredicateTypeSign)
	e, err := vs.Attest(subject, "https://accounts.google.com", stmt)
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := e.VerificationContent()
	sc, _ := e.SignatureContent()
	ts, _ := e.Timestamps()
	env := sc.EnvelopeContent().RawEnvelope()
	sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	b, err := protojson.Marshal(&protobundle.Bundle{
		MediaType: cosign.MediaTypeSigstoreBundle,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content:                   &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
			TimestampVerificationData: &protobundle.TimestampVerificationData{Rfc3161Timestamps: []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: ts[0]}}},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{Payload: stmt, PayloadType: env.PayloadType, Signatures: []*protodsse.Signature{{Sig: sig}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	bd := digest.FromBytes(b)
	m.blobs[bd] = b
	man, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": oci.MediaTypeOCIManifest, "artifactType": cosign.MediaTypeSigstoreBundle,
		"config":  map[string]any{"mediaType": oci.MediaTypeEmptyJSON, "size": 2, "digest": digest.FromString("{}")},
		"layers":  []any{ocispec.Descriptor{MediaType: cosign.MediaTypeSigstoreBundle, Digest: bd, Size: int64(len(b))}},
		"subject": map[string]any{"mediaType": oci.MediaTypeOCIManifest, "size": 10, "digest": d},
	})
	md := digest.FromBytes(man)
	m.manifests[md.String()] = man
	m.referrers = append(m.referrers, ocispec.Descriptor{MediaType: oci.MediaTypeOCIManifest, Digest: md, Size: int64(len(man))})
}

// TestEngineKeyless runs the Engine with the real verifier on keyless signatures: the
// decision, the audit line and the denial name the signer and what did not match.
func TestEngineKeyless(t *testing.T) {
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), vs.CTLogs(), vs.TimestampingAuthorities(), vs.RekorLogs())
	if err != nil {
		t.Fatal(err)
	}
	trJSON, _ := tr.MarshalJSON()
	file := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(file, trJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	zero, one := 0, 1
	cfg := policy.Config{
		TrustRoots: []trustroot.Config{{Name: "corp", TrustedRootFile: file}},
		Policies: []policy.PolicyConfig{{
			Name: "k8s", Images: []string{"registry.k8s.io/**"},
			Authorities: []policy.AuthorityConfig{{
				Name: "krel",
				Keyless: &policy.KeylessConfig{TrustRoot: "corp", Identities: []policy.IdentityConfig{{
					Issuer: "https://accounts.google.com", SubjectRegExp: `^krel-(trust|staging)@k8s-releng-prod\.iam\.gserviceaccount\.com$`,
				}}},
				Tlog: &policy.ThresholdConfig{Threshold: &zero}, Timestamps: &policy.ThresholdConfig{Threshold: &one},
				CTLog: &policy.ThresholdConfig{Threshold: &zero},
			}},
		}},
	}
	var logs bytes.Buffer
	engine := policy.NewEngine(compile(t, cfg), verify.New(), newCache(t), policy.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))

	for _, tt := range []struct {
		name, subject string
		want          string // a substring of the signer (allowed) or of the denial
		allowed       bool
	}{
		{"the release identity", "krel-trust@k8s-releng-prod.iam.gserviceaccount.com", `krel (krel-trust@k8s-releng-prod.iam.gserviceaccount.com (issuer https://accounts.google.com))`, true},
		{"another identity", "mallory@example.com", `no signature verified by authority "krel" (found 1 signature: mallory@example.com (issuer https://accounts.google.com): subject mallory@example.com does not match ^krel-(trust|staging)@k8s-releng-prod\.iam\.gserviceaccount\.com$)`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logs.Reset()
			reg := &memRegistry{manifests: map[string][]byte{}, blobs: map[digest.Digest][]byte{}}
			m := imageManifest(t, tt.name)
			reg.signKeyless(t, vs, m.Digest, tt.subject)
			d, err := engine.Admit(context.Background(), policy.Request{Image: "registry.k8s.io/pause", Repository: "pause", Manifest: m, Registry: reg})
			if tt.allowed {
				if err != nil || !d.Allowed || len(d.Signers) != 1 || d.Signers[0] != tt.want {
					t.Fatalf("Admit = %+v, %v; want allowed, signed by %q", d, err, tt.want)
				}
			} else {
				var deny *policy.DenyError
				if !errors.As(err, &deny) || !strings.Contains(deny.Error(), tt.want) {
					t.Fatalf("Admit error %v, want a denial containing %q", err, tt.want)
				}
			}
			// The audit line says the same.
			var line map[string]any
			if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
				t.Fatalf("audit line %q: %v", logs.String(), err)
			}
			if got := fmt.Sprint(line["reason"], line["signers"]); !strings.Contains(got, tt.subject+" (issuer https://accounts.google.com)") {
				t.Errorf("audit line %s does not name the signer %s", logs.String(), tt.subject)
			}
		})
	}
}
