package apiproxy

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// ParseUpstream checks a credential's upstream: https, or http (allowed
// because loopback test servers and local upstreams need it; over the
// network it sends the secret in clear, which the owner chose), a host, no
// user info, query or fragment. The base path is kept, cleaned by the
// same rules as an agent's path, without a trailing slash.
func ParseUpstream(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("upstream: %v", err)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, errors.New("upstream: the scheme must be https (or http)")
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("upstream: a host is required")
	case u.User != nil:
		return nil, errors.New("upstream: user info is not allowed (use the injection spec)")
	case u.RawQuery != "" || u.ForceQuery:
		return nil, errors.New("upstream: a query is not allowed")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, errors.New("upstream: a fragment is not allowed")
	case u.Opaque != "":
		return nil, errors.New("upstream: want scheme://host[:port][/base]")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("upstream: bad port %q", p)
		}
	}
	base := strings.TrimRight(u.EscapedPath(), "/")
	if base != "" {
		if base, err = CleanPath(base); err != nil {
			return nil, fmt.Errorf("upstream: base path: %v", err)
		}
	}
	out := &url.URL{Scheme: u.Scheme, Host: strings.ToLower(u.Host)}
	if base != "" {
		if out.Path, err = url.PathUnescape(base); err != nil {
			return nil, fmt.Errorf("upstream: base path: %v", err)
		}
		out.RawPath = base
	}
	return out, nil
}

// port is the TCP port an upstream is reached on.
func port(u *url.URL) int {
	if p := u.Port(); p != "" {
		n, _ := strconv.Atoi(p)
		return n
	}
	if u.Scheme == "http" {
		return 80
	}
	return 443
}

// CleanPath checks the agent's path below /v1/proxy/NAME, in escaped form
// (r.URL.EscapedPath()), and returns it as it will be sent: "" becomes
// "/", and legitimate escapes (%20) are kept. It refuses anything that
// could reach outside the upstream's base path or be read differently by
// the upstream than by the grant check: empty segments ("//"), "." and
// ".." segments in any spelling (%2e, and "..;" which some servers read
// as ".."), any escaped dot, encoded slashes and backslashes, raw
// backslashes, "@", control characters and NUL (raw or escaped),
// non-ASCII bytes, malformed escapes, and a path that does not start with
// "/" (absolute and scheme-relative URLs). An escape that decodes to
// another escape (%252e) is checked at every level of decoding, against
// upstreams that decode twice.
func CleanPath(raw string) (string, error) {
	if raw == "" {
		return "/", nil
	}
	if raw[0] != '/' {
		return "", errors.New("path: must start with /")
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c < 0x21 || c >= 0x7f:
			return "", fmt.Errorf("path: a control, space or non-ASCII byte at %d", i)
		case c == '\\' || c == '@' || c == '?' || c == '#':
			return "", fmt.Errorf("path: %q is not allowed", c)
		}
	}
	segs := strings.Split(raw[1:], "/")
	for i, s := range segs {
		if s == "" {
			if i == len(segs)-1 && i > 0 {
				continue // one trailing slash is a real resource name for some APIs
			}
			if len(segs) == 1 {
				continue // "/"
			}
			return "", errors.New("path: empty segment (//)")
		}
		if err := checkSegment(s); err != nil {
			return "", err
		}
	}
	return raw, nil
}

// checkSegment checks one escaped segment at every level of decoding.
func checkSegment(s string) error {
	for level := 0; level < 4; level++ {
		if level == 0 && strings.Contains(strings.ToLower(s), "%2e") {
			return errors.New("path: an escaped dot (%2e) is not allowed")
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			if level == 0 {
				return errors.New("path: malformed escape")
			}
			return nil // a literal '%' further down: nothing more to decode
		}
		for i := 0; i < len(d); i++ {
			c := d[i]
			if c < 0x20 || c == 0x7f || c == '/' || c == '\\' {
				return fmt.Errorf("path: an escaped %q is not allowed", c)
			}
		}
		dot, _, _ := strings.Cut(d, ";")
		if dot == "." || dot == ".." || d == "" {
			return errors.New("path: '.' and '..' segments are not allowed")
		}
		if d == s {
			return nil
		}
		s = d
	}
	return errors.New("path: too many levels of escaping")
}

// ValidatePattern checks a grant path pattern: a clean path whose
// segments may be "*" (exactly one segment; as the last segment, one or
// more).
func ValidatePattern(p string) error {
	if p == "" || p[0] != '/' {
		return errors.New("pattern: must start with /")
	}
	if _, err := CleanPath(strings.ReplaceAll(p, "*", "x")); err != nil {
		return fmt.Errorf("pattern: %v", strings.TrimPrefix(err.Error(), "path: "))
	}
	for _, s := range strings.Split(p[1:], "/") {
		if strings.Contains(s, "*") && s != "*" {
			return fmt.Errorf("pattern: %q: '*' must be a whole segment", s)
		}
	}
	return nil
}

// MatchPath reports whether a cleaned path matches any of the patterns.
// Segments are compared decoded, so "/v1/%73earch" matches "/v1/search"
// as the upstream will read it.
func MatchPath(patterns []string, cleanPath string) bool {
	for _, p := range patterns {
		if matchOne(p, cleanPath) {
			return true
		}
	}
	return false
}

func matchOne(pattern, path string) bool {
	if len(pattern) == 0 || pattern[0] != '/' || len(path) == 0 || path[0] != '/' {
		return false
	}
	ps, xs := strings.Split(pattern[1:], "/"), strings.Split(path[1:], "/")
	for i, p := range ps {
		if i >= len(xs) {
			return false
		}
		if p == "*" {
			if xs[i] == "" {
				return false
			}
			if i == len(ps)-1 {
				return true // trailing "*": one or more remaining segments
			}
			continue
		}
		if !sameSegment(p, xs[i]) {
			return false
		}
	}
	return len(ps) == len(xs)
}

func sameSegment(a, b string) bool {
	if a == b {
		return true
	}
	da, err1 := url.PathUnescape(a)
	db, err2 := url.PathUnescape(b)
	return err1 == nil && err2 == nil && da == db
}

// TemplatePattern is the grant pattern a template's paths fall under:
// every segment holding a placeholder becomes "*" ("/v1/customers/{id}"
// → "/v1/customers/*").
func TemplatePattern(tmpl string) string {
	segs := strings.Split(tmpl, "/")
	for i, s := range segs {
		if strings.Contains(s, "{") {
			segs[i] = "*"
		}
	}
	return strings.Join(segs, "/")
}

// escapeAll percent-escapes every byte that is not unreserved (RFC 3986).
func escapeAll(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
