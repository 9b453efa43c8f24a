package apiproxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/purserhq/purser/internal/egress"
)

// Failure kinds of a Result (Result.Reason): why a call did not complete. The caller maps
// them to the API's error codes.
const (
	FailRequestTooLarge     = "request_too_large"             // before connecting
	FailBadRequest          = "bad_request"                   // method or path refused before connecting
	FailEgressRefused       = "egress_refused"                // private address or wrong port, at connect time
	FailUnreachable         = "upstream_unreachable"          // could not connect or send
	FailTimeout             = "upstream_timeout"              // Target.Timeout elapsed
	FailFailed              = "upstream_failed"               // sent, then the connection failed
	FailResponseTooLarge    = "upstream_response_too_large"   // over Target.MaxResponse
	FailEncodingUnsupported = "upstream_encoding_unsupported" // a Content-Encoding Purser cannot decode to scrub
	FailCanceled            = "canceled"                      // the caller's context ended
)

// Target is one credential as the forwarder needs it. Build one per
// credential version and reuse it: it caches its scrubber, and it is safe
// for concurrent use once built (do not change its fields afterwards).
type Target struct {
	Upstream *url.URL // from ParseUpstream
	Inject   Inject
	Secret   []byte
	// Previous is the secret of the previous version during its rotation
	// grace period: on a 401 with Secret, the call is replayed once with
	// Previous (the body is in memory, so the replay is exact).
	Previous []byte
	// Scrub lists every stored version of the secret (current and
	// previous included); Secret and Previous are always scrubbed.
	Scrub        [][]byte
	AllowPrivate bool
	Timeout      time.Duration // the whole call, body included; 0 means 30 s
	MaxRequest   int64         // request body bytes; 0 means 10 MiB
	MaxResponse  int64         // response body bytes; 0 means 10 MiB

	once     sync.Once
	scrubber *Scrubber
	err      error
}

// Prepare validates the target and builds its scrubber; Do calls it.
func (t *Target) Prepare() error {
	t.once.Do(func() {
		switch {
		case t.Upstream == nil || (t.Upstream.Scheme != "https" && t.Upstream.Scheme != "http") || t.Upstream.Host == "":
			t.err = errors.New("apiproxy: target: an upstream from ParseUpstream is required")
			return
		case t.Inject.Kind == 0:
			t.err = errors.New("apiproxy: target: an injection is required")
			return
		}
		var pts [][]byte
		for _, s := range append([][]byte{t.Secret, t.Previous}, t.Scrub...) {
			if len(s) == 0 {
				continue
			}
			if err := ValidateSecret(s); err != nil {
				t.err = fmt.Errorf("apiproxy: target: %w", err)
				return
			}
			pts = append(pts, t.Inject.plaintexts(s)...)
		}
		if len(t.Secret) == 0 {
			t.err = errors.New("apiproxy: target: a secret is required")
			return
		}
		t.scrubber = NewScrubber(pts)
	})
	return t.err
}

// Scrubber is the target's scrubber (after Prepare), for the caller's own
// texts (errors, logs).
func (t *Target) Scrubber() *Scrubber { t.Prepare(); return t.scrubber }

func (t *Target) timeout() time.Duration { return cmp0(t.Timeout, 30*time.Second) }
func (t *Target) maxRequest() int64      { return cmp0(t.MaxRequest, 10<<20) }
func (t *Target) maxResponse() int64     { return cmp0(t.MaxResponse, 10<<20) }
func cmp0[T int64 | time.Duration](v, d T) T {
	if v <= 0 {
		return d
	}
	return v
}

// Call is the agent's request, already authenticated and granted.
type Call struct {
	Method   string
	Path     string // from CleanPath
	RawQuery string // the agent's raw query
	Header   http.Header
	Body     []byte
	// PriceHeader names a response header holding the upstream's price of
	// the call; its value is returned in Result.Price (scrubbed) and the
	// header is passed to the agent like any other.
	PriceHeader string
}

// Result says what happened, for the caller to capture or release.
type Result struct {
	Status   int  // the upstream's status (0 if it did not answer)
	Wrote    bool // the request was written to the upstream in full
	Answered bool // the upstream answered with a status line
	// Sent: the status and headers went to the agent. If Reason is set
	// too, the body was cut short: the caller must abort the agent's
	// connection (panic(http.ErrAbortHandler)) after recording the call,
	// so the agent cannot take a truncated body for a whole one. Do avoids
	// this where it can: an answer whose declared or actual length fits in
	// one buffer (32 KiB) is checked whole before anything is sent.
	Sent         bool
	Price        string // the PriceHeader's value, scrubbed
	UsedPrevious bool   // the previous secret answered after a 401
	BytesIn      int64  // response body bytes read from the upstream (decoded)
	BytesOut     int64  // body bytes written to the agent
	Reason       string // "" on success (any status), else a Fail* kind
	// Err is the detail of Reason, scrubbed of the secret and without the
	// outbound URL (which may hold an injected query secret); nil on
	// success.
	Err error
}

// Options configure a Forwarder.
type Options struct {
	DialTimeout           time.Duration  // 0 means 10 s
	ResponseHeaderTimeout time.Duration  // ceiling over all targets; 0 means 60 s
	MaxIdleConnsPerHost   int            // 0 means 256
	RootCAs               *x509.CertPool // nil means the system's (tests set their own)
}

// Forwarder sends calls. It holds two transports, one that reaches public
// addresses only and one that may reach private ones, each keeping idle
// connections for reuse; one Forwarder serves every credential.
type Forwarder struct {
	public, private *http.Transport
}

// NewForwarder returns a Forwarder.
func NewForwarder(o Options) *Forwarder {
	return &Forwarder{public: newTransport(false, o), private: newTransport(true, o)}
}

// Close closes idle connections.
func (f *Forwarder) Close() {
	f.public.CloseIdleConnections()
	f.private.CloseIdleConnections()
}

func newTransport(allowPrivate bool, o Options) *http.Transport {
	d := egress.Dialer(allowPrivate, cmp0(o.DialTimeout, 10*time.Second))
	d.KeepAlive = 30 * time.Second
	per := o.MaxIdleConnsPerHost
	if per <= 0 {
		per = 256
	}
	return &http.Transport{
		Proxy:                  nil, // a proxy would connect for us, past the address check
		DialContext:            d.DialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: o.RootCAs},
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  cmp0(o.ResponseHeaderTimeout, 60*time.Second),
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           4 * per,
		MaxIdleConnsPerHost:    per,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 1 << 20,
		WriteBufferSize:        16 << 10,
		ReadBufferSize:         16 << 10,
	}
}

// dropRequest are agent headers never forwarded: hop-by-hop, the proxy's
// own, and what would let the agent pose as someone else. Cookie is
// dropped because the credential is the upstream identity: an agent's
// cookie could carry another session (and Set-Cookie never reaches the
// agent, so it has no cookie of this upstream to send).
var dropRequest = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Host": true, "Content-Length": true, "Forwarded": true, "X-Real-Ip": true, "Via": true, "Cookie": true,
	"Accept-Encoding": true, // the transport asks for gzip and decodes it, so the scrubber sees plain bytes
	"Expect":          true,
}

// dropResponse are upstream headers never passed to the agent: hop-by-hop,
// framing (recomputed), cookies (they may be credentials), and those that
// would bind the agent's client to the upstream's policy for Purser's own
// origin.
var dropResponse = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Proxy-Authenticate": true, "Proxy-Authorization": true, "Content-Length": true, "Set-Cookie": true, "Set-Cookie2": true,
	"Strict-Transport-Security": true, "Alt-Svc": true, "Public-Key-Pins": true,
}

const chunk = 32 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, chunk); return &b }}

var scrubPool = sync.Pool{New: func() any { return &ScrubWriter{buf: make([]byte, 0, chunk+1024)} }}

// Do forwards one call to t's upstream and streams the answer to w. It
// writes to w only when the upstream answered (Result.Sent); otherwise
// the caller answers the agent from Result.Reason.
//
// The outbound request goes to the upstream's scheme, host and port, at
// its base path + c.Path, with the agent's query less any parameter named
// like an injected one, the agent's headers less those in dropRequest,
// hop-by-hop ones (and those Connection names), Proxy-*, X-Forwarded-*,
// Purser-* (the agent's signature), and the injected header (and
// Authorization for basic); then the secret is injected. Redirects are
// not followed (the transport is used directly): a 3xx goes back with its
// Location scrubbed. The answer's headers and body are scrubbed of every
// form of every secret.
func (f *Forwarder) Do(ctx context.Context, t *Target, c *Call, w http.ResponseWriter) Result {
	if err := t.Prepare(); err != nil {
		return Result{Reason: FailBadRequest, Err: err}
	}
	if int64(len(c.Body)) > t.maxRequest() {
		return Result{Reason: FailRequestTooLarge, Err: fmt.Errorf("the request body is %d bytes, over the limit of %d", len(c.Body), t.maxRequest())}
	}
	if !validToken(c.Method) || c.Method == http.MethodConnect {
		return Result{Reason: FailBadRequest, Err: fmt.Errorf("method %q is not allowed", c.Method)}
	}
	if p, err := CleanPath(c.Path); err != nil || p != c.Path {
		return Result{Reason: FailBadRequest, Err: errors.New("the path is not a cleaned path (CleanPath)")}
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout())
	defer cancel()
	ctx = egress.WithPort(ctx, port(t.Upstream))
	tr := f.public
	if t.AllowPrivate {
		tr = f.private
	}
	res, resp := f.roundTrip(ctx, tr, t, c, t.Secret)
	if resp != nil && resp.StatusCode == http.StatusUnauthorized && len(t.Previous) > 0 {
		drain(resp.Body)
		prev, resp2 := f.roundTrip(ctx, tr, t, c, t.Previous)
		prev.Wrote = prev.Wrote || res.Wrote
		prev.UsedPrevious = resp2 != nil
		res, resp = prev, resp2
	}
	if resp == nil {
		return res
	}
	defer resp.Body.Close()
	return f.answer(ctx, t, c, resp, res, w)
}

func drain(b io.ReadCloser) {
	io.CopyN(io.Discard, b, 64<<10)
	b.Close()
}

// roundTrip builds and sends the request with secret; resp is nil when
// the upstream did not answer.
func (f *Forwarder) roundTrip(ctx context.Context, tr *http.Transport, t *Target, c *Call, secret []byte) (Result, *http.Response) {
	var res Result
	var wrote bool
	var mu sync.Mutex
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			mu.Lock()
			wrote = true
			mu.Unlock()
		}
	}}
	req, err := f.build(httptrace.WithClientTrace(ctx, trace), t, c, secret)
	if err != nil {
		return Result{Reason: FailBadRequest, Err: errors.New(t.scrubber.String(err.Error()))}, nil
	}
	resp, err := tr.RoundTrip(req)
	mu.Lock()
	res.Wrote = wrote
	mu.Unlock()
	if err != nil {
		res.Reason, res.Err = classify(ctx, err, t.scrubber)
		if res.Reason == FailFailed && !res.Wrote {
			res.Reason = FailUnreachable
		}
		return res, nil
	}
	res.Answered, res.Status = true, resp.StatusCode
	return res, resp
}

// classify turns a transport error into a reason and a detail without
// the URL (url.Error would print it, injected query secret included).
func classify(ctx context.Context, err error, s *Scrubber) (string, error) {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := errors.New(s.String(err.Error()))
	var ne net.Error
	switch {
	case errors.Is(err, egress.ErrPrivateAddress) || errors.Is(err, egress.ErrPortRefused):
		return FailEgressRefused, msg
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return FailTimeout, msg
		}
		return FailCanceled, msg
	case errors.Is(ctx.Err(), context.Canceled):
		return FailCanceled, msg
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return FailUnreachable, msg
	}
	return FailFailed, msg
}

func (f *Forwarder) build(ctx context.Context, t *Target, c *Call, secret []byte) (*http.Request, error) {
	u := &url.URL{Scheme: t.Upstream.Scheme, Host: t.Upstream.Host}
	escaped := t.Upstream.EscapedPath() + c.Path
	p, err := url.PathUnescape(escaped)
	if err != nil {
		return nil, err
	}
	u.Path, u.RawPath = p, escaped
	u.RawQuery = query(c.RawQuery, t.Inject, secret)
	var body io.ReadCloser = http.NoBody
	if len(c.Body) > 0 {
		body = io.NopCloser(bytes.NewReader(c.Body))
	}
	req, err := http.NewRequestWithContext(ctx, c.Method, "http://x/", body)
	if err != nil {
		return nil, err
	}
	req.URL, req.Host = u, ""
	req.ContentLength = int64(len(c.Body))
	if len(c.Body) > 0 {
		b := c.Body
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	req.Header = outboundHeader(c.Header, t.Inject)
	if t.Inject.Kind != InjectQuery {
		req.Header[t.Inject.Name] = []string{t.Inject.headerValue(secret)}
	}
	return req, nil
}

func outboundHeader(in http.Header, inj Inject) http.Header {
	named := map[string]bool{}
	for _, v := range in["Connection"] {
		for _, n := range strings.Split(v, ",") {
			named[http.CanonicalHeaderKey(strings.TrimSpace(n))] = true
		}
	}
	out := make(http.Header, len(in)+1)
	for k, vs := range in {
		ck := http.CanonicalHeaderKey(k)
		if dropRequest[ck] || named[ck] || strings.HasPrefix(ck, "Proxy-") || strings.HasPrefix(ck, "X-Forwarded-") ||
			strings.HasPrefix(ck, "Purser-") || (inj.Kind != InjectQuery && ck == inj.Name) {
			continue
		}
		out[ck] = vs
	}
	if _, ok := out["User-Agent"]; !ok {
		out["User-Agent"] = []string{""} // not Go's default: nothing about Purser's build reaches the upstream
	}
	return out
}

// query is the agent's raw query without parameters named like the
// injected one (in any escaping), then the injected parameter.
func query(raw string, inj Inject, secret []byte) string {
	if inj.Kind != InjectQuery {
		return raw
	}
	var b strings.Builder
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		name, _, _ := strings.Cut(part, "=")
		if n, err := url.QueryUnescape(name); err != nil || n == inj.Name || strings.EqualFold(n, inj.Name) {
			continue // an unreadable name is dropped too: the upstream might read it as the injected one
		}
		b.WriteString(part)
		b.WriteByte('&')
	}
	b.WriteString(url.QueryEscape(inj.Name))
	b.WriteByte('=')
	b.WriteString(url.QueryEscape(string(secret)))
	return b.String()
}

// answer passes the upstream's answer to w, scrubbed.
func (f *Forwarder) answer(ctx context.Context, t *Target, c *Call, resp *http.Response, res Result, w http.ResponseWriter) Result {
	s := t.scrubber
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		res.Reason, res.Err = FailEncodingUnsupported, fmt.Errorf("the upstream answered with Content-Encoding %q, which Purser cannot decode to scrub", s.String(ce))
		return res
	}
	maxResp := t.maxResponse()
	if resp.ContentLength > maxResp && !resp.Uncompressed {
		res.Reason, res.Err = FailResponseTooLarge, fmt.Errorf("the upstream's answer is %d bytes, over the limit of %d", resp.ContentLength, maxResp)
		return res
	}
	if c.PriceHeader != "" {
		res.Price = s.String(resp.Header.Get(c.PriceHeader))
	}
	named := map[string]bool{}
	for _, v := range resp.Header["Connection"] {
		for _, n := range strings.Split(v, ",") {
			named[http.CanonicalHeaderKey(strings.TrimSpace(n))] = true
		}
	}
	// The headers go to w only when the body is known to fit (or starts
	// streaming): on a refusal the caller answers with its own.
	h := make(http.Header, len(resp.Header))
	for k, vs := range resp.Header {
		if dropResponse[k] || named[k] || k == "Content-Encoding" {
			continue
		}
		out := make([]string, len(vs))
		for i, v := range vs {
			out[i] = s.String(v)
		}
		h[k] = out
	}

	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	body := io.LimitReader(resp.Body, maxResp+1)
	n, err := io.ReadFull(body, buf)
	res.BytesIn = int64(n)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		// The whole body is here: check and scrub it before the headers go.
		if int64(n) > maxResp {
			return tooLarge(res, w, maxResp)
		}
		out := buf[:n]
		if s.Contains(out) {
			out = s.Bytes(nil, out)
		}
		h.Set("Content-Length", strconv.Itoa(len(out)))
		send(w, h, resp.StatusCode)
		res.Sent = true
		wn, _ := w.Write(out)
		res.BytesOut = int64(wn)
		return res
	}
	if err != nil {
		res.Reason, res.Err = readReason(ctx, err, s)
		return res
	}
	// Stream: the answer is larger than one buffer.
	send(w, h, resp.StatusCode)
	res.Sent = true
	z := scrubPool.Get().(*ScrubWriter)
	z.Reset(s, w)
	defer scrubPool.Put(z)
	z.Write(buf[:n])
	for {
		m, rerr := body.Read(buf)
		res.BytesIn += int64(m)
		if res.BytesIn > maxResp {
			res.BytesOut = z.Written()
			res.Reason, res.Err = FailResponseTooLarge, fmt.Errorf("the upstream's answer is over the limit of %d bytes", maxResp)
			return res
		}
		if m > 0 {
			if _, werr := z.Write(buf[:m]); werr != nil {
				res.BytesOut = z.Written()
				res.Reason, res.Err = FailCanceled, errors.New("the agent went away")
				return res
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			res.BytesOut = z.Written()
			res.Reason, res.Err = readReason(ctx, rerr, s)
			return res
		}
	}
	z.Close()
	res.BytesOut = z.Written()
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
	return res
}

func send(w http.ResponseWriter, h http.Header, status int) {
	wh := w.Header()
	for k, vs := range h {
		wh[k] = vs
	}
	w.WriteHeader(status)
}

func tooLarge(res Result, w http.ResponseWriter, maxResp int64) Result {
	res.Reason, res.Err = FailResponseTooLarge, fmt.Errorf("the upstream's answer is over the limit of %d bytes", maxResp)
	return res
}

func readReason(ctx context.Context, err error, s *Scrubber) (string, error) {
	r, e := classify(ctx, err, s)
	if r == FailUnreachable {
		r = FailFailed
	}
	return r, e
}
