// Package interop proves that Purser speaks x402 with the official
// reference packages, on loopback, against a local EVM node (anvil): Purser's
// client pays official v2 and v1 paid servers whose official facilitator
// settles on chain, and the official v2 and v1 clients pay through Purser's
// middleware and facilitator. Balances and authorization nonces are checked
// on chain. The tests run when PURSER_INTEROP_JS names a directory where
// js/package.json is installed (.ci/run does it) and skip otherwise.
package interop
