package evm

import (
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/purserhq/purser/x402"
)

var (
	// TransferWithAuthorizationTypeHash is the EIP-3009 primary type hash x402 signs.
	TransferWithAuthorizationTypeHash = crypto.Keccak256Hash([]byte(
		"TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"))
)

// Authorization is an EIP-3009 TransferWithAuthorization message. Value,
// ValidAfter and ValidBefore are uint256 (atomic units and Unix seconds); a nil
// field encodes as zero.
type Authorization struct {
	From, To                       common.Address
	Value, ValidAfter, ValidBefore *big.Int
	Nonce                          [32]byte
}

// Digest returns the EIP-712 digest to sign:
// keccak256(0x1901 ‖ domainSeparator ‖ hashStruct(a)). The encoding is the
// x402 package's, so the wire protocol and the chain client cannot drift.
func (a Authorization) Digest(domainSeparator [32]byte) [32]byte {
	d, _ := x402.Authorization{From: a.From.Hex(), To: a.To.Hex(), Value: orZero(a.Value), ValidAfter: orZero(a.ValidAfter),
		ValidBefore: orZero(a.ValidBefore), Nonce: a.Nonce}.Digest(domainSeparator)
	return d // cannot fail: the addresses are addresses and no value is nil
}

// DomainSeparator returns the EIP-712 domain separator of an EIP-3009 token:
// {name, version, chainId, verifyingContract: token}.
func DomainSeparator(name, version string, chainID *big.Int, token common.Address) [32]byte {
	d, _ := x402.DomainSeparator(name, version, orZero(chainID), token.Hex())
	return d // zero only for a non-positive chain id, which no chain has
}
