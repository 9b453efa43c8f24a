package evm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/math"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/purserhq/purser/internal/evm/token"
)

// Backend is the part of a node's API the Client uses. *ethclient.Client and
// go-ethereum's simulated backend client both satisfy it.
type Backend interface {
	ethereum.ChainIDReader
	ethereum.BlockNumberReader
	ethereum.ContractCaller
	ethereum.GasEstimator
	ethereum.GasPricer1559
	ethereum.TransactionSender
	ethereum.TransactionReader
	ethereum.LogFilterer
	CodeAt(ctx context.Context, account common.Address, blockNumber *big.Int) ([]byte, error)
	BalanceAt(ctx context.Context, account common.Address, blockNumber *big.Int) (*big.Int, error)
	HeaderByNumber(ctx context.Context, number *big.Int) (*types.Header, error)
	PendingNonceAt(ctx context.Context, account common.Address) (uint64, error)
	SuggestGasPrice(ctx context.Context) (*big.Int, error)
}

// Client reads EIP-3009 token state and submits transactions through a
// Backend. It is safe for concurrent use.
type Client struct {
	b       Backend
	chainID *big.Int
	close   func()
}

var (
	// The calls are those of the EIP-3009/ERC-20 standard interface, so
	// DevUSD's ABI packs them for any compliant token (USDC included).
	abiToken = token.Binding()

	transferTopic          = crypto.Keccak256Hash([]byte("Transfer(address,address,uint256)"))
	authorizationUsedTopic = crypto.Keccak256Hash([]byte("AuthorizationUsed(address,bytes32)"))
)

// Dial connects to a JSON-RPC endpoint and reads its chain id.
func Dial(ctx context.Context, rpcURL string) (*Client, error) {
	ec, err := ethclient.DialContext(ctx, rpcURL)
	if err != nil {
		return nil, fmt.Errorf("evm: dial: %w", err)
	}
	c, err := NewClient(ctx, ec)
	if err != nil {
		ec.Close()
		return nil, err
	}
	c.close = ec.Close
	return c, nil
}

// NewClient wraps an already connected backend and reads its chain id. Close
// does not close b.
func NewClient(ctx context.Context, b Backend) (*Client, error) {
	id, err := b.ChainID(ctx)
	if err != nil {
		return nil, fmt.Errorf("evm: chain id: %w", err)
	}
	return &Client{b: b, chainID: id}, nil
}

// Close releases the connection opened by Dial.
func (c *Client) Close() {
	if c.close != nil {
		c.close()
	}
}

// Backend returns the underlying node API (for bindings and one-off reads).
func (c *Client) Backend() Backend { return c.b }

// ChainID returns the chain id read at construction (a copy).
func (c *Client) ChainID() *big.Int { return new(big.Int).Set(c.chainID) }

// Network returns the chain's CAIP-2 name, "eip155:<chain id>".
func (c *Client) Network() string { return "eip155:" + c.chainID.String() }

// BlockNumber returns the latest block number.
func (c *Client) BlockNumber(ctx context.Context) (uint64, error) {
	n, err := c.b.BlockNumber(ctx)
	if err != nil {
		return 0, fmt.Errorf("evm: block number: %w", err)
	}
	return n, nil
}

// HeadTime returns the latest block's timestamp. A transaction sent now is
// mined at this time or later, which is what EIP-3009 validity windows use.
func (c *Client) HeadTime(ctx context.Context) (time.Time, error) {
	h, err := c.b.HeaderByNumber(ctx, nil)
	if err != nil {
		return time.Time{}, fmt.Errorf("evm: head: %w", err)
	}
	return time.Unix(int64(h.Time), 0), nil
}

// ETHBalance returns an account's native balance in wei.
func (c *Client) ETHBalance(ctx context.Context, addr common.Address) (*big.Int, error) {
	b, err := c.b.BalanceAt(ctx, addr, nil)
	if err != nil {
		return nil, fmt.Errorf("evm: balance: %w", err)
	}
	return b, nil
}

// HasCode reports whether addr holds contract code.
func (c *Client) HasCode(ctx context.Context, addr common.Address) (bool, error) {
	code, err := c.b.CodeAt(ctx, addr, nil)
	if err != nil {
		return false, fmt.Errorf("evm: code: %w", err)
	}
	return len(code) > 0, nil
}

// AuthorizationState reports whether authorizer's EIP-3009 nonce has been
// used or canceled on token.
func (c *Client) AuthorizationState(ctx context.Context, token, authorizer common.Address, nonce [32]byte) (bool, error) {
	out, err := c.call(ctx, common.Address{}, token, abiToken.PackAuthorizationState(authorizer, nonce))
	if err != nil {
		return false, fmt.Errorf("evm: authorizationState: %w", err)
	}
	used, err := abiToken.UnpackAuthorizationState(out)
	if err != nil {
		return false, fmt.Errorf("evm: authorizationState: %w", err)
	}
	return used, nil
}

// BalanceOf returns owner's token balance in atomic units.
func (c *Client) BalanceOf(ctx context.Context, token, owner common.Address) (*big.Int, error) {
	out, err := c.call(ctx, common.Address{}, token, abiToken.PackBalanceOf(owner))
	if err != nil {
		return nil, fmt.Errorf("evm: balanceOf: %w", err)
	}
	b, err := abiToken.UnpackBalanceOf(out)
	if err != nil {
		return nil, fmt.Errorf("evm: balanceOf: %w", err)
	}
	return b, nil
}

// TokenDomain returns the token's EIP-712 domain name and version (name(),
// version()), to cross-check an x402 requirement's extra.name/version.
func (c *Client) TokenDomain(ctx context.Context, token common.Address) (name, version string, err error) {
	out, err := c.call(ctx, common.Address{}, token, abiToken.PackName())
	if err != nil {
		return "", "", fmt.Errorf("evm: name: %w", err)
	}
	if name, err = abiToken.UnpackName(out); err != nil {
		return "", "", fmt.Errorf("evm: name: %w", err)
	}
	out, err = c.call(ctx, common.Address{}, token, abiToken.PackVersion())
	if err != nil {
		return "", "", fmt.Errorf("evm: version: %w", err)
	}
	if version, err = abiToken.UnpackVersion(out); err != nil {
		return "", "", fmt.Errorf("evm: version: %w", err)
	}
	return name, version, nil
}

// TransferWithAuthorizationData returns the calldata for token's
// transferWithAuthorization: the (v, r, s) overload (0xe3ee160e) for a 65-byte
// signature, else the bytes overload (0xcf092995), as the x402 reference
// facilitator chooses. v is passed through unchanged: tokens like FiatToken
// refuse v = 0/1, and so does a simulation of such a signature.
func TransferWithAuthorizationData(a Authorization, sig []byte) ([]byte, error) {
	value, after, before := orZero(a.Value), orZero(a.ValidAfter), orZero(a.ValidBefore)
	var (
		data []byte
		err  error
	)
	if len(sig) == 65 {
		var r, s [32]byte
		copy(r[:], sig[:32])
		copy(s[:], sig[32:64])
		data, err = abiToken.TryPackTransferWithAuthorization0(a.From, a.To, value, after, before, a.Nonce, sig[64], r, s)
	} else {
		data, err = abiToken.TryPackTransferWithAuthorization(a.From, a.To, value, after, before, a.Nonce, sig)
	}
	if err != nil {
		return nil, fmt.Errorf("evm: encode transferWithAuthorization: %w", err)
	}
	return data, nil
}

// SimulateTransferWithAuthorization runs transferWithAuthorization as an
// eth_call from caller against the latest block. A refusal is a *RevertError
// carrying the token's reason.
func (c *Client) SimulateTransferWithAuthorization(ctx context.Context, caller, token common.Address, a Authorization, sig []byte) error {
	data, err := TransferWithAuthorizationData(a, sig)
	if err != nil {
		return err
	}
	if _, err := c.call(ctx, caller, token, data); err != nil {
		return fmt.Errorf("evm: simulate transferWithAuthorization: %w", err)
	}
	return nil
}

// logWindow bounds one eth_getLogs range: public endpoints refuse wide ones.
const logWindow = 5000

// FindAuthorizationUsed looks for the AuthorizationUsed(authorizer, nonce) event
// of token from fromBlock to the head and returns the transaction that
// emitted it.
func (c *Client) FindAuthorizationUsed(ctx context.Context, token, authorizer common.Address, nonce [32]byte, fromBlock uint64) (common.Hash, bool, error) {
	return c.findAuthorizationEvent(ctx, authorizationUsedTopic, token, authorizer, nonce, fromBlock)
}

// findAuthorizationEvent finds the first event with topic (indexed:
// authorizer, nonce) of token from fromBlock to the head.
func (c *Client) findAuthorizationEvent(ctx context.Context, topic common.Hash, token, authorizer common.Address, nonce [32]byte, fromBlock uint64) (common.Hash, bool, error) {
	head, err := c.BlockNumber(ctx)
	if err != nil {
		return common.Hash{}, false, err
	}
	topics := [][]common.Hash{{topic}, {common.BytesToHash(authorizer[:])}, {common.Hash(nonce)}}
	for from := fromBlock; from <= head; from += logWindow {
		to := min(from+logWindow-1, head)
		logs, err := c.b.FilterLogs(ctx, ethereum.FilterQuery{
			FromBlock: new(big.Int).SetUint64(from),
			ToBlock:   new(big.Int).SetUint64(to),
			Addresses: []common.Address{token},
			Topics:    topics,
		})
		if err != nil {
			return common.Hash{}, false, fmt.Errorf("evm: get logs: %w", err)
		}
		for _, l := range logs {
			if !l.Removed {
				return l.TxHash, true, nil
			}
		}
	}
	return common.Hash{}, false, nil
}

// WaitReceipt polls for h's receipt until it is mined or ctx ends. A node
// error does not end the wait (it may be transient); ctx bounds it.
func (c *Client) WaitReceipt(ctx context.Context, h common.Hash) (*types.Receipt, error) {
	delay := 20 * time.Millisecond
	var lastErr error
	for {
		r, err := c.b.TransactionReceipt(ctx, h)
		if err == nil && r != nil {
			return r, nil
		}
		if err != nil && !errors.Is(err, ethereum.NotFound) {
			lastErr = err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			if lastErr != nil {
				return nil, fmt.Errorf("evm: wait for %s: %w (last error: %v)", h, ctx.Err(), lastErr)
			}
			return nil, fmt.Errorf("evm: wait for %s: %w", h, ctx.Err())
		case <-t.C:
		}
		delay = min(delay*2, time.Second)
	}
}

// TransferLogged reports whether the receipt holds token's ERC-20
// Transfer(from, to, value) event: proof that the payment moved, not just
// that the transaction succeeded.
func TransferLogged(r *types.Receipt, token, from, to common.Address, value *big.Int) bool {
	if r == nil || value == nil {
		return false
	}
	want := math.U256Bytes(new(big.Int).Set(value))
	for _, l := range r.Logs {
		if l.Address == token && len(l.Topics) == 3 && l.Topics[0] == transferTopic &&
			l.Topics[1] == common.BytesToHash(from[:]) && l.Topics[2] == common.BytesToHash(to[:]) &&
			bytes.Equal(l.Data, want) {
			return true
		}
	}
	return false
}

func (c *Client) call(ctx context.Context, from, to common.Address, data []byte) ([]byte, error) {
	out, err := c.b.CallContract(ctx, ethereum.CallMsg{From: from, To: &to, Data: data}, nil)
	if err != nil {
		return nil, asRevert(err)
	}
	return out, nil
}

func orZero(v *big.Int) *big.Int {
	if v == nil {
		return new(big.Int)
	}
	return v
}
