package verify_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/verify"
)

// TestResultSignatures checks AuthorityResult.Signatures: every signature that verified for
// the authority, where it was found, its format, payload and signer; never one that did not.
func TestResultSignatures(t *testing.T) {
	type wantSig struct {
		format  string
		layer   int
		payload string // exact bytes; "" means the bundle rendering of the case's statement
		bundle  int    // index of the bundle pushed, for bundles
	}
	tests := []struct {
		name string
		// setup pushes signatures of d and returns the statements of the bundles pushed.
		setup func(t *testing.T, u upstream, repo string, d digest.Digest, k, wrong testKey) (legacy [][]byte, bundles []digest.Digest, statements [][]byte)
		auths func(k, wrong testKey) []verify.Authority
		want  [][]wantSig // per authority
	}{
		{
			name: "legacy",
			setup: func(t *testing.T, u upstream, repo string, d digest.Digest, k, wrong testKey) ([][]byte, []digest.Digest, [][]byte) {
				p := simpleSigning(d, `{"env":"prod"}`)
				pushLegacy(t, u.host, repo, d, signedLayer(t, k, p))
				return [][]byte{p}, nil, nil
			},
			auths: func(k, _ testKey) []verify.Authority {
				return []verify.Authority{{Name: "team", Key: k.verifier}}
			},
			want: [][]wantSig{{{format: verify.FormatLegacy, layer: 0, payload: "legacy 0"}}},
		},
		{
			name: "bundle",
			setup: func(t *testing.T, u upstream, repo string, d digest.Digest, k, wrong testKey) ([][]byte, []digest.Digest, [][]byte) {
				st := statement(d, cosign.PredicateTypeSign, `{"env":"prod","n":1}`)
				return nil, []digest.Digest{pushBundle(t, u.host, repo, d, dsseBundle(t, k, st))}, [][]byte{st}
			},
			auths: func(k, _ testKey) []verify.Authority {
				return []verify.Authority{{Name: "team", Key: k.verifier}}
			},
			want: [][]wantSig{{{format: verify.FormatBundle}}},
		},
		{
			name: "two verified, unverified ones not listed",
			setup: func(t *testing.T, u upstream, repo string, d digest.Digest, k, wrong testKey) ([][]byte, []digest.Digest, [][]byte) {
				p0, p1, p2 := simpleSigning(d, `{"n":"0"}`), simpleSigning(d, `{"n":"1"}`), simpleSigning(d, `{"n":"2"}`)
				pushLegacy(t, u.host, repo, d, signedLayer(t, wrong, p0), signedLayer(t, k, p1), signedLayer(t, k, p2))
				st := statement(d, cosign.PredicateTypeSign, "")
				b := pushBundle(t, u.host, repo, d, dsseBundle(t, wrong, st))
				return [][]byte{p0, p1, p2}, []digest.Digest{b}, [][]byte{st}
			},
			auths: func(k, wrong testKey) []verify.Authority {
				return []verify.Authority{
					{Name: "team", Key: k.verifier},
					{Name: "other", Key: wrong.verifier},
					{Name: "wants prod", Key: k.verifier, Annotations: map[string]string{"env": "prod"}},
				}
			},
			want: [][]wantSig{
				{{format: verify.FormatLegacy, layer: 1, payload: "legacy 1"}, {format: verify.FormatLegacy, layer: 2, payload: "legacy 2"}},
				{{format: verify.FormatLegacy, layer: 0, payload: "legacy 0"}, {format: verify.FormatBundle}},
				nil,
			},
		},
	}
	for _, u := range upstreams(t) {
		t.Run(u.name, func(t *testing.T) {
			for i, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					repo := fmt.Sprintf("sigs%d/app", i)
					d := pushImage(t, u.host, repo)
					k, wrong := newKey(t, "p256"), newKey(t, "p256")
					legacy, bundles, statements := tt.setup(t, u, repo, d, k, wrong)
					auths := tt.auths(k, wrong)
					s := verify.Subject{Repository: repo, Digest: d}
					res, err := verify.New().Verify(context.Background(), u.registry(t), s, auths)
					if err != nil {
						t.Fatalf("verify: %v", err)
					}
					for ai, want := range tt.want {
						got := res.Authorities[ai]
						if len(got.Signatures) != len(want) {
							t.Fatalf("authority %q: %d signatures %v, want %d (reason %q)", got.Authority, len(got.Signatures), got.Signatures, len(want), got.Reason)
						}
						if got.Verified != (len(want) > 0) {
							t.Errorf("authority %q: verified = %v with %d signatures", got.Authority, got.Verified, len(want))
						}
						signer := k.keyID(t)
						if auths[ai].Key == wrong.verifier {
							signer = wrong.keyID(t)
						}
						for si, w := range want {
							sig := got.Signatures[si]
							if sig.Format != w.format || sig.Repository != repo || sig.Signer != signer {
								t.Errorf("authority %q signature %d: format %q repository %q signer %q, want %q %q %q",
									got.Authority, si, sig.Format, sig.Repository, sig.Signer, w.format, repo, signer)
							}
							var wantPayload []byte
							switch w.format {
							case verify.FormatLegacy:
								var n int
								fmt.Sscanf(w.payload, "legacy %d", &n)
								wantPayload = legacy[n]
								if sig.Reference != cosign.SignatureTag(d) || sig.Layer != w.layer {
									t.Errorf("signature %d at %s:%s layer %d, want %s layer %d", si, sig.Repository, sig.Reference, sig.Layer, cosign.SignatureTag(d), w.layer)
								}
								if sig.Statement != nil {
									t.Errorf("legacy signature %d has a statement", si)
								}
							default:
								wantPayload = bundleRendering(repo, d, statements[w.bundle])
								if sig.Reference != bundles[w.bundle].String() {
									t.Errorf("signature %d at %s, want the referrer %s", si, sig.Reference, bundles[w.bundle])
								}
								if !bytes.Equal(sig.Statement, statements[w.bundle]) {
									t.Errorf("signature %d statement\n%s\nwant\n%s", si, sig.Statement, statements[w.bundle])
								}
							}
							if !bytes.Equal(sig.Payload, wantPayload) {
								t.Errorf("signature %d payload\n%s\nwant\n%s", si, sig.Payload, wantPayload)
							}
							if sig.Blob.Validate() != nil {
								t.Errorf("signature %d blob %q", si, sig.Blob)
							}
						}
						if got.Verified && (got.Format != got.Signatures[0].Format || got.Signer != got.Signatures[0].Signer) {
							t.Errorf("authority %q: format %q signer %q, not those of its first signature", got.Authority, got.Format, got.Signer)
						}
					}
				})
			}
		})
	}
}

// bundleRendering is what cosign verify prints for the statements written by statement().
func bundleRendering(repo string, d digest.Digest, st []byte) []byte {
	optional := "null"
	if bytes.Contains(st, []byte(`"n":1`)) {
		optional = `{"env":"prod","n":1}`
	}
	return fmt.Appendf(nil, `{"critical":{"identity":{"docker-reference":"%s@%s"},"image":{"docker-manifest-digest":"%s"},"type":%q},"optional":%s}`,
		repo, d, d, cosign.PredicateTypeSign, optional)
}
