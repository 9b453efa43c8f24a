package rails

import (
	"strconv"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/x402"
)

// cosignPlan recomputes, from the record the rail stored, the EIP-3009
// authorization of a co-signed spend and its EIP-712 digest: the server
// signs over what it built itself, never over what the agent sends.
func (c *Common) cosignPlan(sp *spend.Spend) (*spend.CosignPlan, error) {
	rec, err := loadRecord(sp)
	if err != nil {
		return nil, err
	}
	a, err := rec.authorization()
	if err != nil {
		return nil, err
	}
	asset, err := c.onchainAsset(sp.Network, sp.Asset)
	if err != nil {
		return nil, err
	}
	if !common.IsHexAddress(rec.Token) || common.HexToAddress(rec.Token) != common.HexToAddress(asset.Address) {
		return nil, spend.Errorf(spend.CodeInvalidState, "spend %s: its authorization names another token", sp.ID)
	}
	chainID, err := x402.ChainIDOf(sp.Network)
	if err != nil {
		return nil, err
	}
	token := common.HexToAddress(asset.Address)
	ds := evm.DomainSeparator(asset.EIP712Name, asset.EIP712Version, chainID, token)
	return &spend.CosignPlan{
		Ref: rec.Nonce, Digest: a.Digest(ds), ValidBefore: time.Unix(rec.ValidBefore, 0).UTC(), Signed: rec.Signature != "",
		Authorization: spend.CosignAuthorization{From: a.From.Hex(), To: a.To.Hex(), Value: a.Value.String(),
			ValidAfter: strconv.FormatInt(rec.ValidAfter, 10), ValidBefore: strconv.FormatInt(rec.ValidBefore, 10), Nonce: rec.Nonce},
		Domain: spend.CosignDomain{Name: asset.EIP712Name, Version: asset.EIP712Version, ChainID: chainID.String(), VerifyingContract: token.Hex()},
	}, nil
}
