// Package devchain runs an embedded, in-memory EVM chain for `purser demo`
// and `purser serve --dev-chain`: go-ethereum's own node and EVM, with a
// JSON-RPC HTTP endpoint on the loopback interface, DevUSD ("USD Coin",
// "USDC", version "2", 6 decimals) deployed at start, and a faucet.
//
// The chain mines on demand: whenever the transaction pool holds executable
// transactions, a block with all of them (up to the gas limit) is sealed.
// Block timestamps are wall-clock seconds. Timestamps must increase from block
// to block, so once the head would run more than Config.MaxClockLead (3s by
// default) ahead of the clock, the chain seals at most one block per second and
// batches whatever arrived meanwhile: EIP-3009 validity windows then behave as
// on a real chain, even under hundreds of transactions per second. Dependent
// transactions sent one after another therefore mine instantly for the first
// few, then about once per second.
//
// The faucet key (deployer, minter, gas payer) is generated at each start and
// never leaves the process. All state lives in memory and is lost at Close.
// Not for production.
package devchain
