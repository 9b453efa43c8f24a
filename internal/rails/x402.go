package rails

import (
	"github.com/purserhq/purser/api"

	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/strictjson"
	"github.com/purserhq/purser/x402"
)

// X402Request is the rail request of an x402 payment: the seller's offer,
// exactly as the seller sent it, inside the intent the agent signs.
type X402Request = api.X402Request

// X402Payment is what an agent gets back for a signed x402 spend: the
// header to retry the request with.
type X402Payment = api.X402Payment

// PaymentOf extracts the payment header from an x402 spend's rail data.
func PaymentOf(railData json.RawMessage) (*X402Payment, error) {
	var r authRecord
	if err := json.Unmarshal(railData, &r); err != nil || r.Header == "" {
		return nil, errors.New("rails: spend carries no x402 payment")
	}
	return &X402Payment{Header: r.Header, HeaderValue: r.HeaderValue, Nonce: r.Nonce, ValidBefore: r.ValidBefore}, nil
}

// X402 is the x402 rail. The agent fetches the URL itself and hands
// Purser the seller's offer; Purser checks it against its own asset
// configuration and the mandate, then signs an EIP-3009 authorization the
// agent sends in PAYMENT-SIGNATURE (v2) or X-PAYMENT (v1).
type X402 struct {
	Common
	// MaxValidity caps how long an authorization stays valid, whatever
	// the seller's maxTimeoutSeconds (default 1 hour). A long validity
	// keeps the hold longer, since an unused authorization is released
	// only after it expires.
	MaxValidity time.Duration
	// ReportGrace is how long after validBefore a spend on a network
	// without a chain client waits for a report before it is marked
	// unknown for an owner to resolve (default 10 minutes).
	ReportGrace time.Duration
}

// Name returns "x402".
func (*X402) Name() string { return "x402" }

var txHashRE = regexp.MustCompile(`^0x[0-9a-fA-F]{64}$`)

func railErr(code, format string, args ...any) *spend.Error {
	return spend.Errorf(code, format, args...)
}

// offer parses and checks a stored or incoming rail request.
func (r *X402) offer(raw json.RawMessage) (*X402Request, *x402.Requirements, money.Asset, error) {
	var req X402Request
	// Strict as the rest of the signed body: a key that matches a field
	// only case-insensitively ("URL") would mean one thing here and
	// another to whoever reads the audit trail.
	if err := strictjson.Decode(raw, &req); err != nil {
		d := map[string]any{"field": "rail_request"}
		var se *strictjson.Error
		if errors.As(err, &se) {
			d["reason"] = se.Reason
			if se.Field != "" {
				d["field"] = "rail_request." + se.Field
			}
		}
		return nil, nil, money.Asset{}, railErr(spend.CodeInvalidRequest, "rail_request: %v", err).WithDetails(d)
	}
	u, err := url.Parse(req.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, nil, money.Asset{}, railErr(spend.CodeInvalidRequest, "rail_request.url must be an absolute http(s) URL").WithDetails(map[string]any{"field": "rail_request.url"})
	}
	if req.Version != 1 && req.Version != 2 {
		return nil, nil, money.Asset{}, railErr("x402_version_unsupported", "x402 version %d is not supported (1 or 2)", req.Version)
	}
	offer, err := parseOffer(req.Version, req.Offer, req.Resource)
	if err != nil {
		return nil, nil, money.Asset{}, err
	}
	if offer.Scheme != "exact" {
		return nil, nil, money.Asset{}, railErr("x402_scheme_unsupported", "scheme %q is not supported; Purser pays \"exact\"", offer.Scheme)
	}
	network, err := offer.CAIP2()
	if err != nil {
		return nil, nil, money.Asset{}, railErr("x402_network_unsupported", "network %q is not an EVM network Purser knows", offer.Network)
	}
	asset, err := r.onchainAsset(network, offer.Asset)
	if err != nil {
		return nil, nil, money.Asset{}, err
	}
	if !strings.EqualFold(asset.Address, offer.Asset) {
		return nil, nil, money.Asset{}, railErr("asset_unknown", "the offer's asset must be a token address; %q is not configured on %s", offer.Asset, network)
	}
	name, version, ok := offer.EIP712Domain()
	if !ok || name != asset.EIP712Name || version != asset.EIP712Version {
		return nil, nil, money.Asset{}, railErr("x402_domain_mismatch",
			"the offer's EIP-712 domain (%q, %q) is not %s's configured domain (%q, %q)", name, version, asset.Symbol, asset.EIP712Name, asset.EIP712Version)
	}
	if !money.IsAddress(offer.PayTo) || common.HexToAddress(offer.PayTo) == (common.Address{}) {
		return nil, nil, money.Asset{}, railErr("x402_payto_invalid", "payTo %q is not an address", offer.PayTo)
	}
	if offer.Amount == nil || offer.Amount.Sign() <= 0 {
		return nil, nil, money.Asset{}, railErr("amount_zero", "the offer's amount must be positive")
	}
	if offer.MaxTimeoutSeconds <= 0 {
		return nil, nil, money.Asset{}, railErr("x402_malformed", "maxTimeoutSeconds must be positive")
	}
	if req.Max != "" {
		max, err := money.ParsePositive(req.Max, asset.Decimals)
		if err != nil {
			return nil, nil, money.Asset{}, err
		}
		if offer.Amount.Cmp(max) > 0 {
			return nil, nil, money.Asset{}, railErr("x402_amount_above_max", "the seller asks %s %s, above the agent's max of %s",
				money.FormatAmount(offer.Amount, asset.Decimals), asset.Symbol, money.FormatAmount(max, asset.Decimals)).
				WithDetails(map[string]any{"amount": money.FormatAmount(offer.Amount, asset.Decimals), "max": req.Max})
		}
	}
	return &req, offer, asset, nil
}

// parseOffer parses one accepts entry with the protocol parser, so the
// server and the client read offers the same way.
func parseOffer(version int, raw, _ json.RawMessage) (*x402.Requirements, error) {
	if len(raw) == 0 {
		return nil, railErr("x402_no_requirements", "rail_request.offer is required")
	}
	return x402.ParseRequirements(version, raw)
}

// Prepare makes the intent the offer: payee, amount, asset, network and
// host come from what will be signed, not from the agent's say-so.
func (r *X402) Prepare(_ context.Context, req *spend.AuthorizeRequest) error {
	xr, offer, asset, err := r.offer(req.RailRequest)
	if err != nil {
		return err
	}
	u, _ := url.Parse(xr.URL)
	host, err := spend.NormalizeHost(u.Host)
	if err != nil {
		return err
	}
	// One spelling on both sides: "api.x.com" claims https://API.x.com:443/.
	if claimed, err := spend.NormalizeHost(req.Host); err != nil {
		return err
	} else if claimed != "" && claimed != host {
		return railErr("x402_host_mismatch", "host %q is not the URL's host %q", req.Host, host)
	}
	req.Host, req.Payee, req.Asset, req.Network = host, common.HexToAddress(offer.PayTo).Hex(), asset.Symbol, asset.Network
	req.Amount = money.FormatAmount(offer.Amount, asset.Decimals)
	return nil
}

// Sign signs the EIP-3009 authorization for the offer and builds the
// payment header. validAfter is 0 (as the reference client sends);
// validBefore is now plus the seller's maxTimeoutSeconds, capped.
func (r *X402) Sign(ctx context.Context, sp *spend.Spend) (string, json.RawMessage, time.Time, error) {
	xr, offer, _, err := r.offer(sp.RailRequest)
	if err != nil {
		return "", nil, time.Time{}, err
	}
	validity := time.Duration(offer.MaxTimeoutSeconds) * time.Second
	maxV := r.MaxValidity
	if maxV <= 0 {
		maxV = time.Hour
	}
	validity = min(validity, maxV)
	validBefore := r.now().Add(validity).Truncate(time.Second)
	rec, err := r.sign(ctx, sp, "x402", offer.PayTo, validBefore)
	if err != nil {
		return "", nil, time.Time{}, err
	}
	if rec.Signature == "" { // a co-signed wallet
		data, err := json.Marshal(rec)
		if err != nil {
			return "", nil, time.Time{}, err
		}
		return "", nil, time.Time{}, &spend.CosignPending{Ref: rec.Nonce, Data: data}
	}
	data, err := r.withPayment(xr, offer, rec)
	if err != nil {
		return "", nil, time.Time{}, err
	}
	return rec.Nonce, data, validBefore, nil
}

// withPayment adds the payment header to a signed record and encodes it.
func (r *X402) withPayment(xr *X402Request, offer *x402.Requirements, rec *authRecord) (json.RawMessage, error) {
	a, err := rec.authorization()
	if err != nil {
		return nil, err
	}
	payload, err := x402.NewPaymentPayload(offer, xr.Resource, x402.ExactPayload{
		Signature: rec.Signature,
		Authorization: x402.Authorization{From: rec.From, To: rec.To, Value: a.Value, ValidAfter: a.ValidAfter,
			ValidBefore: a.ValidBefore, Nonce: a.Nonce},
	})
	if err != nil {
		return nil, err
	}
	if rec.Header, rec.HeaderValue, err = payload.HeaderValue(); err != nil {
		return nil, err
	}
	return json.Marshal(rec)
}

// CosignPlan implements spend.Cosigner.
func (r *X402) CosignPlan(sp *spend.Spend) (*spend.CosignPlan, error) { return r.cosignPlan(sp) }

// CosignComplete implements spend.Cosigner: the signed record with its
// payment header, as Sign makes it for a server-held key.
func (r *X402) CosignComplete(sp *spend.Spend, sig []byte) (json.RawMessage, error) {
	xr, offer, _, err := r.offer(sp.RailRequest)
	if err != nil {
		return nil, err
	}
	rec, err := loadRecord(sp)
	if err != nil {
		return nil, err
	}
	rec.Signature = "0x" + hex.EncodeToString(sig)
	return r.withPayment(xr, offer, rec)
}

// Reconcile asks the chain what became of the authorization. Without a
// chain client for the network it waits for the agent's report until the
// authorization has expired (plus a grace), then marks the spend unknown.
func (r *X402) Reconcile(ctx context.Context, sp *spend.Spend) (spend.ExecResult, error) {
	rec, err := loadRecord(sp)
	if err != nil {
		return spend.ExecResult{}, err
	}
	res, err := r.checkChain(ctx, sp, rec)
	if errors.Is(err, errNoChain) {
		grace := r.ReportGrace
		if grace <= 0 {
			grace = 10 * time.Minute
		}
		if r.now().Unix() > rec.ValidBefore+int64(grace/time.Second) {
			return spend.ExecResult{Outcome: spend.OutcomeUnknown}, nil
		}
		return spend.ExecResult{Outcome: spend.OutcomePending}, nil
	}
	return res, err
}

// SettlementReport is what an agent reports after its paid retry: the
// seller's decoded settlement header, or only the HTTP status when the
// seller sent none.
type SettlementReport = api.SettlementReport

// Report weighs an agent's settlement report. With a chain client the
// chain decides. Without one, a reported success with a transaction hash
// is captured (an agent admitting a payment cannot overspend); a reported
// failure changes nothing, since the seller may still settle the
// authorization until it expires.
func (r *X402) Report(ctx context.Context, sp *spend.Spend, raw json.RawMessage) (spend.ExecResult, error) {
	var rep SettlementReport
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		return spend.ExecResult{}, railErr(spend.CodeInvalidRequest, "settlement report: %v", err)
	}
	if rep.Transaction != "" && !txHashRE.MatchString(rep.Transaction) {
		return spend.ExecResult{}, railErr(spend.CodeInvalidRequest, "settlement report: transaction %q is not a transaction hash", rep.Transaction)
	}
	rec, err := loadRecord(sp)
	if err != nil {
		return spend.ExecResult{}, err
	}
	res, err := r.checkChain(ctx, sp, rec)
	switch {
	case errors.Is(err, errNoChain):
		if rep.Success && rep.Transaction != "" {
			return spend.ExecResult{Outcome: spend.OutcomeCaptured, Captured: new(big.Int).Set(sp.Amount), Ref: rep.Transaction}, nil
		}
		return spend.ExecResult{Outcome: spend.OutcomePending}, nil
	case err != nil:
		return spend.ExecResult{}, fmt.Errorf("rails: check settlement of %s: %w", sp.ID, err)
	}
	if res.Outcome == spend.OutcomeCaptured && res.Ref == rec.Nonce && rep.Transaction != "" {
		res.Ref = rep.Transaction // the logs did not name the transaction
	}
	return res, nil
}
