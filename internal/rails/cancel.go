package rails

import (
	"context"
	"fmt"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/x402"
)

// Cancel makes sp's signed authorization unusable on chain: the agent's
// wallet signs EIP-3009's CancelAuthorization for its nonce and the
// network's relayer submits it. It waits for the receipt and returns what
// the chain then shows: failed (authorization_cancelled) when the
// cancellation was mined, captured when the authorization was used first.
// Only that answer may release the hold (design invariant 10).
func (c *Common) Cancel(ctx context.Context, sp *spend.Spend) (spend.ExecResult, error) {
	rec, err := loadRecord(sp)
	if err != nil {
		return spend.ExecResult{}, err
	}
	res, err := c.checkChain(ctx, sp, rec)
	if err != nil || res.Outcome != spend.OutcomePending {
		return res, err // used, cancelled or expired already; or no chain
	}
	relayer := c.Relayers[sp.Network]
	if relayer == nil {
		return spend.ExecResult{}, fmt.Errorf("rails: no relayer for %s to cancel spend %s", sp.Network, sp.ID)
	}
	asset, err := c.onchainAsset(sp.Network, sp.Asset)
	if err != nil {
		return spend.ExecResult{}, err
	}
	chainID, err := x402.ChainIDOf(sp.Network)
	if err != nil {
		return spend.ExecResult{}, err
	}
	a, err := rec.authorization()
	if err != nil {
		return spend.ExecResult{}, err
	}
	w, err := c.Wallet(ctx, sp.AgentID)
	if err != nil {
		return spend.ExecResult{}, err
	}
	if common.HexToAddress(w.Address()) != a.From {
		return spend.ExecResult{}, fmt.Errorf("rails: spend %s was not signed by the agent's current wallet", sp.ID)
	}
	token := common.HexToAddress(rec.Token)
	ds := evm.DomainSeparator(asset.EIP712Name, asset.EIP712Version, chainID, token)
	sig, err := w.SignHash(evm.CancelDigest(ds, a.From, a.Nonce))
	if err != nil {
		return spend.ExecResult{}, err
	}
	tx, err := relayer.CancelAuthorization(ctx, token, a.From, a.Nonce, sig)
	if err != nil {
		if evm.IsRevert(err) { // used or cancelled meanwhile: the chain says which
			return c.checkChain(ctx, sp, rec)
		}
		return spend.ExecResult{}, fmt.Errorf("rails: cancel spend %s: %w", sp.ID, err)
	}
	if _, err := relayer.Client().WaitReceipt(ctx, tx); err != nil {
		return spend.ExecResult{}, fmt.Errorf("rails: cancel spend %s: tx %s: %w", sp.ID, tx.Hex(), err)
	}
	return c.checkChain(ctx, sp, rec)
}
