package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/sign"
)

// Environment variables of the cosign workflow, with cosign's names.
const (
	envPassword   = "COSIGN_PASSWORD"
	envRepository = "COSIGN_REPOSITORY"
)

// addCosignCommands adds the cosign-compatible signing workflow: generate-key-pair, sign,
// verify, generate, attach, triangulate, clean. Flags and environment variables are cosign's;
// signing is offline (no transparency log, no keyless) for now.
func addCosignCommands(root *cobra.Command) {
	e := &cliEnv{
		lookupEnv: os.LookupEnv,
		stdin:     os.Stdin,
		isTerminal: func() bool {
			return term.IsTerminal(int(os.Stdin.Fd()))
		},
		readPassword: func() ([]byte, error) { return term.ReadPassword(int(os.Stdin.Fd())) },
	}
	root.AddCommand(
		newGenerateKeyPair(e),
		newSign(e),
		newVerify(e),
		newGenerate(e),
		newAttach(e),
		newTriangulate(e),
		newClean(e),
	)
}

// cliEnv is what the cosign commands read from outside: environment and terminal. main builds
// it; nothing else reads os.Getenv or the terminal.
type cliEnv struct {
	lookupEnv    keys.LookupEnv
	stdin        io.Reader
	isTerminal   func() bool
	readPassword func() ([]byte, error)
}

// passFunc returns the password of a private key: COSIGN_PASSWORD when set (even empty), else
// a prompt on the terminal (twice when confirm). It never reads a password from a stdin that
// is not a terminal: in CI, COSIGN_PASSWORD must be set.
func (e *cliEnv) passFunc(errw io.Writer) keys.PassFunc {
	return func(confirm bool) ([]byte, error) {
		if pw, ok := e.lookupEnv(envPassword); ok {
			return []byte(pw), nil
		}
		if !e.isTerminal() {
			return nil, errors.New(envPassword + " is not set and stdin is not a terminal to prompt on: set " + envPassword + " (it may be empty)")
		}
		fmt.Fprint(errw, "Enter password for private key: ")
		pw, err := e.readPassword()
		fmt.Fprintln(errw)
		if err != nil {
			return nil, fmt.Errorf("read password: %w", err)
		}
		if !confirm {
			return pw, nil
		}
		fmt.Fprint(errw, "Enter password for private key again: ")
		again, err := e.readPassword()
		fmt.Fprintln(errw)
		if err != nil {
			return nil, fmt.Errorf("read password: %w", err)
		}
		if !bytes.Equal(pw, again) {
			return nil, errors.New("passwords do not match")
		}
		return pw, nil
	}
}

// confirm asks question on the terminal unless yes; without a terminal and without yes it
// refuses, naming the flag that would have allowed it.
func (e *cliEnv) confirm(errw io.Writer, yes bool, question, flag string) error {
	if yes {
		return nil
	}
	if !e.isTerminal() {
		return fmt.Errorf("%s: stdin is not a terminal to confirm on; pass %s", question, flag)
	}
	fmt.Fprintf(errw, "%s [y/N]: ", question)
	line, err := bufio.NewReader(e.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errors.New("user declined")
}

// registryOptions are cosign's registry flags.
type registryOptions struct {
	allowHTTP     bool
	allowInsecure bool
	username      string
	password      string
	token         string
}

func (o *registryOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.allowHTTP, "allow-http-registry", false, "whether to allow using HTTP protocol while connecting to registries (loopback registries always may)")
	fs.BoolVar(&o.allowInsecure, "allow-insecure-registry", false, "whether to allow insecure connections to registries (e.g., with expired or self-signed TLS certificates); implies --allow-http-registry")
	fs.StringVar(&o.username, "registry-username", "", "registry basic auth username (default: the docker config.json keychain)")
	fs.StringVar(&o.password, "registry-password", "", "registry basic auth password")
	fs.StringVar(&o.token, "registry-token", "", "registry bearer auth token")
}

func (o *registryOptions) nameOpts() []name.Option {
	if o.allowHTTP || o.allowInsecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

func (o *registryOptions) remoteOpts(ctx context.Context) ([]remote.Option, error) {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithUserAgent("portcullis")}
	switch {
	case o.token != "" && (o.username != "" || o.password != ""):
		return nil, errors.New("--registry-token and --registry-username/--registry-password are exclusive")
	case o.token != "":
		opts = append(opts, remote.WithAuth(&authn.Bearer{Token: o.token}))
	case o.username != "" || o.password != "":
		if o.username == "" {
			return nil, errors.New("--registry-password needs --registry-username")
		}
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: o.username, Password: o.password}))
	default:
		opts = append(opts, remote.WithAuthFromKeychain(authn.DefaultKeychain))
	}
	if o.allowInsecure {
		t := remote.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user asked for it by name
		opts = append(opts, remote.WithTransport(t))
	}
	return opts, nil
}

// parseRef parses an image reference as cosign does, with the registry options.
func (o *registryOptions) parseRef(s string) (name.Reference, error) {
	ref, err := name.ParseReference(s, o.nameOpts()...)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %w", s, err)
	}
	return ref, nil
}

// resolveOne parses arg and resolves it to the digest it names now, for commands that act
// on one image; it returns the registry options it used.
func (o *registryOptions) resolveOne(ctx context.Context, arg string) (sign.Target, []remote.Option, error) {
	ref, err := o.parseRef(arg)
	if err != nil {
		return sign.Target{}, nil, err
	}
	ropts, err := o.remoteOpts(ctx)
	if err != nil {
		return sign.Target{}, nil, err
	}
	ts, err := sign.Resolve(ctx, ref, false, ropts...)
	if err != nil {
		return sign.Target{}, nil, err
	}
	return ts[0], ropts, nil
}

// signaturesRepository is COSIGN_REPOSITORY when set, else the zero repository (the image's
// own).
func (e *cliEnv) signaturesRepository(o *registryOptions) (name.Repository, error) {
	v, ok := e.lookupEnv(envRepository)
	if !ok || v == "" {
		return name.Repository{}, nil
	}
	r, err := name.NewRepository(v, o.nameOpts()...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("%s=%q: %w", envRepository, v, err)
	}
	return r, nil
}

// parseAnnotations reads cosign's -a key=value flags.
func parseAnnotations(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("annotation %q is not key=value", kv)
		}
		m[k] = v
	}
	return m, nil
}

// refuseTlog fails when the user asked explicitly for what portcullis cannot do yet.
func refuseTlog(fs *pflag.FlagSet) error {
	for _, f := range []string{"tlog-upload", "use-signing-config"} {
		if fl := fs.Lookup(f); fl != nil && fl.Changed && fl.Value.String() == "true" {
			return fmt.Errorf("--%s=true: portcullis signs offline only (no transparency log, no signing config) for now; pass --%s=false", f, f)
		}
	}
	if fl := fs.Lookup("signing-config"); fl != nil && fl.Value.String() != "" {
		return errors.New("--signing-config: portcullis signs offline only (no transparency log) for now")
	}
	return nil
}

// addTlogFlags accepts cosign's transparency log flags, so that cosign command lines work; only
// the offline values are allowed.
func addTlogFlags(fs *pflag.FlagSet) {
	fs.Bool("tlog-upload", false, "upload to the transparency log: not supported yet, only false is accepted")
	fs.Bool("use-signing-config", false, "use a signing config: not supported yet, only false is accepted")
	fs.String("signing-config", "", "signing config file: not supported yet")
}

// certAliases lets --cert and --cert-chain stand for cosign's --certificate and
// --certificate-chain.
func certAliases(_ *pflag.FlagSet, n string) pflag.NormalizedName {
	switch n {
	case "cert":
		n = "certificate"
	case "cert-chain":
		n = "certificate-chain"
	}
	return pflag.NormalizedName(n)
}
