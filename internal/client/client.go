// Package client is a typed Go client of Purser's HTTP API (docs/api.md).
// The CLI and the end-to-end tests use it; it speaks the same API users do.
//
// Owner endpoints authenticate with a bearer token (WithOwnerToken); agent
// endpoints (/v1/agent/...) are signed per request with the agent's
// secp256k1 identity key (WithAgentKey): every signed request carries a
// fresh random nonce and expires two minutes after it is built.
//
// Errors answered by the server as JSON are returned as *APIError.
package client

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/purserhq/purser/internal/agentauth"
)

const (
	// DefaultTimeout bounds each request of the default http.Client.
	DefaultTimeout = 30 * time.Second
	// MaxResponseBody caps how much of a response is read (the audit
	// export stream excepted).
	MaxResponseBody = 8 << 20
	// SignatureTTL is how long a signed agent request stays valid.
	SignatureTTL = 2 * time.Minute
)

// Client calls one Purser server. It is safe for concurrent use.
type Client struct {
	base       *url.URL
	hc         *http.Client
	ownerToken string
	agentKey   *ecdsa.PrivateKey
	userAgent  string
	now        func() time.Time

	domMu  sync.Mutex
	domain agentauth.Domain // zero until pinned or fetched
}

// Option configures a Client.
type Option func(*Client)

// WithOwnerToken sets the bearer token of owner endpoints.
func WithOwnerToken(tok string) Option { return func(c *Client) { c.ownerToken = tok } }

// WithAgentKey sets the identity key that signs agent requests.
func WithAgentKey(key *ecdsa.PrivateKey) Option { return func(c *Client) { c.agentKey = key } }

// WithDeployment pins the deployment id agent requests are bound to
// (0x and 64 hex digits, as GET /v1/deployment publishes it). Without it
// the client asks the server once, before its first signed request.
// Pinning keeps a server that lies about its id from collecting
// signatures it could replay to the pinned deployment.
func WithDeployment(id [32]byte) Option {
	return func(c *Client) { c.domain = agentauth.DeploymentDomain(id) }
}

// WithHTTPClient replaces the default http.Client (30 s timeout).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// New returns a client of the server at baseURL (for example
// http://127.0.0.1:8402). Only http and https URLs are accepted.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("client: server URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: server URL %q: want http://host:port or https://host", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("client: server URL %q must not have a query or fragment", baseURL)
	}
	c := &Client{base: u, hc: &http.Client{Timeout: DefaultTimeout}, userAgent: "purser-client", now: time.Now}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		c.hc = &http.Client{Timeout: DefaultTimeout}
	}
	return c, nil
}

// AgentAddress is the 0x address of the agent key, or "" without one.
func (c *Client) AgentAddress() string {
	if c.agentKey == nil {
		return ""
	}
	return agentauth.Address(c.agentKey).Hex()
}

// APIError is an error answer of the server. Code is the stable code of
// docs/api.md; for answers that are not a JSON error body it is
// "http_<status>".
type APIError struct {
	Status    int
	Code      string
	Message   string
	Details   map[string]any
	RequestID string

	rawDetails json.RawMessage
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s (HTTP %d)", e.Code, e.Status)
	}
	return e.Message
}

// RawDetails returns details exactly as the server sent them.
func (e *APIError) RawDetails() json.RawMessage { return e.rawDetails }

// Reasons returns details.reasons as strings (spend_denied).
func (e *APIError) Reasons() []string {
	l, _ := e.Details["reasons"].([]any)
	out := make([]string, 0, len(l))
	for _, v := range l {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// IsCode reports whether err is an *APIError with the given code.
func IsCode(err error, code string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == code
}

type authKind int

const (
	authNone authKind = iota
	authOwner
	authAgent
)

var errNoOwnerToken = errors.New("client: no owner token configured")
var errNoAgentKey = errors.New("client: no agent key configured")

// newRequest builds a request with its credentials. body is sent exactly
// as given (nil for none) and, for agent requests, signed as such.
func (c *Client) newRequest(ctx context.Context, method, path string, query url.Values, body []byte, auth authKind) (*http.Request, error) {
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
			return nil, errNoOwnerToken
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
func (c *Client) sign(ctx context.Context, req *http.Request, body []byte) error {
	if c.agentKey == nil {
		return errNoAgentKey
	}
	dom, err := c.Domain(ctx)
	if err != nil {
		return err
	}
	nonce, err := agentauth.NewNonce()
	if err != nil {
		return fmt.Errorf("client: nonce: %w", err)
	}
	s, err := agentauth.Sign(c.agentKey, dom, req.Method, req.URL.RequestURI(), body, nonce, c.now().Add(SignatureTTL))
	if err != nil {
		return fmt.Errorf("client: sign request: %w", err)
	}
	s.Apply(req.Header)
	return nil
}

// Deployment is what GET /v1/deployment answers.
type Deployment struct {
	DeploymentID string `json:"deployment_id"`
	AuthVersions []int  `json:"auth_versions"`
	EIP712Domain struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Salt    string `json:"salt"`
	} `json:"eip712_domain"`
}

// GetDeployment asks the server for its deployment id (no credentials).
func (c *Client) GetDeployment(ctx context.Context) (*Deployment, error) {
	var d Deployment
	if _, _, err := c.do(ctx, http.MethodGet, "/v1/deployment", nil, nil, authNone, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// Domain is the EIP-712 domain agent requests are signed in: the pinned
// deployment (WithDeployment), or the one the server publishes, fetched
// once and kept. A failed fetch is not kept; the next request retries.
func (c *Client) Domain(ctx context.Context) (agentauth.Domain, error) {
	c.domMu.Lock()
	defer c.domMu.Unlock()
	if c.domain.Version() != 0 {
		return c.domain, nil
	}
	d, err := c.GetDeployment(ctx)
	if err != nil {
		return agentauth.Domain{}, fmt.Errorf("client: fetch the server's deployment id (GET /v1/deployment) to sign with: %w", err)
	}
	id, err := agentauth.ParseDeployment(d.DeploymentID)
	if err != nil {
		return agentauth.Domain{}, fmt.Errorf("client: GET /v1/deployment: %w", err)
	}
	c.domain = agentauth.DeploymentDomain(id)
	return c.domain, nil
}

// do sends a request and decodes a 2xx JSON answer into out (if non-nil).
// It returns the status code and the raw body of the answer.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in any, auth authKind, out any) (int, []byte, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return 0, nil, fmt.Errorf("client: encode request: %w", err)
		}
	}
	req, err := c.newRequest(ctx, method, path, query, body, auth)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBody+1))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("client: read answer: %w", err)
	}
	if len(raw) > MaxResponseBody {
		return resp.StatusCode, nil, fmt.Errorf("client: answer of %s %s larger than %d bytes", method, path, MaxResponseBody)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, raw, decodeError(resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, raw, fmt.Errorf("client: decode answer of %s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, raw, nil
}

// decodeError turns an error answer into an *APIError.
func decodeError(status int, raw []byte) *APIError {
	var w struct {
		Code      string          `json:"code"`
		Message   string          `json:"message"`
		Details   json.RawMessage `json:"details"`
		RequestID string          `json:"request_id"`
	}
	if err := json.Unmarshal(raw, &w); err != nil || w.Code == "" {
		msg := strings.TrimSpace(string(raw))
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		if msg == "" {
			msg = http.StatusText(status)
		}
		return &APIError{Status: status, Code: fmt.Sprintf("http_%d", status), Message: msg}
	}
	e := &APIError{Status: status, Code: w.Code, Message: w.Message, RequestID: w.RequestID}
	if len(w.Details) > 0 && string(w.Details) != "null" {
		e.rawDetails = w.Details
		_ = json.Unmarshal(w.Details, &e.Details)
	}
	return e
}

// escape is one path segment.
func escape(s string) string { return url.PathEscape(s) }

// Health checks GET /healthz.
func (c *Client) Health(ctx context.Context) error {
	_, _, err := c.do(ctx, http.MethodGet, "/healthz", nil, nil, authNone, nil)
	return err
}
