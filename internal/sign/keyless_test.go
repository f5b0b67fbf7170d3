package sign_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	prototrustroot "github.com/sigstore/protobuf-specs/gen/pb-go/trustroot/v1"
	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/portcullis/portcullis/internal/sign"
)

func signingConfig(t *testing.T, rekor []root.Service, tsa []root.Service) []byte {
	t.Helper()
	start := time.Now().Add(-time.Hour)
	sc, err := root.NewSigningConfig(root.SigningConfigMediaType02,
		[]root.Service{
			{URL: "https://fulcio.old", MajorAPIVersion: 1, ValidityPeriodStart: start.Add(-48 * time.Hour), ValidityPeriodEnd: start},
			{URL: "https://fulcio.example", MajorAPIVersion: 1, ValidityPeriodStart: start},
		},
		nil,
		rekor, root.ServiceConfiguration{Selector: prototrustroot.ServiceSelector_ANY},
		tsa, root.ServiceConfiguration{Selector: prototrustroot.ServiceSelector_ANY})
	if err != nil {
		t.Fatal(err)
	}
	b, err := sc.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestServicesFromSigningConfig(t *testing.T) {
	start := time.Now().Add(-time.Hour)
	tsa := []root.Service{{URL: "https://tsa.example/api/v1/timestamp", MajorAPIVersion: 1, ValidityPeriodStart: start}}
	rekor2 := []root.Service{{URL: "https://rekor2.example", MajorAPIVersion: 2, ValidityPeriodStart: start}}
	rekor1 := []root.Service{{URL: "https://rekor1.example", MajorAPIVersion: 1, ValidityPeriodStart: start}}
	for _, tc := range []struct {
		name    string
		config  []byte
		want    sign.Services
		wantErr string
	}{
		{"rekor v2 and a tsa", signingConfig(t, rekor2, tsa), sign.Services{Fulcio: "https://fulcio.example",
			Rekor: []sign.Rekor{{URL: "https://rekor2.example", Version: 2}}, TSA: []string{"https://tsa.example/api/v1/timestamp"}}, ""},
		{"rekor v1 only", signingConfig(t, rekor1, nil), sign.Services{Fulcio: "https://fulcio.example",
			Rekor: []sign.Rekor{{URL: "https://rekor1.example", Version: 1}}}, ""},
		{"a tsa only", signingConfig(t, nil, tsa), sign.Services{Fulcio: "https://fulcio.example", TSA: []string{"https://tsa.example/api/v1/timestamp"}}, ""},
		{"no proof of the signing time", signingConfig(t, nil, nil), sign.Services{}, "timestamp authority or a Rekor log"},
		{"not JSON", []byte("{"), sign.Services{}, "signing config"},
		{"a trusted root instead", []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), sign.Services{}, "signing config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sign.ServicesFromSigningConfig(tc.config, time.Now())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNewKeylessRefuses(t *testing.T) {
	ok := sign.Services{Fulcio: "https://fulcio.example", TSA: []string{"https://tsa.example"}}
	for _, tc := range []struct {
		name  string
		token string
		s     sign.Services
		want  string
	}{
		{"no token", "", ok, "identity token"},
		{"no fulcio", "t", sign.Services{TSA: ok.TSA}, "Fulcio URL"},
		{"no time proof", "t", sign.Services{Fulcio: ok.Fulcio}, "10-minute certificate"},
		{"rekor v3", "t", sign.Services{Fulcio: ok.Fulcio, Rekor: []sign.Rekor{{URL: "https://r", Version: 3}}}, "API version 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := sign.NewKeyless(tc.token, tc.s); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// The legacy layout holds no Rekor v2 entry: a keyless legacy signature with a log is refused
// before anything is asked of the services.
func TestKeylessLegacyRefusesRekor(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer srv.Close()
	k, err := sign.NewKeyless("a.b.c", sign.Services{Fulcio: srv.URL, Rekor: []sign.Rekor{{URL: srv.URL, Version: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Legacy(context.Background(), []byte("{}")); err == nil || !strings.Contains(err.Error(), "legacy layout") {
		t.Errorf("error %v, want a refusal of the legacy layout with a log", err)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d requests to the services, want none", n)
	}
}

func TestIdentityToken(t *testing.T) {
	gh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") != "Bearer runner-secret":
			http.Error(w, "no", http.StatusUnauthorized)
		case r.URL.Query().Get("audience") != "sigstore" || r.URL.Query().Get("api-version") != "2.0":
			http.Error(w, "bad audience", http.StatusBadRequest)
		default:
			_, _ = w.Write([]byte(`{"count":1,"value":"gha.jwt.token"}`))
		}
	}))
	defer gh.Close()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("file.jwt.token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ghEnv := map[string]string{sign.EnvGitHubTokenURL: gh.URL + "/token?api-version=2.0", sign.EnvGitHubToken: "runner-secret"}
	for _, tc := range []struct {
		name    string
		flag    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{"flag", "flag.jwt.token", ghEnv, "flag.jwt.token", ""},
		{"flag names a file", file, nil, "file.jwt.token", ""},
		{"SIGSTORE_ID_TOKEN", "", map[string]string{sign.EnvIDToken: "env.jwt.token", sign.EnvGitHubTokenURL: gh.URL}, "env.jwt.token", ""},
		{"github actions", "", ghEnv, "gha.jwt.token", ""},
		{"github actions refuses", "", map[string]string{sign.EnvGitHubTokenURL: gh.URL + "/token?api-version=2.0", sign.EnvGitHubToken: "wrong"}, "", "401"},
		{"nothing", "", nil, "", "needs an OIDC identity token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			got, err := sign.IdentityToken(context.Background(), tc.flag, lookup, gh.Client())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
