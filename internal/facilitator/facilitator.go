// Package facilitator is Purser's x402 facilitator for the EVM "exact"
// scheme, v1 and v2: it verifies EIP-3009 payment payloads with the
// reference implementation's checks, order and reason strings, and
// settles them on chain with its own gas key. It never holds the payer's
// funds. It settles an authorization once: concurrent and later settles
// of it fail as the chain would (invalid_exact_evm_nonce_already_used),
// from its own record of claims in flight and, across processes and
// restarts, from the token's authorizationState.
package facilitator

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/x402"
)

// Reason strings, as the reference facilitator sends them.
const (
	ReasonScheme            = "invalid_exact_evm_scheme"
	ReasonMissingDomain     = "invalid_exact_evm_missing_eip712_domain"
	ReasonNetworkMismatch   = "invalid_exact_evm_network_mismatch"
	ReasonSignature         = "invalid_exact_evm_signature"
	ReasonRecipient         = "invalid_exact_evm_recipient_mismatch"
	ReasonValidBefore       = "invalid_exact_evm_payload_authorization_valid_before"
	ReasonValidAfter        = "invalid_exact_evm_payload_authorization_valid_after"
	ReasonValueMismatch     = "invalid_exact_evm_payload_authorization_value_mismatch"
	ReasonValueMismatchV1   = "invalid_exact_evm_authorization_value"
	ReasonAssetNotDeployed  = "asset_not_deployed_contract"
	ReasonNotEIP3009        = "invalid_exact_evm_eip3009_not_supported"
	ReasonNonceUsed         = "invalid_exact_evm_nonce_already_used"
	ReasonNameMismatch      = "invalid_exact_evm_token_name_mismatch"
	ReasonVersionMismatch   = "invalid_exact_evm_token_version_mismatch"
	ReasonInsufficient      = "invalid_exact_evm_insufficient_balance"
	ReasonSimulation        = "invalid_exact_evm_transaction_simulation_failed"
	ReasonTxFailed          = "invalid_exact_evm_transaction_failed"
	ReasonTransferMismatch  = "invalid_exact_evm_transfer_event_mismatch"
	ReasonSettlementPending = "settlement_pending"
	ReasonUnsupportedNet    = "invalid_network"
	ReasonInvalidPayload    = "invalid_payload"
	ReasonRequiredAmount    = "invalid_exact_evm_required_amount"
)

// Purser's own reasons, for what the reference has no name for.
const (
	// ReasonPayToNotAllowed: the facilitator settles only for its
	// configured sellers (Config.Sellers), and payTo is none of them.
	ReasonPayToNotAllowed = "payto_not_allowed"
)

// Network is one chain the facilitator settles on.
type Network struct {
	Client  *evm.Client
	Relayer *evm.Relayer
}

// Facilitator verifies and settles x402 exact payments.
type Facilitator struct {
	networks map[string]Network // CAIP-2
	now      func() time.Time
	log      *slog.Logger
	sellers  map[common.Address]bool // nil: any payTo
	secret   []byte                  // nil: no authentication
	payers   *limiter                // nil: unlimited
	sources  *limiter                // nil: unlimited
	claims   *claims
}

// Config configures a Facilitator.
type Config struct {
	Networks map[string]Network
	Now      func() time.Time // default time.Now
	Logger   *slog.Logger
	// Sellers, when not empty, are the only payTo addresses verified and
	// settled; any other is refused with payto_not_allowed before a chain
	// is asked anything, so the gas key serves only these sellers.
	Sellers []common.Address
	// Secret, when not empty, must come as "Authorization: Bearer SECRET"
	// on /verify and /settle (401 otherwise).
	Secret string
	// PayerRate and SourceRate bound /verify and /settle calls per second
	// for each payer (the authorization's from) and each source IP, with
	// bursts of the same size; 0 is unlimited. Excess calls get 429.
	PayerRate, SourceRate int
}

// New builds a facilitator.
func New(cfg Config) (*Facilitator, error) {
	if len(cfg.Networks) == 0 {
		return nil, errors.New("facilitator: no network configured")
	}
	for n, c := range cfg.Networks {
		if _, err := x402.ChainIDOf(n); err != nil || c.Client == nil || c.Relayer == nil {
			return nil, fmt.Errorf("facilitator: network %q needs a CAIP-2 id, a client and a relayer", n)
		}
	}
	if cfg.PayerRate < 0 || cfg.SourceRate < 0 {
		return nil, errors.New("facilitator: rates must not be negative")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Facilitator{networks: cfg.Networks, now: cfg.Now, log: cfg.Logger, claims: newClaims()}
	if len(cfg.Sellers) > 0 {
		f.sellers = map[common.Address]bool{}
		for _, a := range cfg.Sellers {
			if a == (common.Address{}) {
				return nil, errors.New("facilitator: a seller address is zero")
			}
			f.sellers[a] = true
		}
	}
	if cfg.Secret != "" {
		f.secret = []byte(cfg.Secret)
	}
	if cfg.PayerRate > 0 {
		f.payers = newLimiter(cfg.PayerRate, cfg.Now)
	}
	if cfg.SourceRate > 0 {
		f.sources = newLimiter(cfg.SourceRate, cfg.Now)
	}
	return f, nil
}

// Supported lists every (version, scheme, network) the facilitator
// settles: v2 by CAIP-2 id, v1 by legacy name where one exists.
func (f *Facilitator) Supported() *x402.SupportedResponse {
	var kinds []x402.SupportedKind
	names := make([]string, 0, len(f.networks))
	for n := range f.networks {
		names = append(names, n)
	}
	sort.Strings(names)
	signers := map[string]bool{}
	for _, n := range names {
		kinds = append(kinds, x402.SupportedKind{X402Version: 2, Scheme: "exact", Network: n})
		if v1, ok := x402.V1NetworkName(n); ok {
			kinds = append(kinds, x402.SupportedKind{X402Version: 1, Scheme: "exact", Network: v1})
		}
		signers[f.networks[n].Relayer.Address().Hex()] = true
	}
	var addrs []string
	for a := range signers {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	return &x402.SupportedResponse{Kinds: kinds, Extensions: []string{}, Signers: map[string][]string{"eip155:*": addrs}}
}

// checked is a payment that passed the off-chain checks.
type checked struct {
	net     Network
	chainID string // CAIP-2
	network string // as the response names it: CAIP-2 (v2) or the v1 name
	auth    evm.Authorization
	sig     []byte
	token   common.Address
	name    string
	version string
}

// verify runs the reference's checks in its order; simulate adds the
// on-chain dry run. It returns the failure reason ("" when valid).
func (f *Facilitator) verify(ctx context.Context, p *x402.PaymentPayload, req *x402.Requirements, simulate bool) (*checked, string, string) {
	if p.Scheme != "exact" || req.Scheme != "exact" {
		return nil, ReasonScheme, ""
	}
	name, version, ok := req.EIP712Domain()
	if !ok {
		return nil, ReasonMissingDomain, ""
	}
	if p.Network != req.Network {
		return nil, ReasonNetworkMismatch, ""
	}
	caip2, err := req.CAIP2()
	if err != nil {
		return nil, ReasonNetworkMismatch, ""
	}
	net, ok := f.networks[caip2]
	if !ok {
		return nil, ReasonUnsupportedNet, "this facilitator does not settle on " + req.Network
	}
	a := p.Payload.Authorization
	if !common.IsHexAddress(a.From) || !common.IsHexAddress(a.To) || a.Value == nil || a.ValidAfter == nil || a.ValidBefore == nil {
		return nil, ReasonInvalidPayload, ""
	}
	if !common.IsHexAddress(req.Asset) || !common.IsHexAddress(req.PayTo) {
		return nil, ReasonInvalidPayload, "the requirements' asset and payTo must be addresses"
	}
	auth := evm.Authorization{From: common.HexToAddress(a.From), To: common.HexToAddress(a.To), Value: a.Value,
		ValidAfter: a.ValidAfter, ValidBefore: a.ValidBefore, Nonce: a.Nonce}
	if f.sellers != nil && !f.sellers[common.HexToAddress(req.PayTo)] {
		return nil, ReasonPayToNotAllowed, "this facilitator settles only for its configured sellers"
	}
	// Nothing is worth gas for nothing: a zero price would let anyone
	// with any key make the relayer pay for empty transfers.
	if req.Amount == nil || req.Amount.Sign() <= 0 {
		return nil, ReasonRequiredAmount, "the required amount must be positive"
	}
	c := &checked{net: net, chainID: caip2, network: req.Network, auth: auth, token: common.HexToAddress(req.Asset), name: name, version: version}
	sig, err := hex.DecodeString(strings.TrimPrefix(strings.TrimPrefix(p.Payload.Signature, "0x"), "0X"))
	if err != nil || len(sig) != 65 {
		return nil, ReasonSignature, "the signature must be 65 bytes of hex"
	}
	c.sig = sig
	chainID, _ := x402.ChainIDOf(caip2)
	digest := auth.Digest(evm.DomainSeparator(name, version, chainID, c.token))
	signer, err := x402.RecoverAuthorizer(digest, sig)
	if err != nil || signer != auth.From {
		return nil, ReasonSignature, ""
	}
	if !strings.EqualFold(a.To, req.PayTo) {
		return nil, ReasonRecipient, ""
	}
	now := f.now().Unix()
	if a.ValidBefore.Cmp(big.NewInt(now+6)) < 0 {
		return nil, ReasonValidBefore, ""
	}
	if a.ValidAfter.Cmp(big.NewInt(now)) > 0 {
		return nil, ReasonValidAfter, ""
	}
	if req.Amount == nil || a.Value.Cmp(req.Amount) != 0 {
		if req.Version == 1 {
			return nil, ReasonValueMismatchV1, ""
		}
		return nil, ReasonValueMismatch, ""
	}
	if !simulate {
		return c, "", ""
	}
	if f.claims.held(c.key(), f.now()) {
		return nil, ReasonNonceUsed, msgNonceUsed
	}
	if has, err := net.Client.HasCode(ctx, c.token); err != nil || !has {
		return nil, ReasonAssetNotDeployed, ""
	}
	if err := net.Client.SimulateTransferWithAuthorization(ctx, net.Relayer.Address(), c.token, auth, sig); err != nil {
		return nil, f.diagnose(ctx, c), err.Error()
	}
	return c, "", ""
}

// diagnose names why a simulation reverted, in the reference's order.
func (f *Facilitator) diagnose(ctx context.Context, c *checked) string {
	cl := c.net.Client
	used, err := cl.AuthorizationState(ctx, c.token, c.auth.From, c.auth.Nonce)
	if err != nil {
		return ReasonNotEIP3009
	}
	if used {
		return ReasonNonceUsed
	}
	if name, version, err := cl.TokenDomain(ctx, c.token); err == nil {
		if name != c.name {
			return ReasonNameMismatch
		}
		if version != c.version {
			return ReasonVersionMismatch
		}
	}
	if bal, err := cl.BalanceOf(ctx, c.token, c.auth.From); err == nil && bal.Cmp(c.auth.Value) < 0 {
		return ReasonInsufficient
	}
	return ReasonSimulation
}

// Verify checks a payment, simulating the transfer on chain.
func (f *Facilitator) Verify(ctx context.Context, p *x402.PaymentPayload, req *x402.Requirements) *x402.VerifyResponse {
	payer := p.Payload.Authorization.From
	if _, reason, msg := f.verify(ctx, p, req, true); reason != "" {
		return &x402.VerifyResponse{IsValid: false, InvalidReason: reason, InvalidMessage: msg, Payer: payer}
	}
	return &x402.VerifyResponse{IsValid: true, Payer: payer}
}

// revertReasons maps revert texts to reasons, as the reference does.
var revertReasons = []struct {
	re     *regexp.Regexp
	reason string
}{
	{regexp.MustCompile(`(?i)authorization is expired|valid.?before`), ReasonValidBefore},
	{regexp.MustCompile(`(?i)authorization is not yet valid|valid.?after`), ReasonValidAfter},
	{regexp.MustCompile(`(?i)authorization is used|used or canceled`), ReasonNonceUsed},
	{regexp.MustCompile(`(?i)exceeds balance|insufficient`), ReasonInsufficient},
	{regexp.MustCompile(`(?i)invalid signature|signature`), ReasonSignature},
}

func reasonOfRevert(err error) string {
	for _, r := range revertReasons {
		if r.re.MatchString(err.Error()) {
			return r.reason
		}
	}
	return ReasonTxFailed
}

const msgNonceUsed = "this authorization was settled, or is being settled"

// maxKeep bounds how long a settled authorization is remembered. Past
// it, the token's authorizationState (checked before every send) is
// what refuses it again.
const maxKeep = time.Hour

// Settle verifies (without simulation) and submits the transfer, then
// waits for its receipt. One authorization is settled once: of
// concurrent settles, the first to pass verification sends and the
// others fail at once with invalid_exact_evm_nonce_already_used, as the
// chain would fail them; so does any settle after a success.
func (f *Facilitator) Settle(ctx context.Context, p *x402.PaymentPayload, req *x402.Requirements) *x402.SettleResponse {
	payer := p.Payload.Authorization.From
	// answer is a success when reason is "".
	answer := func(reason, msg, tx string) *x402.SettleResponse {
		return &x402.SettleResponse{Success: reason == "", ErrorReason: reason, ErrorMessage: msg, Payer: payer, Transaction: tx, Network: req.Network}
	}
	c, reason, msg := f.verify(ctx, p, req, false)
	if reason != "" {
		return answer(reason, msg, "")
	}
	// Claimed only once verified: the signature binds the key's parts,
	// so a forged request cannot hold a genuine payment's claim.
	key := c.key()
	if !f.claims.take(key, f.now()) {
		return answer(ReasonNonceUsed, msgNonceUsed, "")
	}
	res, spent := f.settle(ctx, c, answer)
	if spent {
		f.claims.keep(key, keepUntil(c.auth.ValidBefore, f.now()))
	} else {
		f.claims.drop(key)
	}
	return res
}

// keepUntil is when a spent authorization may be forgotten: when it
// expires on its own, or after maxKeep.
func keepUntil(validBefore *big.Int, now time.Time) time.Time {
	limit := now.Add(maxKeep)
	if validBefore.IsInt64() && validBefore.Int64() < limit.Unix() {
		return time.Unix(validBefore.Int64(), 0)
	}
	return limit
}

// settle sends c; spent says whether the authorization is used or may
// be (a transaction went out), so that it must not be sent again.
func (f *Facilitator) settle(ctx context.Context, c *checked, answer func(reason, msg, tx string) *x402.SettleResponse) (*x402.SettleResponse, bool) {
	cl := c.net.Client
	// Used already (by another facilitator, or before this one started):
	// refuse as the chain would, without paying gas to hear it.
	if used, err := cl.AuthorizationState(ctx, c.token, c.auth.From, c.auth.Nonce); err == nil && used {
		return answer(ReasonNonceUsed, msgNonceUsed, ""), true
	}
	tx, err := c.net.Relayer.TransferWithAuthorization(ctx, c.token, c.auth, c.sig)
	if err != nil {
		f.log.Warn("settle: send failed", "payer", c.auth.From.Hex(), "err", err)
		reason := reasonOfRevert(err)
		return answer(reason, err.Error(), ""), reason == ReasonNonceUsed
	}
	rcpt, err := cl.WaitReceipt(ctx, tx)
	if err != nil {
		return answer(ReasonSettlementPending, err.Error(), tx.Hex()), true
	}
	if rcpt.Status != 1 {
		return answer(ReasonTxFailed, "", tx.Hex()), false
	}
	if !evm.TransferLogged(rcpt, c.token, c.auth.From, c.auth.To, c.auth.Value) {
		return answer(ReasonTransferMismatch, "", tx.Hex()), true
	}
	return answer("", "", tx.Hex()), true
}
