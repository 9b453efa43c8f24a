package sdk

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/agentauth"
)

const (
	// DefaultTimeout bounds each request of the default http.Client.
	DefaultTimeout = 30 * time.Second
	// MaxResponseBody caps how much of a Purser answer is read (the audit
	// export stream excepted).
	MaxResponseBody = 8 << 20
	// SignatureTTL is how long a signed agent request stays valid.
	SignatureTTL = 2 * time.Minute
)

// Option configures an Agent or an Owner.
type Option func(*conn)

// WithHTTPClient replaces the default http.Client (30 s timeout) used to
// reach Purser.
func WithHTTPClient(hc *http.Client) Option { return func(c *conn) { c.hc = hc } }

// WithUserAgent sets the User-Agent header of requests to Purser.
func WithUserAgent(ua string) Option { return func(c *conn) { c.userAgent = ua } }

// WithDeployment pins the deployment id agent requests are bound to (0x
// and 64 hex digits, as GET /v1/deployment publishes it). Without it the
// agent asks the server once, before its first signed request. Pinning
// keeps a server that lies about its id from collecting signatures it
// could replay to the pinned deployment.
func WithDeployment(id string) Option {
	return func(c *conn) {
		d, err := agentauth.ParseDeployment(strings.TrimSpace(id))
		if err != nil {
			c.optErr = fmt.Errorf("sdk: WithDeployment: %w", err)
			return
		}
		c.domain = agentauth.DeploymentDomain(d)
	}
}

// conn is what Agent and Owner share: one Purser server and how to reach it.
type conn struct {
	base      *url.URL
	hc        *http.Client
	userAgent string
	now       func() time.Time
	optErr    error

	ownerToken string
	signer     Signer
	sellerHC   *http.Client

	domMu  sync.Mutex
	domain agentauth.Domain // zero until pinned or fetched
}

func newConn(serverURL string, opts []Option) (*conn, error) {
	u, err := url.Parse(strings.TrimRight(serverURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("sdk: server URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sdk: server URL %q: want http://host:port or https://host", serverURL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("sdk: server URL %q must not have credentials, a query or a fragment", serverURL)
	}
	c := &conn{base: u, userAgent: "purser-sdk", now: time.Now}
	for _, o := range opts {
		o(c)
	}
	if c.optErr != nil {
		return nil, c.optErr
	}
	if c.hc == nil {
		c.hc = &http.Client{Timeout: DefaultTimeout}
	}
	return c, nil
}

type authKind int

const (
	authNone authKind = iota
	authOwner
	authAgent
)

// newRequest builds a request with its credentials. body is sent exactly
// as given (nil for none) and, for agent requests, signed as such.
func (c *conn) newRequest(ctx context.Context, method, path string, query url.Values, body []byte, auth authKind) (*http.Request, error) {
	// path is already escaped segment by segment; building the string
	// keeps it so, and the request-target signed below is what is sent.
	target := c.base.String() + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch auth {
	case authOwner:
		if c.ownerToken == "" {
			return nil, errors.New("sdk: no owner token")
		}
		req.Header.Set("Authorization", "Bearer "+c.ownerToken)
	case authAgent:
		if err := c.sign(ctx, req, body); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// sign is the one place agent requests are signed: the request-target as
// it goes on the wire, the exact body, a fresh nonce, now + SignatureTTL,
// in the server's deployment domain.
func (c *conn) sign(ctx context.Context, req *http.Request, body []byte) error {
	if c.signer == nil {
		return errors.New("sdk: no agent key")
	}
	dom, err := c.deploymentDomain(ctx)
	if err != nil {
		return err
	}
	nonce, err := agentauth.NewNonce()
	if err != nil {
		return fmt.Errorf("sdk: nonce: %w", err)
	}
	s, err := signRequest(ctx, c.signer, dom, req.Method, req.URL.RequestURI(), body, nonce, c.now().Add(SignatureTTL))
	if err != nil {
		return fmt.Errorf("sdk: sign request: %w", err)
	}
	s.Apply(req.Header)
	return nil
}

// deploymentDomain is the EIP-712 domain agent requests are signed in:
// the pinned deployment, or the one the server publishes, fetched once
// and kept. A failed fetch is not kept; the next request retries.
func (c *conn) deploymentDomain(ctx context.Context) (agentauth.Domain, error) {
	c.domMu.Lock()
	defer c.domMu.Unlock()
	if c.domain.Version() != 0 {
		return c.domain, nil
	}
	d, err := c.deployment(ctx)
	if err != nil {
		return agentauth.Domain{}, fmt.Errorf("sdk: fetch the server's deployment id (GET /v1/deployment) to sign with: %w", err)
	}
	id, err := agentauth.ParseDeployment(d.DeploymentID)
	if err != nil {
		return agentauth.Domain{}, fmt.Errorf("sdk: GET /v1/deployment: %w", err)
	}
	c.domain = agentauth.DeploymentDomain(id)
	return c.domain, nil
}

func (c *conn) deployment(ctx context.Context) (*api.Deployment, error) {
	var d api.Deployment
	if _, err := c.do(ctx, http.MethodGet, "/v1/deployment", nil, nil, authNone, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// do sends a request and decodes a 2xx JSON answer into out (if non-nil).
// It returns the status code.
func (c *conn) do(ctx context.Context, method, path string, query url.Values, in any, auth authKind, out any) (int, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return 0, fmt.Errorf("sdk: encode request: %w", err)
		}
	}
	req, err := c.newRequest(ctx, method, path, query, body, auth)
	if err != nil {
		return 0, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBody+1))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("sdk: read answer: %w", err)
	}
	if len(raw) > MaxResponseBody {
		return resp.StatusCode, fmt.Errorf("sdk: answer of %s %s larger than %d bytes", method, path, MaxResponseBody)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, decodeError(resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("sdk: decode answer of %s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// Health checks GET /healthz.
func (c *conn) health(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodGet, "/healthz", nil, nil, authNone, nil)
	return err
}

// escape is one path segment.
func escape(s string) string { return url.PathEscape(s) }

// empty is the body of POSTs that take none: the server reads "{}".
var empty = struct{}{}

// NewIdempotencyKey returns a fresh random idempotency key, as the SDK
// makes one for a mutating call given none. Keep it to retry the call:
// the server answers a retry with the original spend.
func NewIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "sdk-" + hex.EncodeToString(b[:])
}
