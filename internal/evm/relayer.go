package evm

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
)

// Relayer sends transactions from one account and pays their gas: Purser's
// facilitator settling x402 payments, the payout rail, the dev faucet.
//
// It is safe for concurrent use. Sends are serialised by a mutex around a
// local nonce counter, because asking the node for the pending nonce on every
// send races when two settlements overlap (the hosted x402 facilitator's
// nonce-collision bug). The counter is resynchronised from the node's pending
// nonce when it is unknown or a send fails.
type Relayer struct {
	c    *Client
	s    HashSigner
	addr common.Address

	mu     sync.Mutex
	nonce  uint64
	synced bool
}

// NewRelayer returns a relayer sending from s's account on c's chain.
func NewRelayer(c *Client, s HashSigner) *Relayer {
	return &Relayer{c: c, s: s, addr: common.HexToAddress(s.Address())}
}

// Address returns the account that sends and pays gas.
func (r *Relayer) Address() common.Address { return r.addr }

// Client returns the chain client the relayer sends through.
func (r *Relayer) Client() *Client { return r.c }

// TransferWithAuthorization submits token.transferWithAuthorization for a and
// returns the transaction hash without waiting for it to be mined. A 65-byte
// sig uses the (v, r, s) overload, anything else the bytes overload. If the
// gas estimate reverts nothing is sent and the error is a *RevertError with
// the token's reason.
func (r *Relayer) TransferWithAuthorization(ctx context.Context, token common.Address, a Authorization, sig []byte) (common.Hash, error) {
	data, err := TransferWithAuthorizationData(a, sig)
	if err != nil {
		return common.Hash{}, err
	}
	return r.Send(ctx, token, data, nil)
}

// Send sends a call (or value transfer) to `to` as an EIP-1559 transaction
// with estimated gas and returns its hash without waiting for it to be mined.
func (r *Relayer) Send(ctx context.Context, to common.Address, data []byte, value *big.Int) (common.Hash, error) {
	tx, err := r.send(ctx, &to, data, value)
	if err != nil {
		return common.Hash{}, err
	}
	return tx.Hash(), nil
}

// Deploy sends a contract creation (code is creation code with constructor
// arguments appended) and returns its hash and the future contract address.
func (r *Relayer) Deploy(ctx context.Context, code []byte) (common.Hash, common.Address, error) {
	tx, err := r.send(ctx, nil, code, nil)
	if err != nil {
		return common.Hash{}, common.Address{}, err
	}
	return tx.Hash(), crypto.CreateAddress(r.addr, tx.Nonce()), nil
}

// maxSendAttempts bounds resends after nonce conflicts.
const maxSendAttempts = 3

func (r *Relayer) send(ctx context.Context, to *common.Address, data []byte, value *big.Int) (*types.Transaction, error) {
	if value == nil {
		value = new(big.Int)
	}
	// Estimation and fee lookup need no nonce, so they run outside the lock
	// and concurrent sends overlap there.
	gas, err := r.c.b.EstimateGas(ctx, ethereum.CallMsg{From: r.addr, To: to, Value: value, Data: data})
	if err != nil {
		return nil, fmt.Errorf("evm: estimate gas: %w", asRevert(err))
	}
	gas += gas / 5 // headroom: state can change between estimate and inclusion
	tip, feeCap, err := r.fees(ctx)
	if err != nil {
		return nil, err
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	var lastErr error
	for range maxSendAttempts {
		if !r.synced {
			n, err := r.c.b.PendingNonceAt(ctx, r.addr)
			if err != nil {
				return nil, fmt.Errorf("evm: pending nonce: %w", err)
			}
			r.nonce, r.synced = n, true
		}
		tx, err := r.sign(&types.DynamicFeeTx{
			ChainID: r.c.chainID, Nonce: r.nonce, GasTipCap: tip, GasFeeCap: feeCap,
			Gas: gas, To: to, Value: value, Data: data,
		})
		if err != nil {
			return nil, err
		}
		err = r.c.b.SendTransaction(ctx, tx)
		if err == nil || isAlreadyKnown(err) {
			// "already known": this exact transaction reached the pool
			// before (a reply was lost); it holds the nonce.
			r.nonce++
			return tx, nil
		}
		// Whatever failed, the node's view of our nonce is now the truth.
		r.synced = false
		lastErr = err
		if !isNonceConflict(err) || ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("evm: send transaction: %w", lastErr)
}

// fees picks an EIP-1559 tip and a fee cap of twice the base fee plus the
// tip, which survives several full blocks of base-fee growth.
func (r *Relayer) fees(ctx context.Context) (tip, feeCap *big.Int, err error) {
	tip, err = r.c.b.SuggestGasTipCap(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("evm: gas tip: %w", err)
	}
	head, err := r.c.b.HeaderByNumber(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("evm: head: %w", err)
	}
	if head.BaseFee == nil {
		return nil, nil, errors.New("evm: chain has no EIP-1559 base fee")
	}
	feeCap = new(big.Int).Add(tip, new(big.Int).Mul(head.BaseFee, big.NewInt(2)))
	return tip, feeCap, nil
}

func (r *Relayer) sign(txdata *types.DynamicFeeTx) (*types.Transaction, error) {
	tx := types.NewTx(txdata)
	signer := types.LatestSignerForChainID(r.c.chainID)
	h := signer.Hash(tx)
	sig, err := r.s.SignHash(h)
	if err != nil {
		return nil, fmt.Errorf("evm: sign transaction: %w", err)
	}
	if len(sig) != 65 {
		return nil, fmt.Errorf("evm: signer returned %d bytes, want 65", len(sig))
	}
	sig = append([]byte(nil), sig...)
	if sig[64] >= 27 {
		sig[64] -= 27 // HashSigner speaks 27/28; typed transactions carry the y-parity
	}
	return tx.WithSignature(signer, sig)
}

func isAlreadyKnown(err error) bool {
	return strings.Contains(strings.ToLower(err.Error()), "already known")
}

// isNonceConflict matches the pool errors (geth, anvil, reth wording) that
// mean our nonce is taken or stale, so a resync and resend can succeed.
func isNonceConflict(err error) bool {
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"nonce too low", "nonce too high", "replacement transaction underpriced", "invalid nonce", "nonce is too low"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// GasFunded reports whether the relayer can pay for a transaction of gas
// units at the fee cap it would offer now: checked before Purser signs a
// payout, so an unfunded relayer refuses the payout instead of leaving a
// signed authorization that nobody submits.
func (r *Relayer) GasFunded(ctx context.Context, gas uint64) (bool, error) {
	_, feeCap, err := r.fees(ctx)
	if err != nil {
		return false, err
	}
	bal, err := r.c.ETHBalance(ctx, r.addr)
	if err != nil {
		return false, err
	}
	need := new(big.Int).Mul(feeCap, new(big.Int).SetUint64(gas))
	return bal.Cmp(need) >= 0, nil
}
