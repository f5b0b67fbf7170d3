package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/cli"
	"github.com/portcullis/portcullis/verify"
)

// testEnv is an Env over buffers and a map, without a terminal.
func testEnv(vars map[string]string) (cli.Env, *bytes.Buffer, *bytes.Buffer) {
	var out, errw bytes.Buffer
	return cli.Env{
		LookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
		Stdin:     strings.NewReader(""),
		Stdout:    &out,
		Stderr:    &errw,
	}, &out, &errw
}

// TestSignVerify signs an image in both formats, with annotations, and verifies: one payload
// per format, the summary on stderr, and the failures a person can act on.
func TestSignVerify(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e, _, _ := testEnv(map[string]string{cli.EnvPassword: "pw"})
	prefix := filepath.Join(dir, "k")
	if err := cli.GenerateKeyPair(ctx, e, cli.KeyPairOptions{Prefix: prefix}); err != nil {
		t.Fatal(err)
	}
	img := pushImage(t, newRegistry(t), "demo/app").String()
	for _, bundle := range []bool{true, false} {
		o := cli.SignOptions{Key: prefix + ".key", Annotations: []string{"env=prod"}, Upload: true, NewBundleFormat: bundle}
		if err := cli.Sign(ctx, e, o, []string{img}); err != nil {
			t.Fatalf("sign (bundle %v): %v", bundle, err)
		}
	}
	ve, out, errw := testEnv(nil)
	if err := cli.Verify(ctx, ve, cli.VerifyOptions{Key: prefix + ".pub", IgnoreTlog: true, Annotations: []string{"env=prod"}}, []string{img}); err != nil {
		t.Fatalf("verify: %v\n%s", err, errw)
	}
	var ps []map[string]any
	if err := json.Unmarshal(out.Bytes(), &ps); err != nil || len(ps) != 2 {
		t.Fatalf("verify printed %q (%v), want a JSON array of 2 payloads", out, err)
	}
	for _, p := range ps {
		if got := p["optional"].(map[string]any)["env"]; got != "prod" {
			t.Errorf("payload %v: optional.env = %v, want prod", p, got)
		}
	}
	if !strings.Contains(errw.String(), "The specified annotations were verified.") {
		t.Errorf("no summary on stderr:\n%s", errw)
	}

	for _, tc := range []struct {
		name string
		o    cli.VerifyOptions
		want string
	}{
		{"wrong annotation", cli.VerifyOptions{Key: prefix + ".pub", IgnoreTlog: true, Annotations: []string{"env=dev"}}, `annotation "env"`},
		{"no key", cli.VerifyOptions{IgnoreTlog: true}, "--certificate-identity or --certificate-identity-regexp is required"},
		{"tlog", cli.VerifyOptions{Key: prefix + ".pub"}, "--insecure-ignore-tlog"},
		{"output", cli.VerifyOptions{Key: prefix + ".pub", IgnoreTlog: true, Output: "yaml"}, "want json or text"},
		{"bad annotation", cli.VerifyOptions{Key: prefix + ".pub", IgnoreTlog: true, Annotations: []string{"x"}}, "not key=value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _, _ := testEnv(nil)
			err := cli.Verify(ctx, e, tc.o, []string{img})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestSignRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    cli.SignOptions
		env  map[string]string
		want string
	}{
		{"tlog upload with a key", cli.SignOptions{Key: "k", Keyless: cli.KeylessOptions{TlogUpload: true}}, nil, "with --key"},
		{"signing config with a key", cli.SignOptions{Key: "k", Keyless: cli.KeylessOptions{SigningConfig: "x"}}, nil, "with --key"},
		{"certificate without a key", cli.SignOptions{Cert: "c"}, nil, "--certificate needs --key"},
		{"keyless without Fulcio", cli.SignOptions{Keyless: cli.KeylessOptions{IdentityToken: "t"}}, nil, "Fulcio URL"},
		{"keyless without a proof of time", cli.SignOptions{Keyless: cli.KeylessOptions{IdentityToken: "t", FulcioURL: "http://127.0.0.1:1"}}, nil, "timestamp authority or a Rekor log"},
		{"keyless without a token", cli.SignOptions{Keyless: cli.KeylessOptions{FulcioURL: "http://127.0.0.1:1", TimestampServerURL: "http://127.0.0.1:1"}}, nil, "identity token"},
		{"signing config and URLs", cli.SignOptions{Keyless: cli.KeylessOptions{SigningConfig: "x", FulcioURL: "http://127.0.0.1:1"}}, nil, "cannot specify service URLs"},
		{"signing config over TUF", cli.SignOptions{Keyless: cli.KeylessOptions{UseSigningConfig: true}}, nil, "TUF"},
		{"tlog upload without Rekor", cli.SignOptions{Keyless: cli.KeylessOptions{TlogUpload: true, FulcioURL: "http://127.0.0.1:1", TimestampServerURL: "http://127.0.0.1:1"}}, nil, "needs --rekor-url"},
		{"bad signing config", cli.SignOptions{Keyless: cli.KeylessOptions{SigningConfig: "/nonexistent/signing_config.json"}}, nil, "signing config"},
		{"payload with bundle", cli.SignOptions{Key: "k", Payload: "p", NewBundleFormat: true}, nil, "--new-bundle-format=false"},
		{"chain without cert", cli.SignOptions{Key: "k", CertChain: "c"}, nil, "needs --certificate"},
		{"bad repository", cli.SignOptions{Key: "k"}, map[string]string{cli.EnvRepository: "Not A Repo"}, cli.EnvRepository},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _, _ := testEnv(tc.env)
			err := cli.Sign(context.Background(), e, tc.o, []string{"127.0.0.1:1/x:v1"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestPrintSignatures(t *testing.T) {
	sigs := []verify.Signature{{Payload: []byte(`{"a":1}`)}, {Payload: []byte(`{"b":"<"}`)}}
	for _, tc := range []struct{ format, want string }{
		{"json", `[{"a":1},{"b":"\u003c"}]` + "\n"},
		{"text", `{"a":1}` + "\n" + `{"b":"<"}` + "\n"},
	} {
		var b bytes.Buffer
		if err := cli.PrintSignatures(&b, tc.format, sigs); err != nil {
			t.Fatal(err)
		}
		if b.String() != tc.want {
			t.Errorf("%s: got %q, want %q", tc.format, b.String(), tc.want)
		}
	}
}

func TestParseAnnotations(t *testing.T) {
	for _, tc := range []struct {
		in      []string
		want    map[string]string
		wantErr bool
	}{
		{nil, nil, false},
		{[]string{"a=b", "c=d=e", "f="}, map[string]string{"a": "b", "c": "d=e", "f": ""}, false},
		{[]string{"=b"}, nil, true},
		{[]string{"ab"}, nil, true},
	} {
		got, err := cli.ParseAnnotations(tc.in)
		if (err != nil) != tc.wantErr || len(got) != len(tc.want) {
			t.Errorf("ParseAnnotations(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("ParseAnnotations(%q)[%q] = %q, want %q", tc.in, k, got[k], v)
			}
		}
	}
}
