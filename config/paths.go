package config

import (
	"path/filepath"
	"slices"
	"strings"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verify/trustroot"
)

// resolvePaths makes the file paths the configuration names absolute against dir, the
// configuration file's directory (whether they came from the file or the environment):
// tls.cert and tls.key, storage.params.rootdirectory (filesystem) and .secretkeyfile (s3), push.htpasswd,
// upstreams[].auth.passwordFile, policies[].authorities[].key.path, the certificate
// authorities' roots and intermediates (when files, not PEM data), the cueFile and regoFile of
// attestation requirements (policies[].attestations[] and policies[].authorities[].attestations[]),
// cache.redis.passwordFile and .tls.caFile, trustRoots[].trustedRootFile,
// trustRoots[].tuf.root (unless "embedded") and trustRoots[].tuf.cacheDir.
func (c *Config) resolvePaths(dir string) {
	ps := c.paths()
	for i := range c.TrustRoots {
		if t := c.TrustRoots[i].TUF; t != nil {
			ps = append(ps, &t.CacheDir)
		}
	}
	for _, p := range ps {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if c.Storage.Driver == "filesystem" {
		if root, ok := c.Storage.Params["rootdirectory"].(string); ok && root != "" && !filepath.IsAbs(root) {
			c.Storage.Params["rootdirectory"] = filepath.Join(dir, root)
		}
	}
	if c.Storage.Driver == "s3" {
		if f, ok := c.Storage.Params["secretkeyfile"].(string); ok && f != "" && !filepath.IsAbs(f) {
			c.Storage.Params["secretkeyfile"] = filepath.Join(dir, f)
		}
	}
}

// paths returns pointers to every file path of the configuration but the storage root.
func (c *Config) paths() []*string {
	ps := []*string{&c.TLS.Cert, &c.TLS.Key, &c.Push.Htpasswd}
	if r := c.Cache.Redis; r != nil {
		ps = append(ps, &r.PasswordFile, &r.TLS.CAFile)
	}
	for i := range c.Upstreams {
		if a := c.Upstreams[i].Auth; a != nil {
			ps = append(ps, &a.PasswordFile)
		}
	}
	for i := range c.Policies {
		for j := range c.Policies[i].Authorities {
			a := &c.Policies[i].Authorities[j]
			ps = append(ps, &a.Key.Path)
			if cert := a.Certificate; cert != nil {
				for _, p := range []*string{&cert.Roots, &cert.Intermediates} {
					if !strings.HasPrefix(strings.TrimSpace(*p), "-----BEGIN") {
						ps = append(ps, p)
					}
				}
			}
			ps = append(ps, predicatePolicyFiles(a.Attestations)...)
		}
		ps = append(ps, predicatePolicyFiles(c.Policies[i].Attestations)...)
	}
	for i := range c.TrustRoots {
		tr := &c.TrustRoots[i]
		ps = append(ps, &tr.TrustedRootFile)
		if tr.TUF != nil && tr.TUF.Root != trustroot.RootEmbedded {
			ps = append(ps, &tr.TUF.Root)
		}
	}
	return ps
}

// predicatePolicyFiles returns pointers to the cueFile and regoFile of each attestation
// requirement in list.
func predicatePolicyFiles(list []policy.AttestationConfig) []*string {
	var ps []*string
	for k := range list {
		if p := list[k].Policy; p != nil {
			ps = append(ps, &p.CUEFile, &p.RegoFile)
		}
	}
	return ps
}

// Files returns the files the configuration names whose content it depends on (keys,
// certificate roots, trusted_root.json files, htpasswd, password files, TLS certificate and
// key), sorted and without duplicates: a
// change to any of them needs a reload, as a change to the configuration file does.
func (c *Config) Files() []string {
	var out []string
	for _, p := range c.paths() {
		if *p != "" {
			out = append(out, *p)
		}
	}
	out = append(out, c.policyFileNames...)
	slices.Sort(out)
	return slices.Compact(out)
}
