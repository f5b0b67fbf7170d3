package sign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// Environment variables IdentityToken reads.
const (
	// EnvIDToken holds an OIDC identity token (cosign's SIGSTORE_ID_TOKEN).
	EnvIDToken = "SIGSTORE_ID_TOKEN"
	// EnvGitHubTokenURL and EnvGitHubToken are set by GitHub Actions in a job with
	// "permissions: id-token: write": where and with what to ask for an ID token.
	EnvGitHubTokenURL = "ACTIONS_ID_TOKEN_REQUEST_URL"
	EnvGitHubToken    = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
)

// maxTokenResponse bounds what is read from GitHub's token endpoint or a token file.
const maxTokenResponse = 1 << 20

// IdentityToken returns the OIDC identity token for keyless signing, from the first source
// that has one, as cosign finds it:
//   - flag (--identity-token): the token, or the path of a file holding it;
//   - $SIGSTORE_ID_TOKEN;
//   - GitHub Actions' ambient token: $ACTIONS_ID_TOKEN_REQUEST_URL asked with
//     $ACTIONS_ID_TOKEN_REQUEST_TOKEN for the audience "sigstore", through client.
//
// There is no interactive (browser) flow.
func IdentityToken(ctx context.Context, flag string, lookupEnv func(string) (string, bool), client *http.Client) (string, error) {
	if flag != "" {
		if fi, err := os.Stat(flag); err == nil && fi.Mode().IsRegular() {
			if fi.Size() > maxTokenResponse {
				return "", fmt.Errorf("identity token file %s: larger than %d bytes", flag, maxTokenResponse)
			}
			b, err := os.ReadFile(flag)
			if err != nil {
				return "", fmt.Errorf("identity token file: %w", err)
			}
			return strings.TrimSpace(string(b)), nil
		}
		return flag, nil
	}
	if v, ok := lookupEnv(EnvIDToken); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v), nil
	}
	u, okURL := lookupEnv(EnvGitHubTokenURL)
	bearer, okTok := lookupEnv(EnvGitHubToken)
	if okURL && okTok && u != "" && bearer != "" {
		return gitHubToken(ctx, client, u, bearer)
	}
	return "", errors.New("keyless signing needs an OIDC identity token: --identity-token, $" + EnvIDToken +
		", or GitHub Actions' ambient token (a job with permissions: id-token: write)")
}

// gitHubToken asks GitHub Actions' token service for an ID token whose audience is sigstore.
func gitHubToken(ctx context.Context, client *http.Client, rawURL, bearer string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("$%s: %w", EnvGitHubTokenURL, err)
	}
	q := u.Query()
	q.Set("audience", "sigstore")
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("github actions id token: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse))
	if err != nil {
		return "", fmt.Errorf("github actions id token: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("github actions id token: %s", resp.Status)
	}
	var tok struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.Value == "" {
		return "", errors.New("github actions id token: the answer holds no token")
	}
	return tok.Value, nil
}
