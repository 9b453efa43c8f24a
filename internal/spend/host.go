package spend

import (
	"strconv"
	"strings"
)

// normalizeHost gives a spend's host one spelling, so that host pins,
// the mandate's host allowlist, idempotency and the audit trail all see
// one form: "API.x.com", "api.x.com.", "api.x.com:443" and
// "api.x.com.:0443" are all "api.x.com" (three spellings used to be
// three pins, and a seller could switch payee through a new one).
//
//   - ASCII letters are lower-cased (the input is ASCII: hostRE);
//   - one trailing dot (the DNS root) is dropped;
//   - the port is kept in canonical decimal, except 443, which is
//     dropped: it is the default of https, which x402 sellers use. The
//     intent's host carries no scheme, so :80 cannot be told from an
//     https server on port 80, and is kept. (Mandate host patterns match
//     names whatever the port.)
//
// A host left with an empty name or an empty label ("." or "a..b"), or
// with a port outside 1-65535, is refused: it names nothing.
// "" stays "" (a spend without a host).
func normalizeHost(host string) (string, error) {
	if host == "" {
		return "", nil
	}
	bad := func() (string, error) {
		return "", Errorf(CodeInvalidRequest, "host %q is malformed: a DNS name with an optional :port", host).WithDetails(map[string]any{"field": "host"})
	}
	name, port := strings.ToLower(host), "" // ASCII: hostRE
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		name, port = name[:i], name[i+1:]
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return bad()
		}
		port = strconv.Itoa(n)
		if n == 443 {
			port = ""
		}
	}
	name = strings.TrimSuffix(name, ".")
	if name == "" {
		return bad()
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return bad()
		}
	}
	if port != "" {
		return name + ":" + port, nil
	}
	return name, nil
}

// NormalizeHost is normalizeHost for rails that compare a host of their
// own (an x402 URL's) with the agent's claim.
func NormalizeHost(host string) (string, error) { return normalizeHost(host) }

// pinKey is what a host is pinned by: its name without the port. The
// mandate's host allowlist matches names whatever the port, so a pin per
// port would let an agent (whose host claim is its own word) buy a fresh
// pin for an allowed name by adding a port.
func pinKey(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		return host[:i]
	}
	return host
}

// normalizeRequestHost normalizes r.Host in place (normalizeHost).
func normalizeRequestHost(r *AuthorizeRequest) error {
	h, err := normalizeHost(r.Host)
	if err != nil {
		return err
	}
	r.Host = h
	return nil
}
