package token

// Rebuild DevUSD.abi, DevUSD.bin, DevUSD.deployed.bin and devusd_bind.go from
// DevUSD.sol (needs node/npm; see README.md).
//go:generate bash build.sh
