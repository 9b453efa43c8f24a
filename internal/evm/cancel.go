package evm

import (
	"context"
	"fmt"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// CancelAuthorizationTypeHash is EIP-3009's CancelAuthorization primary type hash.
var CancelAuthorizationTypeHash = crypto.Keccak256Hash([]byte("CancelAuthorization(address authorizer,bytes32 nonce)"))

var authorizationCanceledTopic = crypto.Keccak256Hash([]byte("AuthorizationCanceled(address,bytes32)"))

// CancelDigest returns the EIP-712 digest an authorizer signs to cancel its
// unused authorization nonce: keccak256(0x1901 ‖ domainSeparator ‖
// keccak256(typeHash ‖ authorizer ‖ nonce)).
func CancelDigest(domainSeparator [32]byte, authorizer common.Address, nonce [32]byte) [32]byte {
	structHash := crypto.Keccak256(CancelAuthorizationTypeHash[:], common.LeftPadBytes(authorizer[:], 32), nonce[:])
	var d [32]byte
	copy(d[:], crypto.Keccak256([]byte{0x19, 0x01}, domainSeparator[:], structHash))
	return d
}

// CancelAuthorizationData returns the calldata of token.cancelAuthorization:
// the (v, r, s) overload for a 65-byte signature, else the bytes overload.
func CancelAuthorizationData(authorizer common.Address, nonce [32]byte, sig []byte) ([]byte, error) {
	var (
		data []byte
		err  error
	)
	if len(sig) == 65 {
		var r, s [32]byte
		copy(r[:], sig[:32])
		copy(s[:], sig[32:64])
		data, err = abiToken.TryPackCancelAuthorization(authorizer, nonce, sig[64], r, s)
	} else {
		data, err = abiToken.TryPackCancelAuthorization0(authorizer, nonce, sig)
	}
	if err != nil {
		return nil, fmt.Errorf("evm: encode cancelAuthorization: %w", err)
	}
	return data, nil
}

// CancelAuthorization submits token.cancelAuthorization and returns the
// transaction hash without waiting for it. If the estimate reverts (the nonce
// was used or cancelled already) nothing is sent and the error is a
// *RevertError.
func (r *Relayer) CancelAuthorization(ctx context.Context, token, authorizer common.Address, nonce [32]byte, sig []byte) (common.Hash, error) {
	data, err := CancelAuthorizationData(authorizer, nonce, sig)
	if err != nil {
		return common.Hash{}, err
	}
	return r.Send(ctx, token, data, nil)
}

// FindAuthorizationCanceled looks for the AuthorizationCanceled(authorizer,
// nonce) event of token from fromBlock to the head and returns the
// transaction that emitted it.
func (c *Client) FindAuthorizationCanceled(ctx context.Context, token, authorizer common.Address, nonce [32]byte, fromBlock uint64) (common.Hash, bool, error) {
	return c.findAuthorizationEvent(ctx, authorizationCanceledTopic, token, authorizer, nonce, fromBlock)
}
