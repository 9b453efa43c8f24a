package evm

import (
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/math"
	"github.com/ethereum/go-ethereum/crypto"
)

var (
	domainTypeHash = crypto.Keccak256Hash([]byte("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"))
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
// keccak256(0x1901 ‖ domainSeparator ‖ hashStruct(a)).
func (a Authorization) Digest(domainSeparator [32]byte) [32]byte {
	structHash := crypto.Keccak256(
		TransferWithAuthorizationTypeHash[:],
		addrWord(a.From), addrWord(a.To),
		uintWord(a.Value), uintWord(a.ValidAfter), uintWord(a.ValidBefore),
		a.Nonce[:],
	)
	return crypto.Keccak256Hash([]byte{0x19, 0x01}, domainSeparator[:], structHash)
}

// DomainSeparator returns the EIP-712 domain separator of an EIP-3009 token:
// {name, version, chainId, verifyingContract: token}.
func DomainSeparator(name, version string, chainID *big.Int, token common.Address) [32]byte {
	return crypto.Keccak256Hash(
		domainTypeHash[:],
		crypto.Keccak256([]byte(name)),
		crypto.Keccak256([]byte(version)),
		uintWord(chainID),
		addrWord(token),
	)
}

func addrWord(a common.Address) []byte { return common.LeftPadBytes(a[:], 32) }

func uintWord(v *big.Int) []byte {
	if v == nil {
		return make([]byte, 32)
	}
	return math.U256Bytes(new(big.Int).Set(v))
}
