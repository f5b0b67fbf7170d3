package pushauth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/policy"
)

// Config opens portcullis to pushes of signatures. Without an htpasswd file the proxy is
// read-only. The config package maps the file's "push:" section into it.
type Config struct {
	// Htpasswd is a file of "user:bcrypt-hash" lines (htpasswd -B).
	Htpasswd string `mapstructure:"htpasswd"`
	// Realm is the Basic authentication realm. Default "portcullis".
	Realm string `mapstructure:"realm"`
	// Users grant each user the images ("upstream/repository" globs, as policies use) it may
	// push signatures for, and resolve while they are still unsigned.
	Users []User `mapstructure:"users"`
	// PassThrough opts images into plain push-through: any manifest and blob, not only
	// signatures, by users granted the image. Off by default.
	PassThrough PassThrough `mapstructure:"passThrough"`
}

// User is one user's grant.
type User struct {
	Name   string   `mapstructure:"name"`
	Images []string `mapstructure:"images"`
}

// PassThrough lists the images that accept any push.
type PassThrough struct {
	Images []string `mapstructure:"images"`
	// Allow is "any" for plain push-through; "signatures" (the default) is what every
	// granted image accepts anyway.
	Allow string `mapstructure:"allow"`
}

// Validate checks c; field names in errors are relative to the "push" section.
func (c Config) Validate() error {
	var errs []error
	if c.Htpasswd == "" && (len(c.Users) > 0 || len(c.PassThrough.Images) > 0) {
		errs = append(errs, errors.New("htpasswd: must be set to accept pushes"))
	}
	seen := map[string]bool{}
	for i, u := range c.Users {
		if u.Name == "" || strings.Contains(u.Name, ":") {
			errs = append(errs, fmt.Errorf("users[%d].name: %q is not an htpasswd user name", i, u.Name))
		}
		if seen[u.Name] {
			errs = append(errs, fmt.Errorf("users[%d].name: %q is listed twice", i, u.Name))
		}
		seen[u.Name] = true
		if len(u.Images) == 0 {
			errs = append(errs, fmt.Errorf("users[%d].images: at least one image glob", i))
		}
		for j, g := range u.Images {
			if _, err := policy.CompileGlob(g); err != nil {
				errs = append(errs, fmt.Errorf("users[%d].images[%d]: %w", i, j, err))
			}
		}
	}
	for j, g := range c.PassThrough.Images {
		if _, err := policy.CompileGlob(g); err != nil {
			errs = append(errs, fmt.Errorf("passThrough.images[%d]: %w", j, err))
		}
	}
	switch c.PassThrough.Allow {
	case "", "signatures", "any":
	default:
		errs = append(errs, fmt.Errorf("passThrough.allow: %q is not signatures or any", c.PassThrough.Allow))
	}
	return errors.Join(errs...)
}

// Pushers authenticates users (HTTP Basic against an htpasswd file) and says what they may
// push.
type Pushers struct {
	realm  string
	hashes map[string][]byte
	grants map[string][]policy.Glob
	plain  []policy.Glob
	// ok remembers recently verified credentials, so that bcrypt runs once per client and
	// not once per request.
	ok *expirable.LRU[[32]byte, string]
	// decoy is compared against for unknown users, so that names cannot be probed by timing.
	decoy []byte
}

// New compiles c with the htpasswd file's content.
func New(c Config, htpasswd []byte) (*Pushers, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	p := &Pushers{realm: c.Realm, hashes: map[string][]byte{}, grants: map[string][]policy.Glob{},
		ok: expirable.NewLRU[[32]byte, string](1024, nil, 5*time.Minute)}
	if p.realm == "" {
		p.realm = "portcullis"
	}
	decoy, err := bcrypt.GenerateFromPassword([]byte("decoy"), bcrypt.DefaultCost)
	if err != nil {
		return nil, err
	}
	p.decoy = decoy
	sc := bufio.NewScanner(bytes.NewReader(htpasswd))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("htpasswd line %d: not user:hash", n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("htpasswd line %d (%s): only bcrypt hashes are accepted (htpasswd -B): %w", n, user, err)
		}
		p.hashes[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("htpasswd: %w", err)
	}
	for i, u := range c.Users {
		if _, ok := p.hashes[u.Name]; !ok {
			return nil, fmt.Errorf("users[%d].name: %q is not in the htpasswd file", i, u.Name)
		}
		for _, g := range u.Images {
			cg, _ := policy.CompileGlob(g)
			p.grants[u.Name] = append(p.grants[u.Name], cg)
		}
	}
	if c.PassThrough.Allow == "any" {
		for _, g := range c.PassThrough.Images {
			cg, _ := policy.CompileGlob(g)
			p.plain = append(p.plain, cg)
		}
	}
	return p, nil
}

// ErrBadCredentials is answered 401 UNAUTHORIZED.
var ErrBadCredentials = errors.New("invalid username or password")

// Authenticate returns the user a request authenticates as: "" without credentials (an
// empty Basic username counts as none), ErrBadCredentials for wrong ones.
func (p *Pushers) Authenticate(r *http.Request) (string, error) {
	user, pass, ok := r.BasicAuth()
	if !ok || user == "" {
		return "", nil
	}
	key := sha256.Sum256([]byte(user + "\x00" + pass))
	if u, hit := p.ok.Get(key); hit {
		return u, nil
	}
	hash, known := p.hashes[user]
	if !known {
		// Spend the same time as for a known user, so that names cannot be probed.
		_ = bcrypt.CompareHashAndPassword(p.decoy, []byte(pass))
		return "", ErrBadCredentials
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return "", ErrBadCredentials
	}
	p.ok.Add(key, user)
	return user, nil
}

// MayPush reports whether user may push signatures for image.
func (p *Pushers) MayPush(user, image string) bool {
	for _, g := range p.grants[user] {
		if g.Match(image) {
			return true
		}
	}
	return false
}

// PlainPush reports whether image accepts any push (from a user granted it).
func (p *Pushers) PlainPush(image string) bool {
	for _, g := range p.plain {
		if g.Match(image) {
			return true
		}
	}
	return false
}

// Challenge asks the client to authenticate, as Docker's registry auth conventions say.
func (p *Pushers) Challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf("Basic realm=%q", p.realm))
}
