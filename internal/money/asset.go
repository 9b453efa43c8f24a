package money

import (
	"strings"
)

// Asset is a token (or off-chain balance) Purser can count.
type Asset struct {
	Symbol   string // e.g. "USDC"
	Network  string // CAIP-2, e.g. "eip155:8453"
	Address  string // token contract, 0x EIP-55 checksummed; "" for off-chain assets
	Decimals uint8
	USD      bool // valued 1:1 in USD (stablecoins the operator configured as USD)

	// EIP712Name and EIP712Version are the token's EIP-3009 signing domain,
	// e.g. "USD Coin"/"2"; a wrong value makes every authorization invalid.
	EIP712Name, EIP712Version string
}

// DefaultAssets returns USDC on Base and on Base Sepolia.
func DefaultAssets() []Asset {
	return []Asset{
		{Symbol: "USDC", Network: "eip155:8453", Address: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", Decimals: 6, USD: true, EIP712Name: "USD Coin", EIP712Version: "2"},
		// The Sepolia deployment's domain name is "USDC", not "USD Coin".
		{Symbol: "USDC", Network: "eip155:84532", Address: "0x036CbD53842c5426634e7929541eC2318f3dCF7e", Decimals: 6, USD: true, EIP712Name: "USDC", EIP712Version: "2"},
	}
}

// Registry is the set of configured assets. It is immutable after
// construction and safe for concurrent use.
type Registry struct {
	assets []Asset
}

// NewRegistry validates assets and builds a registry. Two assets on one
// network may share neither a symbol nor an address (case-insensitively),
// or Lookup would be ambiguous.
func NewRegistry(assets ...Asset) (*Registry, error) {
	r := &Registry{assets: make([]Asset, 0, len(assets))}
	for _, a := range assets {
		if !validSymbol(a.Symbol) {
			return nil, errorf(CodeAssetInvalid, "asset symbol %q: use 1-32 letters, digits, '.', '_' or '-'", a.Symbol)
		}
		if !validNetwork(a.Network) {
			return nil, errorf(CodeAssetInvalid, "asset %s: network %q is not a CAIP-2 chain id such as eip155:8453", a.Symbol, a.Network)
		}
		if a.Address != "" && !IsAddress(a.Address) {
			return nil, errorf(CodeAssetInvalid, "asset %s on %s: address %q is not a 0x-prefixed 20-byte hex address", a.Symbol, a.Network, a.Address)
		}
		for _, b := range r.assets {
			if b.Network != a.Network {
				continue
			}
			if strings.EqualFold(a.Symbol, b.Symbol) {
				return nil, errorf(CodeAssetInvalid, "asset %s is configured twice on %s", a.Symbol, a.Network)
			}
			if a.Address != "" && strings.EqualFold(a.Address, b.Address) {
				return nil, errorf(CodeAssetInvalid, "assets %s and %s on %s share the address %s", b.Symbol, a.Symbol, a.Network, a.Address)
			}
		}
		r.assets = append(r.assets, a)
	}
	return r, nil
}

// Lookup finds the asset on network whose symbol or contract address is
// symbolOrAddress, ignoring case. It reports network_unknown when no asset at
// all is configured on network, so clients can tell the two mistakes apart.
func (r *Registry) Lookup(network, symbolOrAddress string) (Asset, error) {
	onNetwork := false
	for _, a := range r.assets {
		if a.Network != network {
			continue
		}
		onNetwork = true
		if symbolOrAddress == "" {
			continue
		}
		if strings.EqualFold(a.Symbol, symbolOrAddress) || (a.Address != "" && strings.EqualFold(a.Address, symbolOrAddress)) {
			return a, nil
		}
	}
	if !onNetwork {
		return Asset{}, errorf(CodeNetworkUnknown, "no asset is configured on network %q", network)
	}
	return Asset{}, errorf(CodeAssetUnknown, "asset %q is not configured on network %s", symbolOrAddress, network)
}

// Assets returns a copy of the configured assets in configuration order.
func (r *Registry) Assets() []Asset {
	return append([]Asset(nil), r.assets...)
}

// IsAddress reports whether s is a 0x-prefixed 20-byte hex address, in any
// case. It does not verify an EIP-55 checksum.
func IsAddress(s string) bool {
	if len(s) != 42 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X') {
		return false
	}
	for i := 2; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func validSymbol(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validNetwork checks CAIP-2: namespace [-a-z0-9]{3,8} ":" reference
// [-_a-zA-Z0-9]{1,32}.
func validNetwork(s string) bool {
	ns, ref, ok := strings.Cut(s, ":")
	if !ok || len(ns) < 3 || len(ns) > 8 || len(ref) < 1 || len(ref) > 32 {
		return false
	}
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		if !(('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || c == '-') {
			return false
		}
	}
	for i := 0; i < len(ref); i++ {
		c := ref[i]
		if !(('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
