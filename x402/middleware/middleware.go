// Package middleware charges for HTTP routes with x402 (v1 and v2, EVM
// "exact" scheme). A request without payment gets a 402 carrying the
// requirements both ways (the v2 PAYMENT-REQUIRED header and, where the
// network has a v1 name, a v1 JSON body); a paid request is verified with
// the facilitator, served with its response buffered, and settled only if
// the handler succeeded. Paid content never leaves when settlement fails.
//
// One payment buys one service: while a payment (an EIP-3009
// authorization: network, asset, payer, nonce) is being served by this
// process, another request carrying it is refused with a 402 before the
// facilitator or the handler sees it; once settled it is refused again
// until it expires (at most an hour), and after that, or in another
// process, the facilitator refuses it (Purser's settles an authorization
// once and checks the chain).
package middleware

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/x402"
)

// MaxBufferedBytes bounds a paid handler's buffered response; a larger
// one is refused (500) rather than sent unsettled or settled unsent.
const MaxBufferedBytes = 32 << 20

// Route is one priced route.
type Route struct {
	Pattern                   string // a net/http pattern: "GET /weather", "/api/", "POST /items/{id}"
	Amount                    string // price in the asset's atomic units, e.g. "10000" = 0.01 USDC
	Asset                     string // token address
	Network                   string // CAIP-2, e.g. "eip155:84532"
	PayTo                     string // the seller's address
	EIP712Name, EIP712Version string // the token's EIP-3009 domain, sent in extra
	Description, MimeType     string
	MaxTimeoutSeconds         int64 // default 300
}

// Config configures the middleware.
type Config struct {
	Facilitator *x402.FacilitatorClient
	Routes      []Route
	Logger      *slog.Logger
}

type route struct {
	Route
	v1Name string // "" when the network has no v1 name
}

type payerKey struct{}

// Payer returns the address that paid for the request, in a paid handler.
func Payer(ctx context.Context) string {
	s, _ := ctx.Value(payerKey{}).(string)
	return s
}

// New checks the routes and returns the middleware.
func New(cfg Config) (func(http.Handler) http.Handler, error) {
	if cfg.Facilitator == nil || cfg.Facilitator.URL == "" {
		return nil, errors.New("middleware: a facilitator is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	routes := make([]*route, len(cfg.Routes))
	for i, r := range cfg.Routes {
		amt, ok := new(big.Int).SetString(r.Amount, 10)
		if !ok || amt.Sign() <= 0 || strings.TrimLeft(r.Amount, "0123456789") != "" {
			return nil, fmt.Errorf("middleware: route %q: amount %q must be a positive integer of atomic units", r.Pattern, r.Amount)
		}
		if !common.IsHexAddress(r.Asset) || !common.IsHexAddress(r.PayTo) {
			return nil, fmt.Errorf("middleware: route %q: asset and payTo must be addresses", r.Pattern)
		}
		if _, err := x402.ChainIDOf(r.Network); err != nil {
			return nil, fmt.Errorf("middleware: route %q: %v", r.Pattern, err)
		}
		if r.EIP712Name == "" || r.EIP712Version == "" {
			return nil, fmt.Errorf("middleware: route %q: the token's EIP-712 name and version are required", r.Pattern)
		}
		if r.MaxTimeoutSeconds <= 0 {
			r.MaxTimeoutSeconds = 300
		}
		rt := &route{Route: r}
		rt.v1Name, _ = x402.V1NetworkName(r.Network)
		routes[i] = rt
		if err := func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("middleware: route %q: %v", r.Pattern, p)
				}
			}()
			mux.HandleFunc(r.Pattern, func(http.ResponseWriter, *http.Request) {}) // only to match patterns
			return nil
		}(); err != nil {
			return nil, err
		}
	}
	m := &mw{cfg: cfg, routes: routes, mux: mux, spent: &payments{m: map[string]time.Time{}}}
	return m.wrap, nil
}

type mw struct {
	cfg    Config
	routes []*route
	mux    *http.ServeMux
	spent  *payments
}

// reasonNonceUsed is the facilitator's reason for a used authorization,
// the answer to a payment already served or being served.
const reasonNonceUsed = "invalid_exact_evm_nonce_already_used"

// payments holds the payments being served (until zero) and those that
// may have been settled (until they may be forgotten).
type payments struct {
	mu        sync.Mutex
	m         map[string]time.Time
	nextSweep time.Time
}

// maxKeep bounds how long a settled payment is remembered here; past it,
// verification (the chain's authorizationState) refuses it.
const maxKeep = time.Hour

func live(until, now time.Time) bool { return until.IsZero() || now.Before(until) }

// take claims key for this request; false if another holds it or it
// was settled.
func (s *payments) take(key string) bool {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.After(s.nextSweep) {
		for k, until := range s.m {
			if !live(until, now) {
				delete(s.m, k)
			}
		}
		s.nextSweep = now.Add(time.Minute)
	}
	if until, ok := s.m[key]; ok && live(until, now) {
		return false
	}
	s.m[key] = time.Time{}
	return true
}

// release ends a claim: kept as spent until the authorization expires
// (at most maxKeep), or dropped when nothing could have been charged.
func (s *payments) release(key string, spent bool, validBefore *big.Int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !spent {
		delete(s.m, key)
		return
	}
	until := time.Now().Add(maxKeep)
	if validBefore != nil && validBefore.IsInt64() && validBefore.Int64() < until.Unix() {
		until = time.Unix(validBefore.Int64(), 0)
	}
	s.m[key] = until
}

// paymentKey names the authorization a payment carries: the token's
// authorizationState is per (chain, token, payer, nonce).
func paymentKey(rt *route, a x402.Authorization) string {
	return rt.Network + "/" + strings.ToLower(rt.Asset) + "/" + strings.ToLower(a.From) + "/" + hex.EncodeToString(a.Nonce[:])
}

// match finds the priced route of r, if any.
func (m *mw) match(r *http.Request) *route {
	_, pattern := m.mux.Handler(r)
	if pattern == "" {
		return nil
	}
	for _, rt := range m.routes {
		if rt.Pattern == pattern {
			return rt
		}
	}
	return nil
}

func requestURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.RequestURI()
}

// requirements builds the route's offer for this request, both ways.
func (rt *route) requirements(url string) (v2 *x402.Requirements, v1 *x402.Requirements, resource json.RawMessage) {
	extra := map[string]string{"name": rt.EIP712Name, "version": rt.EIP712Version}
	// Field order follows the reference server, and extra is always an
	// object: clients echo this entry byte for byte.
	raw2, _ := json.Marshal(struct {
		Scheme            string            `json:"scheme"`
		Network           string            `json:"network"`
		Amount            string            `json:"amount"`
		Asset             string            `json:"asset"`
		PayTo             string            `json:"payTo"`
		MaxTimeoutSeconds int64             `json:"maxTimeoutSeconds"`
		Extra             map[string]string `json:"extra"`
	}{"exact", rt.Network, rt.Amount, rt.Asset, rt.PayTo, rt.MaxTimeoutSeconds, extra})
	v2, _ = x402.ParseRequirements(2, raw2)
	resource, _ = json.Marshal(map[string]string{"url": url, "description": rt.Description, "mimeType": rt.MimeType})
	if rt.v1Name != "" {
		raw1, _ := json.Marshal(struct {
			Scheme            string            `json:"scheme"`
			Network           string            `json:"network"`
			MaxAmountRequired string            `json:"maxAmountRequired"`
			Resource          string            `json:"resource"`
			Description       string            `json:"description"`
			MimeType          string            `json:"mimeType"`
			PayTo             string            `json:"payTo"`
			MaxTimeoutSeconds int64             `json:"maxTimeoutSeconds"`
			Asset             string            `json:"asset"`
			Extra             map[string]string `json:"extra"`
		}{"exact", rt.v1Name, rt.Amount, url, rt.Description, rt.MimeType, rt.PayTo, rt.MaxTimeoutSeconds, rt.Asset, extra})
		v1, _ = x402.ParseRequirements(1, raw1)
	}
	return v2, v1, resource
}

func (m *mw) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt := m.match(r)
		if rt == nil {
			next.ServeHTTP(w, r)
			return
		}
		url := requestURL(r)
		v2, v1, resource := rt.requirements(url)
		p, err := x402.PaymentFromRequest(r)
		if err != nil || p == nil {
			m.paymentRequired(w, v2, v1, resource, "")
			return
		}
		var req *x402.Requirements
		switch {
		case p.Version == 2 && matchesAccepted(v2, p.Accepted):
			req = v2
		case p.Version == 1 && v1 != nil && p.Scheme == v1.Scheme && p.Network == v1.Network:
			req = v1
		default:
			m.paymentRequired(w, v2, v1, resource, "No matching payment requirements")
			return
		}
		// Claimed before verification, so that a concurrent copy never
		// reaches the handler; released when this request ends.
		key := paymentKey(rt, p.Payload.Authorization)
		if !m.spent.take(key) {
			m.paymentRequired(w, v2, v1, resource, reasonNonceUsed)
			return
		}
		spent := false
		defer func() { m.spent.release(key, spent, p.Payload.Authorization.ValidBefore) }()
		ctx := r.Context()
		vr, err := m.cfg.Facilitator.Verify(ctx, p, req)
		if err != nil {
			m.facilitatorFailed(w, err, v2, v1, resource, "verify")
			return
		}
		if !vr.IsValid {
			m.paymentRequired(w, v2, v1, resource, vr.InvalidReason)
			return
		}
		buf := &buffer{header: http.Header{}}
		next.ServeHTTP(buf, r.WithContext(context.WithValue(ctx, payerKey{}, vr.Payer)))
		if buf.status == 0 {
			buf.status = http.StatusOK
		}
		if buf.overflow {
			m.cfg.Logger.Error("x402: paid response too large to buffer; not settled", "route", rt.Pattern)
			http.Error(w, "response too large", http.StatusInternalServerError)
			return
		}
		if buf.status >= 400 {
			buf.send(w) // the handler failed: nothing is charged
			return
		}
		// Settle even if the buyer hung up: the service was rendered.
		sctx := context.WithoutCancel(ctx)
		sr, err := m.cfg.Facilitator.Settle(sctx, p, req)
		// Spent unless the facilitator says no transaction went out for
		// a reason other than the authorization being used.
		spent = err != nil || sr.Success || sr.Transaction != "" || sr.ErrorReason == "settlement_pending" || sr.ErrorReason == reasonNonceUsed
		name := x402.HeaderPaymentResponse
		if p.Version == 1 {
			name = x402.HeaderXPaymentResponse
		}
		if err != nil {
			sr = &x402.SettleResponse{Success: false, ErrorReason: "settlement_failed", Network: req.Network}
			m.cfg.Logger.Warn("x402: settle failed", "route", rt.Pattern, "err", err)
		}
		hv, _ := x402.EncodeSettleResponse(sr)
		if !sr.Success {
			w.Header().Set(name, hv)
			m.paymentRequired(w, v2, v1, resource, sr.ErrorReason)
			return
		}
		buf.header.Set(name, hv)
		buf.header.Set("Cache-Control", "private")
		buf.send(w)
	})
}

// matchesAccepted: every field of the offer but extra equals accepted's;
// every key of the offer's extra is in accepted.extra with the same value.
func matchesAccepted(offer *x402.Requirements, accepted json.RawMessage) bool {
	var want, got map[string]json.RawMessage
	if json.Unmarshal(offer.Raw, &want) != nil || json.Unmarshal(accepted, &got) != nil {
		return false
	}
	for k, v := range want {
		if k == "extra" {
			continue
		}
		if !jsonEqual(v, got[k]) {
			return false
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && k != "extra" {
			return false
		}
	}
	var we, ge map[string]json.RawMessage
	if json.Unmarshal(want["extra"], &we) != nil || json.Unmarshal(got["extra"], &ge) != nil {
		return len(we) == 0 && len(want["extra"]) > 0
	}
	for k, v := range we {
		if !jsonEqual(v, ge[k]) {
			return false
		}
	}
	return true
}

func jsonEqual(a, b json.RawMessage) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// paymentRequired answers 402 with the requirements for both versions.
func (m *mw) paymentRequired(w http.ResponseWriter, v2, v1 *x402.Requirements, resource json.RawMessage, reason string) {
	msg2, msg1 := reason, reason
	if reason == "" {
		msg2, msg1 = "Payment required", "X-PAYMENT header is required"
	}
	h := w.Header()
	if hv, err := x402.EncodePaymentRequired(&x402.PaymentRequired{Version: 2, Error: msg2, Resource: resource, Accepts: []x402.Requirements{*v2}}); err == nil {
		h.Set(x402.HeaderPaymentRequired, hv)
	}
	h.Set("Cache-Control", "no-store")
	h.Set("Access-Control-Expose-Headers", "PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE")
	h.Set("Content-Type", "application/json")
	body := []byte("{}")
	if v1 != nil {
		if b, err := x402.V1Body(&x402.PaymentRequired{Version: 1, Error: msg1, Accepts: []x402.Requirements{*v1}}); err == nil {
			body = b
		}
	}
	w.WriteHeader(http.StatusPaymentRequired)
	_, _ = w.Write(body)
}

// facilitatorFailed: a malformed facilitator reply is a 502 (as
// @x402/express answers); an unreachable one a 402 with the reason.
func (m *mw) facilitatorFailed(w http.ResponseWriter, err error, v2, v1 *x402.Requirements, resource json.RawMessage, what string) {
	m.cfg.Logger.Warn("x402: facilitator "+what+" failed", "err", err)
	var fe *x402.FacilitatorError
	if errors.As(err, &fe) && fe.Status >= 200 && fe.Status < 300 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte(`{"error":"the facilitator's reply was malformed"}`))
		return
	}
	m.paymentRequired(w, v2, v1, resource, "Facilitator "+what+" failed")
}

// buffer holds a paid handler's response until settlement decides.
type buffer struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	overflow bool
}

func (b *buffer) Header() http.Header { return b.header }
func (b *buffer) WriteHeader(s int) {
	if b.status == 0 {
		b.status = s
	}
}
func (b *buffer) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	if b.body.Len()+len(p) > MaxBufferedBytes {
		b.overflow = true
		return 0, errors.New("x402: response too large")
	}
	return b.body.Write(p)
}

func (b *buffer) send(w http.ResponseWriter) {
	for k, vs := range b.header {
		w.Header()[k] = vs
	}
	w.WriteHeader(b.status)
	_, _ = w.Write(b.body.Bytes())
}
