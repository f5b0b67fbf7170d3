// Command cimage copies an image with containers/image, the library CRI-O and Podman pull
// with, and prints how long each copy took: the pull-time verifier portcullis is measured
// against (test/bench TestReport). It is a module of its own so that containers/image's
// dependencies stay out of portcullis's go.mod, and it is built with containers/image's
// pure-Go OpenPGP (-tags containers_image_openpgp), as Debian's skopeo has sigstore support
// compiled out.
//
//	cimage -policy policy.json -registries.d DIR -n N docker://HOST/REPO:TAG
//
// Each of the N copies goes to a new, empty directory (dir: transport), so each downloads
// the whole image; the policy (policy.json, e.g. sigstoreSigned with use-sigstore-attachments
// in registries.d) is enforced on every copy. It prints one line per copy: the wall time in
// nanoseconds.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containers/image/v5/copy"
	"github.com/containers/image/v5/directory"
	"github.com/containers/image/v5/docker"
	"github.com/containers/image/v5/signature"
	"github.com/containers/image/v5/types"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cimage:", err)
		os.Exit(1)
	}
}

func run() error {
	policyPath := flag.String("policy", "", "policy.json")
	regD := flag.String("registries.d", "", "registries.d directory")
	n := flag.Int("n", 1, "copies")
	flag.Parse()
	if flag.NArg() != 1 || *policyPath == "" {
		return fmt.Errorf("usage: cimage -policy policy.json [-registries.d DIR] [-n N] docker://HOST/REPO:TAG")
	}
	ref, ok := strings.CutPrefix(flag.Arg(0), "docker:")
	if !ok {
		return fmt.Errorf("%s: not a docker:// reference", flag.Arg(0))
	}
	src, err := docker.ParseReference(ref)
	if err != nil {
		return err
	}
	pol, err := signature.NewPolicyFromFile(*policyPath)
	if err != nil {
		return err
	}
	pc, err := signature.NewPolicyContext(pol)
	if err != nil {
		return err
	}
	defer func() { _ = pc.Destroy() }()
	tmp, err := os.MkdirTemp("", "cimage")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "registries.conf"), nil, 0o644); err != nil { // no search registries, no mirrors
		return err
	}
	sys := &types.SystemContext{
		DockerInsecureSkipTLSVerify: types.OptionalBoolTrue, // plain HTTP on 127.0.0.1
		RegistriesDirPath:           *regD,
		SystemRegistriesConfPath:    filepath.Join(tmp, "registries.conf"), // none
		SignaturePolicyPath:         *policyPath,
	}
	ctx := context.Background()
	for i := range *n {
		dst, err := directory.NewReference(filepath.Join(tmp, fmt.Sprint(i)))
		if err != nil {
			return err
		}
		t0 := time.Now()
		if _, err := copy.Image(ctx, pc, dst, src, &copy.Options{SourceCtx: sys, DestinationCtx: sys}); err != nil {
			return fmt.Errorf("copy %d: %w", i, err)
		}
		fmt.Println(time.Since(t0).Nanoseconds())
		if err := os.RemoveAll(filepath.Join(tmp, fmt.Sprint(i))); err != nil {
			return err
		}
	}
	return nil
}
