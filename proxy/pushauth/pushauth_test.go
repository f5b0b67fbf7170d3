package pushauth_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/proxy/pushauth"
)

func newPushers(t *testing.T) *pushauth.Pushers {
	t.Helper()
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	p, err := pushauth.New(pushauth.Config{
		Htpasswd:    "htpasswd",
		Users:       []pushauth.User{{Name: "ci", Images: []string{"docker.io/myorg/**"}}},
		PassThrough: pushauth.PassThrough{Images: []string{"docker.io/myorg/scratch/**"}, Allow: "any"},
	}, []byte("# comment\nci:"+string(hash)+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAuthenticate(t *testing.T) {
	p := newPushers(t)
	for _, tc := range []struct {
		name, user, pass string
		basic            bool
		want             string
		wantErr          bool
	}{
		{name: "no credentials"},
		{name: "empty user name", basic: true, pass: "pw"},
		{name: "right password", basic: true, user: "ci", pass: "pw", want: "ci"},
		{name: "right password again (remembered)", basic: true, user: "ci", pass: "pw", want: "ci"},
		{name: "wrong password", basic: true, user: "ci", pass: "nope", wantErr: true},
		{name: "unknown user", basic: true, user: "eve", pass: "pw", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "http://portcullis/v2/", nil)
			if tc.basic {
				r.SetBasicAuth(tc.user, tc.pass)
			}
			got, err := p.Authenticate(r)
			if got != tc.want || (err != nil) != tc.wantErr || (tc.wantErr && !errors.Is(err, pushauth.ErrBadCredentials)) {
				t.Fatalf("Authenticate = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestGrants(t *testing.T) {
	p := newPushers(t)
	for _, tc := range []struct {
		user, image   string
		push, passThr bool
	}{
		{"ci", "docker.io/myorg/app", true, false},
		{"ci", "docker.io/myorg/scratch/tmp", true, true},
		{"ci", "docker.io/other/app", false, false},
		{"eve", "docker.io/myorg/app", false, false},
	} {
		if got := p.MayPush(tc.user, tc.image); got != tc.push {
			t.Errorf("MayPush(%s, %s) = %v, want %v", tc.user, tc.image, got, tc.push)
		}
		if got := p.PlainPush(tc.image); got != tc.passThr {
			t.Errorf("PlainPush(%s) = %v, want %v", tc.image, got, tc.passThr)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, htpasswd, want string
		users                []pushauth.User
	}{
		{"not bcrypt", "ci:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "only bcrypt", nil},
		{"not user:hash", "ci\n", "not user:hash", nil},
		{"user not in the file", "", "not in the htpasswd file", []pushauth.User{{Name: "ci", Images: []string{"a.io/**"}}}},
		{"user without images", "", "at least one image glob", []pushauth.User{{Name: "ci"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pushauth.New(pushauth.Config{Htpasswd: "htpasswd", Users: tc.users}, []byte(tc.htpasswd))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
