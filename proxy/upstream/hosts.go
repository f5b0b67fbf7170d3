package upstream

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// hostRE is a DNS name (optionally "*." and a domain, for any host under that domain) or an
// IPv4 address; IPv6 addresses are checked with net.ParseIP.
var hostRE = regexp.MustCompile(`^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)

// hostPattern is one host a Client may connect to. An empty port means the default port of
// the request's scheme (443 for https, 80 for http); a wildcard matches every host strictly
// under domain ("*.quay.io" matches "cdn01.quay.io", not "quay.io").
type hostPattern struct {
	host     string // lowercase hostname, or the domain of a wildcard; IPv6 without brackets
	port     string
	wildcard bool
}

// parseHostPattern parses an allowedHosts entry: host[:port], *.domain[:port], an IPv4
// address[:port] or a bracketed IPv6 address[:port]; nothing else (no scheme, path, user,
// query).
func parseHostPattern(s string) (hostPattern, error) {
	if s == "" {
		return hostPattern{}, errors.New("empty host")
	}
	if strings.ContainsAny(s, "/?#@ \t") || strings.Contains(s, "://") {
		return hostPattern{}, fmt.Errorf("%q is not a host[:port] (no scheme, path or user)", s)
	}
	host, port := strings.ToLower(s), ""
	if h, p, err := net.SplitHostPort(host); err == nil {
		host, port = h, p
		if n, ok := parsePort(p); !ok || n == 0 {
			return hostPattern{}, fmt.Errorf("%q has an invalid port", s)
		}
	} else if strings.HasPrefix(host, "[") || strings.Count(host, ":") == 1 {
		if h, ok := strings.CutPrefix(host, "["); ok && strings.HasSuffix(h, "]") {
			host = strings.TrimSuffix(h, "]")
		} else {
			return hostPattern{}, fmt.Errorf("%q is not a host[:port]", s)
		}
	}
	if ip := net.ParseIP(host); ip != nil {
		if strings.Contains(host, ":") && !strings.HasPrefix(s, "[") {
			return hostPattern{}, fmt.Errorf("%q: write an IPv6 address in brackets, [%s]", s, host)
		}
		return hostPattern{host: normalizeHost(host), port: port}, nil
	}
	if !hostRE.MatchString(host) || len(host) > 253 {
		return hostPattern{}, fmt.Errorf("%q is not a host name (letters, digits, dots, hyphens; *.domain for any host under domain)", s)
	}
	if d, ok := strings.CutPrefix(host, "*."); ok {
		if !strings.Contains(d, ".") {
			return hostPattern{}, fmt.Errorf("%q: a wildcard needs a domain with a dot, like *.example.com", s)
		}
		return hostPattern{host: d, port: port, wildcard: true}, nil
	}
	return hostPattern{host: host, port: port}, nil
}

// normalizeHost lowercases a hostname, drops a final dot and spells an IP address the one
// way net.IP does.
func normalizeHost(h string) string {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if ip := net.ParseIP(h); ip != nil {
		return ip.String()
	}
	return h
}

func parsePort(p string) (int, bool) {
	if p == "" || len(p) > 5 {
		return 0, false
	}
	n := 0
	for _, c := range p {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n <= 65535
}

func (p hostPattern) matches(host, port, scheme string) bool {
	want := p.port
	if want == "" {
		want = defaultPort(scheme)
	}
	if port != want {
		return false
	}
	if p.wildcard {
		return strings.HasSuffix(host, "."+p.host)
	}
	return host == p.host
}

func (p hostPattern) String() string {
	h := p.host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if p.wildcard {
		h = "*." + h
	}
	if p.port != "" {
		h += ":" + p.port
	}
	return h
}

func defaultPort(scheme string) string {
	if scheme == "http" {
		return "80"
	}
	return "443"
}

// hostPolicy is where one upstream's Client may connect: the upstream's own host and its
// allowedHosts, over https, or also plain http when the upstream is insecure.
type hostPolicy struct {
	upstream string        // the configured upstream's name, for errors
	hosts    []hostPattern // the upstream's URL host first, then allowedHosts
	insecure bool
	any      bool // Config.AnyHostUnsafe: every host is allowed
}

func newHostPolicy(name string, base *url.URL, insecure bool, allowed []string) (*hostPolicy, error) {
	own := hostPattern{host: normalizeHost(base.Hostname()), port: base.Port()}
	p := &hostPolicy{upstream: name, hosts: []hostPattern{own}, insecure: insecure}
	for i, a := range allowed {
		hp, err := parseHostPattern(a)
		if err != nil {
			return nil, fmt.Errorf("allowedHosts[%d]: %w", i, err)
		}
		p.hosts = append(p.hosts, hp)
	}
	return p, nil
}

// check returns nil when u may be requested, a *ForeignHostError otherwise. what says what
// led there ("redirect", "token realm", …) for the error.
func (p *hostPolicy) check(u *url.URL, what string) error {
	scheme := strings.ToLower(u.Scheme)
	switch scheme {
	case "https":
	case "http":
		if !p.insecure {
			return &ForeignHostError{Upstream: p.upstream, Host: printable(u.Host), What: what, PlainHTTP: true}
		}
	default:
		return &ForeignHostError{Upstream: p.upstream, Host: printable(u.Scheme + "://" + u.Host), What: what}
	}
	if p.any {
		return nil
	}
	host, port := normalizeHost(u.Hostname()), u.Port()
	if port == "" {
		port = defaultPort(scheme)
	}
	for _, hp := range p.hosts {
		if hp.matches(host, port, scheme) {
			return nil
		}
	}
	return &ForeignHostError{Upstream: p.upstream, Host: printable(u.Host), What: what}
}

// own reports whether u is on the upstream's own host (under any scheme).
func (p *hostPolicy) own(u *url.URL) bool {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		port = defaultPort(scheme)
	}
	return p.hosts[0].matches(normalizeHost(u.Hostname()), port, scheme)
}

// ForeignHostError means the upstream sent portcullis (by a redirect, a token realm, an
// upload location, a pagination link) to a host that is neither the upstream nor one of its
// allowedHosts, or to plain http for an upstream that is not insecure. Nothing was sent
// there: the request was refused before any connection.
type ForeignHostError struct {
	Upstream string
	// Host is the refused host[:port], as the upstream named it (printable ASCII only).
	Host string
	// What led there: "request", "redirect", "token realm".
	What string
	// PlainHTTP is set when the host may be allowed but not over plain http.
	PlainHTTP bool
}

func (e *ForeignHostError) Error() string {
	if e.PlainHTTP {
		return fmt.Sprintf("upstream %s: refusing %s to %s over plain http: the upstream is not insecure", e.Upstream, e.What, e.Host)
	}
	return fmt.Sprintf("upstream %s: refusing %s to %s: neither the upstream nor one of its allowedHosts", e.Upstream, e.What, e.Host)
}

// printable keeps at most 256 bytes of s and replaces anything but printable ASCII, so that
// text chosen by a hostile upstream (a host name, an error message) can be quoted in an
// error and a log line.
func printable(s string) string {
	if len(s) > 256 {
		s = s[:256] + "..."
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}

// hostGuard is the innermost round tripper of a Client: every request it sends (the /v2/
// handshake, token fetches, redirects followed by any http.Client, uploads, pagination)
// reaches the network through it, and it refuses any whose URL the hostPolicy does not
// allow, before a connection is made.
type hostGuard struct {
	policy *hostPolicy
	next   http.RoundTripper
}

func (g *hostGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	what := "request"
	if req.Response != nil { // made by an http.Client following a redirect
		what = "redirect"
	}
	if err := g.policy.check(req.URL, what); err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		var fh *ForeignHostError
		if errors.As(err, &fh) && fh.PlainHTTP && req.Response == nil && g.policy.own(req.URL) {
			// go-containerregistry's handshake tries plain http too for hosts that look
			// local (127.0.0.1, localhost, private addresses). Not a hostile upstream's
			// doing: refused, but not reported as one.
			return nil, fmt.Errorf("upstream %s is served over https: plain http not tried", g.policy.upstream)
		}
		return nil, err
	}
	return g.next.RoundTrip(req)
}
