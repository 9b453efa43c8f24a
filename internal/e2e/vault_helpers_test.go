package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/agentauth"
)

// agentHTTP is how a test agent talks to Purser: it follows no redirect
// and asks for no compression, so what it records is what came back.
var agentHTTP = &http.Client{
	Timeout:       60 * time.Second,
	Transport:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 256},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// proxyAgent signs an agent's requests and keeps every byte it received
// (status lines, headers, bodies), for the leak searches.
type proxyAgent struct {
	n   *node
	dom agentauth.Domain
	key *ecdsa.PrivateKey
	mu  sync.Mutex
	got bytes.Buffer
}

func (n *node) proxyAgent(t *testing.T, key *ecdsa.PrivateKey) *proxyAgent {
	return &proxyAgent{n: n, dom: n.domain(t), key: key}
}

// received is every byte the agent was answered so far.
func (p *proxyAgent) received() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.got.Bytes())
}

// do sends a signed request for pathQuery (a /v1/... path with its query)
// with extra headers; safe in goroutines (it returns errors, never fails
// the test).
func (p *proxyAgent) do(method, pathQuery string, body []byte, extra http.Header) (answer, http.Header, error) {
	req, err := http.NewRequest(method, p.n.url+pathQuery, bytes.NewReader(body))
	if err != nil {
		return answer{}, nil, err
	}
	for k, vs := range extra {
		req.Header[k] = vs
	}
	nonce, err := agentauth.NewNonce()
	if err != nil {
		return answer{}, nil, err
	}
	s, err := agentauth.Sign(p.key, p.dom, method, pathQuery, body, nonce, time.Now().Add(time.Minute))
	if err != nil {
		return answer{}, nil, err
	}
	s.Apply(req.Header)
	resp, err := agentHTTP.Do(req)
	if err != nil {
		return answer{}, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	p.mu.Lock()
	fmt.Fprintf(&p.got, "%s %s\r\n", resp.Proto, resp.Status)
	resp.Header.Write(&p.got)
	p.got.WriteString("\r\n")
	p.got.Write(raw)
	p.got.WriteString("\r\n")
	p.mu.Unlock()
	if err != nil {
		return answer{}, nil, fmt.Errorf("%s %s: read answer: %w", method, pathQuery, err)
	}
	a := answer{status: resp.StatusCode, body: raw}
	var e struct {
		Code    string         `json:"code"`
		Details map[string]any `json:"details"`
	}
	if resp.Header.Get(api.HeaderError) != "" && json.Unmarshal(raw, &e) == nil {
		a.code, a.details = e.Code, e.Details
	}
	return a, resp.Header, nil
}

// call is do for the test goroutine.
func (p *proxyAgent) call(t *testing.T, method, pathQuery string, body []byte, extra http.Header) (answer, http.Header) {
	t.Helper()
	a, h, err := p.do(method, pathQuery, body, extra)
	if err != nil {
		t.Fatal(err)
	}
	return a, h
}

// reasons are the decision reasons of a refused call.
func (a answer) reasons() []string {
	rs, _ := a.details["reasons"].([]any)
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		s, _ := r.(string)
		out = append(out, s)
	}
	return out
}

// refusedFor reports whether a is Purser's 403 spend_denied for reason.
func (a answer) refusedFor(h http.Header, reason string) bool {
	return a.status == 403 && a.code == "spend_denied" && h.Get(api.HeaderError) == "spend_denied" && slices.Contains(a.reasons(), reason)
}

// mustOwner is owner with the status checked; it decodes the answer into
// out (if not nil).
func mustOwner(t *testing.T, n *node, method, path string, body any, want int, out any) answer {
	t.Helper()
	a := owner(t, n, method, path, body)
	if a.status != want {
		t.Fatalf("%s %s: %s, want HTTP %d", method, path, a, want)
	}
	if out != nil {
		if err := json.Unmarshal(a.body, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, a)
		}
	}
	return a
}

// ownerSpend is the owner's view of spend id.
func ownerSpend(t *testing.T, n *node, id string) api.Spend {
	t.Helper()
	var sp api.Spend
	mustOwner(t, n, "GET", "/v1/spends/"+id, nil, 200, &sp)
	return sp
}

// agentSpends are every spend of the agent ref (at most 1000).
func agentSpends(t *testing.T, n *node, ref string) []api.Spend {
	t.Helper()
	var out api.Spends
	mustOwner(t, n, "GET", "/v1/spends?limit=1000&agent="+ref, nil, 200, &out)
	return out.Spends
}

func spendHas(sp api.Spend, r string) bool { return slices.Contains(sp.Reasons, r) }

// countingFront is a reverse proxy in front of upstream that counts the
// requests it passes: how a test proves a call did or did not reach an
// upstream it cannot instrument (stripe-mock).
func countingFront(t *testing.T, upstream string) (string, *atomic.Int64) {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &n
}

func joinReasons(sp api.Spend) string { return strings.Join(sp.Reasons, ",") }
