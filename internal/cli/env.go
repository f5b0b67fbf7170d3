package cli

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/portcullis/portcullis/internal/keys"
)

// Environment variables of the cosign workflow, with cosign's names.
const (
	EnvPassword   = "COSIGN_PASSWORD"
	EnvRepository = "COSIGN_REPOSITORY"
)

// Env is what the commands read from and write to outside: the standard streams, the
// environment and the terminal. cmd/portcullis builds it from the process; tests build it
// from buffers and maps.
type Env struct {
	// LookupEnv reads an environment variable (COSIGN_PASSWORD, COSIGN_REPOSITORY, env:// keys).
	LookupEnv keys.LookupEnv
	Stdin     io.Reader
	// Stdout receives the commands' results (verified payloads, payloads, locations);
	// Stderr their messages.
	Stdout, Stderr io.Writer
	// IsTerminal reports whether Stdin is a terminal to prompt on.
	IsTerminal func() bool
	// ReadPassword reads a password from the terminal without echo.
	ReadPassword func() ([]byte, error)
}

// passFunc returns the password of a private key: COSIGN_PASSWORD when set (even empty), else
// a prompt on the terminal (twice when confirm). It never reads a password from a stdin that
// is not a terminal: in CI, COSIGN_PASSWORD must be set.
func (e Env) passFunc() keys.PassFunc {
	return func(confirm bool) ([]byte, error) {
		if pw, ok := e.LookupEnv(EnvPassword); ok {
			return []byte(pw), nil
		}
		if e.IsTerminal == nil || !e.IsTerminal() {
			return nil, errors.New(EnvPassword + " is not set and stdin is not a terminal to prompt on: set " + EnvPassword + " (it may be empty)")
		}
		fmt.Fprint(e.Stderr, "Enter password for private key: ")
		pw, err := e.ReadPassword()
		fmt.Fprintln(e.Stderr)
		if err != nil {
			return nil, fmt.Errorf("read password: %w", err)
		}
		if !confirm {
			return pw, nil
		}
		fmt.Fprint(e.Stderr, "Enter password for private key again: ")
		again, err := e.ReadPassword()
		fmt.Fprintln(e.Stderr)
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
func (e Env) confirm(yes bool, question, flag string) error {
	if yes {
		return nil
	}
	if e.IsTerminal == nil || !e.IsTerminal() {
		return fmt.Errorf("%s: stdin is not a terminal to confirm on; pass %s", question, flag)
	}
	fmt.Fprintf(e.Stderr, "%s [y/N]: ", question)
	line, err := bufio.NewReader(e.Stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errors.New("user declined")
}

// signaturesRepository is COSIGN_REPOSITORY when set, else the zero repository (the image's
// own).
func (e Env) signaturesRepository(o RegistryOptions) (name.Repository, error) {
	v, ok := e.LookupEnv(EnvRepository)
	if !ok || v == "" {
		return name.Repository{}, nil
	}
	r, err := name.NewRepository(v, o.nameOpts()...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("%s=%q: %w", EnvRepository, v, err)
	}
	return r, nil
}

// ParseAnnotations reads cosign's -a key=value flags.
func ParseAnnotations(kvs []string) (map[string]string, error) {
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
