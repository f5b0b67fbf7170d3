package keyless

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"
)

// issuer is an in-process OpenID Connect issuer on 127.0.0.1 for Fulcio to trust: RS256 ID
// tokens, a discovery document and a JWKS. Each path prefix is an issuer of its own; the
// stack configures two: "/email" (Fulcio type email: the certificate names the e-mail) and
// "/gha" (Fulcio's github-workflow ci-provider: the certificate names the workflow and
// carries the GitHub extensions). It signs whatever it is asked to: tests only.
type issuer struct {
	srv *httptest.Server
	key *rsa.PrivateKey
	kid string
}

func newIssuer() (*issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(key.PublicKey.N.Bytes())
	is := &issuer{key: key, kid: b64(sum[:8])}
	is.srv = httptest.NewServer(http.HandlerFunc(is.serve))
	return is, nil
}

func (is *issuer) close() { is.srv.Close() }

// url is the issuer URL of the issuer named name ("email" or "gha").
func (is *issuer) url(name string) string { return is.srv.URL + "/" + name }

func (is *issuer) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration"):
		iss := is.srv.URL + strings.TrimSuffix(r.URL.Path, "/.well-known/openid-configuration")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                iss,
			"jwks_uri":                              iss + "/jwks",
			"authorization_endpoint":                iss + "/auth",
			"token_endpoint":                        iss + "/token",
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	case strings.HasSuffix(r.URL.Path, "/jwks"):
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]any{
			"kty": "RSA", "alg": "RS256", "use": "sig", "kid": is.kid,
			"n": b64(is.key.PublicKey.N.Bytes()),
			"e": b64(big.NewInt(int64(is.key.PublicKey.E)).Bytes()),
		}}})
	case r.URL.Path == "/actions-token":
		// GitHub Actions' ID token service: the runner's bearer token and an audience.
		if r.Header.Get("Authorization") != "Bearer "+actionsRunnerToken || r.URL.Query().Get("audience") != "sigstore" {
			http.Error(w, `{"message":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"count": 1, "value": is.ghaToken("acme/widget", "refs/heads/main", "release.yml")})
	default:
		http.NotFound(w, r)
	}
}

// actionsRunnerToken is the ACTIONS_ID_TOKEN_REQUEST_TOKEN the issuer's "/actions-token"
// endpoint wants; it answers with a "gha" token for acme/widget's release.yml on main.
const actionsRunnerToken = "runner-secret"

// actionsEnv is the environment GitHub Actions gives a job with "id-token: write".
func (is *issuer) actionsEnv() []string {
	return []string{"ACTIONS_ID_TOKEN_REQUEST_URL=" + is.srv.URL + "/actions-token?api-version=2.0", "ACTIONS_ID_TOKEN_REQUEST_TOKEN=" + actionsRunnerToken}
}

// emailToken is an ID token of the "email" issuer for a verified e-mail address.
func (is *issuer) emailToken(email string) string {
	return is.token("email", map[string]any{"sub": email, "email": email, "email_verified": true})
}

// ghaToken is an ID token of the "gha" issuer as GitHub Actions mints it for a push to ref
// of repo running .github/workflows/<workflow>.
func (is *issuer) ghaToken(repo, ref, workflow string) string {
	owner, _, _ := strings.Cut(repo, "/")
	wf := repo + "/.github/workflows/" + workflow + "@" + ref
	const sha = "0123456789abcdef0123456789abcdef01234567"
	return is.token("gha", map[string]any{
		"sub": "repo:" + repo + ":ref:" + ref, "repository": repo, "repository_owner": owner,
		"repository_id": "123456", "repository_owner_id": "654321", "repository_visibility": "public",
		"ref": ref, "ref_type": "branch", "sha": sha, "workflow": "release", "event_name": "push",
		"job_workflow_ref": wf, "job_workflow_sha": sha, "workflow_ref": wf, "workflow_sha": sha,
		"run_id": "1000", "run_attempt": "1", "runner_environment": "github-hosted",
	})
}

// token signs claims (plus iss, aud "sigstore" and a 10-minute validity) as an RS256 JWT
// of the issuer named name.
func (is *issuer) token(name string, claims map[string]any) string {
	now := time.Now()
	c := map[string]any{"iss": is.url(name), "aud": "sigstore", "iat": now.Unix(),
		"nbf": now.Add(-30 * time.Second).Unix(), "exp": now.Add(10 * time.Minute).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	hdr, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": is.kid})
	body, _ := json.Marshal(c)
	in := b64(hdr) + "." + b64(body)
	h := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, is.key, crypto.SHA256, h[:])
	if err != nil {
		panic(fmt.Sprintf("sign token: %v", err)) // an RSA key of our own: cannot fail
	}
	return in + "." + b64(sig)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
