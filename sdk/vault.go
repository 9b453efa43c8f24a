package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/purserhq/purser/api"
)

// Vault and proxy types (docs/vault.md).
type (
	Credential              = api.Credential
	PutCredentialRequest    = api.PutCredentialRequest
	RotateCredentialRequest = api.RotateCredentialRequest
	SecretVersion           = api.SecretVersion
	Grant                   = api.Grant
	GrantRequest            = api.GrantRequest
	Tool                    = api.Tool
	ToolRequest             = api.ToolRequest
	AgentGrant              = api.AgentGrant
	AgentGrants             = api.AgentGrants
)

// Headers of proxied calls (docs/vault.md).
const (
	HeaderSpendID        = api.HeaderSpendID
	HeaderPrice          = api.HeaderPrice
	HeaderError          = api.HeaderError
	HeaderIdempotencyKey = api.HeaderIdempotencyKey
)

// MaxProxyBody is the largest request body Purser's proxy takes (1 MiB):
// a larger one is refused by the SDK before anything is signed or sent.
const MaxProxyBody = 1 << 20

// ErrProxyBodyTooLarge is returned, before anything is signed, for a
// proxied request whose body is larger than MaxProxyBody.
var ErrProxyBodyTooLarge = fmt.Errorf("sdk: the request body is larger than the proxy's limit of %d bytes (1 MiB)", MaxProxyBody)

// PutCredential stores a new credential in the vault. req.Secret is sent
// once and never answered: no call returns a secret.
func (o *Owner) PutCredential(ctx context.Context, req PutCredentialRequest) (*Credential, error) {
	var c Credential
	if _, err := o.c.do(ctx, http.MethodPost, "/v1/vault", nil, req, authOwner, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// RotateCredential replaces a credential's secret with a new version;
// req.Grace keeps the previous one usable for that long.
func (o *Owner) RotateCredential(ctx context.Context, name string, req RotateCredentialRequest) (*Credential, error) {
	return o.credentialCall(ctx, http.MethodPost, name, "/rotate", req)
}

// Credentials lists the vault's credentials (never their secrets).
func (o *Owner) Credentials(ctx context.Context) ([]Credential, error) {
	var out api.Credentials
	if _, err := o.c.do(ctx, http.MethodGet, "/v1/vault", nil, nil, authOwner, &out); err != nil {
		return nil, err
	}
	return out.Credentials, nil
}

// Credential fetches one credential with its secret's versions, its
// grants and its tools.
func (o *Owner) Credential(ctx context.Context, name string) (*Credential, error) {
	return o.credentialCall(ctx, http.MethodGet, name, "", nil)
}

// DeleteCredential removes a credential, its secrets, grants and tools,
// and returns it as it was.
func (o *Owner) DeleteCredential(ctx context.Context, name string) (*Credential, error) {
	return o.credentialCall(ctx, http.MethodDelete, name, "", nil)
}

func (o *Owner) credentialCall(ctx context.Context, method, name, suffix string, in any) (*Credential, error) {
	var c Credential
	if _, err := o.c.do(ctx, method, "/v1/vault/"+escape(name)+suffix, nil, in, authOwner, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// Grant lets an agent (req.Agent, an id or a name) call the credential's
// upstream; granting again replaces the agent's grant.
func (o *Owner) Grant(ctx context.Context, name string, req GrantRequest) (*Grant, error) {
	var g Grant
	if _, err := o.c.do(ctx, http.MethodPost, "/v1/vault/"+escape(name)+"/grants", nil, req, authOwner, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// RevokeGrant ends an agent's grant on a credential at once.
func (o *Owner) RevokeGrant(ctx context.Context, name, agent string) (*Grant, error) {
	var g Grant
	if _, err := o.c.do(ctx, http.MethodPost, "/v1/vault/"+escape(name)+"/grants/"+escape(agent)+"/revoke", nil, empty, authOwner, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// Grants lists a credential's grants.
func (o *Owner) Grants(ctx context.Context, name string) ([]Grant, error) {
	var out api.Grants
	if _, err := o.c.do(ctx, http.MethodGet, "/v1/vault/"+escape(name)+"/grants", nil, nil, authOwner, &out); err != nil {
		return nil, err
	}
	return out.Grants, nil
}

// PutTool describes an MCP tool over a credential (req.Name names it; a
// tool of that name is replaced).
func (o *Owner) PutTool(ctx context.Context, name string, req ToolRequest) (*Tool, error) {
	var t Tool
	if _, err := o.c.do(ctx, http.MethodPost, "/v1/vault/"+escape(name)+"/tools", nil, req, authOwner, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Tools lists a credential's tools.
func (o *Owner) Tools(ctx context.Context, name string) ([]Tool, error) {
	var out api.Tools
	if _, err := o.c.do(ctx, http.MethodGet, "/v1/vault/"+escape(name)+"/tools", nil, nil, authOwner, &out); err != nil {
		return nil, err
	}
	return out.Tools, nil
}

// DeleteTool removes a tool and returns it as it was.
func (o *Owner) DeleteTool(ctx context.Context, name, tool string) (*Tool, error) {
	var t Tool
	if _, err := o.c.do(ctx, http.MethodDelete, "/v1/vault/"+escape(name)+"/tools/"+escape(tool), nil, nil, authOwner, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Grants fetches the agent's active grants and the tools they cover
// (GET /v1/agent/grants). Version changes whenever either does.
func (a *Agent) Grants(ctx context.Context) (*AgentGrants, error) {
	var g AgentGrants
	if _, err := a.c.do(ctx, http.MethodGet, "/v1/agent/grants", nil, nil, authAgent, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// Proxy calls the upstream of the vault credential through Purser: a
// signed request to /v1/proxy/{credential}{path}, which Purser checks
// against the agent's grant and mandate, sends upstream with the secret
// injected, meters and records. path is below the credential's upstream
// base path, starts with "/" and may carry a query ("/v1/search?q=x");
// it is sent, and signed, as given (escape it as the upstream expects).
// method "" is GET. body is sent as is (at most MaxProxyBody bytes);
// header's fields go upstream, but for Authorization (see
// proxyRequest), Host and Purser's own Purser-* headers. An
// Idempotency-Key in header makes a retry with the same request answer
// the first call instead of calling the upstream again.
//
// The upstream's answer is returned as it came through Purser (status,
// headers, body; redirects are not followed): the caller closes its
// body. Its Purser-Spend-Id and Purser-Price headers name the spend and
// what it cost. An answer Purser made instead of the upstream (header
// Purser-Error, or no Purser-Spend-Id) is an error: a *RefusedError when the mandate refused
// the call, an *ApprovalRequiredError when it waits for an owner (send
// the same request with the same Idempotency-Key after the approval to
// carry it out), an *Error otherwise (grant_not_found, ...).
func (a *Agent) Proxy(ctx context.Context, credential, method, path string, body []byte, header http.Header) (*http.Response, error) {
	req, err := a.proxyRequest(ctx, credential, method, path, body, header)
	if err != nil {
		return nil, err
	}
	resp, err := a.proxyClient().Do(req)
	if err != nil {
		return nil, err
	}
	// The upstream's answers carry Purser-Spend-Id, Purser's own
	// Purser-Error. One with neither is not the upstream's (a redirect of
	// Purser's router to a cleaned path, a proxy in between): handing it
	// back as the upstream's would let a client follow it.
	if resp.Header.Get(api.HeaderError) == "" && resp.Header.Get(api.HeaderSpendID) != "" {
		return resp, nil
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBody+1))
	if err != nil {
		return nil, fmt.Errorf("sdk: read Purser's answer: %w", err)
	}
	return nil, proxyError(resp, raw)
}

// proxyClient is the agent's http.Client that returns redirects instead
// of following them: a 3xx is the upstream's answer to hand back, and
// following it would send the signed headers to wherever it points.
func (a *Agent) proxyClient() *http.Client {
	hc := *a.c.hc
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &hc
}

// proxyRequest builds and signs a proxied request.
func (a *Agent) proxyRequest(ctx context.Context, credential, method, path string, body []byte, header http.Header) (*http.Request, error) {
	if credential == "" {
		return nil, errors.New("sdk: Proxy: empty credential name")
	}
	if path == "" {
		path = "/"
	}
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("sdk: Proxy: path %q must start with /", path)
	}
	if strings.Contains(path, "#") {
		return nil, fmt.Errorf("sdk: Proxy: path %q has a fragment", path)
	}
	if method == "" {
		method = http.MethodGet
	}
	if len(body) > MaxProxyBody {
		return nil, ErrProxyBodyTooLarge
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.c.base.String()+"/v1/proxy/"+escape(credential)+path, rd)
	if err != nil {
		return nil, fmt.Errorf("sdk: Proxy: %w", err)
	}
	for k, vs := range header {
		switch ck := http.CanonicalHeaderKey(k); {
		// The agent's own Authorization is not sent: Purser refuses it
		// on agent routes (the agent authenticates by its signature),
		// and the upstream gets the vault's secret instead. A client
		// such as an API's SDK that sets one anyway (a placeholder key)
		// still works through the proxy.
		case ck == "Authorization", ck == "Host", ck == "Content-Length", strings.HasPrefix(ck, "Purser-"):
		default:
			req.Header[ck] = append([]string(nil), vs...)
		}
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", a.c.userAgent)
	}
	// sign signs req.URL.RequestURI(), which is the request-target Go
	// writes on the wire: what Purser verifies is what was sent.
	if err := a.c.sign(ctx, req, body); err != nil {
		return nil, err
	}
	return req, nil
}

// proxyError turns an answer Purser made to a proxied call into the SDK's
// errors: refusals, approvals, the rest as *Error.
func proxyError(resp *http.Response, raw []byte) error {
	err := decodeError(resp.StatusCode, raw)
	var e *Error
	if re := (*RefusedError)(nil); errors.As(err, &re) || !errors.As(err, &e) {
		return err
	}
	if c := resp.Header.Get(api.HeaderError); c != "" && strings.HasPrefix(e.Code, "http_") {
		// Not a JSON error body: the header still names the code.
		e.Code = c
	}
	if e.Code != "approval_required" {
		return e
	}
	var d struct {
		SpendID string   `json:"spend_id"`
		Reasons []string `json:"reasons"`
		Spend   *Spend   `json:"spend"`
	}
	_ = json.Unmarshal(e.rawDetails, &d)
	s := d.Spend
	if s == nil {
		s = &Spend{SpendID: d.SpendID, Status: api.StatusPendingApproval, Decision: api.DecisionNeedsApproval, Reasons: d.Reasons}
	}
	if s.SpendID == "" {
		s.SpendID = resp.Header.Get(api.HeaderSpendID)
	}
	if len(s.Reasons) == 0 {
		s.Reasons = d.Reasons
	}
	return &ApprovalRequiredError{SpendID: s.SpendID, Reasons: s.Reasons, Spend: s}
}

// ProxyTransport returns an http.RoundTripper that sends every request
// through Purser's proxy to the upstream of the vault credential, as
// agent a, so that an unmodified http.Client (or an API's SDK that takes
// one) uses the API without its key. Of each request only the method,
// the path and query, the headers and the body are used: the scheme and
// host are ignored, the credential fixes them. Keep the API's own base
// URL when the credential's upstream has no base path (a request to
// https://api.example.com/v1/search goes to /v1/proxy/NAME/v1/search);
// when it has one, give the client a base URL without it.
//
// The body is read whole before signing, at most MaxProxyBody bytes: a
// larger one fails with ErrProxyBodyTooLarge, nothing sent. An
// Idempotency-Key header of the request passes through; without one, a
// key set on the request's context with WithIdempotencyKey is used. The
// request's Authorization header is not sent (Agent.Proxy). The
// client's redirects are followed through the proxy on the same host
// only: one to another host fails. Answers
// Purser made instead of the upstream are errors, as for Agent.Proxy,
// wrapped in the *url.Error http.Client returns: use errors.As. It is
// safe for concurrent use.
func ProxyTransport(a *Agent, credential string) http.RoundTripper {
	return &proxyTransport{agent: a, credential: credential}
}

type proxyTransport struct {
	agent      *Agent
	credential string
}

func (t *proxyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// http.Client follows the upstream's redirects through this
	// transport. One to another host would be sent to the credential's
	// upstream with the other host's path: refused.
	if prev := req.Response; prev != nil && prev.Request != nil && !strings.EqualFold(prev.Request.URL.Host, req.URL.Host) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("sdk: ProxyTransport: the upstream of %s redirected to another host (%s): not followed", t.credential, req.URL.Host)
	}
	body, err := readProxyBody(req)
	if err != nil {
		return nil, err
	}
	h := req.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if h.Get(api.HeaderIdempotencyKey) == "" {
		if k, _ := req.Context().Value(keyIdempotency).(string); k != "" {
			h.Set(api.HeaderIdempotencyKey, k)
		}
	}
	path := req.URL.EscapedPath()
	if req.URL.Opaque != "" {
		return nil, fmt.Errorf("sdk: ProxyTransport: opaque URL %q", req.URL)
	}
	if req.URL.RawQuery != "" {
		path += "?" + req.URL.RawQuery
	}
	resp, err := t.agent.Proxy(req.Context(), t.credential, req.Method, path, body, h)
	if err != nil {
		return nil, err
	}
	// The answer is to the caller's request (its redirects resolve
	// against it), not to the one sent to Purser.
	resp.Request = req
	return resp, nil
}

// readProxyBody reads and closes a request's body (a RoundTripper must
// close it, errors included), at most MaxProxyBody bytes.
func readProxyBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	if req.ContentLength > MaxProxyBody {
		return nil, ErrProxyBodyTooLarge
	}
	b, err := io.ReadAll(io.LimitReader(req.Body, MaxProxyBody+1))
	if err != nil {
		return nil, fmt.Errorf("sdk: read the request body: %w", err)
	}
	if len(b) > MaxProxyBody {
		return nil, ErrProxyBodyTooLarge
	}
	return b, nil
}
