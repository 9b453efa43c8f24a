package rails

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
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

// payoutGas is a generous bound of transferWithAuthorization's gas
// (about 60-90k on FiatToken), for the relayer's funding check.
const payoutGas = 150_000

// Sign signs the transfer authorization; it is recorded before it is sent.
// It first checks on chain that the payout can succeed (the wallet holds
// the amount, the relayer can pay gas): a payout that cannot be made is
// refused before anything exists that could move money later.
func (p *Payout) Sign(ctx context.Context, sp *spend.Spend) (string, json.RawMessage, time.Time, error) {
	if err := p.payable(ctx, sp); err != nil {
		return "", nil, time.Time{}, err
	}
	v := p.Validity
	if v <= 0 {
		v = time.Hour
	}
	validBefore := p.now().Add(v).Truncate(time.Second)
	rec, err := p.sign(ctx, sp, "payout", sp.Payee, validBefore)
	if err != nil {
		return "", nil, time.Time{}, err
	}
	if rec.Signature == "" {
		// A co-signed wallet: nothing to simulate without a signature; the
		// balance was checked, and a transfer the token refuses is
		// cancelled after it is relayed (abandon), as for any payout.
		data, err := json.Marshal(rec)
		if err != nil {
			return "", nil, time.Time{}, err
		}
		return "", nil, time.Time{}, &spend.CosignPending{Ref: rec.Nonce, Data: data}
	}
	// Run the transfer as the relayer would, before anyone can see the
	// signature: a token that refuses it (a paused token, a blocked payee,
	// a balance that moved) refuses the payout, and this signature, never
	// recorded, is dropped.
	if a, err := rec.authorization(); err == nil {
		sig := common.FromHex(rec.Signature)
		if err := p.Chains[sp.Network].SimulateTransferWithAuthorization(ctx, p.Relayers[sp.Network].Address(), common.HexToAddress(rec.Token), a, sig); err != nil {
			if !evm.IsRevert(err) {
				return "", nil, time.Time{}, err
			}
			reason := "transfer_reverted"
			if strings.Contains(strings.ToLower(err.Error()), "exceeds balance") {
				reason = "insufficient_funds"
			}
			return "", nil, time.Time{}, &spend.SignRefused{Reasons: []string{reason}}
		}
	}
	data, err := json.Marshal(rec)
	return rec.Nonce, data, validBefore, err
}

// payable refuses (spend.SignRefused) a payout the chain shows cannot be
// made now. Other errors (the chain did not answer) leave the spend
// unsigned for a retry.
func (p *Payout) payable(ctx context.Context, sp *spend.Spend) error {
	ch, relayer := p.Chains[sp.Network], p.Relayers[sp.Network]
	if ch == nil || relayer == nil {
		return errNoChain
	}
	asset, err := p.onchainAsset(sp.Network, sp.Asset)
	if err != nil {
		return err
	}
	from, err := p.walletAddress(ctx, sp.AgentID)
	if err != nil {
		return err
	}
	bal, err := ch.BalanceOf(ctx, common.HexToAddress(asset.Address), common.HexToAddress(from))
	if err != nil {
		return err
	}
	if bal.Cmp(sp.Amount) < 0 {
		return &spend.SignRefused{Reasons: []string{"insufficient_funds"}}
	}
	funded, err := relayer.GasFunded(ctx, payoutGas)
	if err != nil {
		return err
	}
	if !funded {
		return &spend.SignRefused{Reasons: []string{"relayer_unfunded"}}
	}
	return nil
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
	if rec.Signature == "" {
		// Co-signed and not finished: only the agent holds the signature,
		// which it may still use; the chain decides (pending until
		// validBefore, then failed and released).
		return p.checkChain(ctx, sp, rec)
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
			reason := "transfer_reverted"
			if strings.Contains(strings.ToLower(err.Error()), "exceeds balance") {
				reason = "insufficient_funds"
			}
			return p.abandon(ctx, sp, rec, reason)
		}
		if strings.Contains(strings.ToLower(err.Error()), "insufficient funds for gas") {
			// The relayer cannot pay gas: nothing was broadcast. The owner
			// must fund it (GET /v1/chains names it).
			return p.abandon(ctx, sp, rec, "relayer_unfunded")
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
	return p.abandon(ctx, sp, rec, "transfer_reverted")
}

// abandon handles a payout whose submission failed after it was signed.
// The signed authorization stays valid until validBefore, and anyone
// holding it could still submit it once the wallet is topped up, so the
// hold is not released on the failure alone (design invariant 10): the
// relayer cancels the authorization on chain, and only a mined
// cancellation (or the authorization's expiry) releases the hold. If the
// cancellation cannot be made now the spend stays unknown, still holding,
// and the reconciler settles it from the chain.
func (p *Payout) abandon(ctx context.Context, sp *spend.Spend, rec *authRecord, reason string) (spend.ExecResult, error) {
	res, err := p.Cancel(ctx, sp)
	if err != nil {
		return spend.ExecResult{Outcome: spend.OutcomeUnknown, Reasons: []string{reason}}, fmt.Errorf("rails: payout %s failed (%s) and could not be cancelled: %w", sp.ID, reason, err)
	}
	if res.Outcome == spend.OutcomeFailed {
		res.Reasons = append([]string{reason}, res.Reasons...)
	}
	if res.Outcome == spend.OutcomePending {
		res.Outcome = spend.OutcomeUnknown
	}
	return res, nil
}

// Check settles what the chain shows and does nothing else (the
// reconciler's view of a frozen agent's payout: never resubmitted).
func (p *Payout) Check(ctx context.Context, sp *spend.Spend) (spend.ExecResult, error) {
	rec, err := loadRecord(sp)
	if err != nil {
		return spend.ExecResult{}, err
	}
	return p.checkChain(ctx, sp, rec)
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

// CosignPlan implements spend.Cosigner.
func (p *Payout) CosignPlan(sp *spend.Spend) (*spend.CosignPlan, error) { return p.cosignPlan(sp) }

// CosignComplete implements spend.Cosigner: the signed record Execute
// relays.
func (p *Payout) CosignComplete(sp *spend.Spend, sig []byte) (json.RawMessage, error) {
	rec, err := loadRecord(sp)
	if err != nil {
		return nil, err
	}
	rec.Signature = "0x" + hex.EncodeToString(sig)
	return json.Marshal(rec)
}
