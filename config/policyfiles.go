package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/portcullis/portcullis/policy/cip"
)

// resolvePolicyFiles makes the policyFiles paths and globs absolute against dir.
func (c *Config) resolvePolicyFiles(dir string) {
	for i, p := range c.PolicyFiles {
		if p != "" && !filepath.IsAbs(p) {
			c.PolicyFiles[i] = filepath.Join(dir, p)
		}
	}
}

// loadPolicyFiles reads the policy-controller ClusterImagePolicy files that policyFiles
// names (paths or globs, in order; a glob's files in lexical order, each file once) and
// converts them (package policy/cip) into policies that Policy appends to the inline ones.
// A path that does not exist, or a glob that matches no file, is an error: a policy that
// silently went missing would leave its images to the default policy.
func (c *Config) loadPolicyFiles() error {
	c.filePolicies, c.policyFileNames = nil, nil
	if len(c.PolicyFiles) == 0 {
		return nil
	}
	var (
		errs  []error
		files []cip.File
	)
	for i, pattern := range c.PolicyFiles {
		at := fmt.Sprintf("policyFiles[%d]", i)
		matches, err := filepath.Glob(pattern)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %q: %w", at, pattern, err))
			continue
		case len(matches) == 0 && strings.ContainsAny(pattern, `*?[\`):
			errs = append(errs, fmt.Errorf("%s: %q matches no file", at, pattern))
			continue
		case len(matches) == 0:
			_, err := os.Stat(pattern)
			errs = append(errs, fmt.Errorf("%s: %w", at, err))
			continue
		}
		for _, m := range matches { // sorted by filepath.Glob
			if slices.Contains(c.policyFileNames, m) {
				continue
			}
			b, err := readPolicyFile(m)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", at, err))
				continue
			}
			c.policyFileNames = append(c.policyFileNames, m)
			files = append(files, cip.File{Name: m, Data: b})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var roots []string
	for _, tr := range c.TrustRoots {
		roots = append(roots, tr.Name)
	}
	ps, err := cip.Convert(files, cip.WithTrustRoots(roots...), cip.WithInlinePolicies(c.Policies))
	if err != nil {
		return fmt.Errorf("policyFiles: %w", err)
	}
	c.filePolicies = ps
	return nil
}

// readPolicyFile reads one policy file, at most maxFileSize bytes. It must be a regular file
// (checked before opening it: opening a FIFO would wait for a writer).
func readPolicyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return nil, err
	case fi.IsDir():
		return nil, fmt.Errorf("%s is a directory (use a glob such as %s)", path, filepath.Join(path, "*.yaml"))
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFileSize)
	}
	return b, nil
}
