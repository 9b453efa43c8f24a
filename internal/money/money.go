// Package money holds Purser's exact amounts and the assets they are counted
// in. An amount is a non-negative integer number of an asset's atomic units
// in a *big.Int, never a float, and never above a uint256 (the widest amount
// an EVM token can hold). Budgets and mandates count in micro-USD: atomic
// units of a 6-decimal USD.
package money

import (
	"fmt"
	"math/big"
	"strings"
)

// USDDecimals is the precision of budgets and mandates: they count in
// micro-USD.
const USDDecimals = 6

// maxInputLen bounds what ParseAmount reads, so a hostile request cannot make
// it build a huge big.Int.
const maxInputLen = 100

// MaxAtomic is 2^256-1: no amount may exceed a uint256. Treat it as read-only.
var MaxAtomic = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))

// Stable error codes (see docs/api.md).
const (
	CodeAmountInvalid    = "amount_invalid"
	CodeAmountNegative   = "amount_negative"
	CodeAmountZero       = "amount_zero"
	CodeAmountTooPrecise = "amount_too_precise"
	CodeAmountOverflow   = "amount_overflow"
	CodeAssetUnknown     = "asset_unknown"
	CodeNetworkUnknown   = "network_unknown"
	CodeAssetNotUSD      = "asset_not_usd"
	CodeAssetInvalid     = "asset_invalid" // NewRegistry: a malformed or duplicate asset in the configuration
)

// Error is a money error safe to show to a client. The code is reached
// through Code() (not a field) so that callers looking for
// interface{ Code() string }, such as spend.CodeOf, recognise it.
type Error struct {
	code    string
	message string
}

func errorf(code, format string, args ...any) *Error {
	return &Error{code: code, message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return e.code + ": " + e.message }

// Code returns the stable machine-readable code.
func (e *Error) Code() string { return e.code }

// Message returns the human-readable explanation.
func (e *Error) Message() string { return e.message }

// ParseAmount parses a decimal string such as "0.05" into atomic units of an
// asset with the given decimals. The syntax is deliberately narrow so that
// every accepted string has exactly one meaning: ASCII digits with at most
// one '.', a digit on both sides of it, no sign, exponent, spaces or leading
// zeros, at most decimals fractional digits (trailing zeros included) and at
// most 100 bytes.
func ParseAmount(s string, decimals uint8) (*big.Int, error) {
	if len(s) > maxInputLen {
		return nil, errorf(CodeAmountInvalid, "amount is longer than %d characters", maxInputLen)
	}
	if s == "" {
		return nil, errorf(CodeAmountInvalid, "amount is empty")
	}
	switch s[0] {
	case '-':
		// Name the sign only when the rest is a well-formed amount, so "-x"
		// is reported as what it is: garbage.
		if _, err := ParseAmount(s[1:], decimals); err == nil || codeOf(err) == CodeAmountTooPrecise || codeOf(err) == CodeAmountOverflow {
			return nil, errorf(CodeAmountNegative, "amount %q is negative", s)
		}
		return nil, errorf(CodeAmountInvalid, "amount %q is not a decimal number", s)
	case '+':
		return nil, errorf(CodeAmountInvalid, "amount %q has a sign; write it without '+'", s)
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if !allDigits(intPart) || (hasDot && !allDigits(frac)) {
		return nil, errorf(CodeAmountInvalid, "amount %q is not a decimal number (digits and at most one '.', with a digit on each side)", s)
	}
	if len(intPart) > 1 && intPart[0] == '0' {
		return nil, errorf(CodeAmountInvalid, "amount %q has a leading zero", s)
	}
	if len(frac) > int(decimals) {
		return nil, errorf(CodeAmountTooPrecise, "amount %q has more than %d decimal places", s, decimals)
	}
	digits := intPart + frac + strings.Repeat("0", int(decimals)-len(frac))
	v, ok := new(big.Int).SetString(digits, 10)
	if !ok { // unreachable: digits is non-empty ASCII digits
		return nil, errorf(CodeAmountInvalid, "amount %q is not a decimal number", s)
	}
	if v.Cmp(MaxAtomic) > 0 {
		return nil, errorf(CodeAmountOverflow, "amount %q is too large", s)
	}
	return v, nil
}

// ParsePositive is ParseAmount refusing zero: a spend or a hold of nothing is
// always a client mistake.
func ParsePositive(s string, decimals uint8) (*big.Int, error) {
	v, err := ParseAmount(s, decimals)
	if err != nil {
		return nil, err
	}
	if v.Sign() == 0 {
		return nil, errorf(CodeAmountZero, "amount %q is zero; it must be positive", s)
	}
	return v, nil
}

// FormatAmount renders atomic units as a decimal string without trailing
// zeros or exponent ("0.05", "5", "0"), the form ParseAmount reads back. A nil
// v formats as "0"; a negative one (a difference, never a parsed amount) gets
// a leading '-'.
func FormatAmount(v *big.Int, decimals uint8) string {
	if v == nil || v.Sign() == 0 {
		return "0"
	}
	sign := ""
	if v.Sign() < 0 {
		sign = "-"
	}
	s := new(big.Int).Abs(v).String()
	d := int(decimals)
	if d == 0 {
		return sign + s
	}
	if len(s) <= d {
		s = strings.Repeat("0", d-len(s)+1) + s
	}
	intPart, frac := s[:len(s)-d], strings.TrimRight(s[len(s)-d:], "0")
	if frac == "" {
		return sign + intPart
	}
	return sign + intPart + "." + frac
}

// ToUSD converts atomic units of a USD-valued asset to micro-USD. Finer
// assets round up, because a budget must never undercount what was spent.
func ToUSD(a Asset, atomic *big.Int) (*big.Int, error) {
	if !a.USD {
		return nil, errorf(CodeAssetNotUSD, "asset %s on %s is not valued in USD", a.Symbol, a.Network)
	}
	if atomic == nil {
		return new(big.Int), nil
	}
	if atomic.Sign() < 0 {
		return nil, errorf(CodeAmountNegative, "amount %s is negative", atomic)
	}
	out := new(big.Int)
	switch d := int(a.Decimals); {
	case d == USDDecimals:
		out.Set(atomic)
	case d < USDDecimals:
		out.Mul(atomic, pow10(USDDecimals-d))
	default:
		var r big.Int
		out.QuoRem(atomic, pow10(d-USDDecimals), &r)
		if r.Sign() != 0 {
			out.Add(out, big.NewInt(1))
		}
	}
	if out.Cmp(MaxAtomic) > 0 {
		return nil, errorf(CodeAmountOverflow, "amount %s %s is too large in USD", FormatAmount(atomic, a.Decimals), a.Symbol)
	}
	return out, nil
}

// Add returns a+b as a new value (nil counts as zero), refusing a sum above
// MaxAtomic.
func Add(a, b *big.Int) (*big.Int, error) {
	out := new(big.Int)
	if a != nil {
		out.Set(a)
	}
	if b != nil {
		out.Add(out, b)
	}
	if out.Cmp(MaxAtomic) > 0 {
		return nil, errorf(CodeAmountOverflow, "sum %s + %s is too large", a, b)
	}
	return out, nil
}

func pow10(n int) *big.Int {
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func codeOf(err error) string {
	if e, ok := err.(*Error); ok {
		return e.code
	}
	return ""
}
