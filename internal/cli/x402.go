package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strings"

	"github.com/purserhq/purser/sdk"
)

// ExitSellerFailed: a payment was authorized (and signed), but the seller
// or its facilitator failed. Purser's reconciler settles the hold from
// the chain.
const ExitSellerFailed = 5

// x402Opts are the flags of x402 fetch and confirm.
type x402Opts struct {
	method  string
	data    string
	headers headerFlags
	max     string
	dryRun  bool
}

// headerFlags collects repeated -H 'Name: value' flags.
type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

func (x *x402Opts) header() (http.Header, error) {
	hd := http.Header{}
	for _, l := range x.headers {
		k, v, ok := strings.Cut(l, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("header %q: use 'Name: value'", l)
		}
		hd.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return hd, nil
}

func x402Command() *command {
	reqFlags := func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.x402.method, "method", "", "HTTP `METHOD` (default GET)")
		fs.StringVar(&o.x402.data, "data", "", "request `BODY`")
		fs.Var(&o.x402.headers, "H", "request header 'Name: value' (repeatable)")
	}
	fetch := &command{
		name: "fetch", args: "URL [--method M] [--data BODY] [-H 'K: V'] [--max AMOUNT] [--dry-run]",
		summary: "request URL and pay its x402 402 through Purser; exit 0 paid and served, 3 waiting for approval, 4 refused, 5 the seller failed after payment was authorized",
		kind:    kindAgent, bodyData: true,
		flags: func(fs *flag.FlagSet, o *opts) {
			reqFlags(fs, o)
			fs.StringVar(&o.x402.max, "max", "", "pay at most `AMOUNT` (in the offer's asset units, e.g. 0.05)")
			fs.BoolVar(&o.x402.dryRun, "dry-run", false, "show the offer and the mandate's verdict; pay nothing")
			fs.StringVar(&o.idemKey, "idempotency-key", "", "`KEY` making a retry reuse the original payment")
		},
		run: runX402Fetch,
	}
	confirm := &command{
		name: "confirm", args: "SPEND_ID [--data BODY] [-H 'K: V']",
		summary: "finish an x402 payment an owner approved: sign, retry the request, print the body",
		kind:    kindAgent, bodyData: true, flags: reqFlags, run: runX402Confirm,
	}
	return &command{name: "x402", summary: "pay x402 (HTTP 402) APIs", sub: []*command{fetch, confirm}}
}

func (o *opts) payerRequest(url string) (sdk.FetchRequest, error) {
	h, err := o.x402.header()
	if err != nil {
		return sdk.FetchRequest{}, usagef(o.path, "%v", err)
	}
	r := sdk.FetchRequest{URL: url, Method: strings.ToUpper(o.x402.method), Header: h, Max: o.x402.max,
		IdempotencyKey: o.idemKey, DryRun: o.x402.dryRun}
	if o.x402.data != "" {
		r.Body = []byte(o.x402.data)
	}
	return r, nil
}

func runX402Fetch(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args, "URL"); err != nil {
		return err
	}
	r, err := o.payerRequest(args[0])
	if err != nil {
		return err
	}
	p, err := e.agentClient(o)
	if err != nil {
		return err
	}
	res, err := p.Fetch(ctx, r)
	return e.x402Result(o, res, err)
}

func runX402Confirm(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args, "SPEND_ID"); err != nil {
		return err
	}
	r, err := o.payerRequest("")
	if err != nil {
		return err
	}
	p, err := e.agentClient(o)
	if err != nil {
		return err
	}
	res, err := p.ConfirmFetch(ctx, args[0], r)
	return e.x402Result(o, res, err)
}

// x402Result prints a fetch's outcome: the body on stdout (or, with
// --json, an object with the outcome, the spend and the body), what
// happened on stderr, and the exit code of the contract.
func (e *env) x402Result(o *opts, res *sdk.FetchResult, err error) error {
	if err != nil {
		if codeOf(err) == "x402_amount_above_max" {
			if o.json {
				if err := writeJSON(e.stdio.Out, map[string]any{"outcome": sdk.Refused, "reasons": []string{"x402_amount_above_max"},
					"message": errorText(err)}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(e.stdio.Out, "refused: %s\n", errorText(err))
			}
			return exitCode(ExitRefused)
		}
		return err
	}
	code := ExitOK
	switch res.Outcome {
	case sdk.Pending:
		code = ExitPending
	case sdk.Refused:
		code = ExitRefused
	case sdk.SellerFailed:
		code = ExitSellerFailed
	case sdk.DryRun:
		if res.Spend != nil && res.Spend.Status == sdk.StatusDenied {
			code = ExitRefused
		} else if res.Spend != nil && res.Spend.Status == sdk.StatusPendingApproval {
			code = ExitPending
		}
	}
	if o.json {
		out := map[string]any{"outcome": res.Outcome, "http_status": res.HTTPStatus, "offer": res.Offer,
			"settlement": res.Settlement, "reasons": nonNil(res.Reasons), "body": string(res.Body)}
		if res.Error != "" {
			out["error"] = res.Error
		}
		if res.Spend != nil {
			out["spend_id"], out["status"], out["spend"] = res.Spend.SpendID, res.Spend.Status, res.Spend
			if len(res.Reasons) == 0 {
				out["reasons"] = nonNil(res.Spend.Reasons)
			}
		}
		if err := writeJSON(e.stdio.Out, out); err != nil {
			return err
		}
		return exitCode(code)
	}
	w := e.stdio.Err
	switch res.Outcome {
	case sdk.Served:
		// nothing to pay
	case sdk.Paid:
		fmt.Fprintf(w, "paid %s %s to %s (spend %s, tx %s)\n", res.Spend.Amount, res.Spend.Asset, res.Spend.Payee, res.Spend.SpendID, res.Settlement.Transaction)
	case sdk.Pending:
		fmt.Fprintf(e.stdio.Out, "waiting for approval: %s (%s)\n", res.Spend.SpendID, orDash(strings.Join(res.Spend.Reasons, ", ")))
		fmt.Fprintf(w, "after an owner approves: purser x402 confirm %s\n", res.Spend.SpendID)
		return exitCode(code)
	case sdk.Refused:
		fmt.Fprintf(e.stdio.Out, "refused by the mandate: %s\n", orDash(strings.Join(res.Reasons, ", ")))
		return exitCode(code)
	case sdk.DryRun:
		fmt.Fprintf(e.stdio.Out, "would pay %s %s to %s on %s: %s (%s)\n", res.Offer.Amount, res.Offer.Asset, res.Offer.PayTo,
			res.Offer.Network, res.Spend.Decision, orDash(strings.Join(res.Spend.Reasons, ", ")))
		return exitCode(code)
	case sdk.SellerFailed:
		reason := strings.Join(res.Reasons, ", ")
		if res.Error != "" {
			reason += ": " + res.Error
		}
		fmt.Fprintf(w, "the seller answered %d after payment was authorized (%s); spend %s is settled from the chain\n",
			res.HTTPStatus, orDash(reason), res.Spend.SpendID)
	}
	if _, err := e.stdio.Out.Write(res.Body); err != nil {
		return err
	}
	return exitCode(code)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// codeOf is the stable code of an error of any package, "" if none.
func codeOf(err error) string {
	var se *sdk.Error
	if errors.As(err, &se) {
		return se.Code
	}
	var c interface{ Code() string }
	if errors.As(err, &c) {
		return c.Code()
	}
	return ""
}
