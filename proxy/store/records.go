package store

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/verify/oci"
)

// What the proxy remembers so that it can keep serving while an upstream fails
// (stale-if-error): which digest a tag last had, and that a manifest was admitted. They live
// in the store, next to the content they describe, so that every replica sharing the store
// (and a restarted one) knows them. Both are small JSON documents, each written whole (the
// driver's PutContent is atomic), so that a reader sees a whole one or the previous one.
//
//	/repositories/<upstream>/<repo>/_tags/<tag>                 (TagRecord)
//	/repositories/<upstream>/<repo>/_admitted/<alg>/<hex>       (Admission)

// TagRecord is what a tag last resolved to, as verified with the upstream.
type TagRecord struct {
	// Digest is the digest portcullis computed from the manifest the tag named.
	Digest digest.Digest `json:"digest"`
	// VerifiedAt is when the upstream last said the tag had Digest.
	VerifiedAt time.Time `json:"verifiedAt"`
}

// Admission records that the Gate admitted a manifest for a repository.
type Admission struct {
	// PolicyVersion is the version of the policies that admitted it.
	PolicyVersion string `json:"policyVersion"`
	// DecidedAt is when the decision was made (with the signatures then found).
	DecidedAt time.Time `json:"decidedAt"`
}

// maxRecordSize caps a record read back (they are a few hundred bytes).
const maxRecordSize = 4 << 10

func tagPath(upstream, repo, tag string) string {
	return path.Join("/repositories", strings.ReplaceAll(upstream, ":", "_"), repo, "_tags", tag)
}

// PutTag records what tag of repo resolved to.
func (s *Store) PutTag(ctx context.Context, upstream, repo, tag string, r TagRecord) error {
	if err := r.Digest.Validate(); err != nil {
		return fmt.Errorf("tag record %s:%s: %w", repo, tag, err)
	}
	return s.putRecord(ctx, tagPath(upstream, repo, tag), r)
}

// Tag returns what PutTag recorded for tag of repo; oci.ErrNotFound when nothing was.
func (s *Store) Tag(ctx context.Context, upstream, repo, tag string) (TagRecord, error) {
	var r TagRecord
	if err := s.getRecord(ctx, tagPath(upstream, repo, tag), &r); err != nil {
		return r, fmt.Errorf("tag record %s:%s: %w", repo, tag, err)
	}
	if err := r.Digest.Validate(); err != nil {
		return r, fmt.Errorf("tag record %s:%s: %w", repo, tag, err)
	}
	return r, nil
}

// PutAdmission records that manifest d was admitted for repo.
func (s *Store) PutAdmission(ctx context.Context, upstream, repo string, d digest.Digest, a Admission) error {
	return s.putRecord(ctx, linkPath(upstream, repo, "_admitted", d), a)
}

// Admission returns what PutAdmission recorded for d in repo; oci.ErrNotFound when nothing
// was.
func (s *Store) Admission(ctx context.Context, upstream, repo string, d digest.Digest) (Admission, error) {
	var a Admission
	if err := s.getRecord(ctx, linkPath(upstream, repo, "_admitted", d), &a); err != nil {
		return a, fmt.Errorf("admission of %s@%s: %w", repo, d, err)
	}
	return a, nil
}

func (s *Store) putRecord(ctx context.Context, p string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := s.driver.PutContent(ctx, p, b); err != nil {
		return fmt.Errorf("content store: %w", err)
	}
	return nil
}

func (s *Store) getRecord(ctx context.Context, p string, v any) error {
	b, err := s.driver.GetContent(ctx, p)
	if isNotFound(err) {
		return oci.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("content store: %w", err)
	}
	if len(b) > maxRecordSize {
		return fmt.Errorf("content store: record %s is %d bytes, over %d", p, len(b), maxRecordSize)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("content store: record %s: %w", p, err)
	}
	return nil
}
