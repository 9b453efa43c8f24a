package sdk

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/cosign"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/x402"
)

// Co-signed (2of2) wallets: the agent holds one share of its wallet key
// (the cosign-share line of its key file), Purser the other. When an
// allowed spend's answer carries a cosign block, the SDK checks that the
// authorization is the one it asked for, computes the EIP-712 digest
// itself, runs its side of the signing with the server (two requests:
// m1 → m2, then the finished signature) and continues with the spend as a
// server-custody wallet's would have come back (docs/cosign-design.md,
// "Integration contract").

// CodeCosignMismatch is the code of the *Error (Status 0) returned when
// Purser asks the agent to co-sign an authorization that is not what it
// asked for: another payee, a larger amount, another token or chain,
// another wallet, or a digest that is not its fields'. Nothing is signed,
// and the spend's hold is released.
const CodeCosignMismatch = "cosign_authorization_mismatch"

// cosignWant is what the agent asked for, in the authorization's terms.
type cosignWant struct {
	payTo   common.Address
	max     *big.Int // atomic units
	chainID *big.Int
	token   common.Address
	name    string
	version string
}

// cosignRun is one spend's signing, done at most once per Agent: callers
// that ask again (concurrently or later) get its outcome, never a second
// session (which the server refuses anyway).
type cosignRun struct {
	done chan struct{}
	sp   *Spend
	err  error
	sig  []byte // kept after a failed finish, to send it again (not a new session)
}

type cosignState struct {
	mu   sync.Mutex
	runs map[string]*cosignRun
}

// wantOf derives what the agent asked for from its own request: an x402
// spend from the seller's offer it sent (never from what the server
// echoes), a payout from payee, amount, asset and network.
func (a *Agent) wantOf(ctx context.Context, req AuthorizeRequest, sp *Spend) (*cosignWant, error) {
	if req.Rail == api.RailX402 {
		var rr api.X402Request
		if err := json.Unmarshal(req.RailRequest, &rr); err != nil {
			return nil, clientError(CodeCosignMismatch, "spend %s: the x402 request cannot be read to check the authorization", sp.SpendID)
		}
		o, err := x402.ParseRequirements(rr.Version, rr.Offer)
		if err != nil {
			return nil, clientError(CodeCosignMismatch, "spend %s: the x402 offer cannot be read to check the authorization", sp.SpendID)
		}
		network, err := o.CAIP2()
		if err != nil {
			return nil, clientError(CodeCosignMismatch, "spend %s: the offer's network is unknown", sp.SpendID)
		}
		chainID, err := x402.ChainIDOf(network)
		if err != nil || !common.IsHexAddress(o.PayTo) || !common.IsHexAddress(o.Asset) || o.Amount == nil {
			return nil, clientError(CodeCosignMismatch, "spend %s: the offer cannot be checked against", sp.SpendID)
		}
		name, version, _ := o.EIP712Domain()
		return &cosignWant{payTo: common.HexToAddress(o.PayTo), max: new(big.Int).Set(o.Amount), chainID: chainID,
			token: common.HexToAddress(o.Asset), name: name, version: version}, nil
	}
	network := req.Network
	if network == "" {
		network = sp.Network // the server's default network
	}
	symbol := req.Asset
	if symbol == "" {
		symbol = "USDC"
	}
	assets, err := a.cachedAssets(ctx)
	if err != nil {
		return nil, err
	}
	var asset *Asset
	for i := range assets {
		if assets[i].Network == network && (strings.EqualFold(assets[i].Symbol, symbol) || (assets[i].Address != "" && strings.EqualFold(assets[i].Address, symbol))) {
			asset = &assets[i]
		}
	}
	if asset == nil || !common.IsHexAddress(asset.Address) || !common.IsHexAddress(req.Payee) {
		return nil, clientError(CodeCosignMismatch, "spend %s: asset %s on %s or payee %q cannot be checked against", sp.SpendID, symbol, network, req.Payee)
	}
	amount, err := money.ParsePositive(req.Amount, asset.Decimals)
	if err != nil {
		return nil, clientError(CodeCosignMismatch, "spend %s: amount %q: %v", sp.SpendID, req.Amount, err)
	}
	chainID, err := x402.ChainIDOf(network)
	if err != nil {
		return nil, clientError(CodeCosignMismatch, "spend %s: network %q is not an eip155 chain", sp.SpendID, network)
	}
	return &cosignWant{payTo: common.HexToAddress(req.Payee), max: amount, chainID: chainID,
		token: common.HexToAddress(asset.Address), name: asset.EIP712Name, version: asset.EIP712Version}, nil
}

// requestOf is the request a spend records, for a spend the agent did
// not just ask for in this process (an approved one it confirms).
func requestOf(sp *Spend) AuthorizeRequest {
	return AuthorizeRequest{Rail: sp.Rail, Payee: sp.Payee, Amount: sp.Amount, Asset: sp.Asset, Network: sp.Network,
		RailRequest: sp.RailRequest}
}

// checkCosign checks the authorization Purser asks the agent to co-sign
// against what the agent asked for and the wallet it holds a share of, and
// returns the EIP-712 digest computed here from its fields.
func checkCosign(c *api.CosignSigning, want *cosignWant, wallet common.Address, spendID string) ([32]byte, error) {
	bad := func(format string, args ...any) ([32]byte, error) {
		return [32]byte{}, clientError(CodeCosignMismatch, "spend %s: the authorization to co-sign %s; nothing was signed", spendID, fmt.Sprintf(format, args...))
	}
	au, dom := c.Authorization, c.Domain
	if !common.IsHexAddress(au.From) || common.HexToAddress(au.From) != wallet {
		return bad("is from %s, not from this agent's wallet %s", au.From, wallet.Hex())
	}
	if !common.IsHexAddress(au.To) || common.HexToAddress(au.To) != want.payTo {
		return bad("pays %s, not %s", au.To, want.payTo.Hex())
	}
	value, ok := new(big.Int).SetString(au.Value, 10)
	if !ok || value.Sign() <= 0 || value.Cmp(want.max) > 0 {
		return bad("is for %s atomic units, more than the %s asked for", au.Value, want.max)
	}
	chainID, ok := new(big.Int).SetString(dom.ChainID, 10)
	if !ok || chainID.Cmp(want.chainID) != 0 {
		return bad("is on chain %s, not %s", dom.ChainID, want.chainID)
	}
	if !common.IsHexAddress(dom.VerifyingContract) || common.HexToAddress(dom.VerifyingContract) != want.token ||
		dom.Name != want.name || dom.Version != want.version {
		return bad("is for token %s (%q, %q), not %s (%q, %q)", dom.VerifyingContract, dom.Name, dom.Version, want.token.Hex(), want.name, want.version)
	}
	after, ok1 := new(big.Int).SetString(au.ValidAfter, 10)
	before, ok2 := new(big.Int).SetString(au.ValidBefore, 10)
	nonce, err := hex.DecodeString(strings.TrimPrefix(au.Nonce, "0x"))
	if !ok1 || !ok2 || err != nil || len(nonce) != 32 {
		return bad("is malformed")
	}
	a := x402.Authorization{From: au.From, To: au.To, Value: value, ValidAfter: after, ValidBefore: before}
	copy(a.Nonce[:], nonce)
	ds, err := x402.DomainSeparator(dom.Name, dom.Version, chainID, dom.VerifyingContract)
	if err != nil {
		return bad("has a malformed domain")
	}
	d, err := a.Digest(ds)
	if err != nil {
		return bad("is malformed")
	}
	if !strings.EqualFold(strings.TrimPrefix(c.Digest, "0x"), hex.EncodeToString(d[:])) {
		return bad("names digest %s, but its fields hash to 0x%x", c.Digest, d)
	}
	return d, nil
}

// maybeCosign finishes a spend whose answer asks the agent to co-sign; any
// other spend passes through.
func (a *Agent) maybeCosign(ctx context.Context, req AuthorizeRequest, sp *Spend) (*Spend, error) {
	if sp == nil || sp.Cosign == nil {
		return sp, nil
	}
	share := shareOf(a.c.signer)
	if share == nil {
		return nil, fmt.Errorf("sdk: spend %s is on a co-signed (2of2) wallet, but the agent's key has no cosign share: load the key file `purser agent create --custody 2of2` wrote", sp.SpendID)
	}
	a.cs.mu.Lock()
	if a.cs.runs == nil {
		a.cs.runs = map[string]*cosignRun{}
	}
	run, ok := a.cs.runs[sp.SpendID]
	if !ok {
		run = &cosignRun{done: make(chan struct{})}
		a.cs.runs[sp.SpendID] = run
	}
	a.cs.mu.Unlock()
	if ok {
		select {
		case <-run.done:
			return run.sp, run.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	run.sp, run.err = a.cosign(ctx, req, sp, share, run)
	close(run.done)
	if run.err == nil {
		// Signed: the spend no longer carries a cosign block, so nothing will
		// ask again; a failed run stays, so the same spend is never retried.
		a.cs.mu.Lock()
		delete(a.cs.runs, sp.SpendID)
		a.cs.mu.Unlock()
	}
	return run.sp, run.err
}

func (a *Agent) cosign(ctx context.Context, req AuthorizeRequest, sp *Spend, share *cosign.Share, run *cosignRun) (*Spend, error) {
	want, err := a.wantOf(ctx, req, sp)
	if err == nil {
		var d [32]byte
		if d, err = checkCosign(sp.Cosign, want, share.Address(), sp.SpendID); err == nil {
			return a.cosignDigest(ctx, sp, share, d, run)
		}
	}
	if IsCode(err, CodeCosignMismatch) {
		// Nothing was signed: give the hold back to the budget now rather
		// than at expiry.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultTimeout)
		_, _ = a.Release(rctx, sp.SpendID)
		cancel()
	}
	return nil, err
}

// cosignDigest runs the agent's side of the signing over d: m1 to the
// server, its part m2 back, then the finished signature.
func (a *Agent) cosignDigest(ctx context.Context, sp *Spend, share *cosign.Share, d [32]byte, run *cosignRun) (*Spend, error) {
	b := cosign.SignBinding{AgentID: sp.AgentID, SpendID: sp.SpendID, Digest: d}
	if sid := b.SessionID(share.PublicKey()); !strings.EqualFold(strings.TrimPrefix(sp.Cosign.SessionID, "0x"), hex.EncodeToString(sid[:])) {
		return nil, clientError(CodeCosignMismatch, "spend %s: the co-signing session id is not the one of this agent, spend, wallet and digest; nothing was signed", sp.SpendID)
	}
	s, err := cosign.NewAgentSigner(share, b)
	if err != nil {
		return nil, fmt.Errorf("sdk: co-sign spend %s: %w", sp.SpendID, err)
	}
	m1, err := s.Start()
	if err != nil {
		return nil, fmt.Errorf("sdk: co-sign spend %s: %w", sp.SpendID, err)
	}
	path := "/v1/agent/spends/" + escape(sp.SpendID) + "/cosign"
	m2, err := a.c.doRaw(ctx, http.MethodPost, path, m1)
	if err != nil {
		return nil, fmt.Errorf("sdk: co-sign spend %s: %w", sp.SpendID, err)
	}
	if _, err := s.Handle(m2); err != nil {
		return nil, fmt.Errorf("sdk: co-sign spend %s: the server's part: %w", sp.SpendID, err)
	}
	sig, err := s.Signature()
	if err != nil {
		return nil, fmt.Errorf("sdk: co-sign spend %s: %w", sp.SpendID, err)
	}
	run.sig = sig[:]
	fin := api.CosignFinishRequest{Signature: "0x" + hex.EncodeToString(sig[:])}
	var out Spend
	_, err = a.c.do(ctx, http.MethodPost, path+"/finish", nil, fin, authAgent, &out)
	if err != nil && retryable(ctx, err) {
		// The same signature again: no new session, nothing signed twice.
		_, err = a.c.do(ctx, http.MethodPost, path+"/finish", nil, fin, authAgent, &out)
	}
	if err != nil {
		return nil, fmt.Errorf("sdk: co-sign spend %s: finish: %w", sp.SpendID, err)
	}
	return &out, nil
}

// doRaw sends an agent-signed request whose body and answer are raw bytes
// (a co-signing protocol message).
func (c *conn) doRaw(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	req, err := c.newRequest(ctx, method, path, nil, body, authAgent)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Accept", "application/octet-stream, application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, api.MaxCosignMessage+1))
	if err != nil {
		return nil, fmt.Errorf("sdk: read answer: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, decodeError(resp.StatusCode, raw)
	}
	if len(raw) > api.MaxCosignMessage {
		return nil, fmt.Errorf("sdk: answer of %s %s larger than %d bytes", method, path, api.MaxCosignMessage)
	}
	return bytes.Clone(raw), nil
}
