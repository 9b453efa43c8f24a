// Package token holds DevUSD, Purser's own EIP-3009 USD token for dev chains
// and tests: its Solidity source, the compiled artifacts, and Go bindings.
//
// DevUSD follows the parts of Circle's FiatToken v2 that x402 uses: ERC-20,
// transferWithAuthorization in both the (v, r, s) and the bytes-signature
// overloads, receiveWithAuthorization, cancelAuthorization and
// authorizationState, with FiatToken's revert strings so that facilitators
// classify failures the same way. It has no immutables, so its runtime code
// can be placed at any address (genesis alloc, anvil_setCode) and then set up
// with initialize.
//
// The artifacts are generated and committed; rebuild them with
//
//	go generate ./internal/evm/token
//
// abigen names the overloads by ABI order: PackTransferWithAuthorization is the
// bytes-signature overload (selector 0xcf092995) and
// PackTransferWithAuthorization0 the (v, r, s) one (selector 0xe3ee160e).
package token
