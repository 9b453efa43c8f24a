package rails

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
)

// Payout is the USDC payout rail: Purser signs an EIP-3009 transfer from
// the agent's wallet to the payee and relays it with its own gas key, so
// agent wallets need no native gas token. It waits for the receipt and
// captures the hold; what it cannot see finish is reconciled.
type Payout struct {
	Common
	// Relayers pay gas on each network; a network without one cannot
	// carry payouts.
	Relayers map[string]*evm.Relayer
	// Validity is how long a payout authorization stays valid (default
	// 1 hour): how long an unknown outcome can keep its hold.
	Validity time.Duration

	mu       sync.Mutex
	inflight map[string]*sync.Mutex // one submission per spend at a time in this process
}

// Name returns "payout".
func (*Payout) Name() string { return "payout" }

// Prepare checks that the payout can be made: the payee is an address,
// the asset a token with an EIP-3009 domain, the network has a relayer.
func (p *Payout) Prepare(_ context.Context, r *spend.AuthorizeRequest) error {
	if !money.IsAddress(r.Payee) || common.HexToAddress(r.Payee) == (common.Address{}) {
		return spend.Errorf(spend.CodeInvalidRequest, "a payout's payee must be a 0x address").WithDetails(map[string]any{"field": "payee"})
	}
	if _, err := p.onchainAsset(r.Network, r.Asset); err != nil {
		return err
	}
	if p.Relayers[r.Network] == nil || p.Chains[r.Network] == nil {
		return spend.Errorf(spend.CodeChainUnavailable, "no chain is connected for %s; start the server with --rpc %s=URL", r.Network, r.Network)
	}
	return nil
}

// Sign signs the transfer authorization; it is recorded before it is sent.
func (p *Payout) Sign(ctx context.Context, sp *spend.Spend) (string, json.RawMessage, time.Time, error) {
	v := p.Validity
	if v <= 0 {
		v = time.Hour
	}
	validBefore := p.now().Add(v).Truncate(time.Second)
	rec, err := p.sign(ctx, sp, "payout", sp.Payee, validBefore)
	if err != nil {
		return "", nil, time.Time{}, err
	}
	data, err := json.Marshal(rec)
	return rec.Nonce, data, validBefore, err
}

func (p *Payout) lock(id string) func() {
	p.mu.Lock()
	if p.inflight == nil {
		p.inflight = map[string]*sync.Mutex{}
	}
	m := p.inflight[id]
	if m == nil {
		m = &sync.Mutex{}
		p.inflight[id] = m
	}
	p.mu.Unlock()
	m.Lock()
	return func() {
		m.Unlock()
		p.mu.Lock()
		delete(p.inflight, id)
		p.mu.Unlock()
	}
}

// Execute relays the recorded authorization and waits for its receipt.
// Sending it twice is harmless: the token accepts one use of a nonce.
func (p *Payout) Execute(ctx context.Context, sp *spend.Spend) (spend.ExecResult, error) {
	defer p.lock(sp.ID)()
	rec, err := loadRecord(sp)
	if err != nil {
		return spend.ExecResult{Outcome: spend.OutcomeUnknown}, err
	}
	return p.submit(ctx, sp, rec)
}

func (p *Payout) submit(ctx context.Context, sp *spend.Spend, rec *authRecord) (spend.ExecResult, error) {
	ch, relayer := p.Chains[sp.Network], p.Relayers[sp.Network]
	if ch == nil || relayer == nil {
		return spend.ExecResult{Outcome: spend.OutcomeUnknown}, errNoChain
	}
	// Already used (a previous attempt landed)? Then there is nothing to send.
	if res, err := p.checkChain(ctx, sp, rec); err == nil && res.Outcome != spend.OutcomePending {
		return res, nil
	}
	a, err := rec.authorization()
	if err != nil {
		return spend.ExecResult{Outcome: spend.OutcomeUnknown}, err
	}
	sig, err := hex.DecodeString(trim0x(rec.Signature))
	if err != nil {
		return spend.ExecResult{Outcome: spend.OutcomeUnknown}, err
	}
	token := common.HexToAddress(rec.Token)
	tx, err := relayer.TransferWithAuthorization(ctx, token, a, sig)
	if err != nil {
		if evm.IsRevert(err) {
			// Estimation reverted: nothing was broadcast. The wallet
			// cannot pay this (balance, or the authorization is spent);
			// the chain says which.
			if res, cerr := p.checkChain(ctx, sp, rec); cerr == nil && res.Outcome == spend.OutcomeCaptured {
				return res, nil
			}
			reason := "transfer_reverted"
			if strings.Contains(strings.ToLower(err.Error()), "exceeds balance") {
				reason = "insufficient_funds"
			}
			return spend.ExecResult{Outcome: spend.OutcomeFailed, Reasons: []string{reason}}, nil
		}
		if strings.Contains(strings.ToLower(err.Error()), "insufficient funds for gas") {
			// The relayer cannot pay gas: nothing was broadcast. The owner
			// must fund it (GET /v1/chains names it).
			return spend.ExecResult{Outcome: spend.OutcomeFailed, Reasons: []string{"relayer_unfunded"}}, err
		}
		return spend.ExecResult{Outcome: spend.OutcomeUnknown}, err
	}
	rcpt, err := ch.WaitReceipt(ctx, tx)
	if err != nil {
		return spend.ExecResult{Outcome: spend.OutcomeUnknown, Ref: tx.Hex()}, err
	}
	if rcpt.Status == 1 && evm.TransferLogged(rcpt, token, a.From, a.To, a.Value) {
		return spend.ExecResult{Outcome: spend.OutcomeCaptured, Captured: a.Value, Ref: tx.Hex()}, nil
	}
	// Reverted on chain: used meanwhile by another submission, or not payable.
	res, err := p.checkChain(ctx, sp, rec)
	if err == nil && res.Outcome == spend.OutcomeCaptured {
		return res, nil
	}
	return spend.ExecResult{Outcome: spend.OutcomeFailed, Ref: tx.Hex(), Reasons: []string{"transfer_reverted"}}, nil
}

// Reconcile settles what the chain shows and resubmits an authorization
// that is still valid and unused (its earlier submission was lost).
func (p *Payout) Reconcile(ctx context.Context, sp *spend.Spend) (spend.ExecResult, error) {
	defer p.lock(sp.ID)()
	rec, err := loadRecord(sp)
	if err != nil {
		return spend.ExecResult{}, err
	}
	res, err := p.checkChain(ctx, sp, rec)
	if err != nil || res.Outcome != spend.OutcomePending {
		return res, err
	}
	return p.submit(ctx, sp, rec)
}
