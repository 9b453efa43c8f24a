package money

import (
	"errors"
	"math/big"
	"strings"
	"testing"
)

func mustInt(t *testing.T, s string) *big.Int {
	t.Helper()
	v, ok := new(big.Int).SetString(s, 10)
	if !ok {
		t.Fatalf("bad test integer %q", s)
	}
	return v
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v, want *Error with code %s", err, code)
	}
	if e.Code() != code {
		t.Fatalf("code = %s (%v), want %s", e.Code(), err, code)
	}
	if e.Message() == "" || !strings.Contains(e.Error(), code) {
		t.Fatalf("error %q lacks a message or its code", e.Error())
	}
}

func TestParseAmount(t *testing.T) {
	t.Parallel()
	max := MaxAtomic.String()
	maxPlus1 := new(big.Int).Add(MaxAtomic, big.NewInt(1)).String()
	tests := []struct {
		name     string
		in       string
		decimals uint8
		want     string // atomic units; "" when an error is expected
		code     string
	}{
		{"integer", "5", 6, "5000000", ""},
		{"fraction", "0.05", 6, "50000", ""},
		{"zero", "0", 6, "0", ""},
		{"zero fraction", "0.000000", 6, "0", ""},
		{"full precision", "1.000001", 6, "1000001", ""},
		{"trailing zeros within precision", "1.50", 6, "1500000", ""},
		{"zero decimals", "42", 0, "42", ""},
		{"eighteen decimals", "1.000000000000000001", 18, "1000000000000000001", ""},
		{"max atomic", max, 0, max, ""},
		{"max atomic plus one", maxPlus1, 0, "", CodeAmountOverflow},
		{"overflow after scaling", max, 6, "", CodeAmountOverflow},
		{"too precise", "1.0000001", 6, "", CodeAmountTooPrecise},
		{"trailing zeros beyond precision", "0.0500000", 6, "", CodeAmountTooPrecise},
		{"fraction with zero decimals", "1.0", 0, "", CodeAmountTooPrecise},
		{"negative", "-1", 6, "", CodeAmountNegative},
		{"negative zero", "-0", 6, "", CodeAmountNegative},
		{"negative too precise", "-0.0000001", 6, "", CodeAmountNegative},
		{"minus garbage", "-x", 6, "", CodeAmountInvalid},
		{"double minus", "--1", 6, "", CodeAmountInvalid},
		{"plus", "+1", 6, "", CodeAmountInvalid},
		{"empty", "", 6, "", CodeAmountInvalid},
		{"leading dot", ".5", 6, "", CodeAmountInvalid},
		{"trailing dot", "5.", 6, "", CodeAmountInvalid},
		{"lone dot", ".", 6, "", CodeAmountInvalid},
		{"two dots", "1.2.3", 6, "", CodeAmountInvalid},
		{"leading zeros", "007", 6, "", CodeAmountInvalid},
		{"leading zero before fraction", "00.5", 6, "", CodeAmountInvalid},
		{"exponent", "1e6", 6, "", CodeAmountInvalid},
		{"space", " 1", 6, "", CodeAmountInvalid},
		{"trailing space", "1 ", 6, "", CodeAmountInvalid},
		{"comma", "1,5", 6, "", CodeAmountInvalid},
		{"hex", "0x10", 6, "", CodeAmountInvalid},
		{"unicode digit", "١", 6, "", CodeAmountInvalid},
		{"underscore", "1_000", 6, "", CodeAmountInvalid},
		{"100 bytes", strings.Repeat("1", 100), 0, "", CodeAmountOverflow},
		{"101 bytes", strings.Repeat("1", 101), 0, "", CodeAmountInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseAmount(tt.in, tt.decimals)
			wantCode(t, err, tt.code)
			if tt.code != "" {
				if got != nil {
					t.Fatalf("got %v with error", got)
				}
				return
			}
			if got.String() != tt.want {
				t.Fatalf("ParseAmount(%q, %d) = %s, want %s", tt.in, tt.decimals, got, tt.want)
			}
		})
	}
}

func TestParseAmountMessageNamesProblem(t *testing.T) {
	t.Parallel()
	_, err := ParseAmount("1.0000001", 6)
	if want := `amount "1.0000001" has more than 6 decimal places`; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

func TestParsePositive(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want, code string
	}{
		{"positive", "0.000001", "1", ""},
		{"zero", "0", "", CodeAmountZero},
		{"zero fraction", "0.00", "", CodeAmountZero},
		{"negative", "-1", "", CodeAmountNegative},
		{"invalid", "abc", "", CodeAmountInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParsePositive(tt.in, 6)
			wantCode(t, err, tt.code)
			if tt.code == "" && got.String() != tt.want {
				t.Fatalf("ParsePositive(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestFormatAmount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		in       *big.Int
		decimals uint8
		want     string
	}{
		{"nil", nil, 6, "0"},
		{"zero", big.NewInt(0), 6, "0"},
		{"whole", big.NewInt(5_000_000), 6, "5"},
		{"cents", big.NewInt(50_000), 6, "0.05"},
		{"one atomic unit", big.NewInt(1), 6, "0.000001"},
		{"mixed", big.NewInt(1_230_000), 6, "1.23"},
		{"zero decimals", big.NewInt(1200), 0, "1200"},
		{"eighteen decimals", big.NewInt(1), 18, "0.000000000000000001"},
		{"negative", big.NewInt(-1_500_000), 6, "-1.5"},
		{"max atomic", MaxAtomic, 0, MaxAtomic.String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := FormatAmount(tt.in, tt.decimals); got != tt.want {
				t.Fatalf("FormatAmount(%v, %d) = %q, want %q", tt.in, tt.decimals, got, tt.want)
			}
		})
	}
}

func TestFormatParseRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		in       string
		decimals uint8
		canon    string
	}{
		{"integer", "5", 6, "5"},
		{"fraction", "0.05", 6, "0.05"},
		{"trailing zeros dropped", "1.500", 6, "1.5"},
		{"all zero fraction", "7.000000", 6, "7"},
		{"max", MaxAtomic.String(), 0, MaxAtomic.String()},
		{"eighteen decimals", "123.000000000000000456", 18, "123.000000000000000456"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := ParseAmount(tt.in, tt.decimals)
			if err != nil {
				t.Fatal(err)
			}
			s := FormatAmount(v, tt.decimals)
			if s != tt.canon {
				t.Fatalf("FormatAmount = %q, want %q", s, tt.canon)
			}
			back, err := ParseAmount(s, tt.decimals)
			if err != nil || back.Cmp(v) != 0 {
				t.Fatalf("ParseAmount(%q) = %v, %v; want %v", s, back, err, v)
			}
		})
	}
}

func TestToUSD(t *testing.T) {
	t.Parallel()
	usdc := Asset{Symbol: "USDC", Network: "eip155:8453", Decimals: 6, USD: true}
	dai := Asset{Symbol: "DAI", Network: "eip155:1", Decimals: 18, USD: true}
	cents := Asset{Symbol: "USD", Network: "ledger:main", Decimals: 2, USD: true}
	eth := Asset{Symbol: "ETH", Network: "eip155:1", Decimals: 18}
	tests := []struct {
		name   string
		asset  Asset
		atomic *big.Int
		want   string
		code   string
	}{
		{"six decimals identity", usdc, big.NewInt(1_234_567), "1234567", ""},
		{"eighteen decimals exact", dai, mustInt(t, "1000000000000000000"), "1000000", ""},
		{"eighteen decimals rounds up one wei", dai, mustInt(t, "1000000000000000001"), "1000001", ""},
		{"eighteen decimals sub-micro rounds up", dai, big.NewInt(1), "1", ""},
		{"eighteen decimals just below a micro", dai, big.NewInt(999_999_999_999), "1", ""},
		{"two decimals scales up", cents, big.NewInt(150), "1500000", ""},
		{"zero", dai, big.NewInt(0), "0", ""},
		{"nil", usdc, nil, "0", ""},
		{"not usd", eth, big.NewInt(1), "", CodeAssetNotUSD},
		{"negative", usdc, big.NewInt(-1), "", CodeAmountNegative},
		{"overflow after scaling", cents, MaxAtomic, "", CodeAmountOverflow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := tt.atomic
			var before string
			if in != nil {
				before = in.String()
			}
			got, err := ToUSD(tt.asset, in)
			wantCode(t, err, tt.code)
			if tt.code == "" && got.String() != tt.want {
				t.Fatalf("ToUSD = %s, want %s", got, tt.want)
			}
			if in != nil && in.String() != before {
				t.Fatalf("ToUSD modified its argument: %s -> %s", before, in)
			}
		})
	}
}

func TestAdd(t *testing.T) {
	t.Parallel()
	maxMinus1 := new(big.Int).Sub(MaxAtomic, big.NewInt(1))
	tests := []struct {
		name string
		a, b *big.Int
		want string
		code string
	}{
		{"small", big.NewInt(2), big.NewInt(3), "5", ""},
		{"nil is zero", nil, big.NewInt(3), "3", ""},
		{"both nil", nil, nil, "0", ""},
		{"exactly max", maxMinus1, big.NewInt(1), MaxAtomic.String(), ""},
		{"max plus one", MaxAtomic, big.NewInt(1), "", CodeAmountOverflow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Add(tt.a, tt.b)
			wantCode(t, err, tt.code)
			if tt.code != "" {
				return
			}
			if got.String() != tt.want {
				t.Fatalf("Add = %s, want %s", got, tt.want)
			}
			if got == tt.a || got == tt.b {
				t.Fatal("Add returned one of its arguments, not a new value")
			}
		})
	}
}

func TestNewRegistry(t *testing.T) {
	t.Parallel()
	base := DefaultAssets()[0]
	with := func(f func(*Asset)) Asset { a := base; f(&a); return a }
	tests := []struct {
		name   string
		assets []Asset
		code   string
	}{
		{"defaults", DefaultAssets(), ""},
		{"empty", nil, ""},
		{"off-chain asset", []Asset{{Symbol: "USD", Network: "ledger:main", Decimals: 2, USD: true}}, ""},
		{"duplicate symbol", []Asset{base, with(func(a *Asset) { a.Symbol = "usdc"; a.Address = "0x0000000000000000000000000000000000000001" })}, CodeAssetInvalid},
		{"duplicate address", []Asset{base, with(func(a *Asset) { a.Symbol = "USDC2"; a.Address = strings.ToLower(base.Address) })}, CodeAssetInvalid},
		{"same symbol other network", []Asset{base, with(func(a *Asset) { a.Network = "eip155:1" })}, ""},
		{"bad network", []Asset{with(func(a *Asset) { a.Network = "base" })}, CodeAssetInvalid},
		{"bad address", []Asset{with(func(a *Asset) { a.Address = "0x1234" })}, CodeAssetInvalid},
		{"empty symbol", []Asset{with(func(a *Asset) { a.Symbol = "" })}, CodeAssetInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := NewRegistry(tt.assets...)
			wantCode(t, err, tt.code)
			if tt.code == "" && len(r.Assets()) != len(tt.assets) {
				t.Fatalf("Assets() has %d entries, want %d", len(r.Assets()), len(tt.assets))
			}
		})
	}
}

func TestRegistryLookup(t *testing.T) {
	t.Parallel()
	r, err := NewRegistry(DefaultAssets()...)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, network, key string
		wantNet            string
		code               string
	}{
		{"symbol", "eip155:8453", "USDC", "eip155:8453", ""},
		{"symbol lower case", "eip155:8453", "usdc", "eip155:8453", ""},
		{"address checksummed", "eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "eip155:8453", ""},
		{"address lower case", "eip155:84532", "0x036cbd53842c5426634e7929541ec2318f3dcf7e", "eip155:84532", ""},
		{"address on the wrong network", "eip155:8453", "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "", CodeAssetUnknown},
		{"unknown symbol", "eip155:8453", "DAI", "", CodeAssetUnknown},
		{"empty key", "eip155:8453", "", "", CodeAssetUnknown},
		{"unknown network", "eip155:1", "USDC", "", CodeNetworkUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, err := r.Lookup(tt.network, tt.key)
			wantCode(t, err, tt.code)
			if tt.code == "" && (a.Network != tt.wantNet || a.Symbol != "USDC" || a.Decimals != 6 || !a.USD) {
				t.Fatalf("Lookup = %+v", a)
			}
		})
	}
}

func TestRegistryAssetsIsACopy(t *testing.T) {
	t.Parallel()
	r, err := NewRegistry(DefaultAssets()...)
	if err != nil {
		t.Fatal(err)
	}
	r.Assets()[0].Symbol = "EVIL"
	if _, err := r.Lookup("eip155:8453", "USDC"); err != nil {
		t.Fatalf("mutating Assets() changed the registry: %v", err)
	}
}

func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"0", "0.05", "5", "1.000001", "-1", "007", MaxAtomic.String()} {
		f.Add(s, uint8(6))
	}
	f.Fuzz(func(t *testing.T, s string, decimals uint8) {
		v, err := ParseAmount(s, decimals)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code() == "" {
				t.Fatalf("ParseAmount(%q) error %v is not a coded *Error", s, err)
			}
			return
		}
		if v.Sign() < 0 || v.Cmp(MaxAtomic) > 0 {
			t.Fatalf("ParseAmount(%q) = %s, out of range", s, v)
		}
		out := FormatAmount(v, decimals)
		back, err := ParseAmount(out, decimals)
		if err != nil {
			t.Fatalf("FormatAmount gave %q which does not parse: %v", out, err)
		}
		if back.Cmp(v) != 0 {
			t.Fatalf("round trip %q -> %s -> %q -> %s", s, v, out, back)
		}
	})
}
