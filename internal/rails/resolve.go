package rails

import (
	"context"
	"errors"
	"math/big"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/spend"
)

var (
	_ spend.ChainResolver = (*X402)(nil)
	_ spend.ChainResolver = (*Payout)(nil)
)

// ChainOutcome reports what the chain shows of sp's authorization,
// without submitting anything; connected is false when no chain is
// connected for sp's network.
func (c *Common) ChainOutcome(ctx context.Context, sp *spend.Spend) (spend.ExecResult, bool, error) {
	rec, err := loadRecord(sp)
	if err != nil {
		return spend.ExecResult{}, false, err
	}
	res, err := c.checkChain(ctx, sp, rec)
	if errors.Is(err, errNoChain) {
		return spend.ExecResult{}, false, nil
	}
	return res, true, err
}

// VerifyTransfer checks that transaction tx succeeded and logged the
// token's Transfer of sp's authorization: from the agent's wallet, to the
// payee, of the authorized value.
func (c *Common) VerifyTransfer(ctx context.Context, sp *spend.Spend, tx string) (*big.Int, error) {
	ch := c.Chains[sp.Network]
	if ch == nil {
		return nil, errNoChain
	}
	rec, err := loadRecord(sp)
	if err != nil {
		return nil, err
	}
	a, err := rec.authorization()
	if err != nil {
		return nil, err
	}
	disagree := func(format string, args ...any) error {
		return spend.Errorf(spend.CodeChainDisagrees, format, args...).WithDetails(map[string]any{"chain": "tx_mismatch", "tx": tx, "spend_id": sp.ID})
	}
	rcpt, err := ch.Backend().TransactionReceipt(ctx, common.HexToHash(tx))
	if errors.Is(err, ethereum.NotFound) || (err == nil && rcpt == nil) {
		return nil, disagree("transaction %s is not on the chain of %s (or not mined yet)", tx, sp.Network)
	}
	if err != nil {
		return nil, err
	}
	if rcpt.Status != 1 {
		return nil, disagree("transaction %s reverted: it moved nothing", tx)
	}
	if !evm.TransferLogged(rcpt, common.HexToAddress(rec.Token), a.From, a.To, a.Value) {
		return nil, disagree("transaction %s carries no transfer of %s from %s to %s: it is not spend %s's payment", tx, a.Value, a.From.Hex(), a.To.Hex(), sp.ID)
	}
	return new(big.Int).Set(a.Value), nil
}
