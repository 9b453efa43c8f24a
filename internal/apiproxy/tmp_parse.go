package apiproxy

// TEMPORARY: minimal stand-ins for the forwarding core (forward.go,
// inject.go, path.go, scrub.go) being written beside this; replaced at
// the merge.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

type Inject struct{ Spec string }

func ParseInject(spec string) (Inject, error) {
	if !strings.Contains(spec, "{secret}") {
		return Inject{}, errors.New("inject spec must contain {secret}")
	}
	return Inject{Spec: spec}, nil
}

func ValidateSecret(s []byte) error {
	if len(s) < 8 {
		return errors.New("secret shorter than 8 bytes")
	}
	return nil
}

func ParseUpstream(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("upstream must be an http(s) URL")
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

func CleanPath(raw string) (string, error) {
	if raw == "" || raw[0] != '/' || strings.Contains(raw, "..") || strings.Contains(raw, "//") {
		return "", errors.New("bad path")
	}
	return raw, nil
}

func ValidatePattern(p string) error {
	if p == "" || p[0] != '/' {
		return errors.New("pattern must start with /")
	}
	return nil
}

func MatchPath(patterns []string, p string) bool {
	for _, pat := range patterns {
		if pat == p {
			return true
		}
		if base, ok := strings.CutSuffix(pat, "*"); ok && strings.HasPrefix(p, base) && len(p) > len(base) {
			return true
		}
	}
	return false
}

func TemplatePattern(tmpl string) string { return tmpl }

type ForwarderOptions struct{}

type Forwarder struct{ c *http.Client }

func NewForwarder(ForwarderOptions) *Forwarder {
	return &Forwarder{c: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type Target struct {
	Upstream     *url.URL
	Inject       Inject
	Secret       []byte
	Previous     []byte
	Scrub        [][]byte
	AllowPrivate bool
	Timeout      time.Duration
	MaxRequest   int64
	MaxResponse  int64
	PriceHeader  string
}

type Result struct {
	Status      int
	Wrote       bool
	Answered    bool
	PriceHeader string
	Reason      string
}

func (f *Forwarder) Do(ctx context.Context, t *Target, method, cleanPath, rawQuery string, header http.Header, body []byte, w http.ResponseWriter) (Result, error) {
	u := *t.Upstream
	u.Path = t.Upstream.Path + cleanPath
	u.RawQuery = rawQuery
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return Result{Reason: "upstream_unreachable"}, err
	}
	name, tmpl, _ := strings.Cut(strings.TrimPrefix(t.Inject.Spec, "header:"), "=")
	req.Header.Set(name, strings.ReplaceAll(tmpl, "{secret}", string(t.Secret)))
	resp, err := f.c.Do(req)
	if err != nil {
		return Result{Reason: "upstream_unreachable"}, err
	}
	defer resp.Body.Close()
	res := Result{Status: resp.StatusCode, Wrote: true, Answered: true, PriceHeader: resp.Header.Get(t.PriceHeader)}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
	return res, nil
}
