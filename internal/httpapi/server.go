package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/apiproxy"
	"github.com/purserhq/purser/internal/mandate"
	"github.com/purserhq/purser/internal/metrics"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/strictjson"
	"github.com/purserhq/purser/internal/webhook"
)

// MaxBody is the largest request body accepted.
const MaxBody = 1 << 20

// Config wires a Server.
type Config struct {
	Service    *spend.Service
	Assets     *money.Registry
	OwnerToken string // compared in constant time, never logged
	Logger     *slog.Logger
	Metrics    *metrics.Registry
	Clock      spend.Clock
	Ready      func(ctx context.Context) error // health check
	// Chains reads on-chain balances; nil when no chain is connected.
	Chains Chains
	// Faucet funds agent wallets on the dev chain (purser fund); nil
	// elsewhere.
	Faucet Faucet
	// Relayer is the address that pays gas for payouts.
	Relayer string
	// Deployment is this deployment's id: agent signatures are bound to
	// it (EIP-712 domain version 2, salt) and GET /v1/deployment publishes
	// it. Every node of one cluster has the same id. Zero means a random
	// id for this process (tests).
	Deployment [32]byte
	// AcceptUnboundSignatures also accepts version 1 agent signatures,
	// which bind no deployment, for a transition (serve
	// --accept-unbound-signatures).
	AcceptUnboundSignatures bool
	// HostNames are the names (without port) the server answers to in
	// the Host header, besides localhost and IP literals: a request for
	// any other name is refused, so a DNS-rebinding page cannot read the
	// API or /metrics. "*" turns the check off.
	HostNames []string
	// PublicURL is the portal's origin (serve --public-url): owner
	// enrolment links are <PublicURL>/enrol#<token>.
	PublicURL string
	// MetricsAuth is "owner" to require the owner token on /metrics;
	// "" or "none" leaves it open (for a scraper on loopback).
	MetricsAuth string
	// Portal, when set, serves every path outside /v1/, /healthz and
	// /metrics (the owner portal, internal/portal), behind the same Host
	// check as the API.
	Portal http.Handler
	// Webhooks, if set, serves /v1/webhooks (docs/webhooks.md).
	Webhooks *webhook.Webhooks
	// Vault, if set, serves /v1/vault, /v1/agent/grants and /v1/proxy
	// (docs/vault.md).
	Vault *apiproxy.Vault
}

// Server serves the API.
type Server struct {
	svc        *spend.Service
	assets     *money.Registry
	ownerHash  [32]byte
	log        *slog.Logger
	clock      spend.Clock
	ready      func(ctx context.Context) error
	reg        *metrics.Registry
	requests   *metrics.CounterVec
	latency    *metrics.HistogramVec
	decisions  *metrics.CounterVec
	authzLat   *metrics.HistogramVec
	mux        *http.ServeMux
	authFailed *metrics.CounterVec
	chains     Chains
	faucet     Faucet
	relayer    string

	domain        agentauth.Domain
	acceptUnbound bool
	hosts         map[string]bool // nil: any host
	metricsOwner  bool
	portal        http.Handler
	publicURL     string

	// patterns are the mux patterns registered by handle, in order:
	// docs/openapi.yaml is checked against them.
	patterns []string
	hooks    *webhook.Webhooks
	vault    *apiproxy.Vault
	proxyH   http.Handler // /v1/proxy/, outside the mux
}

// New builds the server and its routes.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = spend.SystemClock{}
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewRegistry()
	}
	s := &Server{
		svc: cfg.Service, assets: cfg.Assets, ownerHash: sha256.Sum256([]byte(cfg.OwnerToken)),
		log: cfg.Logger, clock: cfg.Clock, ready: cfg.Ready, reg: cfg.Metrics, mux: http.NewServeMux(),
		chains: cfg.Chains, faucet: cfg.Faucet, relayer: cfg.Relayer,
		acceptUnbound: cfg.AcceptUnboundSignatures, metricsOwner: cfg.MetricsAuth == "owner",
		portal:    cfg.Portal,
		publicURL: strings.TrimSuffix(cfg.PublicURL, "/"),
		hooks:     cfg.Webhooks,
		vault:     cfg.Vault,
	}
	if cfg.Deployment == ([32]byte{}) {
		rand.Read(cfg.Deployment[:]) //nolint:errcheck // crypto/rand does not fail
	}
	s.domain = agentauth.DeploymentDomain(cfg.Deployment)
	s.hosts = map[string]bool{"localhost": true}
	for _, h := range cfg.HostNames {
		if h == "*" {
			s.hosts = nil
			break
		}
		if h != "" {
			s.hosts[normalHost(h)] = true
		}
	}
	s.requests = s.reg.NewCounterVec("purser_http_requests_total", "HTTP requests by route and status code.", "route", "code")
	s.latency = s.reg.NewHistogramVec("purser_http_request_duration_seconds", "HTTP request latency by route.", metrics.DefaultLatencyBuckets, "route")
	s.decisions = s.reg.NewCounterVec("purser_authorizations_total", "Spend authorizations by decision and reason code.", "decision", "reason")
	s.authzLat = s.reg.NewHistogramVec("purser_authorization_duration_seconds", "Latency of spend authorizations by decision.", metrics.DefaultLatencyBuckets, "decision")
	s.authFailed = s.reg.NewCounterVec("purser_auth_failures_total", "Refused credentials by error code.", "code")
	s.routes()
	return s
}

// Handler returns the root handler.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// serveHTTP refuses requests for host names this server does not serve
// before any route sees them. A DNS-rebinding page reaches a loopback
// server under its own name (Host: evil.example), so its reads are
// refused; IP literals cannot be rebound and are always served, as is
// localhost.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if s.hosts != nil {
		h := normalHost(r.Host)
		if !s.hosts[h] && !isIPLiteral(h) {
			s.authFailed.Inc(codeHostNotServed)
			rid := newRequestID()
			r = r.WithContext(context.WithValue(r.Context(), ridKey{}, rid))
			w.Header().Set("X-Request-Id", rid)
			w.Header().Set("Cache-Control", "no-store")
			if strings.HasPrefix(r.URL.Path, apiproxy.Prefix) {
				w.Header().Set(api.HeaderError, codeHostNotServed) // Purser's answer, not the upstream's
			}
			s.writeError(w, r, &spend.Error{Code: codeHostNotServed,
				Message: "this server does not answer for the host name in the Host header; the operator can add it with purser serve --host-names",
				Details: map[string]any{}})
			return
		}
	}
	if rest, ok := strings.CutPrefix(r.URL.EscapedPath(), apiproxy.Prefix); ok && s.proxyH != nil {
		// Proxied calls skip the mux, which would clean the path (and
		// redirect): the proxy judges the path exactly as the agent sent
		// and signed it, and refuses what could steer it elsewhere.
		name, _, _ := strings.Cut(rest, "/")
		r.SetPathValue("name", name)
		s.proxyH.ServeHTTP(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

const codeHostNotServed = "host_not_served"

// normalHost is a Host header's name without port, brackets or a
// trailing dot, in lower case.
func normalHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

func isIPLiteral(h string) bool {
	_, err := netip.ParseAddr(h)
	return err == nil && !strings.Contains(h, "%") // no zone: a zone names an interface, not a host
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handle registers a route with request ids, panic recovery, the body
// limit, logging and metrics around it.
func (s *Server) handle(pattern string, h handlerFunc) {
	s.patterns = append(s.patterns, pattern)
	s.mux.HandleFunc(pattern, s.wrap(pattern, h))
}

// wrap is handle's handler for route.
func (s *Server) wrap(route string, h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rid := newRequestID()
		w.Header().Set("X-Request-Id", rid)
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		rw := &statusWriter{ResponseWriter: w}
		ctx := context.WithValue(r.Context(), ridKey{}, rid)
		r = r.WithContext(ctx)
		r.Body = http.MaxBytesReader(rw, r.Body, MaxBody)
		func() {
			defer func() {
				if p := recover(); p != nil {
					if p == http.ErrAbortHandler {
						panic(p) // abort the connection: the answer was cut short on purpose
					}
					s.log.Error("panic in handler", "route", route, "request_id", rid, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
					s.writeError(rw, r, errors.New("panic"))
				}
			}()
			if err := h(rw, r); err != nil {
				s.writeError(rw, r, err)
			}
		}()
		d := time.Since(start)
		code := rw.status
		if code == 0 {
			code = http.StatusOK
		}
		s.requests.Inc(route, fmt.Sprint(code))
		s.latency.Observe(d, route)
		s.log.Debug("request", "route", route, "status", code, "duration_ms", d.Milliseconds(), "request_id", rid)
	}
}

type ridKey struct{}

func requestID(r *http.Request) string {
	v, _ := r.Context().Value(ridKey{}).(string)
	return v
}

func newRequestID() string {
	var b [8]byte
	rand.Read(b[:]) //nolint:errcheck // crypto/rand does not fail
	return hex.EncodeToString(b[:])
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// readBody reads the whole (limited) body.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, &spend.Error{Code: "body_too_large", Message: fmt.Sprintf("request body is larger than %d bytes", MaxBody)}
	}
	if err != nil {
		return nil, &spend.Error{Code: spend.CodeInvalidRequest, Message: "could not read the request body"}
	}
	return b, nil
}

// bindJSON reads the (limited) body and decodes it strictly into v.
func bindJSON(r *http.Request, v any) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	return decodeStrict(body, v)
}

// decodeStrict decodes one JSON object into v, refusing unknown fields
// and trailing data (a misspelled field must never silently vanish), and
// everything strictjson refuses: invalid UTF-8, duplicate keys, keys that
// differ only in case, keys that match a field only case-insensitively.
// A body must mean one thing to every reader of the audit trail.
func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if err := strictjson.Decode(body, v); err != nil {
		var se *strictjson.Error
		if errors.As(err, &se) {
			return strictError(se)
		}
		msg := err.Error()
		var field string
		if strings.HasPrefix(msg, "json: unknown field ") {
			field = strings.Trim(strings.TrimPrefix(msg, "json: unknown field "), `"`)
			msg = fmt.Sprintf("unknown field %q", field)
		} else {
			var ute *json.UnmarshalTypeError
			if errors.As(err, &ute) {
				field = ute.Field
				msg = fmt.Sprintf("field %q must be a %s", ute.Field, ute.Type)
			} else {
				msg = "malformed JSON: " + strings.TrimPrefix(msg, "json: ")
			}
		}
		e := &spend.Error{Code: spend.CodeInvalidRequest, Message: msg}
		if field != "" {
			e.Details = map[string]any{"field": field}
		}
		return e
	}
	return nil
}

// strictError is a strictjson refusal as an invalid_request answer:
// details.reason names the rule, details.field where it broke. The
// message quotes keys JSON-escaped, never raw bytes.
func strictError(e *strictjson.Error) *spend.Error {
	d := map[string]any{"reason": e.Reason, "offset": e.Offset}
	if e.Field != "" {
		d["field"] = e.Field
	}
	return &spend.Error{Code: spend.CodeInvalidRequest, Message: e.Error(), Details: d}
}

// checkSignedBody refuses a signed body that is not one unambiguous JSON
// value (see strictjson.Check). An empty body is fine: GETs have none.
func checkSignedBody(body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := strictjson.Check(body); err != nil {
		var se *strictjson.Error
		if errors.As(err, &se) {
			return strictError(se)
		}
		return &spend.Error{Code: spend.CodeInvalidRequest, Message: "malformed JSON"}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	return err
}

// writeError is the one place errors become responses. An error without
// a stable code is internal: its text is logged, never sent.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	rid := requestID(r)
	body := map[string]any{"request_id": rid}
	code := spend.CodeOf(err)
	status, known := spend.HTTPStatus(code)
	switch {
	case code == "" && errors.Is(err, context.DeadlineExceeded):
		code, status = spend.CodeUnavailable, 503
		body["message"] = "the request did not finish in time; nothing was changed"
	case code == "" && errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client hung up before its turn: nothing ran, and nobody
		// reads this answer. Not a server fault, so not an error line.
		s.log.Info("request canceled by the client", "request_id", rid, "route", r.Pattern)
		code, status = spend.CodeUnavailable, 503
		body["message"] = "the request was canceled before it ran; nothing was changed"
	case code == "":
		s.log.Error("internal error", "request_id", rid, "route", r.Pattern, "err", err)
		code, status = "internal", 500
		body["message"] = "internal error; the server log has the details under this request_id"
	default:
		if !known {
			// Every code is registered (spend/codes_test.go scans for
			// strays); one that slipped through came from input checks.
			status = 400
		}
		var se *spend.Error
		if errors.As(err, &se) {
			body["message"] = se.Message
			if se.Details != nil {
				body["details"] = se.Details
			}
		} else if m := interface{ Message() string }(nil); errors.As(err, &m) {
			body["message"] = m.Message()
		} else {
			body["message"] = err.Error()
		}
		if d, ok := detailsOf(err); ok {
			body["details"] = d
		}
	}
	body["code"] = code
	if _, ok := body["details"]; !ok {
		body["details"] = map[string]any{}
	}
	writeJSON(w, status, body) //nolint:errcheck // the client went away
}

// detailsOf extracts structured details from errors of other packages
// (mandate field errors, audit chain positions).
func detailsOf(err error) (map[string]any, bool) {
	var ve *mandate.ValidationError
	if errors.As(err, &ve) {
		fields := make([]map[string]string, len(ve.Fields))
		for i, f := range ve.Fields {
			fields[i] = map[string]string{"field": f.Field, "code": f.Code, "message": f.Message}
		}
		return map[string]any{"fields": fields}, true
	}
	if ve, ok := spend.IsChainBroken(err); ok {
		return map[string]any{"seq": ve.Seq, "reason": ve.Reason}, true
	}
	return nil, false
}

// owner authenticates the owner token.
func (s *Server) owner(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		auth := r.Header.Get("Authorization")
		if auth == "" && r.Header.Get(agentauth.HeaderSignature) != "" {
			s.authFailed.Inc("wrong_credential")
			return &spend.Error{Code: "wrong_credential", Message: "this is an owner endpoint; agent signatures are not accepted here"}
		}
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		sum := sha256.Sum256([]byte(tok))
		if !ok || subtle.ConstantTimeCompare(sum[:], s.ownerHash[:]) != 1 {
			s.authFailed.Inc("unauthorized")
			return &spend.Error{Code: "unauthorized", Message: "owner token missing or wrong (Authorization: Bearer <token from owner.token>)"}
		}
		return h(w, r)
	}
}

type agentHandler func(w http.ResponseWriter, r *http.Request, c spend.Caller) error

// maxAgentBody bounds an agent request: a spend with an x402 offer is
// about 2 KiB.
const maxAgentBody = 16 << 10

// agent verifies the request's EIP-712 signature and passes the caller on;
// the service resolves the key and spends the nonce in its transaction.
func (s *Server) agent(h agentHandler) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := refuseBearer(s, r); err != nil {
			return err
		}
		body, err := readBody(r)
		if err != nil {
			return err
		}
		if len(body) > maxAgentBody {
			// Its exact bytes go into the audit trail: an agent request is
			// small, and an agent cannot make Purser store more.
			return &spend.Error{Code: "body_too_large", Message: fmt.Sprintf("an agent request body is at most %d bytes", maxAgentBody)}
		}
		c, err := s.verifyAgent(w, r, body, false)
		if err != nil {
			return err
		}
		return h(w, r, c)
	}
}

// refuseBearer refuses an owner token on an agent route.
func refuseBearer(s *Server, r *http.Request) error {
	if r.Header.Get("Authorization") == "" {
		return nil
	}
	s.authFailed.Inc("wrong_credential")
	return &spend.Error{Code: "wrong_credential", Message: "this is an agent endpoint; sign the request with the agent's identity key instead of a bearer token"}
}

// verifyAgent checks a signed agent request over body and admits it
// through the request rate gate. The audit trail keeps the exact body
// (JSON, which must then be unambiguous), or with hashOnly its SHA-256
// (a proxied call's or a co-signing message's bytes: the signature covers
// the hash, which is enough to verify it later).
func (s *Server) verifyAgent(w http.ResponseWriter, r *http.Request, body []byte, hashOnly bool) (spend.Caller, error) {
	signed, err := agentauth.Parse(r.Header)
	if err != nil {
		s.authFailed.Inc(spend.CodeOf(err))
		return spend.Caller{}, err
	}
	dom, err := signed.VerifyFor(s.domain, s.acceptUnbound, r.Method, r.RequestURI, body, s.clock.Now())
	if err != nil {
		s.authFailed.Inc(spend.CodeOf(err))
		return spend.Caller{}, err
	}
	c := spend.Caller{
		Address:     signed.Agent.Hex(),
		Nonce:       "0x" + hex.EncodeToString(signed.Nonce[:]),
		Expires:     signed.Expires,
		Signature:   "0x" + hex.EncodeToString(signed.Signature[:]),
		Method:      r.Method,
		Path:        r.RequestURI,
		AuthVersion: dom.Version(),
		Deployment:  dom.DeploymentHex(),
	}
	if hashOnly {
		sum := sha256.Sum256(body)
		c.BodySHA256 = "0x" + hex.EncodeToString(sum[:])
	} else {
		// The body goes into the audit trail as the proof of what was
		// asked: it must read the same to every verifier.
		if err := checkSignedBody(body); err != nil {
			return spend.Caller{}, err
		}
		c.Body = body
	}
	if err := s.svc.Admit(c); err != nil {
		w.Header().Set("Retry-After", "1")
		return spend.Caller{}, err
	}
	return c, nil
}
