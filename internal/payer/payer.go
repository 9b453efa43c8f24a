// Package payer is the agent side of an x402 payment: it requests a URL,
// reads the seller's 402, picks an offer Purser can pay, asks Purser to
// authorize and sign it (the mandate, the hold and the audit event happen
// there), retries with the payment header and reports the seller's
// settlement back. It holds no wallet key: the agent's identity key only
// authenticates its requests to Purser.
package payer

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

	"github.com/purserhq/purser/internal/client"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/rails"
	"github.com/purserhq/purser/x402"
)

// MaxResponseBytes bounds a seller's response body.
const MaxResponseBytes = 32 << 20

// Outcome is how a fetch ended.
type Outcome string

const (
	Served       Outcome = "served"           // no payment was asked for
	Paid         Outcome = "paid"             // paid, and the seller served the resource
	Pending      Outcome = "pending_approval" // waiting for the owner; finish with Confirm
	Refused      Outcome = "refused"          // the mandate or the agent's --max refused; nothing signed
	SellerFailed Outcome = "seller_failed"    // a payment was authorized, but the seller or its facilitator failed
	DryRun       Outcome = "dry_run"          // the verdict only
)

// Request is one paid-API call.
type Request struct {
	URL            string
	Method         string // default GET
	Body           []byte
	Header         http.Header
	Max            string // the most to pay, in the offer's asset units; "" for no cap beyond the mandate
	IdempotencyKey string // "" for a fresh one per call
	DryRun         bool
}

// Result is what happened.
type Result struct {
	Outcome    Outcome              `json:"outcome"`
	HTTPStatus int                  `json:"http_status,omitempty"`
	Header     http.Header          `json:"-"`
	Body       []byte               `json:"-"`
	Spend      *client.Spend        `json:"spend,omitempty"`
	Settlement *x402.SettleResponse `json:"settlement,omitempty"`
	Offer      *Offer               `json:"offer,omitempty"`
	Reasons    []string             `json:"reasons,omitempty"`
	Error      string               `json:"error,omitempty"` // why the paid retry failed, when it did
}

// Offer is the offer chosen from the seller's 402.
type Offer struct {
	Version int    `json:"x402_version"`
	Network string `json:"network"`
	Asset   string `json:"asset"`
	Amount  string `json:"amount"`
	PayTo   string `json:"pay_to"`
}

// Error is a refusal before anything was signed, with a stable code.
type Error struct {
	code, msg string
	details   map[string]any
}

func (e *Error) Error() string           { return e.code + ": " + e.msg }
func (e *Error) Code() string            { return e.code }
func (e *Error) Message() string         { return e.msg }
func (e *Error) Details() map[string]any { return e.details }

func errorf(code, format string, args ...any) *Error {
	return &Error{code: code, msg: fmt.Sprintf(format, args...)}
}

// Payer pays x402 sellers through Purser.
type Payer struct {
	Purser *client.Client
	// HTTP requests the seller; redirects to another host are refused.
	HTTP *http.Client

	once   sync.Once
	assets []client.Asset
	aerr   error
}

// New returns a Payer with a seller client that has sane timeouts.
func New(purser *client.Client) *Payer {
	return &Payer{Purser: purser, HTTP: &http.Client{Timeout: 2 * time.Minute}}
}

func (p *Payer) httpClient() *http.Client {
	hc := *p.HTTP
	// A seller that redirects the paid retry elsewhere could collect a
	// payment for another host's content: stay on the host asked for.
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errorf("x402_redirect_refused", "too many redirects")
		}
		if !strings.EqualFold(req.URL.Host, via[0].URL.Host) || req.URL.Scheme != via[0].URL.Scheme {
			return errorf("x402_redirect_refused", "the seller redirected to another host (%s)", req.URL.Host)
		}
		return nil
	}
	return &hc
}

func (p *Payer) do(ctx context.Context, r Request, payment *rails.X402Payment) (*http.Response, []byte, error) {
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return nil, nil, errorf("invalid_request", "%v", err)
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if payment != nil {
		req.Header.Set(payment.Header, payment.HeaderValue)
	}
	resp, err := p.httpClient().Do(req)
	if err != nil {
		var pe *Error
		if errors.As(err, &pe) {
			return nil, nil, pe
		}
		return nil, nil, fmt.Errorf("request %s: %w", r.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", r.URL, err)
	}
	if len(body) > MaxResponseBytes {
		return nil, nil, errorf("response_too_large", "the response is larger than %d bytes", MaxResponseBytes)
	}
	return resp, body, nil
}

func (p *Payer) loadAssets(ctx context.Context) ([]client.Asset, error) {
	p.once.Do(func() { p.assets, p.aerr = p.Purser.Assets(ctx) })
	return p.assets, p.aerr
}

// choose picks the first offer Purser can pay within max, and explains
// why each other offer was passed over.
func (p *Payer) choose(ctx context.Context, pr *x402.PaymentRequired, max string) (*x402.Requirements, client.Asset, error) {
	assets, err := p.loadAssets(ctx)
	if err != nil {
		return nil, client.Asset{}, err
	}
	var why []string
	aboveMax := false
	for i := range pr.Accepts {
		o := &pr.Accepts[i]
		if o.Scheme != "exact" {
			why = append(why, fmt.Sprintf("offer %d: scheme %q is not supported", i, o.Scheme))
			continue
		}
		network, err := o.CAIP2()
		if err != nil {
			why = append(why, fmt.Sprintf("offer %d: network %q is unknown", i, o.Network))
			continue
		}
		var asset *client.Asset
		for j := range assets {
			if assets[j].Network == network && assets[j].Address != "" && strings.EqualFold(assets[j].Address, o.Asset) {
				asset = &assets[j]
			}
		}
		if asset == nil {
			why = append(why, fmt.Sprintf("offer %d: asset %s on %s is not configured in Purser", i, o.Asset, network))
			continue
		}
		if name, version, ok := o.EIP712Domain(); !ok || name != asset.EIP712Name || version != asset.EIP712Version {
			why = append(why, fmt.Sprintf("offer %d: EIP-712 domain (%q, %q) does not match %s's (%q, %q)", i, name, version, asset.Symbol, asset.EIP712Name, asset.EIP712Version))
			continue
		}
		if max != "" {
			m, err := money.ParsePositive(max, asset.Decimals)
			if err != nil {
				return nil, client.Asset{}, errorf("invalid_request", "--max %q: %v", max, err)
			}
			if o.Amount.Cmp(m) > 0 {
				aboveMax = true
				why = append(why, fmt.Sprintf("offer %d: %s %s is above --max %s", i, money.FormatAmount(o.Amount, asset.Decimals), asset.Symbol, max))
				continue
			}
		}
		return o, *asset, nil
	}
	code := "x402_no_payable_offer"
	if aboveMax {
		code = "x402_amount_above_max"
	}
	e := errorf(code, "no offer of the seller can be paid: %s", strings.Join(why, "; "))
	e.details = map[string]any{"offers": why}
	return nil, client.Asset{}, e
}

func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "x402-" + hex.EncodeToString(b[:])
}

// Fetch requests r.URL and pays a 402 through Purser.
func (p *Payer) Fetch(ctx context.Context, r Request) (*Result, error) {
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errorf("invalid_request", "%q is not an absolute http(s) URL", r.URL)
	}
	resp, body, err := p.do(ctx, r, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusPaymentRequired {
		return &Result{Outcome: Served, HTTPStatus: resp.StatusCode, Header: resp.Header, Body: body}, nil
	}
	pr, err := x402.ParsePaymentRequired(resp.Header, body)
	if err != nil {
		return nil, err
	}
	offer, asset, err := p.choose(ctx, pr, r.Max)
	if err != nil {
		return nil, err
	}
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	railReq := rails.X402Request{URL: r.URL, Method: method, Version: offer.Version, Offer: offer.Raw, Max: r.Max}
	if offer.Version == 2 {
		railReq.Resource = pr.Resource
	}
	rr, err := json.Marshal(railReq)
	if err != nil {
		return nil, err
	}
	key := r.IdempotencyKey
	if key == "" && !r.DryRun {
		key = newKey()
	}
	network, _ := offer.CAIP2()
	res := &Result{Offer: &Offer{Version: offer.Version, Network: network, Asset: asset.Symbol,
		Amount: money.FormatAmount(offer.Amount, asset.Decimals), PayTo: offer.PayTo}}
	sp, err := p.Purser.Authorize(ctx, client.AuthorizeRequest{Rail: "x402", Payee: offer.PayTo, Amount: res.Offer.Amount,
		Host: strings.ToLower(u.Host), Asset: asset.Symbol, Network: network, IdempotencyKey: key, RailRequest: rr, DryRun: r.DryRun})
	if sp != nil && sp.Status == client.StatusDenied {
		res.Outcome, res.Spend, res.Reasons = Refused, sp, sp.Reasons
		return res, nil
	}
	if err != nil {
		return nil, err
	}
	res.Spend = sp
	switch {
	case sp.DryRun:
		res.Outcome, res.Reasons = DryRun, sp.Reasons
		return res, nil
	case sp.Status == client.StatusPendingApproval:
		res.Outcome, res.Reasons = Pending, sp.Reasons
		return res, nil
	}
	return p.payAndReport(ctx, r, sp, res)
}

// Confirm finishes a payment an owner approved: Purser signs it, and the
// request recorded in the spend is retried with the payment. r supplies
// the body and headers again (they are not stored); its URL and method,
// if set, must match the spend's.
func (p *Payer) Confirm(ctx context.Context, spendID string, r Request) (*Result, error) {
	sp, err := p.Purser.Confirm(ctx, spendID)
	if err != nil {
		return nil, err
	}
	var rr rails.X402Request
	if err := json.Unmarshal(sp.RailRequest, &rr); err != nil || sp.Rail != "x402" {
		return nil, errorf("invalid_state", "spend %s is not an x402 payment", spendID)
	}
	if (r.URL != "" && r.URL != rr.URL) || (r.Method != "" && !strings.EqualFold(r.Method, rr.Method)) {
		return nil, errorf("invalid_request", "spend %s pays for %s %s", spendID, rr.Method, rr.URL)
	}
	r.URL, r.Method = rr.URL, rr.Method
	return p.payAndReport(ctx, r, sp, &Result{})
}

func (p *Payer) payAndReport(ctx context.Context, r Request, sp *client.Spend, res *Result) (*Result, error) {
	res.Spend = sp
	switch sp.Status {
	case client.StatusAuthorized:
	case client.StatusPendingApproval:
		res.Outcome = Pending
		return res, nil
	case client.StatusCaptured:
		// Paid already (a retry of a settled payment): the seller will
		// not serve the same authorization twice.
		return nil, errorf("already_paid", "spend %s was paid already (%s)", sp.SpendID, sp.RailRef)
	default:
		res.Outcome, res.Reasons = Refused, sp.Reasons
		return res, nil
	}
	pay, err := rails.PaymentOf(sp.RailData)
	if err != nil {
		return nil, errorf("invalid_state", "spend %s carries no signed payment", sp.SpendID)
	}
	resp, body, err := p.do(ctx, r, pay)
	if err != nil {
		// The payment may or may not have been settled: Purser's
		// reconciler will find out from the chain.
		if after := p.report(ctx, sp, rails.SettlementReport{}); after != nil {
			res.Spend = after
		}
		res.Outcome, res.Reasons, res.Error = SellerFailed, []string{"seller_request_failed"}, err.Error()
		return res, nil
	}
	res.HTTPStatus, res.Header, res.Body = resp.StatusCode, resp.Header, body
	settle, serr := x402.SettlementFromResponse(resp.Header)
	res.Settlement = settle
	rep := rails.SettlementReport{HTTPStatus: resp.StatusCode}
	if serr == nil && settle != nil {
		rep.Success, rep.Transaction, rep.Network, rep.ErrorReason = settle.Success, settle.Transaction, settle.Network, settle.ErrorReason
	}
	if after := p.report(ctx, sp, rep); after != nil {
		res.Spend = after
	}
	if resp.StatusCode < 300 && settle != nil && settle.Success {
		res.Outcome = Paid
	} else {
		res.Outcome = SellerFailed
		if settle != nil && settle.ErrorReason != "" {
			res.Reasons = []string{settle.ErrorReason}
		}
	}
	return res, nil
}

// report tells Purser what the seller said; a failure to report is not
// fatal (the reconciler asks the chain anyway).
func (p *Payer) report(ctx context.Context, sp *client.Spend, rep rails.SettlementReport) *client.Spend {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	after, err := p.Purser.ReportSettlement(rctx, sp.SpendID, rep)
	if err != nil {
		return nil
	}
	return after
}
