package sign_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/portcullis/portcullis/internal/cosign"
	"github.com/portcullis/portcullis/internal/sign"
	"github.com/portcullis/portcullis/internal/testtool"
)

// TestNewAttestation: the statement cosign attest writes — one subject naming the repository
// and the digest, the predicate type, and the predicate as given (compacted), or cosign's
// wrapping for its custom type and SPDX tag-value; bad predicates are refused.
func TestNewAttestation(t *testing.T) {
	img, err := name.NewDigest("registry.example/team/app@sha256:" + strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC)
	for _, tc := range []struct {
		name, typ, predicate string
		ann                  map[string]string
		want                 string // the predicate's JSON; "" when refused
		wantErr              string
	}{
		{name: "json object", typ: cosign.PredicateTypeSLSAProvenance1, predicate: "{\n \"a\": [1, 2]\n}\n", want: `{"a":[1,2]}`},
		{name: "annotations", typ: cosign.PredicateTypeOpenVEX, predicate: `{}`, ann: map[string]string{"team": "a"}, want: `{}`},
		{name: "custom wraps", typ: cosign.PredicateTypeCustom, predicate: "free text", want: `{"Data":"free text","Timestamp":"2026-11-30T01:02:03Z"}`},
		{name: "spdx tag-value", typ: cosign.PredicateTypeSPDX, predicate: "SPDXVersion: SPDX-2.3\n", want: `"SPDXVersion: SPDX-2.3\n"`},
		{name: "not an object", typ: cosign.PredicateTypeSLSAProvenance1, predicate: `[1]`, wantErr: "must be a JSON object"},
		{name: "not json", typ: cosign.PredicateTypeCycloneDX, predicate: `{"a":`, wantErr: "not valid JSON"},
		{name: "empty", typ: cosign.PredicateTypeVuln, predicate: " \n", wantErr: "empty"},
		{name: "too large", typ: cosign.PredicateTypeLink, predicate: `{"a":"` + strings.Repeat("x", sign.MaxPredicateSize) + `"}`, wantErr: "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			att, err := sign.NewAttestation(img, tc.typ, []byte(tc.predicate), tc.ann, now)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var st struct {
				Type    string `json:"_type"`
				Subject []struct {
					Name        string            `json:"name"`
					Digest      map[string]string `json:"digest"`
					Annotations map[string]string `json:"annotations"`
				} `json:"subject"`
				PredicateType string          `json:"predicateType"`
				Predicate     json.RawMessage `json:"predicate"`
			}
			if err := json.Unmarshal(att.Statement, &st); err != nil {
				t.Fatal(err)
			}
			if st.Type != cosign.StatementTypeInToto || st.PredicateType != tc.typ || att.PredicateType != tc.typ {
				t.Errorf("_type %q predicateType %q (%q), want %q %q", st.Type, st.PredicateType, att.PredicateType, cosign.StatementTypeInToto, tc.typ)
			}
			if len(st.Subject) != 1 || st.Subject[0].Name != "registry.example/team/app" || st.Subject[0].Digest["sha256"] != strings.Repeat("ab", 32) {
				t.Errorf("subject %+v, want the repository and the digest", st.Subject)
			}
			if len(tc.ann) > 0 && st.Subject[0].Annotations["team"] != "a" {
				t.Errorf("subject annotations %v, want %v", st.Subject[0].Annotations, tc.ann)
			}
			if string(st.Predicate) != tc.want {
				t.Errorf("predicate %s, want %s", st.Predicate, tc.want)
			}
		})
	}
}

// TestAttachAttestationChecksSubject: an envelope about another digest is not attached, and
// an envelope that is not an in-toto DSSE envelope is refused; nothing is pushed.
func TestAttachAttestationChecksSubject(t *testing.T) {
	ctx := context.Background()
	host := newRegistry(t, false)
	sv, _, _ := keyPair(t, t.TempDir())
	push := func(repo string) name.Digest {
		ref, _ := name.ParseReference(host + "/" + repo + ":v1")
		img := testtool.RandomImage(t, 64, 1)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		return ref.Context().Digest(d.String())
	}
	a, b := push("a"), push("b")
	att, err := sign.NewAttestation(a, cosign.PredicateTypeSLSAProvenance1, []byte(`{}`), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	env, err := att.Envelope(ctx, sv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sign.AttachAttestation(ctx, b, name.Repository{}, env, nil, false); err == nil || !strings.Contains(err.Error(), "not the image's digest") {
		t.Errorf("attached an attestation about %s to %s: err %v", a.DigestStr(), b.DigestStr(), err)
	}
	if _, err := sign.AttachAttestation(ctx, a, name.Repository{}, []byte(`{"payloadType":"text/plain","payload":"","signatures":[{"sig":""}]}`), nil, false); err == nil || !strings.Contains(err.Error(), "payload type") {
		t.Errorf("attached a non in-toto envelope: err %v", err)
	}
	tags, err := remote.List(b.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(tags) != 1 {
		t.Errorf("tags %v after refused attaches, want only v1", tags)
	}
	if _, err := sign.AttachAttestation(ctx, a, name.Repository{}, env, nil, false); err != nil {
		t.Errorf("attach of a's own attestation: %v", err)
	}
}
