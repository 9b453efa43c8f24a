package token_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"math/big"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/common/math"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/eth/ethconfig"
	"github.com/ethereum/go-ethereum/ethclient/simulated"
	"github.com/ethereum/go-ethereum/node"
	"github.com/ethereum/go-ethereum/params"
	"github.com/ethereum/go-ethereum/rpc"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"

	"github.com/purserhq/purser/internal/evm/token"
)

var tok = token.Binding()

// chain is a simulated chain with funded keys; blocks are committed per send.
type chain struct {
	sim     *simulated.Backend
	cl      simulated.Client
	chainID *big.Int
	token   common.Address
	minter  *ecdsa.PrivateKey
	alice   *ecdsa.PrivateKey // payer
	bob     *ecdsa.PrivateKey // payee
	carol   *ecdsa.PrivateKey // relayer / bystander
}

func addr(k *ecdsa.PrivateKey) common.Address { return crypto.PubkeyToAddress(k.PublicKey) }

func newChain(t *testing.T, chainID int64, extra types.GenesisAlloc) *chain {
	t.Helper()
	c := &chain{chainID: big.NewInt(chainID)}
	for _, k := range []**ecdsa.PrivateKey{&c.minter, &c.alice, &c.bob, &c.carol} {
		*k, _ = crypto.GenerateKey()
	}
	alloc := types.GenesisAlloc{}
	for _, k := range []*ecdsa.PrivateKey{c.minter, c.alice, c.bob, c.carol} {
		alloc[addr(k)] = types.Account{Balance: new(big.Int).Mul(big.NewInt(100), big.NewInt(params.Ether))}
	}
	for a, acc := range extra {
		alloc[a] = acc
	}
	c.sim = simulated.NewBackend(alloc, func(_ *node.Config, ec *ethconfig.Config) {
		cfg := *ec.Genesis.Config
		cfg.ChainID = c.chainID
		ec.Genesis.Config = &cfg
		ec.NetworkId = uint64(chainID)
	})
	t.Cleanup(func() { _ = c.sim.Close() })
	c.cl = c.sim.Client()
	return c
}

// deploy deploys DevUSD uninitialised (empty name), then initialises it.
func deploy(t *testing.T) *chain {
	t.Helper()
	c := newChain(t, 1337, nil)
	code := append(token.Bytecode(), tok.PackConstructor("", "", "", 0, common.Address{})...)
	r := c.mustSend(t, c.minter, nil, code)
	c.token = r.ContractAddress
	c.mustSend(t, c.minter, &c.token, tok.PackInitialize("USD Coin", "USDC", "2", 6, addr(c.minter)))
	c.mustSend(t, c.minter, &c.token, tok.PackMint(addr(c.alice), big.NewInt(1_000_000)))
	return c
}

// call runs an eth_call from `from` and returns the revert reason as an error.
func (c *chain) call(from common.Address, data []byte) ([]byte, error) {
	out, err := c.cl.CallContract(context.Background(), ethereum.CallMsg{From: from, To: &c.token, Data: data}, nil)
	if err != nil {
		var de rpc.DataError
		if errors.As(err, &de) {
			if s, ok := de.ErrorData().(string); ok {
				if reason, uerr := abi.UnpackRevert(common.FromHex(s)); uerr == nil {
					return nil, errors.New(reason)
				}
			}
		}
		return nil, err
	}
	return out, nil
}

// send checks the call first (so refusals come back with their reason), then
// mines it in its own block.
func (c *chain) send(t *testing.T, key *ecdsa.PrivateKey, to *common.Address, data []byte) (*types.Receipt, error) {
	t.Helper()
	ctx := context.Background()
	msg := ethereum.CallMsg{From: addr(key), To: to, Data: data}
	gas, err := c.cl.EstimateGas(ctx, msg)
	if err != nil {
		if to != nil {
			if _, cerr := c.call(addr(key), data); cerr != nil {
				return nil, cerr
			}
		}
		return nil, err
	}
	nonce, err := c.cl.PendingNonceAt(ctx, addr(key))
	if err != nil {
		t.Fatal(err)
	}
	head, err := c.cl.HeaderByNumber(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := types.SignNewTx(key, types.LatestSignerForChainID(c.chainID), &types.DynamicFeeTx{
		ChainID: c.chainID, Nonce: nonce, GasTipCap: big.NewInt(params.GWei),
		GasFeeCap: new(big.Int).Add(big.NewInt(params.GWei), new(big.Int).Mul(head.BaseFee, big.NewInt(2))),
		Gas:       gas * 2, To: to, Data: data,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cl.SendTransaction(ctx, tx); err != nil {
		t.Fatal(err)
	}
	c.sim.Commit()
	r, err := c.cl.TransactionReceipt(ctx, tx.Hash())
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != types.ReceiptStatusSuccessful {
		t.Fatalf("tx reverted on chain")
	}
	return r, nil
}

func (c *chain) mustSend(t *testing.T, key *ecdsa.PrivateKey, to *common.Address, data []byte) *types.Receipt {
	t.Helper()
	r, err := c.send(t, key, to, data)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (c *chain) balance(t *testing.T, who common.Address) int64 {
	t.Helper()
	out, err := c.call(common.Address{}, tok.PackBalanceOf(who))
	if err != nil {
		t.Fatal(err)
	}
	b, err := tok.UnpackBalanceOf(out)
	if err != nil {
		t.Fatal(err)
	}
	return b.Int64()
}

func (c *chain) used(t *testing.T, who common.Address, nonce [32]byte) bool {
	t.Helper()
	out, err := c.call(common.Address{}, tok.PackAuthorizationState(who, nonce))
	if err != nil {
		t.Fatal(err)
	}
	used, err := tok.UnpackAuthorizationState(out)
	if err != nil {
		t.Fatal(err)
	}
	return used
}

// auth is an EIP-3009 message; sign hashes it with go-ethereum's EIP-712
// implementation (apitypes), independent of Purser's evm package.
type auth struct {
	primary                        string
	from, to                       common.Address
	value, validAfter, validBefore *big.Int
	nonce                          [32]byte
}

func (c *chain) newAuth(t *testing.T, value int64) auth {
	a := auth{primary: "TransferWithAuthorization", from: addr(c.alice), to: addr(c.bob), value: big.NewInt(value),
		validAfter: big.NewInt(0), validBefore: big.NewInt(time.Now().Add(time.Hour).Unix())}
	if _, err := rand.Read(a.nonce[:]); err != nil {
		t.Fatal(err)
	}
	return a
}

func (c *chain) digest(t *testing.T, primary string, msg apitypes.TypedDataMessage) []byte {
	t.Helper()
	fields := []apitypes.Type{
		{Name: "from", Type: "address"}, {Name: "to", Type: "address"}, {Name: "value", Type: "uint256"},
		{Name: "validAfter", Type: "uint256"}, {Name: "validBefore", Type: "uint256"}, {Name: "nonce", Type: "bytes32"},
	}
	if primary == "CancelAuthorization" {
		fields = []apitypes.Type{{Name: "authorizer", Type: "address"}, {Name: "nonce", Type: "bytes32"}}
	}
	td := apitypes.TypedData{
		Types: apitypes.Types{
			"EIP712Domain": {{Name: "name", Type: "string"}, {Name: "version", Type: "string"},
				{Name: "chainId", Type: "uint256"}, {Name: "verifyingContract", Type: "address"}},
			primary: fields,
		},
		PrimaryType: primary,
		Domain: apitypes.TypedDataDomain{Name: "USD Coin", Version: "2",
			ChainId: math.NewHexOrDecimal256(c.chainID.Int64()), VerifyingContract: c.token.Hex()},
		Message: msg,
	}
	d, _, err := apitypes.TypedDataAndHash(td)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (c *chain) sign(t *testing.T, key *ecdsa.PrivateKey, a auth) []byte {
	t.Helper()
	d := c.digest(t, a.primary, apitypes.TypedDataMessage{
		"from": a.from.Hex(), "to": a.to.Hex(), "value": a.value.String(),
		"validAfter": a.validAfter.String(), "validBefore": a.validBefore.String(), "nonce": hexutil.Encode(a.nonce[:]),
	})
	sig, err := crypto.Sign(d, key)
	if err != nil {
		t.Fatal(err)
	}
	sig[64] += 27
	return sig
}

func vrs(sig []byte) (uint8, [32]byte, [32]byte) {
	var r, s [32]byte
	copy(r[:], sig[:32])
	copy(s[:], sig[32:64])
	return sig[64], r, s
}

// Overload names follow ABI order: the suffix-less one takes bytes.
func transferBytes(a auth, sig []byte) []byte {
	return tok.PackTransferWithAuthorization(a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, sig)
}

func transferVRS(a auth, sig []byte) []byte {
	v, r, s := vrs(sig)
	return tok.PackTransferWithAuthorization0(a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, v, r, s)
}

func TestSelectors(t *testing.T) {
	t.Parallel()
	if got := hex.EncodeToString(transferVRS(auth{value: new(big.Int), validAfter: new(big.Int), validBefore: new(big.Int)}, make([]byte, 65))[:4]); got != "e3ee160e" {
		t.Fatalf("(v,r,s) overload selector %s", got)
	}
	if got := hex.EncodeToString(transferBytes(auth{value: new(big.Int), validAfter: new(big.Int), validBefore: new(big.Int)}, nil)[:4]); got != "cf092995" {
		t.Fatalf("bytes overload selector %s", got)
	}
}

// The committed bindings must come from the committed artifacts.
func TestArtifactsConsistent(t *testing.T) {
	t.Parallel()
	abiJSON, err := os.ReadFile("DevUSD.abi")
	if err != nil {
		t.Fatal(err)
	}
	fromFile, err := abi.JSON(bytes.NewReader(abiJSON))
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range tok.GetABI().Methods {
		if fm, ok := fromFile.Methods[name]; !ok || !bytes.Equal(fm.ID, m.ID) {
			t.Errorf("binding method %s not in DevUSD.abi", name)
		}
	}
	if len(fromFile.Methods) != len(tok.GetABI().Methods) {
		t.Errorf("DevUSD.abi has %d methods, binding %d", len(fromFile.Methods), len(tok.GetABI().Methods))
	}
	if got := hexutil.Encode(token.Bytecode()); got != token.DevUSDMetaData.Bin {
		t.Error("binding bytecode differs from DevUSD.bin")
	}
	// Creation code returns the runtime code, so it must contain it.
	if !bytes.Contains(token.Bytecode(), token.RuntimeBytecode()) {
		t.Error("DevUSD.deployed.bin is not the runtime part of DevUSD.bin")
	}
}

func TestMetadataAndConstants(t *testing.T) {
	t.Parallel()
	c := deploy(t)
	str := func(data []byte, unpack func([]byte) (string, error)) string {
		out, err := c.call(common.Address{}, data)
		if err != nil {
			t.Fatal(err)
		}
		s, err := unpack(out)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if n := str(tok.PackName(), tok.UnpackName); n != "USD Coin" {
		t.Errorf("name %q", n)
	}
	if s := str(tok.PackSymbol(), tok.UnpackSymbol); s != "USDC" {
		t.Errorf("symbol %q", s)
	}
	if v := str(tok.PackVersion(), tok.UnpackVersion); v != "2" {
		t.Errorf("version %q", v)
	}
	out, _ := c.call(common.Address{}, tok.PackDecimals())
	if d, _ := tok.UnpackDecimals(out); d != 6 {
		t.Errorf("decimals %d", d)
	}
	out, _ = c.call(common.Address{}, tok.PackTotalSupply())
	if s, _ := tok.UnpackTotalSupply(out); s.Int64() != 1_000_000 {
		t.Errorf("totalSupply %s", s)
	}
	hashes := map[string][]byte{
		"TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)": tok.PackTRANSFERWITHAUTHORIZATIONTYPEHASH(),
		"ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)":  tok.PackRECEIVEWITHAUTHORIZATIONTYPEHASH(),
		"CancelAuthorization(address authorizer,bytes32 nonce)":                                                                 tok.PackCANCELAUTHORIZATIONTYPEHASH(),
		"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)":                                    tok.PackEIP712DOMAINTYPEHASH(),
	}
	for typ, data := range hashes {
		out, err := c.call(common.Address{}, data)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, crypto.Keccak256([]byte(typ))) {
			t.Errorf("typehash of %s", typ)
		}
	}
	// Initialising again is refused, whoever asks.
	for _, k := range []*ecdsa.PrivateKey{c.minter, c.carol} {
		if _, err := c.send(t, k, &c.token, tok.PackInitialize("X", "X", "9", 18, addr(k))); err == nil || err.Error() != "DevUSD: already initialized" {
			t.Errorf("second initialize: %v", err)
		}
	}
}

// The spec's vector: Base Sepolia USDC's domain, with DevUSD placed at USDC's
// address in genesis (the anvil_setCode path) and then initialised.
func TestDomainSeparatorVector(t *testing.T) {
	t.Parallel()
	usdc := common.HexToAddress("0x036CbD53842c5426634e7929541eC2318f3dCF7e")
	c := newChain(t, 84532, types.GenesisAlloc{usdc: {Code: token.RuntimeBytecode(), Balance: new(big.Int)}})
	c.token = usdc
	c.mustSend(t, c.minter, &c.token, tok.PackInitialize("USDC", "USDC", "2", 6, addr(c.minter)))
	out, err := c.call(common.Address{}, tok.PackDOMAINSEPARATOR())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(out), "71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818"; got != want {
		t.Fatalf("DOMAIN_SEPARATOR %s, want %s", got, want)
	}
}

func TestTransferWithAuthorization(t *testing.T) {
	t.Parallel()
	for name, pack := range map[string]func(auth, []byte) []byte{"vrs": transferVRS, "bytes": transferBytes} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := deploy(t)
			a := c.newAuth(t, 250_000)
			sig := c.sign(t, c.alice, a)
			if c.used(t, a.from, a.nonce) {
				t.Fatal("fresh nonce reads as used")
			}
			// Anyone may submit it: carol relays and pays gas.
			r := c.mustSend(t, c.carol, &c.token, pack(a, sig))
			if !c.used(t, a.from, a.nonce) {
				t.Fatal("authorizationState did not flip")
			}
			if c.balance(t, addr(c.alice)) != 750_000 || c.balance(t, addr(c.bob)) != 250_000 {
				t.Fatal("balances did not move")
			}
			var sawUsed, sawTransfer bool
			for _, l := range r.Logs {
				if ev, err := tok.UnpackAuthorizationUsedEvent(l); err == nil {
					sawUsed = ev.Authorizer == a.from && ev.Nonce == a.nonce
				}
				if ev, err := tok.UnpackTransferEvent(l); err == nil {
					sawTransfer = ev.From == a.from && ev.To == a.to && ev.Value.Cmp(a.value) == 0
				}
			}
			if !sawUsed || !sawTransfer {
				t.Fatalf("events: AuthorizationUsed %v, Transfer %v", sawUsed, sawTransfer)
			}
			// Replay through either overload.
			for _, data := range [][]byte{transferVRS(a, sig), transferBytes(a, sig)} {
				if _, err := c.send(t, c.carol, &c.token, data); err == nil || err.Error() != "FiatTokenV2: authorization is used or canceled" {
					t.Fatalf("replay: %v", err)
				}
			}
		})
	}
}

func TestTransferWithAuthorizationRefusals(t *testing.T) {
	t.Parallel()
	c := deploy(t)
	now := time.Now().Unix()
	cases := []struct {
		name   string
		mutate func(a *auth, sig []byte) []byte // returns calldata
		want   string
	}{
		{"not yet valid", func(a *auth, _ []byte) []byte {
			a.validAfter = big.NewInt(now + 3600)
			return transferVRS(*a, c.sign(t, c.alice, *a))
		}, "FiatTokenV2: authorization is not yet valid"},
		{"expired", func(a *auth, _ []byte) []byte {
			a.validBefore = big.NewInt(now - 3600)
			return transferVRS(*a, c.sign(t, c.alice, *a))
		}, "FiatTokenV2: authorization is expired"},
		{"validBefore zero", func(a *auth, _ []byte) []byte {
			a.validBefore = big.NewInt(0)
			return transferBytes(*a, c.sign(t, c.alice, *a))
		}, "FiatTokenV2: authorization is expired"},
		{"wrong signer", func(a *auth, _ []byte) []byte {
			return transferVRS(*a, c.sign(t, c.bob, *a))
		}, "FiatTokenV2: invalid signature"},
		{"tampered value", func(a *auth, sig []byte) []byte {
			a.value = big.NewInt(999_999)
			return transferBytes(*a, sig)
		}, "FiatTokenV2: invalid signature"},
		{"v=0", func(a *auth, sig []byte) []byte {
			sig[64] -= 27
			return transferVRS(*a, sig)
		}, "ECRecover: invalid signature 'v' value"},
		{"v=1 bytes", func(a *auth, sig []byte) []byte {
			sig[64] = 1
			return transferBytes(*a, sig)
		}, "ECRecover: invalid signature 'v' value"},
		{"high s", func(a *auth, sig []byte) []byte {
			// (r, n-s, v^1) recovers the same key: the malleable twin.
			s := new(big.Int).Sub(crypto.S256().Params().N, new(big.Int).SetBytes(sig[32:64]))
			copy(sig[32:64], common.LeftPadBytes(s.Bytes(), 32))
			sig[64] ^= 1
			return transferVRS(*a, sig)
		}, "ECRecover: invalid signature 's' value"},
		{"64-byte signature", func(a *auth, sig []byte) []byte {
			return transferBytes(*a, sig[:64])
		}, "ECRecover: invalid signature length"},
		{"exceeds balance", func(a *auth, _ []byte) []byte {
			a.value = big.NewInt(1_000_001)
			return transferVRS(*a, c.sign(t, c.alice, *a))
		}, "ERC20: transfer amount exceeds balance"},
	}
	for _, tc := range cases {
		a := c.newAuth(t, 10)
		data := tc.mutate(&a, c.sign(t, c.alice, a))
		if _, err := c.send(t, c.carol, &c.token, data); err == nil || err.Error() != tc.want {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
		if c.used(t, a.from, a.nonce) {
			t.Errorf("%s: refused authorization marked used", tc.name)
		}
	}
	// The reference facilitator (@x402/evm parseEip3009TransferError) maps
	// revert text to reason codes with these regexes, first match wins; our
	// strings must land on the specific code, not the generic failure.
	codes := []struct{ re, code string }{
		{`(?i)authorization.*(expired|valid before)|AuthorizationExpired`, "invalid_exact_evm_payload_authorization_valid_before"},
		{`(?i)authorization.*not.*valid|AuthorizationNotYetValid`, "invalid_exact_evm_payload_authorization_valid_after"},
		{`(?i)authorization.*used|AuthorizationAlreadyUsed|AuthorizationUsedOrCanceled`, "invalid_exact_evm_nonce_already_used"},
		{`(?i)transfer.*exceeds.*balance|insufficient.*balance|ERC20InsufficientBalance`, "invalid_exact_evm_insufficient_balance"},
		{`(?i)invalid.*signature|SignerMismatch|InvalidSignatureV|InvalidSignatureS`, "invalid_exact_evm_signature"},
	}
	classify := func(msg string) string {
		for _, c := range codes {
			if regexp.MustCompile(c.re).MatchString(msg) {
				return c.code
			}
		}
		return "invalid_exact_evm_transaction_failed"
	}
	want := map[string]string{
		"FiatTokenV2: authorization is not yet valid":    "invalid_exact_evm_payload_authorization_valid_after",
		"FiatTokenV2: authorization is expired":          "invalid_exact_evm_payload_authorization_valid_before",
		"FiatTokenV2: authorization is used or canceled": "invalid_exact_evm_nonce_already_used",
		"FiatTokenV2: invalid signature":                 "invalid_exact_evm_signature",
		"ECRecover: invalid signature 'v' value":         "invalid_exact_evm_signature",
		"ECRecover: invalid signature 's' value":         "invalid_exact_evm_signature",
		"ECRecover: invalid signature length":            "invalid_exact_evm_signature",
		"ERC20: transfer amount exceeds balance":         "invalid_exact_evm_insufficient_balance",
	}
	for _, tc := range cases {
		if _, ok := want[tc.want]; !ok {
			t.Errorf("no expected code for %q", tc.want)
		}
	}
	for msg, code := range want {
		// As a relayer reports it: wrapped, after "execution reverted: ".
		if got := classify("evm: estimate gas: execution reverted: " + msg); got != code {
			t.Errorf("%q maps to %s, want %s", msg, got, code)
		}
	}
}

func TestReceiveAndCancel(t *testing.T) {
	t.Parallel()
	c := deploy(t)

	// receiveWithAuthorization: only the payee may submit.
	a := c.newAuth(t, 100)
	a.primary = "ReceiveWithAuthorization"
	sig := c.sign(t, c.alice, a)
	v, r, s := vrs(sig)
	data := tok.PackReceiveWithAuthorization0(a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, v, r, s)
	if _, err := c.send(t, c.carol, &c.token, data); err == nil || err.Error() != "FiatTokenV2: caller must be the payee" {
		t.Fatalf("receive by a third party: %v", err)
	}
	// A receive signature is not a transfer signature.
	if _, err := c.send(t, c.carol, &c.token, transferVRS(a, sig)); err == nil || err.Error() != "FiatTokenV2: invalid signature" {
		t.Fatalf("receive signature used for transfer: %v", err)
	}
	c.mustSend(t, c.bob, &c.token, tok.PackReceiveWithAuthorization(a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, sig))
	if c.balance(t, addr(c.bob)) != 100 || !c.used(t, a.from, a.nonce) {
		t.Fatal("receive did not transfer")
	}

	// cancelAuthorization: the nonce becomes unusable.
	b := c.newAuth(t, 100)
	cancelSig, err := crypto.Sign(c.digest(t, "CancelAuthorization", apitypes.TypedDataMessage{
		"authorizer": b.from.Hex(), "nonce": hexutil.Encode(b.nonce[:])}), c.alice)
	if err != nil {
		t.Fatal(err)
	}
	cancelSig[64] += 27
	v, r, s = vrs(cancelSig)
	bad := append([]byte(nil), cancelSig...)
	bad[0] ^= 0xff
	if _, err := c.send(t, c.carol, &c.token, tok.PackCancelAuthorization0(b.from, b.nonce, bad)); err == nil || !strings.Contains(err.Error(), "invalid signature") {
		t.Fatalf("cancel with a bad signature: %v", err)
	}
	rc := c.mustSend(t, c.carol, &c.token, tok.PackCancelAuthorization(b.from, b.nonce, v, r, s))
	if len(rc.Logs) != 1 {
		t.Fatalf("cancel logs: %d", len(rc.Logs))
	}
	if ev, err := tok.UnpackAuthorizationCanceledEvent(rc.Logs[0]); err != nil || ev.Authorizer != b.from || ev.Nonce != b.nonce {
		t.Fatalf("AuthorizationCanceled: %v %v", ev, err)
	}
	if _, err := c.send(t, c.carol, &c.token, transferVRS(b, c.sign(t, c.alice, b))); err == nil || err.Error() != "FiatTokenV2: authorization is used or canceled" {
		t.Fatalf("transfer after cancel: %v", err)
	}
	if _, err := c.send(t, c.carol, &c.token, tok.PackCancelAuthorization0(b.from, b.nonce, cancelSig)); err == nil || err.Error() != "FiatTokenV2: authorization is used or canceled" {
		t.Fatalf("second cancel: %v", err)
	}
}

func TestERC20AndMinting(t *testing.T) {
	t.Parallel()
	c := deploy(t)
	alice, bob, carol := addr(c.alice), addr(c.bob), addr(c.carol)

	if _, err := c.send(t, c.carol, &c.token, tok.PackMint(carol, big.NewInt(1))); err == nil || err.Error() != "FiatToken: caller is not a minter" {
		t.Fatalf("mint by a stranger: %v", err)
	}
	c.mustSend(t, c.alice, &c.token, tok.PackTransfer(bob, big.NewInt(40)))
	if _, err := c.send(t, c.bob, &c.token, tok.PackTransfer(alice, big.NewInt(41))); err == nil || err.Error() != "ERC20: transfer amount exceeds balance" {
		t.Fatalf("overdraft: %v", err)
	}
	if _, err := c.send(t, c.bob, &c.token, tok.PackTransfer(common.Address{}, big.NewInt(1))); err == nil || err.Error() != "ERC20: transfer to the zero address" {
		t.Fatalf("burn by transfer: %v", err)
	}
	c.mustSend(t, c.alice, &c.token, tok.PackApprove(carol, big.NewInt(500)))
	out, _ := c.call(common.Address{}, tok.PackAllowance(alice, carol))
	if al, _ := tok.UnpackAllowance(out); al.Int64() != 500 {
		t.Fatalf("allowance %s", al)
	}
	if _, err := c.send(t, c.carol, &c.token, tok.PackTransferFrom(alice, carol, big.NewInt(501))); err == nil || err.Error() != "ERC20: transfer amount exceeds allowance" {
		t.Fatalf("over allowance: %v", err)
	}
	c.mustSend(t, c.carol, &c.token, tok.PackTransferFrom(alice, carol, big.NewInt(200)))
	out, _ = c.call(common.Address{}, tok.PackAllowance(alice, carol))
	if al, _ := tok.UnpackAllowance(out); al.Int64() != 300 {
		t.Fatalf("allowance after transferFrom %s", al)
	}
	if c.balance(t, alice) != 1_000_000-40-200 || c.balance(t, bob) != 40 || c.balance(t, carol) != 200 {
		t.Fatal("balances")
	}

	// The minter can hand over; the old one then cannot mint.
	c.mustSend(t, c.minter, &c.token, tok.PackConfigureMinter(carol))
	c.mustSend(t, c.carol, &c.token, tok.PackMint(bob, big.NewInt(5)))
	if _, err := c.send(t, c.minter, &c.token, tok.PackMint(bob, big.NewInt(5))); err == nil {
		t.Fatal("old minter still mints")
	}
	out, _ = c.call(common.Address{}, tok.PackTotalSupply())
	if s, _ := tok.UnpackTotalSupply(out); s.Int64() != 1_000_005 {
		t.Fatalf("totalSupply %s", s)
	}
}

// Deploying with a name initialises in the constructor.
func TestConstructorInitializes(t *testing.T) {
	t.Parallel()
	c := newChain(t, 1337, nil)
	code := append(token.Bytecode(), tok.PackConstructor("USD Coin", "USDC", "2", 6, addr(c.minter))...)
	c.token = c.mustSend(t, c.minter, nil, code).ContractAddress
	out, err := c.call(common.Address{}, tok.PackMinter())
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := tok.UnpackMinter(out); m != addr(c.minter) {
		t.Fatalf("minter %s", m)
	}
	if _, err := c.send(t, c.carol, &c.token, tok.PackInitialize("X", "X", "1", 0, addr(c.carol))); err == nil || err.Error() != "DevUSD: already initialized" {
		t.Fatalf("initialize after constructor: %v", err)
	}
}
