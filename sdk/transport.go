package sdk

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/purserhq/purser/api"
)

// TransportOptions configure Transport. The zero value is usable.
type TransportOptions struct {
	// MaxPrice caps what one request may pay, in the offer's asset units
	// ("0.05"); "" leaves it to the mandate. WithMaxPrice overrides it
	// per request.
	MaxPrice string
	// WaitForApproval is how long a request whose payment needs an
	// owner's approval waits for the decision; zero fails at once with an
	// *ApprovalRequiredError. WithApprovalWait overrides it per request.
	WaitForApproval time.Duration
	// Memo is the stated purpose of the payments, shown to the owner.
	Memo string
	// OnPayment, if set, is called after each paid retry with the spend as
	// Purser recorded the seller's settlement.
	OnPayment func(*http.Request, *Spend)
}

type ctxKey int

const (
	keyMaxPrice ctxKey = iota
	keyIdempotency
	keyApprovalWait
	keyMemo
)

// WithMaxPrice caps what the request made with ctx may pay through
// Transport, in the offer's asset units.
func WithMaxPrice(ctx context.Context, max string) context.Context {
	return context.WithValue(ctx, keyMaxPrice, max)
}

// WithIdempotencyKey sets the idempotency key of the payment of the
// request made with ctx: a retry of the request with the same key reuses
// the original payment and never pays twice.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, keyIdempotency, key)
}

// WithApprovalWait lets the request made with ctx wait up to d for an
// owner's approval of its payment.
func WithApprovalWait(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, keyApprovalWait, d)
}

// WithMemo states the purpose of the payment of the request made with ctx.
func WithMemo(ctx context.Context, memo string) context.Context {
	return context.WithValue(ctx, keyMemo, memo)
}

// ErrBodyNotReplayable is returned, before anything is signed, when a
// seller asks for payment of a request whose body cannot be sent twice
// (a request with a Body but no GetBody). http.NewRequest sets GetBody
// for bytes, strings and bytes.Buffer bodies.
var ErrBodyNotReplayable = errors.New("sdk: the seller asks for payment, but the request body cannot be sent again for the paid retry (set Request.GetBody, or use a bytes or strings reader)")

// maxPaymentRequired bounds the 402 body read to choose an offer.
const maxPaymentRequired = 1 << 20

// Transport returns an http.RoundTripper that pays x402 sellers through
// Purser as agent a. Each request goes to base (http.DefaultTransport if
// nil); when the seller answers 402 Payment Required (x402 v1 or v2), the
// transport picks an offer Purser can pay, asks Purser to authorize and
// sign it within the agent's mandate, sends the request once more with
// the payment header and the same body, reports the seller's settlement
// to Purser and returns the seller's answer.
//
// It never signs twice for one request: one authorization per round
// trip, under an idempotency key (WithIdempotencyKey, or a fresh one). A
// second 402 to the paid retry is returned as is, and so is any other
// answer to it (a 4xx of the seller is not retried); a 402 that carries
// no x402 requirements is returned as it came, nothing paid. Nothing is
// retried once ctx is cancelled. A request whose body cannot be sent
// twice fails with ErrBodyNotReplayable before anything is signed. A refusal by the mandate is a *RefusedError, a
// payment waiting for an owner an *ApprovalRequiredError (after waiting
// up to the approval wait), both wrapped in the *url.Error http.Client
// returns: use errors.As. It is safe for concurrent use.
func Transport(a *Agent, base http.RoundTripper, opts *TransportOptions) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	t := &transport{agent: a, base: base}
	if opts != nil {
		t.opts = *opts
	}
	return t
}

type transport struct {
	agent *Agent
	base  http.RoundTripper
	opts  TransportOptions
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusPaymentRequired {
		return resp, err
	}
	// Everything below decides whether to pay; until the payment is
	// signed the seller's 402 can still be returned untouched.
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPaymentRequired))
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	pr, err := paymentRequired(resp.Header, body)
	if IsCode(err, "x402_no_requirements") {
		// A 402 that asks for no x402 payment (a quota message, say) is
		// the seller's answer: returned as it came.
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), resp.Body), resp.Body}
		return resp, nil
	}
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return nil, ErrBodyNotReplayable
	}
	max, _ := ctx.Value(keyMaxPrice).(string)
	if max == "" {
		max = t.opts.MaxPrice
	}
	areq, _, err := t.agent.offerFor(ctx, req.URL, req.Method, pr, max)
	if err != nil {
		return nil, err
	}
	areq.IdempotencyKey, _ = ctx.Value(keyIdempotency).(string)
	areq.Memo, _ = ctx.Value(keyMemo).(string)
	if areq.Memo == "" {
		areq.Memo = t.opts.Memo
	}
	sp, err := t.agent.Authorize(ctx, areq)
	var ar *ApprovalRequiredError
	if errors.As(err, &ar) {
		sp, err = t.awaitApproval(ctx, ar)
	}
	if err != nil {
		return nil, err
	}
	if sp.Status == api.StatusCaptured {
		return nil, clientError("already_paid", "spend %s was paid already (%s): the seller will not serve the same authorization twice", sp.SpendID, sp.RailRef)
	}
	pay, err := paymentOf(sp)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		// Signed but not sent: the authorization expires unused and the
		// server's reconciler releases the hold.
		return nil, err
	}
	retry := req.Clone(ctx)
	if req.GetBody != nil {
		if retry.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	retry.Header.Set(pay.Header, pay.HeaderValue)
	paid, err := t.base.RoundTrip(retry)
	if err != nil {
		t.agent.report(ctx, sp, SettlementReport{})
		return nil, err
	}
	_, rep := settlementOf(paid)
	if after := t.agent.report(ctx, sp, rep); after != nil {
		sp = after
	}
	if t.opts.OnPayment != nil {
		t.opts.OnPayment(req, sp)
	}
	return paid, nil
}

// awaitApproval waits, as long as the request may, for the owner's
// decision on a payment, and confirms it once approved.
func (t *transport) awaitApproval(ctx context.Context, ar *ApprovalRequiredError) (*Spend, error) {
	wait, ok := ctx.Value(keyApprovalWait).(time.Duration)
	if !ok {
		wait = t.opts.WaitForApproval
	}
	if wait <= 0 {
		return nil, ar
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	decided, err := t.agent.WaitForApproval(wctx, ar.SpendID, 0)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, ar
	}
	if decided.Status != api.StatusAuthorized {
		return nil, &RefusedError{SpendID: decided.SpendID, Reasons: decided.Reasons, Spend: decided,
			Err: &Error{Code: "spend_denied", Message: "the owner did not approve the payment"}}
	}
	return t.agent.Confirm(ctx, ar.SpendID)
}
