package trustroot

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
)

// MaxTrustedRootSize bounds a trusted_root.json read from a file or a TUF repository. The
// public-good one is about 10 KiB.
const MaxTrustedRootSize = 4 << 20

// Root is one trust root as it is at one moment: immutable, safe for concurrent use.
type Root struct {
	name     string
	material *root.TrustedRoot
	digest   string
	source   string
	fetched  time.Time
}

// Name is the trust root's configured name.
func (r *Root) Name() string { return r.name }

// Material is the trusted material sigstore-go verifies against.
func (r *Root) Material() root.TrustedMaterial { return r.material }

// Digest is "sha256:<hex>" of the trusted_root.json bytes: what the policy version hashes, so
// that a new root gives new decisions.
func (r *Root) Digest() string { return r.digest }

// Source says where the root came from: "file /etc/…/trusted_root.json" or
// "tuf https://…".
func (r *Root) Source() string { return r.source }

// Fetched is when the bytes were read (from the file, the TUF repository or its cache).
func (r *Root) Fetched() time.Time { return r.fetched }

// Parse reads a trusted_root.json document for the trust root called name.
func Parse(name, source string, b []byte, fetched time.Time) (*Root, error) {
	if len(b) > MaxTrustedRootSize {
		return nil, fmt.Errorf("trusted root of %d bytes exceeds %d", len(b), MaxTrustedRootSize)
	}
	tr, err := root.NewTrustedRootFromJSON(b)
	if err != nil {
		return nil, fmt.Errorf("parse trusted root: %w", err)
	}
	sum := sha256.Sum256(b)
	return &Root{name: name, material: tr, digest: "sha256:" + hex.EncodeToString(sum[:]), source: source, fetched: fetched}, nil
}

// LoadFile reads the trusted_root.json file at path for the trust root called name.
func LoadFile(name, path string, now time.Time) (*Root, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxTrustedRootSize+1))
	if err != nil {
		return nil, err
	}
	r, err := Parse(name, "file "+path, b, now)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}
