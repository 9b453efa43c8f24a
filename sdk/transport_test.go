package sdk_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/sdk"
	"github.com/purserhq/purser/x402"
)

// green is a mandate under which one price is paid without approval.
const green = `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"5","rails":["x402"]}`

// get requests url through hc with ctx and reads the answer.
func get(ctx context.Context, hc *http.Client, url string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	return do(hc, req)
}

func do(hc *http.Client, req *http.Request) (*http.Response, []byte, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func codeOf(err error) string {
	var e *sdk.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return fmt.Sprint(err)
}

// TestTransport pays x402 sellers through sdk.Transport against a real
// Purser, a dev chain, Purser's facilitator and sellers behind the x402
// middleware, and checks each outcome on chain.
func TestTransport(t *testing.T) {
	t.Parallel()
	m := newMarket(t)

	t.Run("pays v2 and v1 and returns the body", func(t *testing.T) {
		t.Parallel()
		for _, v1 := range []bool{false, true} {
			version := map[bool]int{false: 2, true: 1}[v1]
			s := m.seller(t, v1, route{pattern: "GET /item", amount: price})
			b := m.agent(t, fmt.Sprintf("payer-v%d", version), green, 1_000_000)
			var reported []*sdk.Spend
			hc := &http.Client{Transport: sdk.Transport(b.Agent, nil, &sdk.TransportOptions{
				OnPayment: func(_ *http.Request, sp *sdk.Spend) { reported = append(reported, sp) }})}
			resp, body, err := get(context.Background(), hc, s.url+"/item")
			if err != nil {
				t.Fatalf("v%d: %v", version, err)
			}
			if resp.StatusCode != http.StatusOK || string(body) != "content of /item" {
				t.Fatalf("v%d: HTTP %d %q", version, resp.StatusCode, body)
			}
			settleHeader := map[bool]string{false: x402.HeaderPaymentResponse, true: x402.HeaderXPaymentResponse}[v1]
			settle, err := x402.SettlementFromResponse(resp.Header)
			if err != nil || settle == nil || !settle.Success || resp.Header.Get(settleHeader) == "" {
				t.Fatalf("v%d: settlement %+v %v; want a successful %s", version, settle, err, settleHeader)
			}
			if got := m.balance(t, s.payTo); got != price {
				t.Errorf("v%d: the seller received %d, want %d", version, got, price)
			}
			if got := m.balance(t, b.wallet); got != 1_000_000-price {
				t.Errorf("v%d: the agent's wallet holds %d, want %d", version, got, 1_000_000-price)
			}
			if s.requests.Load() != 2 || s.paid.Load() != 1 {
				t.Errorf("v%d: the seller saw %d requests, %d paid; want 2 and 1", version, s.requests.Load(), s.paid.Load())
			}
			if len(reported) != 1 || reported[0].Status != sdk.StatusCaptured || reported[0].RailRef != settle.Transaction {
				t.Fatalf("v%d: OnPayment saw %+v; want one captured spend with tx %s", version, reported, settle.Transaction)
			}
			var rr api.X402Request
			if err := json.Unmarshal(reported[0].RailRequest, &rr); err != nil || rr.Version != version || rr.URL != s.url+"/item" {
				t.Errorf("v%d: the spend's rail_request %s", version, reported[0].RailRequest)
			}
			if !m.used(t, b, reported[0]) {
				t.Errorf("v%d: the authorization is unused on chain", version)
			}
		}
	})

	t.Run("a request without a 402 passes through", func(t *testing.T) {
		t.Parallel()
		s := m.seller(t, false, route{pattern: "GET /item", amount: price})
		b := m.agent(t, "free-rider", green, 1_000_000)
		hc := &http.Client{Transport: sdk.Transport(b.Agent, nil, nil)}
		resp, body, err := get(context.Background(), hc, s.url+"/free")
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != "content of /free" {
			t.Fatalf("free route: %v %v %q", resp, err, body)
		}
		resp, body, err = get(context.Background(), hc, s.url+"/quota")
		if err != nil || resp.StatusCode != http.StatusPaymentRequired || string(body) != "monthly quota exceeded\n" {
			t.Fatalf("a 402 without x402 requirements: %v %v %q; want it as it came", resp, err, body)
		}
		if n := len(m.spends(t, b.name)); n != 0 {
			t.Errorf("%d spends for a free route", n)
		}
	})

	t.Run("max price", func(t *testing.T) {
		t.Parallel()
		s := m.seller(t, false, route{pattern: "GET /item", amount: price}, route{pattern: "GET /pricey", amount: 500_000})
		b := m.agent(t, "capped", green, 1_000_000)
		hc := &http.Client{Transport: sdk.Transport(b.Agent, nil, &sdk.TransportOptions{MaxPrice: "0.001"})}
		// The transport's cap refuses the item; a per-request cap replaces it.
		if _, _, err := get(context.Background(), hc, s.url+"/item"); codeOf(err) != "x402_amount_above_max" {
			t.Fatalf("above the transport's max: %v", err)
		}
		ctx := sdk.WithMaxPrice(context.Background(), "0.10")
		if _, _, err := get(ctx, hc, s.url+"/pricey"); codeOf(err) != "x402_amount_above_max" {
			t.Fatalf("above the request's max: %v; want x402_amount_above_max", err)
		}
		if l := m.spends(t, b.name); len(l) != 0 {
			t.Fatalf("a price above the max left spends: %+v", l)
		}
		lim, err := b.Limits(context.Background())
		if err != nil || lim.Daily == nil || lim.Daily.Used != "0" {
			t.Fatalf("limits after the refusals: %+v %v; want nothing used", lim, err)
		}
		resp, body, err := get(ctx, hc, s.url+"/item")
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != "content of /item" {
			t.Fatalf("within the request's max: %v %v %q", resp, err, body)
		}
		if s.paid.Load() != 1 || m.balance(t, s.payTo) != price {
			t.Errorf("%d paid requests and %d received; want 1 and %d", s.paid.Load(), m.balance(t, s.payTo), price)
		}
	})

	t.Run("idempotency key pays once", func(t *testing.T) {
		t.Parallel()
		s := m.seller(t, false, route{pattern: "GET /item", amount: price})
		b := m.agent(t, "once", green, 1_000_000)
		hc := &http.Client{Transport: sdk.Transport(b.Agent, nil, nil)}
		ctx := sdk.WithIdempotencyKey(context.Background(), "report-2026-12-02")
		resp, body, err := get(ctx, hc, s.url+"/item")
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != "content of /item" {
			t.Fatalf("first call: %v %v %q", resp, err, body)
		}
		spends := m.spends(t, b.name)
		if len(spends) != 1 || spends[0].IdempotencyKey != "report-2026-12-02" || spends[0].Status != sdk.StatusCaptured {
			t.Fatalf("spends after the first call: %+v", spends)
		}
		// The same key again: the same spend, paid already; nothing is
		// signed or paid a second time.
		_, _, err = get(ctx, hc, s.url+"/item")
		var ue *url.Error
		if !errors.As(err, &ue) || codeOf(err) != "already_paid" || !strings.Contains(err.Error(), spends[0].SpendID) {
			t.Fatalf("second call with the same key: %v; want already_paid naming %s", err, spends[0].SpendID)
		}
		if l := m.spends(t, b.name); len(l) != 1 || l[0].SpendID != spends[0].SpendID {
			t.Fatalf("spends after the second call: %+v", l)
		}
		if got := m.balance(t, s.payTo); got != price {
			t.Fatalf("the seller received %d, want one price (%d)", got, price)
		}
		if got := m.balance(t, b.wallet); got != 1_000_000-price {
			t.Fatalf("the agent's wallet holds %d, want %d", got, 1_000_000-price)
		}
		if s.paid.Load() != 1 {
			t.Fatalf("%d paid requests reached the seller, want 1", s.paid.Load())
		}
		// Another key is another payment.
		ctx2 := sdk.WithIdempotencyKey(context.Background(), "report-2026-12-03")
		if resp, _, err := get(ctx2, hc, s.url+"/item"); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("another key: %v %v", resp, err)
		}
		if got := m.balance(t, s.payTo); got != 2*price {
			t.Fatalf("the seller received %d, want two prices", got)
		}
	})

	t.Run("concurrent requests under one key pay once", func(t *testing.T) {
		t.Parallel()
		const calls = 10
		s := m.seller(t, false, route{pattern: "GET /item", amount: price})
		b := m.agent(t, "impatient", green, 1_000_000)
		hc := &http.Client{Transport: sdk.Transport(b.Agent, nil, nil)}
		ctx := sdk.WithIdempotencyKey(context.Background(), "one-report")
		var served, refusedBySeller, alreadyPaid atomic.Int64
		var wg sync.WaitGroup
		for range calls {
			wg.Go(func() {
				resp, body, err := get(ctx, hc, s.url+"/item")
				switch {
				case err == nil && resp.StatusCode == http.StatusOK && string(body) == "content of /item":
					served.Add(1)
				case err == nil && resp.StatusCode == http.StatusPaymentRequired:
					refusedBySeller.Add(1) // the one authorization is in use or spent
				case codeOf(err) == "already_paid":
					alreadyPaid.Add(1)
				default:
					t.Errorf("unexpected: %v %v", resp, err)
				}
			})
		}
		wg.Wait()
		if served.Load() != 1 || served.Load()+refusedBySeller.Load()+alreadyPaid.Load() != calls {
			t.Fatalf("served %d, refused by the seller %d, already paid %d; want 1 served", served.Load(), refusedBySeller.Load(), alreadyPaid.Load())
		}
		l := m.spends(t, b.name)
		if len(l) != 1 || l[0].Status != sdk.StatusCaptured || !m.used(t, b, &l[0]) {
			t.Fatalf("spends %+v; want one, captured", l)
		}
		if got := m.balance(t, s.payTo); got != price {
			t.Fatalf("the seller received %d, want one price", got)
		}
	})

	t.Run("approval wait", func(t *testing.T) {
		t.Parallel()
		s := m.seller(t, false, route{pattern: "GET /pricey", amount: 500_000})
		b := m.agent(t, "patient", green, 1_000_000)
		hc := &http.Client{Transport: sdk.Transport(b.Agent, nil, nil)}

		// Without a wait, the payment needing approval fails at once.
		_, _, err := get(context.Background(), hc, s.url+"/pricey")
		var ar *sdk.ApprovalRequiredError
		if !errors.As(err, &ar) || ar.SpendID == "" || !slices.Contains(ar.Reasons, "above_auto_approve") {
			t.Fatalf("without a wait: %v; want an *ApprovalRequiredError (above_auto_approve)", err)
		}
		if _, err := m.owner.Deny(context.Background(), ar.SpendID, "not now"); err != nil {
			t.Fatal(err)
		}

		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// decide waits for the agent's payment to ask for approval, as an
		// owner's program would, and approves or denies it.
		decide := func(approve bool) <-chan string {
			decided := make(chan string, 1)
			go func() {
				defer close(decided)
				for ctx.Err() == nil {
					for sp, err := range m.owner.Approvals(ctx) {
						if err != nil {
							t.Errorf("approvals: %v", err)
							return
						}
						if sp.AgentID != b.id {
							continue
						}
						if approve {
							_, err = m.owner.Approve(ctx, sp.SpendID)
						} else {
							_, err = m.owner.Deny(ctx, sp.SpendID, "too dear")
						}
						if err != nil {
							t.Errorf("decide %s: %v", sp.SpendID, err)
						}
						decided <- sp.SpendID
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}()
			return decided
		}

		// A wait that ends before the owner decides: still pending.
		_, _, err = get(sdk.WithApprovalWait(ctx, 1500*time.Millisecond), hc, s.url+"/pricey")
		if !errors.As(err, &ar) {
			t.Fatalf("a wait without a decision: %v; want an *ApprovalRequiredError", err)
		}
		if _, err := m.owner.Deny(ctx, ar.SpendID, ""); err != nil {
			t.Fatal(err)
		}

		// Denied while the request waits: a refusal.
		denied := decide(false)
		_, _, err = get(sdk.WithApprovalWait(ctx, 45*time.Second), hc, s.url+"/pricey")
		var re *sdk.RefusedError
		if !errors.As(err, &re) || re.SpendID != <-denied || !slices.Contains(re.Reasons, "owner_denied") {
			t.Fatalf("denied while waiting: %v; want a *RefusedError (owner_denied)", err)
		}

		// Approved while the request waits: it then pays.
		approved := decide(true)
		resp, body, err := get(sdk.WithApprovalWait(ctx, 45*time.Second), hc, s.url+"/pricey")
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != "content of /pricey" {
			t.Fatalf("after approval: %v %v %q", resp, err, body)
		}
		id := <-approved
		sp, err := m.owner.Spend(context.Background(), id)
		if err != nil || sp.Status != sdk.StatusCaptured {
			t.Fatalf("the approved spend: %+v %v; want captured", sp, err)
		}
		if !m.used(t, b, sp) || m.balance(t, s.payTo) != 500_000 || s.paid.Load() != 1 {
			t.Fatalf("on chain: used %v, seller %d, %d paid requests; want used, 500000, 1", m.used(t, b, sp), m.balance(t, s.payTo), s.paid.Load())
		}
	})

	t.Run("a retry with the key of a decided payment", func(t *testing.T) {
		t.Parallel()
		s := m.seller(t, false, route{pattern: "GET /pricey", amount: 500_000})
		b := m.agent(t, "retrier", green, 1_000_000)
		hc := &http.Client{Transport: sdk.Transport(b.Agent, nil, nil)}
		ctx := context.Background()

		// Approved while nobody waited: the retry under the same key pays
		// that approved spend (Purser signs it now), once.
		approvedKey := sdk.WithIdempotencyKey(ctx, "approved-later")
		_, _, err := get(approvedKey, hc, s.url+"/pricey")
		var ar *sdk.ApprovalRequiredError
		if !errors.As(err, &ar) {
			t.Fatalf("first attempt: %v; want an *ApprovalRequiredError", err)
		}
		if _, err := m.owner.Approve(ctx, ar.SpendID); err != nil {
			t.Fatal(err)
		}
		resp, body, err := get(approvedKey, hc, s.url+"/pricey")
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != "content of /pricey" {
			t.Fatalf("retry after approval: %v %v %q", resp, err, body)
		}
		sp, err := m.owner.Spend(ctx, ar.SpendID)
		if err != nil || sp.Status != sdk.StatusCaptured || !m.used(t, b, sp) || m.balance(t, s.payTo) != 500_000 {
			t.Fatalf("the approved spend: %+v %v; seller %d", sp, err, m.balance(t, s.payTo))
		}

		// Denied: the retry under the same key is the refusal, nothing sent.
		deniedKey := sdk.WithIdempotencyKey(ctx, "denied")
		if _, _, err = get(deniedKey, hc, s.url+"/pricey"); !errors.As(err, &ar) {
			t.Fatalf("first attempt: %v; want an *ApprovalRequiredError", err)
		}
		if _, err := m.owner.Deny(ctx, ar.SpendID, "no"); err != nil {
			t.Fatal(err)
		}
		paidBefore := s.paid.Load()
		_, _, err = get(deniedKey, hc, s.url+"/pricey")
		var re *sdk.RefusedError
		if !errors.As(err, &re) || re.SpendID != ar.SpendID || !slices.Contains(re.Reasons, "owner_denied") {
			t.Fatalf("retry after denial: %v; want a *RefusedError for %s (owner_denied)", err, ar.SpendID)
		}
		if s.paid.Load() != paidBefore || m.balance(t, s.payTo) != 500_000 {
			t.Fatalf("a denied payment reached the seller")
		}
	})

	t.Run("ConfirmFetch takes the URL as Fetch was given it", func(t *testing.T) {
		t.Parallel()
		s := m.seller(t, false, route{pattern: "GET /reports/{name}", amount: 500_000, handler: func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "report "+r.PathValue("name"))
		}})
		b := m.agent(t, "confirmer", green, 1_000_000)
		ctx := context.Background()
		u := s.url + "/reports/q4 2026" // sent as /reports/q4%202026
		res, err := b.Fetch(ctx, sdk.FetchRequest{URL: u})
		if err != nil || res.Outcome != sdk.Pending {
			t.Fatalf("fetch: %+v %v; want pending", res, err)
		}
		if _, err := m.owner.Approve(ctx, res.Spend.SpendID); err != nil {
			t.Fatal(err)
		}
		res, err = b.ConfirmFetch(ctx, res.Spend.SpendID, sdk.FetchRequest{URL: u})
		if err != nil || res.Outcome != sdk.Paid || string(res.Body) != "report q4 2026" {
			t.Fatalf("confirm with the same URL: %+v %v", res, err)
		}
		if m.balance(t, s.payTo) != 500_000 {
			t.Fatalf("the seller received %d", m.balance(t, s.payTo))
		}
	})

	t.Run("refusal is a RefusedError", func(t *testing.T) {
		t.Parallel()
		s := m.seller(t, false, route{pattern: "GET /item", amount: price})
		b := m.agent(t, "fenced", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"5","hosts":["api.example.com"]}`, 1_000_000)
		hc := &http.Client{Transport: sdk.Transport(b.Agent, nil, nil)}
		_, _, err := get(context.Background(), hc, s.url+"/item")
		var ue *url.Error
		var re *sdk.RefusedError
		if !errors.As(err, &ue) || !errors.As(err, &re) {
			t.Fatalf("err %T %v; want a *sdk.RefusedError inside a *url.Error", err, err)
		}
		if re.SpendID == "" || !slices.Contains(re.Reasons, "host_not_allowed") || re.Spend.Status != sdk.StatusDenied || !sdk.IsCode(err, "spend_denied") {
			t.Fatalf("refusal %+v; want a denied spend with host_not_allowed", re)
		}
		if s.paid.Load() != 0 || m.balance(t, s.payTo) != 0 {
			t.Fatalf("a refused payment reached the seller")
		}
	})

	t.Run("a POST body is resent byte for byte", func(t *testing.T) {
		t.Parallel()
		payload := make([]byte, 256<<10)
		if _, err := rand.Read(payload); err != nil {
			t.Fatal(err)
		}
		var paidBodies atomic.Int64
		s := m.seller(t, false, route{pattern: "POST /echo", amount: price, handler: func(w http.ResponseWriter, r *http.Request) {
			got, err := io.ReadAll(r.Body)
			if err != nil || !bytes.Equal(got, payload) {
				http.Error(w, fmt.Sprintf("the paid request's body differs (%d bytes, %v)", len(got), err), http.StatusBadRequest)
				return
			}
			paidBodies.Add(1)
			sum := sha256.Sum256(got)
			fmt.Fprint(w, hex.EncodeToString(sum[:]))
		}})
		b := m.agent(t, "poster", green, 1_000_000)
		hc := &http.Client{Transport: sdk.Transport(b.Agent, nil, nil)}
		req, err := http.NewRequest(http.MethodPost, s.url+"/echo", bytes.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, body, err := do(hc, req)
		sum := sha256.Sum256(payload)
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != hex.EncodeToString(sum[:]) {
			t.Fatalf("paid POST: %v %v %q", resp, err, body)
		}
		if paidBodies.Load() != 1 || m.balance(t, s.payTo) != price {
			t.Fatalf("%d paid bodies served, seller received %d", paidBodies.Load(), m.balance(t, s.payTo))
		}
	})

	t.Run("a body that cannot be replayed is refused before signing", func(t *testing.T) {
		t.Parallel()
		s := m.seller(t, false, route{pattern: "POST /echo", amount: price})
		b := m.agent(t, "streamer", green, 1_000_000)
		hc := &http.Client{Transport: sdk.Transport(b.Agent, nil, nil)}
		req, err := http.NewRequest(http.MethodPost, s.url+"/echo", io.NopCloser(strings.NewReader("once only")))
		if err != nil {
			t.Fatal(err)
		}
		if req.GetBody != nil {
			t.Fatal("http.NewRequest set GetBody for an io.NopCloser")
		}
		_, _, err = do(hc, req)
		if !errors.Is(err, sdk.ErrBodyNotReplayable) {
			t.Fatalf("err %v; want ErrBodyNotReplayable", err)
		}
		if l := m.spends(t, b.name); len(l) != 0 {
			t.Fatalf("spends exist for the agent: %+v", l)
		}
		if s.requests.Load() != 1 || s.paid.Load() != 0 {
			t.Fatalf("the seller saw %d requests, %d paid; want 1 and 0", s.requests.Load(), s.paid.Load())
		}
	})

	t.Run("no retry once the context is cancelled", func(t *testing.T) {
		t.Parallel()
		s := m.seller(t, false, route{pattern: "GET /item", amount: price})

		// Cancelled as the paid retry starts: the base RoundTripper sees
		// a cancelled request and nothing reaches the seller.
		b := m.agent(t, "quitter", green, 1_000_000)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		base := &cancelOnSecond{base: http.DefaultTransport, cancel: cancel}
		hc := &http.Client{Transport: sdk.Transport(b.Agent, base, nil)}
		if _, _, err := get(ctx, hc, s.url+"/item"); !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v; want context.Canceled", err)
		}
		if base.calls.Load() != 2 || s.requests.Load() != 1 || s.paid.Load() != 0 {
			t.Fatalf("%d attempts, the seller saw %d requests (%d paid); want 2 attempts and 1 request", base.calls.Load(), s.requests.Load(), s.paid.Load())
		}

		// Cancelled while Purser answers the authorization: the payment
		// is signed, but the transport does not send it.
		purser := &cancelAfterAuthorize{base: http.DefaultTransport}
		b2 := m.agent(t, "quitter-2", green, 1_000_000, sdk.WithHTTPClient(&http.Client{Transport: purser, Timeout: time.Minute}))
		ctx2, cancel2 := context.WithCancel(context.Background())
		defer cancel2()
		purser.cancel.Store(&cancel2)
		attempts := &cancelOnSecond{base: http.DefaultTransport}
		hc2 := &http.Client{Transport: sdk.Transport(b2.Agent, attempts, nil)}
		if _, _, err := get(ctx2, hc2, s.url+"/item"); !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v; want context.Canceled", err)
		}
		if attempts.calls.Load() != 1 || s.requests.Load() != 2 || s.paid.Load() != 0 {
			t.Fatalf("%d attempts, the seller saw %d requests in all (%d paid); want 1 attempt", attempts.calls.Load(), s.requests.Load(), s.paid.Load())
		}
		l := m.spends(t, b2.name)
		if len(l) != 1 || l[0].Status != sdk.StatusAuthorized || m.used(t, b2, &l[0]) {
			t.Fatalf("spends: %+v; want one signed, unused authorization", l)
		}
		if got := m.balance(t, s.payTo); got != 0 {
			t.Fatalf("the seller received %d", got)
		}
	})

	t.Run("a 4xx to the paid retry is returned, not retried", func(t *testing.T) {
		t.Parallel()
		var served atomic.Int64
		s := m.seller(t, false, route{pattern: "GET /gone", amount: price, handler: func(w http.ResponseWriter, r *http.Request) {
			served.Add(1)
			http.Error(w, "no such report", http.StatusNotFound)
		}})
		b := m.agent(t, "unlucky", green, 1_000_000)
		hc := &http.Client{Transport: sdk.Transport(b.Agent, nil, nil)}
		resp, body, err := get(context.Background(), hc, s.url+"/gone")
		if err != nil || resp.StatusCode != http.StatusNotFound || string(body) != "no such report\n" {
			t.Fatalf("4xx: %v %v %q; want the seller's 404", resp, err, body)
		}
		if served.Load() != 1 || s.paid.Load() != 1 || s.requests.Load() != 2 {
			t.Fatalf("handler ran %d times, %d paid requests of %d; want 1, 1 of 2", served.Load(), s.paid.Load(), s.requests.Load())
		}
		l := m.spends(t, b.name)
		if len(l) != 1 || l[0].Status == sdk.StatusCaptured || m.used(t, b, &l[0]) || m.balance(t, s.payTo) != 0 {
			t.Fatalf("spends %+v, seller %d; want one spend, not captured, unused on chain", l, m.balance(t, s.payTo))
		}
	})

	t.Run("budgets stay exact under concurrency", func(t *testing.T) {
		t.Parallel()
		const calls, fits = 100, 20
		s := m.seller(t, false, route{pattern: "GET /item", amount: price})
		b := m.agent(t, "swarm", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"0.20","rails":["x402"]}`, 1_000_000)
		hc := &http.Client{Transport: sdk.Transport(b.Agent, nil, nil)}
		var paid, refused atomic.Int64
		var wg sync.WaitGroup
		for range calls {
			wg.Go(func() {
				resp, body, err := get(context.Background(), hc, s.url+"/item")
				var re *sdk.RefusedError
				switch {
				case err == nil && resp.StatusCode == http.StatusOK && string(body) == "content of /item":
					paid.Add(1)
				case errors.As(err, &re) && slices.Contains(re.Reasons, "daily_budget_exceeded"):
					refused.Add(1)
				case err != nil:
					t.Errorf("unexpected error: %v", err)
				default:
					t.Errorf("unexpected answer: HTTP %d %q", resp.StatusCode, body)
				}
			})
		}
		wg.Wait()
		if paid.Load() != fits || refused.Load() != calls-fits {
			t.Fatalf("paid %d, refused %d; want %d and %d", paid.Load(), refused.Load(), fits, calls-fits)
		}
		if got := m.balance(t, s.payTo); got != fits*price {
			t.Fatalf("the seller received %d on chain, want exactly %d", got, fits*price)
		}
		if got := m.balance(t, b.wallet); got != 1_000_000-fits*price {
			t.Fatalf("the agent's wallet holds %d, want %d", got, 1_000_000-fits*price)
		}
		byStatus := map[string]int{}
		for _, sp := range m.spends(t, b.name) {
			byStatus[sp.Status]++
			if sp.Status == sdk.StatusCaptured && !m.used(t, b, &sp) {
				t.Errorf("captured spend %s: its authorization is unused on chain", sp.SpendID)
			}
		}
		if byStatus[sdk.StatusCaptured] != fits || byStatus[sdk.StatusDenied] != calls-fits || len(byStatus) != 2 {
			t.Fatalf("spends by status %v; want %d captured and %d denied", byStatus, fits, calls-fits)
		}
		lim, err := b.Limits(context.Background())
		if err != nil || lim.Daily == nil || lim.Daily.Used != "0.2" || lim.Daily.Remaining != "0" {
			t.Fatalf("limits %+v %v; want the daily budget used up exactly", lim.Daily, err)
		}
		if s.paid.Load() != fits {
			t.Fatalf("%d paid requests reached the seller, want %d", s.paid.Load(), fits)
		}
	})
}

// cancelOnSecond counts the attempts of a request and cancels its
// context as the second one starts.
type cancelOnSecond struct {
	base   http.RoundTripper
	cancel context.CancelFunc
	calls  atomic.Int64
}

func (c *cancelOnSecond) RoundTrip(req *http.Request) (*http.Response, error) {
	if c.calls.Add(1) == 2 && c.cancel != nil {
		c.cancel()
	}
	return c.base.RoundTrip(req)
}

// cancelAfterAuthorize sits between an agent and Purser: once Purser has
// answered an authorization in full, it cancels the paying request's
// context and hands the answer on.
type cancelAfterAuthorize struct {
	base   http.RoundTripper
	cancel atomic.Pointer[context.CancelFunc]
}

func (c *cancelAfterAuthorize) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	if err != nil || req.Method != http.MethodPost || req.URL.Path != "/v1/agent/spends" {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if cancel := c.cancel.Load(); cancel != nil {
		(*cancel)()
	}
	return resp, nil
}
