// Package rails holds the payment rails Purser executes on EVM chains:
// x402 (the agent pays an HTTP 402 seller with an EIP-3009 authorization
// Purser signs with the agent's server-held wallet) and payout (Purser
// sends USDC from the agent's wallet, relaying the same kind of
// authorization with its own gas key).
//
// Both rails plug into spend.Service: the pipeline has already checked the
// mandate and committed the hold before they sign. Each spend has exactly
// one possible authorization: its nonce is derived from the spend id with
// a key from the master seed (random to anyone else, the same on every
// retry), so a retried, raced or restarted signing can never produce a
// second payment the chain would accept. Reconciliation asks the token
// contract's authorizationState: used means captured; unused once the
// chain's clock has passed validBefore means released, since it can
// never be used any more.
package rails
