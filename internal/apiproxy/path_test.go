package apiproxy_test

import (
	"strings"
	"testing"

	"github.com/purserhq/purser/internal/apiproxy"
)

func TestCleanPathRefusesTraversal(t *testing.T) {
	t.Parallel()
	for _, p := range []string{
		"/..", "/v1/../admin", "/v1/./x", "/v1/%2e%2e/admin", "/v1/%2E%2e/x", "/v1/.%2e/x", "/v1/%2e/x", "/v1/a%2Fb", "/v1/a%2fb",
		"/v1/a%5cb", "/v1/a%5Cb", "/v1/a\\b", "/v1/a@b", "//evil.example/x", "/v1//x", "http://evil.example/x", "http:/x",
		"evil.example/x", "/v1/a%00b", "/v1/a\x00b", "/v1/a\nb", "/v1/a%0ab", "/v1/a b", "/v1/%zz", "/v1/a%2", "/v1/..;/admin",
		"/v1/%252e%252e/x", "/v1/%252f", "/v1/a?b", "/v1/a#b", "/v1/\xc3\xa9", "/v1/a%7f",
	} {
		if got, err := apiproxy.CleanPath(p); err == nil {
			t.Errorf("CleanPath(%q) = %q, want an error", p, got)
		}
	}
	for in, want := range map[string]string{"": "/", "/": "/", "/v1/customers": "/v1/customers", "/v1/a%20b": "/v1/a%20b",
		"/v1/items/": "/v1/items/", "/v1/a%40b.com": "/v1/a%40b.com", "/v1/x:y;z": "/v1/x:y;z", "/v1/file.json": "/v1/file.json"} {
		if got, err := apiproxy.CleanPath(in); err != nil || got != want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestMatchPath(t *testing.T) {
	t.Parallel()
	pats := []string{"/v1/search", "/v1/items/*", "/v1/a/*/b"}
	for p, want := range map[string]bool{
		"/v1/search": true, "/v1/%73earch": true, "/v1/search/x": false, "/v1/items": false, "/v1/items/": false,
		"/v1/items/1": true, "/v1/items/1/x": true, "/v1/a/1/b": true, "/v1/a/1/c": false, "/v1/a/1/b/c": false, "/": false,
	} {
		if got := apiproxy.MatchPath(pats, p); got != want {
			t.Errorf("MatchPath(%q) = %v, want %v", p, got, want)
		}
	}
	for _, bad := range []string{"", "v1", "/v1/x*", "/v1/../x", "//x", "/v1/%2f"} {
		if apiproxy.ValidatePattern(bad) == nil {
			t.Errorf("ValidatePattern(%q) accepted", bad)
		}
	}
	for _, ok := range pats {
		if err := apiproxy.ValidatePattern(ok); err != nil {
			t.Errorf("ValidatePattern(%q): %v", ok, err)
		}
	}
}

func TestParseUpstream(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"ftp://x", "https://", "https://u:p@api.example", "https://api.example/?a=1", "https://api.example/#f",
		"api.example", "https://api.example/v1/../x", "https://api.example:0", "https://api.example:99999", "javascript:alert(1)"} {
		if _, err := apiproxy.ParseUpstream(bad); err == nil {
			t.Errorf("ParseUpstream(%q) accepted", bad)
		}
	}
	u, err := apiproxy.ParseUpstream("https://API.example.com/v1/")
	if err != nil || u.String() != "https://api.example.com/v1" {
		t.Fatalf("%v %v", u, err)
	}
}

func TestParseInject(t *testing.T) {
	t.Parallel()
	for spec, want := range map[string]apiproxy.Inject{
		"header:Authorization=Bearer {secret}": {Kind: apiproxy.InjectHeader, Name: "Authorization", Prefix: "Bearer "},
		"header:x-api-key={secret}":            {Kind: apiproxy.InjectHeader, Name: "X-Api-Key"},
		"query:api_key={secret}":               {Kind: apiproxy.InjectQuery, Name: "api_key"},
		"basic:user:{secret}":                  {Kind: apiproxy.InjectBasic, Name: "Authorization", User: "user"},
		"basic::{secret}":                      {Kind: apiproxy.InjectBasic, Name: "Authorization"},
	} {
		got, err := apiproxy.ParseInject(spec)
		if err != nil || got != want {
			t.Errorf("ParseInject(%q) = %+v, %v", spec, got, err)
		}
	}
	for _, bad := range []string{"", "header:Authorization=Bearer", "header:Authorization={secret}{secret}", "header:Host={secret}",
		"header:Content-Length={secret}", "header:Transfer-Encoding={secret}", "header:Cookie={secret}", "header:Connection={secret}",
		"header:Proxy-Authorization={secret}", "header:X-Forwarded-For={secret}", "header:Purser-Signature={secret}",
		"header:X-A\r\nB={secret}", "header:X-A={secret}\r\nX-B: 1", "header:X A={secret}", "query:a b={secret}", "query:k=x{secret}",
		"basic:u:x:{secret}", "basic:{secret}", "cookie:a={secret}"} {
		if _, err := apiproxy.ParseInject(bad); err == nil {
			t.Errorf("ParseInject(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"short", "abcdefgh\r\n", "abcdefgh\x00", "abcd\nefgh", strings.Repeat("x", 5000)} {
		if apiproxy.ValidateSecret([]byte(bad)) == nil {
			t.Errorf("ValidateSecret(%q) accepted", bad)
		}
	}
	if err := apiproxy.ValidateSecret([]byte("sk_test_123456")); err != nil {
		t.Error(err)
	}
}

// FuzzCleanPath: no cleaned path holds a traversal or an ambiguous
// separator, and matching is consistent with cleaning.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/v1/items/1", "/v1/%2e%2e/", "/a/../b", "//x", "/a%2fb", "/a\\b", "/v1/%252e", "/v1/items/", "/a;..;/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		c, err := apiproxy.CleanPath(p)
		if err != nil {
			return
		}
		low := strings.ToLower(c)
		for _, bad := range []string{"/../", "/./", "//", "\\", "%2f", "%5c", "%2e", "%00", "@"} {
			in := low
			if strings.HasPrefix(bad, "/.") {
				in += "/"
			}
			if strings.Contains(in, bad) {
				t.Fatalf("CleanPath(%q) = %q holds %q", p, c, bad)
			}
		}
		if strings.HasSuffix(c, "/..") || strings.HasSuffix(c, "/.") {
			t.Fatalf("CleanPath(%q) = %q ends in a dot segment", p, c)
		}
		if c2, err := apiproxy.CleanPath(c); err != nil || c2 != c {
			t.Fatalf("CleanPath not idempotent on %q: %q %v", c, c2, err)
		}
		if !strings.Contains(c, "*") && apiproxy.ValidatePattern(c) == nil && !apiproxy.MatchPath([]string{c}, c) {
			t.Fatalf("the exact pattern %q does not match itself", c)
		}
		if apiproxy.MatchPath([]string{"/v1/items/*"}, c) && !strings.HasPrefix(c, "/v1/items/") && !strings.HasPrefix(strings.ToLower(c), "/v1/") {
			t.Fatalf("%q matched /v1/items/* without the prefix", c)
		}
		if c != "/" && !apiproxy.MatchPath([]string{"/*"}, c) {
			t.Fatalf("%q does not match /*", c)
		}
	})
}
