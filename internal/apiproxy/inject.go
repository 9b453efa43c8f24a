package apiproxy

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// InjectKind is where the secret goes in the outbound request.
type InjectKind int

const (
	// InjectHeader puts Prefix+secret+Suffix in header Name.
	InjectHeader InjectKind = iota + 1
	// InjectQuery puts the secret in query parameter Name.
	InjectQuery
	// InjectBasic sends Authorization: Basic base64(User:secret).
	InjectBasic
)

// Inject is a parsed injection spec.
type Inject struct {
	Kind InjectKind
	// Name is the canonical header name (InjectHeader, and Authorization
	// for InjectBasic) or the query parameter (InjectQuery).
	Name string
	// Prefix and Suffix surround the secret in a header value.
	Prefix, Suffix string
	// User is the basic-auth user name.
	User string
}

const placeholder = "{secret}"

// MinSecretLen is the shortest secret accepted: the scrubber replaces
// every occurrence of the secret (and its encodings) in answers, and a
// shorter one would match ordinary bytes and mangle them.
const MinSecretLen = 8

// MaxSecretLen bounds a secret (and so the scrubber's patterns).
const MaxSecretLen = 4096

// forbiddenHeaders may not carry the secret: they frame the message, are
// hop-by-hop, or are rewritten by the proxy.
var forbiddenHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Host": true, "Content-Length": true, "Content-Type": true, "Content-Encoding": true, "Cookie": true, "Set-Cookie": true,
	"Forwarded": true, "Via": true, "Expect": true, "Accept-Encoding": true, "Range": true,
}

// ParseInject parses "header:NAME=TEMPLATE" (TEMPLATE holds {secret}
// once), "query:PARAM={secret}" or "basic:USER:{secret}".
func ParseInject(spec string) (Inject, error) {
	if strings.ContainsAny(spec, "\r\n\x00") {
		return Inject{}, errors.New("inject: the spec contains a control character")
	}
	kind, rest, ok := strings.Cut(spec, ":")
	if !ok {
		return Inject{}, fmt.Errorf("inject: %q: want header:NAME=TEMPLATE, query:PARAM={secret} or basic:USER:{secret}", spec)
	}
	switch kind {
	case "header":
		name, tmpl, ok := strings.Cut(rest, "=")
		if !ok || !validToken(name) {
			return Inject{}, fmt.Errorf("inject: %q: want header:NAME=TEMPLATE with a valid header name", spec)
		}
		name = http.CanonicalHeaderKey(name)
		if forbiddenHeaders[name] || strings.HasPrefix(name, "Proxy-") || strings.HasPrefix(name, "X-Forwarded-") ||
			strings.HasPrefix(name, "Purser-") || name == "X-Real-Ip" {
			return Inject{}, fmt.Errorf("inject: the header %s may not carry a secret", name)
		}
		if strings.Count(tmpl, placeholder) != 1 {
			return Inject{}, fmt.Errorf("inject: the template of %s must contain %s exactly once", name, placeholder)
		}
		for _, c := range []byte(tmpl) {
			if c < 0x20 || c == 0x7f {
				return Inject{}, errors.New("inject: the template contains a control character")
			}
		}
		pre, suf, _ := strings.Cut(tmpl, placeholder)
		return Inject{Kind: InjectHeader, Name: name, Prefix: pre, Suffix: suf}, nil
	case "query":
		name, v, ok := strings.Cut(rest, "=")
		if !ok || name == "" || v != placeholder || url.QueryEscape(name) != name {
			return Inject{}, fmt.Errorf("inject: %q: want query:PARAM={secret} with a plain parameter name", spec)
		}
		return Inject{Kind: InjectQuery, Name: name}, nil
	case "basic":
		user, v, ok := strings.Cut(rest, ":")
		if !ok || v != placeholder || strings.Contains(user, ":") {
			return Inject{}, fmt.Errorf("inject: %q: want basic:USER:{secret} (the user may be empty, may not contain ':')", spec)
		}
		for _, c := range []byte(user) {
			if c < 0x20 || c == 0x7f {
				return Inject{}, errors.New("inject: the user contains a control character")
			}
		}
		return Inject{Kind: InjectBasic, Name: "Authorization", User: user}, nil
	}
	return Inject{}, fmt.Errorf("inject: unknown kind %q: want header, query or basic", kind)
}

// String is the spec form (it never holds a secret).
func (in Inject) String() string {
	switch in.Kind {
	case InjectHeader:
		return "header:" + in.Name + "=" + in.Prefix + placeholder + in.Suffix
	case InjectQuery:
		return "query:" + in.Name + "=" + placeholder
	case InjectBasic:
		return "basic:" + in.User + ":" + placeholder
	}
	return ""
}

// ValidateSecret refuses a secret that cannot be injected or scrubbed
// safely: shorter than MinSecretLen (scrubbing would mangle ordinary
// bytes), longer than MaxSecretLen, or holding any control character
// (CR, LF and NUL would split or truncate a header; API keys are
// printable).
func ValidateSecret(secret []byte) error {
	if len(secret) < MinSecretLen {
		return fmt.Errorf("secret: shorter than %d bytes; a secret that short could not be scrubbed from answers without mangling them", MinSecretLen)
	}
	if len(secret) > MaxSecretLen {
		return fmt.Errorf("secret: longer than %d bytes", MaxSecretLen)
	}
	for _, c := range secret {
		if c < 0x20 || c == 0x7f {
			return errors.New("secret: contains a control character (CR, LF, NUL, ...)")
		}
	}
	return nil
}

// plaintexts are the strings the injection sends that reveal the secret,
// each scrubbed in all its encodings: the secret, and for basic the
// user:secret pair.
func (in Inject) plaintexts(secret []byte) [][]byte {
	out := [][]byte{secret}
	if in.Kind == InjectBasic {
		out = append(out, append([]byte(in.User+":"), secret...))
	}
	return out
}

// headerValue is the injected header's value.
func (in Inject) headerValue(secret []byte) string {
	if in.Kind == InjectBasic {
		return "Basic " + base64.StdEncoding.EncodeToString(append([]byte(in.User+":"), secret...))
	}
	return in.Prefix + string(secret) + in.Suffix
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
