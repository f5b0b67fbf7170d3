package verify_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/verify"
	"github.com/portcullis/portcullis/verify/oci"
)

// fixture is one test case's world: an upstream, an image D in repo, another image in the
// same repo, and keys.
type fixture struct {
	u      upstream
	repo   string
	d      digest.Digest
	other  digest.Digest
	key    testKey
	wrong  testKey
	faults *faultRegistry
}

func (f fixture) auth(annotations map[string]string) verify.Authority {
	return verify.Authority{Name: "team", Key: f.key.verifier, Annotations: annotations}
}

func (f fixture) legacy(t testing.TB, layers ...legacyLayer) []byte {
	return pushLegacy(t, f.u.host, f.repo, f.d, layers...)
}

func (f fixture) bundle(t testing.TB, b []byte) digest.Digest {
	return pushBundle(t, f.u.host, f.repo, f.d, b)
}

// want is the expected outcome for one authority; reason "" means "don't care" when
// verified, and is matched as a substring otherwise.
type want struct {
	verified bool
	format   string
	reason   string
}

type testCase struct {
	name  string
	opts  []verify.Option
	key   string // key kind, "p256" when empty
	setup func(t *testing.T, f *fixture) []verify.Authority
	// onlyTagSchema restricts a case to registries without the referrers API.
	onlyTagSchema  bool
	wantSignatures int
	want           []want
	wantErr        bool
	// check runs extra assertions.
	check func(t *testing.T, f *fixture, res verify.Result)
}

func str(s string) *string { return &s }

func TestVerify(t *testing.T) {
	cases := []testCase{
		{
			name:  "unsigned",
			setup: func(t *testing.T, f *fixture) []verify.Authority { return []verify.Authority{f.auth(nil)} },
			want:  []want{{reason: "no signatures found"}},
			check: func(t *testing.T, f *fixture, res verify.Result) {
				if got := res.Authorities[0].Reason; got != verify.ReasonNoSignatures {
					t.Errorf("reason = %q, want exactly %q", got, verify.ReasonNoSignatures)
				}
			},
		},
		{
			name: "legacy signed",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.legacy(t, signedLayer(t, f.key, simpleSigning(f.d, "")))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{verified: true, format: "legacy"}},
			check: func(t *testing.T, f *fixture, res verify.Result) {
				if got, w := res.Authorities[0].Signer, f.key.keyID(t); got != w {
					t.Errorf("signer = %q, want %q", got, w)
				}
			},
		},
		legacyKeyCase("p384"),
		legacyKeyCase("rsa"),
		legacyKeyCase("ed25519"),
		legacyKeyCase("ed25519ph"),
		{
			name: "bundle signed",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.bundle(t, dsseBundle(t, f.key, statement(f.d, cosign.PredicateTypeSign, "")))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{verified: true, format: "bundle"}},
			check: func(t *testing.T, f *fixture, res verify.Result) {
				if got, w := res.Authorities[0].Signer, f.key.keyID(t); got != w {
					t.Errorf("signer = %q, want %q", got, w)
				}
			},
		},
		bundleKeyCase("p384"),
		bundleKeyCase("rsa"),
		bundleKeyCase("ed25519"),
		{
			name: "legacy wrong key",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.legacy(t, signedLayer(t, f.wrong, simpleSigning(f.d, "")))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: "found 1 signature: wrong key"}},
		},
		{
			name: "bundle wrong key",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.bundle(t, dsseBundle(t, f.wrong, statement(f.d, cosign.PredicateTypeSign, "")))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: "found 1 signature: wrong key"}},
		},
		{
			name: "legacy signature copied from another digest",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.legacy(t, signedLayer(t, f.key, simpleSigning(f.other, "")))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: "found 1 signature: payload digest mismatch: signed sha256:"}},
		},
		{
			name: "bundle copied from another digest",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.bundle(t, dsseBundle(t, f.key, statement(f.other, cosign.PredicateTypeSign, "")))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: "found 1 signature: statement subject mismatch"}},
		},
		{
			name: "legacy annotations match",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.legacy(t, signedLayer(t, f.key, simpleSigning(f.d, `{"env":"prod","team":"a"}`)))
				return []verify.Authority{f.auth(map[string]string{"env": "prod"})}
			},
			wantSignatures: 1,
			want:           []want{{verified: true, format: "legacy"}},
		},
		{
			name: "legacy annotation mismatch",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.legacy(t, signedLayer(t, f.key, simpleSigning(f.d, `{"env":"prod"}`)))
				return []verify.Authority{f.auth(map[string]string{"env": "dev"})}
			},
			wantSignatures: 1,
			want:           []want{{reason: `found 1 signature: annotation "env" is "prod", want "dev"`}},
		},
		{
			name: "legacy annotation missing",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.legacy(t, signedLayer(t, f.key, simpleSigning(f.d, "")))
				return []verify.Authority{f.auth(map[string]string{"env": "prod"})}
			},
			wantSignatures: 1,
			want:           []want{{reason: `annotation "env" missing`}},
		},
		{
			name: "legacy annotation not a string",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.legacy(t, signedLayer(t, f.key, simpleSigning(f.d, `{"n":1}`)))
				return []verify.Authority{f.auth(map[string]string{"n": "1"})}
			},
			wantSignatures: 1,
			want:           []want{{reason: `annotation "n" is not a string`}},
		},
		{
			name: "legacy annotation spelled in another case",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.legacy(t, signedLayer(t, f.key, simpleSigning(f.d, `{"Env":"prod"}`)))
				return []verify.Authority{f.auth(map[string]string{"env": "prod"})}
			},
			wantSignatures: 1,
			want:           []want{{reason: `member "Env" must be spelled "env"`}},
		},
		{
			name: "bundle annotations match",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.bundle(t, dsseBundle(t, f.key, statement(f.d, cosign.PredicateTypeSign, `{"env":"prod"}`)))
				return []verify.Authority{f.auth(map[string]string{"env": "prod"})}
			},
			wantSignatures: 1,
			want:           []want{{verified: true, format: "bundle"}},
		},
		{
			name: "bundle annotation mismatch",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.bundle(t, dsseBundle(t, f.key, statement(f.d, cosign.PredicateTypeSign, `{"env":"prod"}`)))
				return []verify.Authority{f.auth(map[string]string{"env": "dev"})}
			},
			wantSignatures: 1,
			want:           []want{{reason: `found 1 signature: annotation "env" is "prod", want "dev"`}},
		},
		{
			name: "legacy payload of another type",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				p := strings.Replace(string(simpleSigning(f.d, "")), "cosign container image signature", "atomic container signature", 1)
				f.legacy(t, signedLayer(t, f.key, []byte(p)))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: `payload type "atomic container signature" is not a cosign image signature`}},
		},
		{
			name: "legacy payload with members differing in case",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				p := fmt.Sprintf(`{"Critical":{"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"critical":{"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"}}`, f.other, f.d)
				f.legacy(t, signedLayer(t, f.key, []byte(p)))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: `invalid payload: ambiguous members "Critical" and "critical"`}},
		},
		{
			name: "legacy payload with duplicate digest",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				p := fmt.Sprintf(`{"critical":{"image":{"docker-manifest-digest":%q,"docker-manifest-digest":%q},"type":"cosign container image signature"}}`, f.other, f.d)
				f.legacy(t, signedLayer(t, f.key, []byte(p)))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: `duplicate member "docker-manifest-digest"`}},
		},
		{
			name: "legacy payload with a capitalised member",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				p := fmt.Sprintf(`{"critical":{"image":{"Docker-manifest-digest":%q},"type":"cosign container image signature"}}`, f.d)
				f.legacy(t, signedLayer(t, f.key, []byte(p)))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: `member "Docker-manifest-digest" must be spelled "docker-manifest-digest"`}},
		},
		{
			name: "legacy payload not json",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.legacy(t, signedLayer(t, f.key, []byte(`{"critical":`)))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: "invalid payload: invalid json"}},
		},
		{
			name: "legacy layer without signature",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.legacy(t, legacyLayer{payload: simpleSigning(f.d, "")})
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: "found 1 signature: layer has no signature annotation"}},
		},
		{
			name: "legacy signature not base64",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.legacy(t, legacyLayer{payload: simpleSigning(f.d, ""), sig: str("!!not base64!!")})
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: "signature annotation is not base64"}},
		},
		{
			name: "legacy payload oversized",
			opts: []verify.Option{verify.WithMaxBlobSize(64)},
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.legacy(t, signedLayer(t, f.key, simpleSigning(f.d, "")))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: "exceeds the limit of 64"}},
		},
		{
			name: "legacy manifest with too many layers",
			opts: []verify.Option{verify.WithMaxLayers(2)},
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				l := signedLayer(t, f.key, simpleSigning(f.d, ""))
				f.legacy(t, l, l, l)
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: "has 3 layers, more than the limit of 2"}},
		},
		{
			name: "legacy manifest corrupt",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				tag := cosign.SignatureTag(f.d)
				f.faults.replace = func(ref string) ([]byte, bool) { return []byte("{not json"), ref == tag }
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: "invalid signature manifest"}},
		},
		{
			name: "legacy one good signature among bad ones",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.legacy(t,
					signedLayer(t, f.wrong, simpleSigning(f.d, "")),
					signedLayer(t, f.key, simpleSigning(f.other, "")),
					signedLayer(t, f.key, simpleSigning(f.d, "")))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 3,
			want:           []want{{verified: true, format: "legacy"}},
		},
		{
			name: "every signature bad",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.legacy(t,
					signedLayer(t, f.wrong, simpleSigning(f.d, "")),
					signedLayer(t, f.wrong, simpleSigning(f.d, `{"a":"b"}`)),
					signedLayer(t, f.key, simpleSigning(f.other, "")))
				f.bundle(t, dsseBundle(t, f.wrong, statement(f.d, cosign.PredicateTypeSign, "")))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 4,
			want:           []want{{reason: "found 4 signatures: wrong key (3 signatures), payload digest mismatch: signed sha256:"}},
		},
		{
			name: "attestation is not a signature",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.bundle(t, dsseBundle(t, f.key, statement(f.d, "https://slsa.dev/provenance/v0.2", "")))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 0,
			want:           []want{{reason: "no signatures found; ignored 1 attestation(s) with predicate type https://slsa.dev/provenance/v0.2 (not a signature)"}},
		},
		{
			name: "message signature bundle",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				m, err := f.u.registry(t).Manifest(context.Background(), f.repo, f.d.String())
				if err != nil {
					t.Fatal(err)
				}
				f.bundle(t, messageBundle(t, f.key, m.Bytes))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: "bundle holds a bare message signature"}},
		},
		{
			name: "bundle not json",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.bundle(t, []byte(`{"mediaType":`))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: "found 1 signature: invalid bundle"}},
		},
		{
			name: "bundle oversized",
			opts: []verify.Option{verify.WithMaxBlobSize(100)},
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.bundle(t, dsseBundle(t, f.key, statement(f.d, cosign.PredicateTypeSign, "")))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: "exceeds the limit of 100"}},
		},
		{
			name: "bundle statement with duplicate predicate type",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				st := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":%q}}],"predicateType":%q,"predicateType":"https://slsa.dev/provenance/v1","predicate":{}}`,
					f.d.Encoded(), cosign.PredicateTypeSign)
				f.bundle(t, dsseBundle(t, f.key, []byte(st)))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: `invalid statement: duplicate member "predicateType"`}},
		},
		{
			name: "bundle statement subject spelled in another case",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				st := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","Subject":[{"digest":{"sha256":%q}}],"predicateType":%q,"predicate":{}}`,
					f.d.Encoded(), cosign.PredicateTypeSign)
				f.bundle(t, dsseBundle(t, f.key, []byte(st)))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: `member "Subject" must be spelled "subject"`}},
		},
		{
			name: "too many referrers",
			opts: []verify.Option{verify.WithMaxReferrers(1)},
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.bundle(t, dsseBundle(t, f.wrong, statement(f.d, cosign.PredicateTypeSign, "")))
				f.bundle(t, dsseBundle(t, f.wrong, statement(f.d, cosign.PredicateTypeSign, `{"a":"b"}`)))
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: "found 1 signature: wrong key; only the first 1 of 2 bundle referrers were inspected"}},
		},
		{
			name: "signatures repository",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				pushLegacy(t, f.u.host, "sigs/"+f.repo, f.d, signedLayer(t, f.key, simpleSigning(f.d, "")))
				pushBundle(t, f.u.host, "sigs/"+f.repo, f.d, dsseBundle(t, f.key, statement(f.d, cosign.PredicateTypeSign, "")))
				elsewhere := f.auth(nil)
				elsewhere.SignaturesRepository = "sigs/" + f.repo
				return []verify.Authority{elsewhere, f.auth(nil)}
			},
			wantSignatures: 2,
			want:           []want{{verified: true, format: "legacy"}, {reason: "no signatures found"}},
		},
		{
			name: "only the signatures repository is read",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.legacy(t, signedLayer(t, f.key, simpleSigning(f.d, "")))
				f.faults.referrers = errors.New("unexpected status code 503 Service Unavailable")
				elsewhere := f.auth(nil)
				elsewhere.SignaturesRepository = "sigs/" + f.repo
				return []verify.Authority{elsewhere}
			},
			wantSignatures: 0,
			want:           []want{{reason: "no signatures found; look up referrers"}},
			wantErr:        true,
			check: func(t *testing.T, f *fixture, res verify.Result) {
				if got := f.faults.calls["referrers"]; got != 1 {
					t.Errorf("referrers lookups = %d, want 1 (the signatures repository only)", got)
				}
			},
		},
		{
			name: "several authorities, one lookup",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.bundle(t, dsseBundle(t, f.key, statement(f.d, cosign.PredicateTypeSign, `{"env":"prod"}`)))
				return []verify.Authority{
					{Name: "other", Key: f.wrong.verifier},
					f.auth(map[string]string{"env": "prod"}),
					{Name: "keyless"},
				}
			},
			wantSignatures: 1,
			want: []want{
				{reason: "found 1 signature: wrong key"},
				{verified: true, format: "bundle"},
				{reason: "authority has no key"},
			},
			check: func(t *testing.T, f *fixture, res verify.Result) {
				if got := f.faults.calls["referrers"]; got != 1 {
					t.Errorf("referrers lookups = %d, want 1", got)
				}
				if got := res.Authorities[0].Authority; got != "other" {
					t.Errorf("authority 0 = %q, want %q", got, "other")
				}
			},
		},
		{
			// The failed lookup might have hidden "other"'s signature: with require all it
			// must not become a verdict, so the error is returned with the result.
			name: "referrers lookup fails, one of two authorities verifies",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.legacy(t, signedLayer(t, f.key, simpleSigning(f.d, "")))
				f.faults.referrers = errors.New("unexpected status code 503 Service Unavailable")
				return []verify.Authority{f.auth(nil), {Name: "other", Key: f.wrong.verifier}}
			},
			wantSignatures: 1,
			want: []want{
				{verified: true, format: "legacy"},
				{reason: "found 1 signature: wrong key; look up referrers of sha256:"},
			},
			wantErr: true,
		},
		{
			name: "referrers lookup fails but the only authority verifies",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.legacy(t, signedLayer(t, f.key, simpleSigning(f.d, "")))
				f.faults.referrers = errors.New("unexpected status code 503 Service Unavailable")
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{verified: true, format: "legacy"}},
		},
		{
			name: "referrers lookup fails and nothing verifies",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.faults.referrers = errors.New("unexpected status code 503 Service Unavailable")
				return []verify.Authority{f.auth(nil)}
			},
			want:    []want{{reason: "no signatures found; look up referrers of sha256:"}},
			wantErr: true,
		},
		{
			name: "legacy tag lookup fails",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.faults.manifest = func(ref string) error {
					if strings.HasSuffix(ref, ".sig") {
						return context.DeadlineExceeded
					}
					return nil
				}
				return []verify.Authority{f.auth(nil)}
			},
			want:    []want{{reason: "look up legacy signature tag"}},
			wantErr: true,
		},
		{
			name: "payload fetch fails",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.legacy(t, signedLayer(t, f.key, simpleSigning(f.d, "")))
				f.faults.blob = func(digest.Digest) error { return errors.New("connection reset by peer") }
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: "found 1 signature: payload could not be fetched; look up signature payload"}},
			wantErr:        true,
		},
		{
			name: "payload blob missing",
			setup: func(t *testing.T, f *fixture) []verify.Authority {
				f.legacy(t, signedLayer(t, f.key, simpleSigning(f.d, "")))
				f.faults.blob = func(d digest.Digest) error { return fmt.Errorf("blob %s: %w", d, oci.ErrNotFound) }
				return []verify.Authority{f.auth(nil)}
			},
			wantSignatures: 1,
			want:           []want{{reason: "found 1 signature: payload blob missing"}},
		},
	}

	for _, u := range upstreams(t) {
		t.Run(u.name, func(t *testing.T) {
			for i, tc := range cases {
				if tc.onlyTagSchema && u.referrersAPI {
					continue
				}
				t.Run(tc.name, func(t *testing.T) {
					kind := tc.key
					if kind == "" {
						kind = "p256"
					}
					repo := fmt.Sprintf("case%d/app", i)
					f := &fixture{
						u:     u,
						repo:  repo,
						d:     pushImage(t, u.host, repo),
						other: pushImage(t, u.host, repo),
						key:   newKey(t, kind),
						wrong: newKey(t, kind),
					}
					f.faults = &faultRegistry{Registry: u.registry(t)}
					auths := tc.setup(t, f)
					f.faults.calls = nil

					res, err := verify.New(tc.opts...).Verify(context.Background(), f.faults, verify.Subject{Repository: repo, Digest: f.d}, auths)
					assertResult(t, res, err, tc.wantSignatures, tc.want, tc.wantErr)
					if tc.check != nil {
						tc.check(t, f, res)
					}
				})
			}
		})
	}
}

func legacyKeyCase(kind string) testCase {
	return testCase{
		name: "legacy signed " + kind,
		key:  kind,
		setup: func(t *testing.T, f *fixture) []verify.Authority {
			f.legacy(t, signedLayer(t, f.key, simpleSigning(f.d, "")))
			return []verify.Authority{f.auth(nil)}
		},
		wantSignatures: 1,
		want:           []want{{verified: true, format: "legacy"}},
	}
}

func bundleKeyCase(kind string) testCase {
	return testCase{
		name: "bundle signed " + kind,
		key:  kind,
		setup: func(t *testing.T, f *fixture) []verify.Authority {
			f.bundle(t, dsseBundle(t, f.key, statement(f.d, cosign.PredicateTypeSign, "")))
			return []verify.Authority{f.auth(nil)}
		},
		wantSignatures: 1,
		want:           []want{{verified: true, format: "bundle"}},
	}
}

func assertResult(t *testing.T, res verify.Result, err error, wantSignatures int, wants []want, wantErr bool) {
	t.Helper()
	t.Logf("result %+v, error %v", res, err)
	if wantErr {
		var le *verify.LookupError
		if !errors.As(err, &le) {
			t.Errorf("error = %v, want a *verify.LookupError", err)
		}
	} else if err != nil {
		t.Errorf("error = %v, want none", err)
	}
	if res.Signatures != wantSignatures {
		t.Errorf("signatures = %d, want %d", res.Signatures, wantSignatures)
	}
	if len(res.Authorities) != len(wants) {
		t.Fatalf("got %d authority results, want %d: %+v", len(res.Authorities), len(wants), res.Authorities)
	}
	for i, w := range wants {
		got := res.Authorities[i]
		if got.Verified != w.verified {
			t.Errorf("authority %d: verified = %v (reason %q), want %v", i, got.Verified, got.Reason, w.verified)
		}
		if w.verified {
			if got.Format != w.format {
				t.Errorf("authority %d: format = %q, want %q", i, got.Format, w.format)
			}
			if !strings.HasPrefix(got.Signer, "key sha256:") {
				t.Errorf("authority %d: signer = %q, want a key id", i, got.Signer)
			}
			continue
		}
		if !strings.Contains(got.Reason, w.reason) {
			t.Errorf("authority %d: reason = %q, want it to contain %q", i, got.Reason, w.reason)
		}
		if got.Signer != "" || got.Format != "" {
			t.Errorf("authority %d: signer %q, format %q on a failure", i, got.Signer, got.Format)
		}
	}
}

// TestReferrersListingHint checks that the artifactType a referrers listing shows is a hint:
// GHCR and cosign v2 list bundles with none or the empty type; a listed subject the manifest
// contradicts is rejected. It writes the referrers tag schema index by hand, so it runs on
// distribution only.
func TestReferrersListingHint(t *testing.T) {
	u := newDistribution(t)
	tests := []struct {
		name         string
		artifactType string
		subjectOther bool
		wantVerified bool
		wantReason   string
	}{
		{name: "listed as bundle", artifactType: cosign.MediaTypeSigstoreBundle, wantVerified: true},
		{name: "listed without type", artifactType: "", wantVerified: true},
		{name: "listed as empty", artifactType: oci.MediaTypeEmptyJSON, wantVerified: true},
		{name: "listed as something else", artifactType: "application/spdx+json", wantReason: "no signatures found"},
		{name: "manifest names another subject", artifactType: cosign.MediaTypeSigstoreBundle, subjectOther: true, wantReason: "bundle manifest subject mismatch"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := fmt.Sprintf("hint%d/app", i)
			d := pushImage(t, u.host, repo)
			other := pushImage(t, u.host, repo)
			k := newKey(t, "p256")
			pushBlob(t, u.host, repo, oci.MediaTypeEmptyJSON, []byte("{}"))
			b := pushBlob(t, u.host, repo, cosign.MediaTypeSigstoreBundle, dsseBundle(t, k, statement(d, cosign.PredicateTypeSign, "")))
			subject := d
			if tt.subjectOther {
				subject = other
			}
			mb := bundleManifest(t, subject, b)
			md := putManifest(t, u.host, repo, "", oci.MediaTypeOCIManifest, mb)
			idx := mustJSON(t, ocispec.Index{
				Versioned: specs.Versioned{SchemaVersion: 2},
				MediaType: oci.MediaTypeOCIIndex,
				Manifests: []ocispec.Descriptor{{MediaType: oci.MediaTypeOCIManifest, Digest: md, Size: int64(len(mb)), ArtifactType: tt.artifactType}},
			})
			putManifest(t, u.host, repo, cosign.ReferrersTag(d), oci.MediaTypeOCIIndex, idx)

			res, err := verify.New().Verify(context.Background(), u.registry(t), verify.Subject{Repository: repo, Digest: d},
				[]verify.Authority{{Name: "team", Key: k.verifier}})
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			got := res.Authorities[0]
			if got.Verified != tt.wantVerified || !strings.Contains(got.Reason, tt.wantReason) {
				t.Errorf("got verified %v reason %q, want verified %v reason containing %q", got.Verified, got.Reason, tt.wantVerified, tt.wantReason)
			}
		})
	}
}

func TestVerifyArguments(t *testing.T) {
	tests := []struct {
		name string
		s    verify.Subject
	}{
		{name: "invalid digest", s: verify.Subject{Repository: "a", Digest: "sha256:nothex"}},
		{name: "empty repository", s: verify.Subject{Digest: digest.FromString("x")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := verify.New().Verify(context.Background(), upstream{host: "127.0.0.1:9"}.registry(t), tt.s, nil)
			if err == nil {
				t.Fatal("got no error")
			}
		})
	}
}

func TestNewRejectsInvalidOptions(t *testing.T) {
	tests := []struct {
		name string
		opt  verify.Option
	}{
		{"nil logger", verify.WithLogger(nil)},
		{"zero referrers", verify.WithMaxReferrers(0)},
		{"zero layers", verify.WithMaxLayers(0)},
		{"negative blob size", verify.WithMaxBlobSize(-1)},
		{"zero concurrency", verify.WithConcurrency(0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("New did not panic")
				}
			}()
			verify.New(tt.opt)
		})
	}
}
