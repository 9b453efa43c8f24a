package sdk

import (
	"bytes"
	"context"
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
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/x402"
)

// MaxSellerResponse bounds a seller's response body read by Fetch.
const MaxSellerResponse = 32 << 20

// Outcome is how a Fetch ended.
type Outcome string

// Outcomes of Fetch.
const (
	Served       Outcome = "served"           // no payment was asked for
	Paid         Outcome = "paid"             // paid, and the seller served the resource
	Pending      Outcome = "pending_approval" // waiting for the owner; finish with ConfirmFetch
	Refused      Outcome = "refused"          // the mandate refused; nothing held or signed
	SellerFailed Outcome = "seller_failed"    // a payment was signed, but the seller or its facilitator failed
	DryRun       Outcome = "dry_run"          // the verdict only
)

// FetchRequest is one call of a paid (x402) API.
type FetchRequest struct {
	URL    string
	Method string // default GET
	Body   []byte
	Header http.Header
	// Max is the most to pay, in the offer's asset units ("0.05"); "" for
	// no cap beyond the mandate.
	Max string
	// IdempotencyKey makes a retry of the same call reuse the original
	// payment instead of paying again; "" makes a fresh one per call.
	IdempotencyKey string
	// WaitForApproval, when positive, waits up to that long for an owner
	// to decide a spend that needs approval, then pays and fetches.
	WaitForApproval time.Duration
	// Memo is the purpose of the payment, shown to the owner.
	Memo   string
	DryRun bool
}

// FetchResult is what happened.
type FetchResult struct {
	Outcome    Outcome              `json:"outcome"`
	HTTPStatus int                  `json:"http_status,omitempty"`
	Header     http.Header          `json:"-"`
	Body       []byte               `json:"-"`
	Spend      *Spend               `json:"spend,omitempty"`
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

// clientError is an error the SDK raises itself, before or without an
// answer of Purser (Status 0).
func clientError(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// assetCache keeps the server's assets once fetched.
type assetCache struct {
	mu     sync.Mutex
	assets []Asset
}

func (a *Agent) cachedAssets(ctx context.Context) ([]Asset, error) {
	a.assets.mu.Lock()
	defer a.assets.mu.Unlock()
	if a.assets.assets != nil {
		return a.assets.assets, nil
	}
	l, err := a.assetList(ctx)
	if err != nil {
		return nil, err
	}
	if l == nil {
		l = []Asset{}
	}
	a.assets.assets = l
	return l, nil
}

// sellerClient requests sellers for Fetch: redirects to another host are
// refused (a seller redirecting the paid retry elsewhere could collect a
// payment for another host's content).
func sellerClient(base *http.Client) *http.Client {
	hc := *base
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return clientError("x402_redirect_refused", "too many redirects")
		}
		if !strings.EqualFold(req.URL.Host, via[0].URL.Host) || req.URL.Scheme != via[0].URL.Scheme {
			return clientError("x402_redirect_refused", "the seller redirected to another host (%s)", req.URL.Host)
		}
		return nil
	}
	return &hc
}

var defaultSeller = &http.Client{Timeout: 2 * time.Minute}

func (a *Agent) seller() *http.Client {
	if a.c.sellerHC != nil {
		return sellerClient(a.c.sellerHC)
	}
	return sellerClient(defaultSeller)
}

// WithSellerClient sets the http.Client Agent.Fetch requests sellers with
// (default: 2 minute timeout). Its redirect policy is replaced: redirects
// to another host are refused.
func WithSellerClient(hc *http.Client) Option { return func(c *conn) { c.sellerHC = hc } }

func (a *Agent) do(ctx context.Context, r FetchRequest, payment *api.X402Payment) (*http.Response, []byte, error) {
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return nil, nil, clientError("invalid_request", "%v", err)
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if payment != nil {
		req.Header.Set(payment.Header, payment.HeaderValue)
	}
	resp, err := a.seller().Do(req)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, nil, e
		}
		return nil, nil, fmt.Errorf("request %s: %w", r.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxSellerResponse+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", r.URL, err)
	}
	if len(body) > MaxSellerResponse {
		return nil, nil, clientError("response_too_large", "the response is larger than %d bytes", MaxSellerResponse)
	}
	return resp, body, nil
}

// choose picks the first offer Purser can pay within max, and explains
// why each other offer was passed over.
func (a *Agent) choose(ctx context.Context, pr *x402.PaymentRequired, max string) (*x402.Requirements, Asset, error) {
	assets, err := a.cachedAssets(ctx)
	if err != nil {
		return nil, Asset{}, err
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
		var asset *Asset
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
				return nil, Asset{}, clientError("invalid_request", "max %q: %v", max, err)
			}
			if o.Amount.Cmp(m) > 0 {
				aboveMax = true
				why = append(why, fmt.Sprintf("offer %d: %s %s is above the maximum %s", i, money.FormatAmount(o.Amount, asset.Decimals), asset.Symbol, max))
				continue
			}
		}
		return o, *asset, nil
	}
	code := "x402_no_payable_offer"
	if aboveMax {
		code = "x402_amount_above_max"
	}
	e := clientError(code, "no offer of the seller can be paid: %s", strings.Join(why, "; "))
	e.Details = map[string]any{"offers": why}
	return nil, Asset{}, e
}

// paymentRequired parses a seller's 402; a malformed one is an *Error
// with the x402 package's code.
func paymentRequired(h http.Header, body []byte) (*x402.PaymentRequired, error) {
	pr, err := x402.ParsePaymentRequired(h, body)
	if err != nil {
		var xe *x402.Error
		if errors.As(err, &xe) {
			return nil, clientError(xe.Code(), "%s", xe.Message())
		}
		return nil, err
	}
	return pr, nil
}

// offerSpend turns a seller's 402 into the authorization request Purser
// is asked: the chosen offer, exactly as the seller sent it, in the
// signed intent.
func (a *Agent) offerSpend(ctx context.Context, u *url.URL, method string, h http.Header, body []byte, max string) (AuthorizeRequest, *Offer, error) {
	pr, err := paymentRequired(h, body)
	if err != nil {
		return AuthorizeRequest{}, nil, err
	}
	return a.offerFor(ctx, u, method, pr, max)
}

// offerFor is offerSpend for a 402 already parsed.
func (a *Agent) offerFor(ctx context.Context, u *url.URL, method string, pr *x402.PaymentRequired, max string) (AuthorizeRequest, *Offer, error) {
	offer, asset, err := a.choose(ctx, pr, max)
	if err != nil {
		return AuthorizeRequest{}, nil, err
	}
	railReq := api.X402Request{URL: u.String(), Method: method, Version: offer.Version, Offer: offer.Raw, Max: max}
	if offer.Version == 2 {
		railReq.Resource = pr.Resource
	}
	rr, err := json.Marshal(railReq)
	if err != nil {
		return AuthorizeRequest{}, nil, err
	}
	network, _ := offer.CAIP2()
	o := &Offer{Version: offer.Version, Network: network, Asset: asset.Symbol,
		Amount: money.FormatAmount(offer.Amount, asset.Decimals), PayTo: offer.PayTo}
	return AuthorizeRequest{Rail: api.RailX402, Payee: offer.PayTo, Amount: o.Amount, Host: strings.ToLower(u.Host),
		Asset: asset.Symbol, Network: network, RailRequest: rr}, o, nil
}

// checkURL accepts absolute http(s) URLs only.
func checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, clientError("invalid_request", "%q is not an absolute http(s) URL", raw)
	}
	return u, nil
}

// Fetch requests r.URL and, when the seller answers 402, pays through
// Purser: it picks an offer Purser can pay within r.Max, asks Purser to
// authorize it (the mandate, the hold and the audit event happen there),
// retries with the payment header and reports the seller's settlement.
// The outcome says what happened; errors are for what could not be tried
// (a bad request, no payable offer, Purser unreachable).
func (a *Agent) Fetch(ctx context.Context, r FetchRequest) (*FetchResult, error) {
	u, err := checkURL(r.URL)
	if err != nil {
		return nil, err
	}
	if r.Method == "" {
		r.Method = http.MethodGet
	}
	resp, body, err := a.do(ctx, r, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusPaymentRequired {
		return &FetchResult{Outcome: Served, HTTPStatus: resp.StatusCode, Header: resp.Header, Body: body}, nil
	}
	areq, offer, err := a.offerSpend(ctx, u, r.Method, resp.Header, body, r.Max)
	if err != nil {
		return nil, err
	}
	areq.IdempotencyKey, areq.Memo = r.IdempotencyKey, r.Memo
	res := &FetchResult{Offer: offer}
	if r.DryRun {
		sp, err := a.DryRun(ctx, areq)
		if sp == nil {
			return nil, err
		}
		res.Outcome, res.Spend, res.Reasons = DryRun, sp, sp.Reasons
		return res, nil
	}
	sp, err := a.Authorize(ctx, areq)
	var re *RefusedError
	var ar *ApprovalRequiredError
	switch {
	case errors.As(err, &re):
		res.Outcome, res.Spend, res.Reasons = Refused, re.Spend, re.Reasons
		return res, nil
	case errors.As(err, &ar):
		res.Spend = sp
		if r.WaitForApproval <= 0 {
			res.Outcome, res.Reasons = Pending, sp.Reasons
			return res, nil
		}
		return a.waitAndPay(ctx, r, sp, res)
	case err != nil:
		return nil, err
	}
	return a.payAndReport(ctx, r, sp, res)
}

// waitAndPay waits up to r.WaitForApproval for the owner's decision on
// a pending x402 spend, then pays (approved) or reports the refusal.
func (a *Agent) waitAndPay(ctx context.Context, r FetchRequest, sp *Spend, res *FetchResult) (*FetchResult, error) {
	wctx, cancel := context.WithTimeout(ctx, r.WaitForApproval)
	decided, err := a.WaitForApproval(wctx, sp.SpendID, 0)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		res.Outcome, res.Reasons = Pending, sp.Reasons
		if decided != nil {
			res.Spend = decided
		}
		return res, nil
	}
	if decided.Status != api.StatusAuthorized {
		res.Outcome, res.Spend, res.Reasons = Refused, decided, decided.Reasons
		return res, nil
	}
	return a.confirmFetch(ctx, sp.SpendID, r, res)
}

// ConfirmFetch finishes an x402 payment an owner approved: Purser signs
// it, and the request recorded in the spend is retried with the payment.
// r supplies the body and headers again (they are not stored); its URL
// and method, if set, must be the spend's (the same URL, however it is
// spelled: "/a b" and "/a%20b" are one).
func (a *Agent) ConfirmFetch(ctx context.Context, spendID string, r FetchRequest) (*FetchResult, error) {
	return a.confirmFetch(ctx, spendID, r, &FetchResult{})
}

func (a *Agent) confirmFetch(ctx context.Context, spendID string, r FetchRequest, res *FetchResult) (*FetchResult, error) {
	sp, err := a.Confirm(ctx, spendID)
	if err != nil {
		var re *RefusedError
		if errors.As(err, &re) {
			res.Outcome, res.Spend, res.Reasons = Refused, re.Spend, re.Reasons
			return res, nil
		}
		return nil, err
	}
	var rr api.X402Request
	if err := json.Unmarshal(sp.RailRequest, &rr); err != nil || sp.Rail != api.RailX402 {
		return nil, clientError("invalid_state", "spend %s is not an x402 payment", spendID)
	}
	if r.URL != "" {
		// The spend records the URL as Fetch parsed it (u.String()): the
		// same URL given again may be spelled otherwise ("/a b", "/a%20b").
		u, err := checkURL(r.URL)
		if err != nil {
			return nil, err
		}
		r.URL = u.String()
	}
	if (r.URL != "" && r.URL != rr.URL) || (r.Method != "" && !strings.EqualFold(r.Method, rr.Method)) {
		return nil, clientError("invalid_request", "spend %s pays for %s %s", spendID, rr.Method, rr.URL)
	}
	r.URL, r.Method = rr.URL, rr.Method
	return a.payAndReport(ctx, r, sp, res)
}

// paymentOf is the payment header of a signed x402 spend.
func paymentOf(sp *Spend) (*api.X402Payment, error) {
	var p api.X402Payment
	if err := json.Unmarshal(sp.RailData, &p); err != nil || p.Header == "" || p.HeaderValue == "" {
		return nil, clientError("invalid_state", "spend %s carries no signed payment", sp.SpendID)
	}
	return &p, nil
}

func (a *Agent) payAndReport(ctx context.Context, r FetchRequest, sp *Spend, res *FetchResult) (*FetchResult, error) {
	res.Spend = sp
	switch sp.Status {
	case api.StatusAuthorized:
	case api.StatusPendingApproval:
		res.Outcome = Pending
		return res, nil
	case api.StatusCaptured:
		// Paid already (a retry of a settled payment): the seller will
		// not serve the same authorization twice.
		return nil, clientError("already_paid", "spend %s was paid already (%s)", sp.SpendID, sp.RailRef)
	default:
		res.Outcome, res.Reasons = Refused, sp.Reasons
		return res, nil
	}
	pay, err := paymentOf(sp)
	if err != nil {
		return nil, err
	}
	resp, body, err := a.do(ctx, r, pay)
	if err != nil {
		// The payment may or may not have been settled: Purser's
		// reconciler will find out from the chain.
		if after := a.report(ctx, sp, SettlementReport{}); after != nil {
			res.Spend = after
		}
		res.Outcome, res.Reasons, res.Error = SellerFailed, []string{"seller_request_failed"}, err.Error()
		return res, nil
	}
	res.HTTPStatus, res.Header, res.Body = resp.StatusCode, resp.Header, body
	settle, rep := settlementOf(resp)
	res.Settlement = settle
	if after := a.report(ctx, sp, rep); after != nil {
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

// settlementOf reads the seller's settlement header of a paid retry.
func settlementOf(resp *http.Response) (*x402.SettleResponse, SettlementReport) {
	settle, err := x402.SettlementFromResponse(resp.Header)
	rep := SettlementReport{HTTPStatus: resp.StatusCode}
	if err != nil || settle == nil {
		return nil, rep
	}
	rep.Success, rep.Transaction, rep.Network, rep.ErrorReason = settle.Success, settle.Transaction, settle.Network, settle.ErrorReason
	return settle, rep
}

// report tells Purser what the seller said; a failure to report is not
// fatal (the reconciler asks the chain anyway), and it is sent even when
// ctx was cancelled meanwhile.
func (a *Agent) report(ctx context.Context, sp *Spend, rep SettlementReport) *Spend {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	after, err := a.ReportSettlement(rctx, sp.SpendID, rep)
	if err != nil {
		return nil
	}
	return after
}
