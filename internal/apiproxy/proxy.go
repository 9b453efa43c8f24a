package apiproxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
)

// Prefix is where proxied calls are served: /v1/proxy/NAME/PATH.
const Prefix = "/v1/proxy/"

// MaxBody bounds a proxied call's request body.
const MaxBody = DefaultMaxRequest

func pathInvalid(reason string) error {
	return spend.Errorf("proxy_path_invalid", "the path cannot be proxied: %s", reason).WithDetails(map[string]any{"reason": reason})
}

// Serve carries out one proxied call for the agent c (its signature over
// the method, the request-target and body's hash is verified). It
// returns an error when Purser answers instead of the upstream, before
// anything was written to w.
func (v *Vault) Serve(w http.ResponseWriter, r *http.Request, c spend.Caller, body []byte) error {
	name := r.PathValue("name")
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), Prefix+name)
	if !ok || !nameRE.MatchString(name) {
		return pathInvalid("the credential name is malformed")
	}
	if rest == "" {
		rest = "/"
	}
	path, err := CleanPath(rest)
	if err != nil {
		return pathInvalid(err.Error())
	}
	method := r.Method
	cl, err := v.prepare(r.Context(), name, method, path)
	if err != nil {
		return err
	}
	bodySum := sha256.Sum256(body)
	rr := railRequest{Credential: name, CredentialID: cl.e.cred.ID, Method: method, Path: path, BodySHA256: hex.EncodeToString(bodySum[:])}
	if cl.tool != nil {
		rr.Tool = cl.tool.Name
		if cl.tool.Price != nil {
			rr.ToolPrice = v.price(cl.tool.Price)
		}
	}
	if q := r.URL.RawQuery; q != "" {
		qs := sha256.Sum256([]byte(q))
		rr.QuerySHA256 = hex.EncodeToString(qs[:])
	}
	rawRR, err := json.Marshal(rr)
	if err != nil {
		return err
	}
	out, err := v.svc.Authorize(r.Context(), c, spend.AuthorizeRequest{
		Rail: spend.RailAPIProxy, Host: cl.e.host, Payee: "vault:" + name, Asset: v.asset.Symbol, Network: v.asset.Network,
		Amount: "0", IdempotencyKey: r.Header.Get(api.HeaderIdempotencyKey),
		RailRequest: rawRR, Inline: true,
	})
	if err != nil {
		if spend.CodeOf(err) == spend.CodeSpendDenied {
			v.metrics.calls.Inc(name, "denied")
		}
		return err
	}
	sp := out.Spend
	if sp.ID != "" {
		w.Header().Set(api.HeaderSpendID, sp.ID)
	}
	switch {
	case sp.Status == spend.StatusDenied:
		v.metrics.calls.Inc(name, "denied")
		return spend.Errorf(spend.CodeSpendDenied, "the call is refused: %s", strings.Join(sp.Reasons, ", ")).
			WithDetails(map[string]any{"spend_id": sp.ID, "status": sp.Status, "reasons": sp.Reasons})
	case sp.Status == spend.StatusPendingApproval:
		v.metrics.calls.Inc(name, "approval")
		return spend.Errorf("approval_required", "the call waits for an owner's approval; send it again with the same Idempotency-Key once approved").
			WithDetails(map[string]any{"spend_id": sp.ID, "status": sp.Status, "reasons": sp.Reasons})
	case !out.Run:
		return spend.Errorf("call_already_made", "a call with this Idempotency-Key was %s already; it is not sent again", sp.Status).
			WithDetails(map[string]any{"spend_id": sp.ID, "status": sp.Status})
	}
	var rd railData
	if err := json.Unmarshal(sp.RailData, &rd); err != nil {
		return err
	}
	cl.priceHeader = rd.PriceHeader
	return v.run(w, r, cl, sp, method, path, body)
}

// run sends an authorized call (its spend is recorded as executing) and
// settles it once the answer is out.
func (v *Vault) run(w http.ResponseWriter, r *http.Request, cl *call, sp *spend.Spend, method, path string, body []byte) error {
	e := cl.e
	t := e.target(time.Now())
	c := &Call{Method: method, Path: path, RawQuery: r.URL.RawQuery, Header: r.Header, Body: body}
	c.PriceHeader = cl.priceHeader
	pw := &priceWriter{ResponseWriter: w, v: v, cl: cl, sp: sp}
	start := time.Now()
	// The call runs to its own deadline even if the agent goes away: it
	// was authorized, and its outcome must be known to settle it.
	res := v.fwd.Do(context.WithoutCancel(r.Context()), t, c, pw)
	v.metrics.dur.Observe(time.Since(start), e.cred.Name)
	er := v.outcome(res, cl, sp)
	if pw.wrote {
		er = pw.res
	}
	v.settleLater(sp, er)
	if res.Sent || pw.wrote {
		if res.Reason != "" {
			// The body was cut short after the headers went out: the agent
			// must not take it for a whole answer.
			v.log.Info("proxied answer cut short", "credential", e.cred.Name, "spend_id", sp.ID, "code", res.Reason)
			panic(http.ErrAbortHandler)
		}
		return nil
	}
	v.metrics.calls.Inc(e.cred.Name, "error")
	code := errorCode(res.Reason)
	if res.Err != nil {
		v.log.Info("proxied call failed", "credential", e.cred.Name, "spend_id", sp.ID, "code", code, "err", res.Err)
	}
	return spend.Errorf(code, "%s", upstreamMessage(code, e.cred.Name)).WithDetails(map[string]any{"spend_id": sp.ID})
}

// errorCode is the API error code of a forwarding failure.
func errorCode(reason string) string {
	switch reason {
	case FailRequestTooLarge:
		return "body_too_large"
	case FailBadRequest:
		return "proxy_path_invalid"
	case FailEgressRefused:
		return "upstream_private"
	case FailTimeout, FailFailed, FailResponseTooLarge, FailEncodingUnsupported:
		return reason
	}
	return "upstream_unreachable"
}

func upstreamMessage(code, name string) string {
	switch code {
	case "upstream_timeout":
		return "the upstream of " + name + " did not answer in time; the call was sent, so its price was captured"
	case "upstream_failed":
		return "the connection to the upstream of " + name + " broke after the call was sent, so its price was captured"
	case "body_too_large":
		return "the call's body is larger than the proxy sends"
	case "proxy_path_invalid":
		return "the call's method or path cannot be proxied"
	case "upstream_private":
		return "the upstream of " + name + " resolves to a private address, which the credential does not allow"
	case "upstream_response_too_large":
		return "the upstream's answer is larger than the proxy returns"
	case "upstream_encoding_unsupported":
		return "the upstream answered in a content encoding the proxy cannot check"
	}
	return "the upstream of " + name + " could not be reached; nothing was sent"
}

// settleLater records the call's outcome after its answer went out: the
// hold already counts it (status unknown), so the agent need not wait for
// the commit, and calls answered together are settled in one commit
// (spend.SettleMany). A crash before it leaves the spend unknown, for an
// owner to resolve, never uncounted.
func (v *Vault) settleLater(sp *spend.Spend, er spend.ExecResult) {
	outcome := "captured"
	if er.Outcome == spend.OutcomeFailed {
		outcome = "released"
	}
	v.metrics.calls.Inc(strings.TrimPrefix(sp.Payee, "vault:"), outcome)
	v.settles.Add(1)
	v.smu.Lock()
	v.pending = append(v.pending, spend.Settlement{SpendID: sp.ID, AgentID: sp.AgentID, Result: er})
	start := !v.settling
	v.settling = true
	v.smu.Unlock()
	if start {
		go v.settleLoop()
	}
}

// settleLoop settles what is pending, batch after batch, and ends when
// nothing is left (the next call starts it again).
func (v *Vault) settleLoop() {
	for {
		v.smu.Lock()
		batch := v.pending
		v.pending = nil
		if len(batch) == 0 {
			v.settling = false
			v.smu.Unlock()
			return
		}
		v.smu.Unlock()
		for len(batch) > 0 {
			n := min(len(batch), maxSettleBatch)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := v.svc.SettleMany(ctx, batch[:n]); err != nil {
				v.log.Warn("could not settle proxied calls; they stay unknown", "calls", n, "err", err)
			}
			cancel()
			for range n {
				v.settles.Done()
			}
			batch = batch[n:]
		}
	}
}

// maxSettleBatch bounds one settlement transaction: the writer runs it
// whole, so a larger one would hold back the decisions queued behind it.
const maxSettleBatch = 64

// notServed are answers an API does not bill: the credential was refused,
// or the call was turned away unserved.
func notServed(status int) bool {
	return status == http.StatusUnauthorized || status == http.StatusForbidden ||
		status == http.StatusProxyAuthRequired || status == http.StatusTooManyRequests || status >= 500
}

// outcome is what a call's result means for its hold. Nothing sent:
// release. Sent but no answer: capture (the upstream may have served it).
// Answered: capture the price, or the upstream's reported price up to the
// hold; an answer that says the call was not served releases it.
func (v *Vault) outcome(res Result, cl *call, sp *spend.Spend) spend.ExecResult {
	hold := sp.Amount
	switch {
	case !res.Wrote:
		return spend.ExecResult{Outcome: spend.OutcomeFailed, Reasons: []string{"upstream_unreachable"}}
	case !res.Answered:
		return spend.ExecResult{Outcome: spend.OutcomeCaptured, Captured: new(big.Int).Set(hold)}
	case notServed(res.Status):
		return spend.ExecResult{Outcome: spend.OutcomeFailed, Reasons: []string{"upstream_not_served"}}
	}
	return spend.ExecResult{Outcome: spend.OutcomeCaptured, Captured: v.reported(cl, hold, res.Price)}
}

// reported is what a call captures: its fixed price, or the price the
// upstream reported (a decimal in USDC) up to the hold; a missing or
// malformed report captures the hold.
func (v *Vault) reported(cl *call, hold *big.Int, header string) *big.Int {
	if cl.priceHeader == "" {
		return new(big.Int).Set(hold)
	}
	p, err := money.ParseAmount(strings.TrimSpace(header), v.asset.Decimals)
	if err != nil || p.Cmp(hold) > 0 {
		return new(big.Int).Set(hold)
	}
	return p
}

// priceWriter adds Purser's headers to the upstream's answer as it is
// written, when the outcome is known from the status line.
type priceWriter struct {
	http.ResponseWriter
	v     *Vault
	cl    *call
	sp    *spend.Spend
	wrote bool
	res   spend.ExecResult
}

func (p *priceWriter) WriteHeader(status int) {
	if p.wrote {
		return
	}
	p.wrote = true
	h := p.Header()
	price := ""
	if p.cl.priceHeader != "" {
		price = h.Get(p.cl.priceHeader)
	}
	p.res = p.v.outcome(Result{Status: status, Wrote: true, Answered: true, Price: price}, p.cl, p.sp)
	h.Set(api.HeaderSpendID, p.sp.ID)
	captured := new(big.Int)
	if p.res.Outcome == spend.OutcomeCaptured {
		captured = p.res.Captured
	}
	h.Set(api.HeaderPrice, money.FormatAmount(captured, p.v.asset.Decimals))
	p.ResponseWriter.WriteHeader(status)
}

func (p *priceWriter) Write(b []byte) (int, error) {
	if !p.wrote {
		p.WriteHeader(http.StatusOK)
	}
	return p.ResponseWriter.Write(b)
}

func (p *priceWriter) Flush() {
	if f, ok := p.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (p *priceWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }
