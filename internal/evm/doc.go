// Package evm is Purser's chain client for EVM networks: EIP-3009 digests and
// token reads for the x402 rail and facilitator, and a Relayer that pays gas
// for transferWithAuthorization and other calls.
//
// Money is *big.Int atomic units throughout. A Client works over any JSON-RPC
// endpoint (Dial) or an in-process backend (NewClient), and is safe for
// concurrent use. Reverts come back as *RevertError whose text carries the
// token's revert string ("execution reverted: FiatTokenV2: authorization is
// expired"), because x402 facilitators classify failures by that text.
//
// The Relayer owns one account's transaction nonce: it serialises sends with a
// mutex and a local counter, and resynchronises from the node's pending nonce
// when a send fails, so concurrent settlements do not collide.
package evm
