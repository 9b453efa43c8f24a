package rails

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/x402"
)

// Chains maps a CAIP-2 network to a client of its chain. A network with
// no entry can still be signed for (x402), but not reconciled or paid out.
type Chains map[string]*evm.Client

// WalletFunc returns the server-held wallet of an agent. For an agent
// whose wallet is co-signed (2of2) the server holds no key: it returns a
// *CosignedWallet error naming the wallet's address, and the rails build
// that agent's authorizations unsigned (spend.CosignPending). One call
// tells both, so a signature reads the agent once.
type WalletFunc func(ctx context.Context, agentID string) (evm.HashSigner, error)

// CosignedWallet is WalletFunc's answer for a co-signed wallet.
type CosignedWallet struct{ Address string }

func (e *CosignedWallet) Error() string {
	return "rails: wallet " + e.Address + " is co-signed: the server holds no key for it"
}

// Common is what both rails need to sign for an agent.
type Common struct {
	Assets   *money.Registry
	Wallet   WalletFunc
	NonceKey []byte // secret; derives each spend's authorization nonce
	Chains   Chains
	// Relayers pay gas on each network: payouts, and cancellations of
	// unused authorizations. A network without one can do neither.
	Relayers map[string]*evm.Relayer
	Now      func() time.Time // default time.Now
}

func (c *Common) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// authRecord is the rail data of a signed spend: the EIP-3009
// authorization and its signature (which can only pay its payee), plus
// what each rail adds.
type authRecord struct {
	Token       string `json:"token"`
	From        string `json:"from"`
	To          string `json:"to"`
	Value       string `json:"value"`
	ValidAfter  int64  `json:"valid_after"`
	ValidBefore int64  `json:"valid_before"`
	Nonce       string `json:"nonce"`
	Signature   string `json:"signature"`
	SignedAt    int64  `json:"signed_at"` // Unix seconds: no settlement can be older, which bounds the log search

	// x402: the header the agent retries with.
	Header      string `json:"header,omitempty"`
	HeaderValue string `json:"header_value,omitempty"`
	// payout: the relayed transaction.
	Tx string `json:"tx,omitempty"`
}

func (r *authRecord) authorization() (evm.Authorization, error) {
	v, ok := new(big.Int).SetString(r.Value, 10)
	n, err := hex.DecodeString(trim0x(r.Nonce))
	if !ok || err != nil || len(n) != 32 {
		return evm.Authorization{}, fmt.Errorf("rails: stored authorization is malformed")
	}
	a := evm.Authorization{From: common.HexToAddress(r.From), To: common.HexToAddress(r.To), Value: v,
		ValidAfter: big.NewInt(r.ValidAfter), ValidBefore: big.NewInt(r.ValidBefore)}
	copy(a.Nonce[:], n)
	return a, nil
}

func loadRecord(sp *spend.Spend) (*authRecord, error) {
	var r authRecord
	if err := json.Unmarshal(sp.RailData, &r); err != nil {
		return nil, fmt.Errorf("rails: spend %s: rail data: %w", sp.ID, err)
	}
	return &r, nil
}

func trim0x(s string) string {
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		return s[2:]
	}
	return s
}

// nonce derives a spend's EIP-3009 nonce: unpredictable without the key,
// and the same on every attempt, so one spend can authorize one transfer.
func (c *Common) nonce(purpose, spendID string) [32]byte {
	m := hmac.New(sha256.New, c.NonceKey)
	m.Write([]byte(purpose + "\x00" + spendID))
	var n [32]byte
	copy(n[:], m.Sum(nil))
	return n
}

// onchainAsset resolves an asset that can be paid with EIP-3009.
func (c *Common) onchainAsset(network, symbolOrAddress string) (money.Asset, error) {
	a, err := c.Assets.Lookup(network, symbolOrAddress)
	if err != nil {
		return money.Asset{}, err
	}
	if a.Address == "" || a.EIP712Name == "" || a.EIP712Version == "" {
		return money.Asset{}, spend.Errorf("asset_not_onchain", "asset %s on %s has no token contract or EIP-712 domain configured", a.Symbol, network)
	}
	return a, nil
}

// sign builds and signs the EIP-3009 authorization of sp: from the
// agent's wallet to to, for sp's amount, valid until validBefore.
func (c *Common) sign(ctx context.Context, sp *spend.Spend, purpose, to string, validBefore time.Time) (*authRecord, error) {
	asset, err := c.onchainAsset(sp.Network, sp.Asset)
	if err != nil {
		return nil, err
	}
	chainID, err := x402.ChainIDOf(sp.Network)
	if err != nil {
		return nil, err
	}
	w, from, cosigned, err := c.wallet(ctx, sp.AgentID)
	if err != nil {
		return nil, err
	}
	a := evm.Authorization{
		From: common.HexToAddress(from), To: common.HexToAddress(to), Value: new(big.Int).Set(sp.Amount),
		ValidAfter: new(big.Int), ValidBefore: big.NewInt(validBefore.Unix()), Nonce: c.nonce(purpose, sp.ID),
	}
	rec := &authRecord{
		Token: common.HexToAddress(asset.Address).Hex(), From: a.From.Hex(), To: a.To.Hex(), Value: a.Value.String(),
		ValidAfter: 0, ValidBefore: validBefore.Unix(), Nonce: "0x" + hex.EncodeToString(a.Nonce[:]), SignedAt: c.now().Unix(),
	}
	if cosigned {
		return rec, nil // unsigned: the agent and the server sign it together
	}
	ds := evm.DomainSeparator(asset.EIP712Name, asset.EIP712Version, chainID, common.HexToAddress(asset.Address))
	sig, err := w.SignHash(a.Digest(ds))
	if err != nil {
		return nil, err
	}
	rec.Signature = "0x" + hex.EncodeToString(sig)
	return rec, nil
}

// wallet is the agent's wallet: its server-held key and address, or
// (cosigned) only the address of a co-signed one.
func (c *Common) wallet(ctx context.Context, agentID string) (w evm.HashSigner, addr string, cosigned bool, err error) {
	w, err = c.Wallet(ctx, agentID)
	var cw *CosignedWallet
	if errors.As(err, &cw) {
		return nil, cw.Address, true, nil
	}
	if err != nil {
		return nil, "", false, err
	}
	return w, w.Address(), false, nil
}

// walletAddress is the agent's wallet address, whoever holds its key.
func (c *Common) walletAddress(ctx context.Context, agentID string) (string, error) {
	_, addr, _, err := c.wallet(ctx, agentID)
	return addr, err
}

// searchFrom is the first block that can hold the settlement of rec:
// blocks are at least a second apart on every EVM chain Purser serves,
// so the head minus the seconds since signing (plus ten minutes of
// clock skew) is early enough. It costs a head read at reconcile time
// instead of one on every signature.
func (c *Common) searchFrom(ctx context.Context, ch *evm.Client, rec *authRecord) uint64 {
	head, err := ch.BlockNumber(ctx)
	if err != nil || rec.SignedAt == 0 {
		return 0
	}
	back := uint64(max(c.now().Unix()-rec.SignedAt, 0)) + 600
	if back >= head {
		return 0
	}
	return head - back
}

// errNoChain reports that a network has no chain client.
var errNoChain = errors.New("rails: no chain client for this network")

// checkChain asks the token whether rec's authorization was used. Used:
// captured (with the settling transaction when the logs show it). Unused
// and the chain's clock at or past validBefore: it can never be used, so
// failed. Otherwise pending.
func (c *Common) checkChain(ctx context.Context, sp *spend.Spend, rec *authRecord) (spend.ExecResult, error) {
	ch := c.Chains[sp.Network]
	if ch == nil {
		return spend.ExecResult{}, errNoChain
	}
	a, err := rec.authorization()
	if err != nil {
		return spend.ExecResult{}, err
	}
	token := common.HexToAddress(rec.Token)
	used, err := ch.AuthorizationState(ctx, token, a.From, a.Nonce)
	if err != nil {
		return spend.ExecResult{}, err
	}
	if used {
		from := c.searchFrom(ctx, ch, rec)
		ref := rec.Tx
		tx, found, err := ch.FindAuthorizationUsed(ctx, token, a.From, a.Nonce, from)
		if err == nil && found {
			ref = tx.Hex()
		} else if err == nil {
			// The token marks a cancelled nonce as used too; only its
			// AuthorizationCanceled event tells the two apart. Without either
			// event in reach, count it as paid: never release on a guess.
			if cancelTx, found, err := ch.FindAuthorizationCanceled(ctx, token, a.From, a.Nonce, from); err == nil && found {
				return spend.ExecResult{Outcome: spend.OutcomeFailed, Ref: cancelTx.Hex(), Reasons: []string{"authorization_cancelled"}}, nil
			}
		}
		if ref == "" {
			ref = rec.Nonce
		}
		return spend.ExecResult{Outcome: spend.OutcomeCaptured, Captured: new(big.Int).Set(a.Value), Ref: ref}, nil
	}
	head, err := ch.HeadTime(ctx)
	if err != nil {
		return spend.ExecResult{}, err
	}
	// The token accepts the authorization only while block.timestamp <
	// validBefore; the next block cannot be older than the head.
	if head.Unix() >= rec.ValidBefore {
		return spend.ExecResult{Outcome: spend.OutcomeFailed, Reasons: []string{"authorization_expired_unused"}}, nil
	}
	return spend.ExecResult{Outcome: spend.OutcomePending}, nil
}
