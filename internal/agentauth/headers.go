package agentauth

import (
	"encoding/hex"
	"net/http"
	"strconv"
	"time"

	"github.com/ethereum/go-ethereum/common"
)

// Header names, in canonical form.
const (
	HeaderAgent     = "Purser-Agent"     // 0x + EIP-55 address
	HeaderNonce     = "Purser-Nonce"     // 0x + 64 hex
	HeaderExpires   = "Purser-Expires"   // unix seconds, decimal
	HeaderSignature = "Purser-Signature" // 0x + 130 hex: r ‖ s ‖ v
)

// Apply sets the four headers on h, replacing any previous values.
func (s Signed) Apply(h http.Header) {
	h.Set(HeaderAgent, s.Agent.Hex())
	h.Set(HeaderNonce, "0x"+hex.EncodeToString(s.Nonce[:]))
	h.Set(HeaderExpires, strconv.FormatInt(s.Expires.Unix(), 10))
	h.Set(HeaderSignature, "0x"+hex.EncodeToString(s.Signature[:]))
}

// Parse reads the four headers strictly: each exactly once, 0x-prefixed hex
// of the exact length, expires as plain decimal. None of them present is
// auth_missing; anything else wrong is auth_malformed. Errors are *Error.
func Parse(h http.Header) (Signed, error) {
	names := [4]string{HeaderAgent, HeaderNonce, HeaderExpires, HeaderSignature}
	present := 0
	for _, name := range names {
		if len(h[name]) > 0 {
			present++
		}
	}
	if present == 0 {
		return Signed{}, newError(CodeAuthMissing, "agent signature headers missing")
	}
	var vals [4]string
	for i, name := range names {
		switch vs := h[name]; len(vs) {
		case 0:
			return Signed{}, malformed(name, "missing")
		case 1:
			vals[i] = vs[0]
		default:
			return Signed{}, malformed(name, "repeated")
		}
	}

	var s Signed
	var addr [20]byte
	if !decodeHex0x(addr[:], vals[0]) {
		return Signed{}, malformed(HeaderAgent, "want 0x and 40 hex digits")
	}
	s.Agent = common.Address(addr)
	// A mixed-case address must carry a correct EIP-55 checksum; one-case
	// addresses carry none, as in every Ethereum client.
	if hasUpperAndLower(vals[0][2:]) && s.Agent.Hex() != vals[0] {
		return Signed{}, malformed(HeaderAgent, "bad EIP-55 checksum")
	}
	if !decodeHex0x(s.Nonce[:], vals[1]) {
		return Signed{}, malformed(HeaderNonce, "want 0x and 64 hex digits")
	}
	exp, ok := parseUnix(vals[2])
	if !ok {
		return Signed{}, malformed(HeaderExpires, "want unix seconds in decimal")
	}
	s.Expires = time.Unix(exp, 0)
	if !decodeHex0x(s.Signature[:], vals[3]) {
		return Signed{}, malformed(HeaderSignature, "want 0x and 130 hex digits")
	}
	switch s.Signature[64] {
	case 0, 1, 27, 28:
	default:
		return Signed{}, malformed(HeaderSignature, "v must be 27 or 28")
	}
	return s, nil
}

func malformed(header, why string) *Error {
	return newError(CodeAuthMalformed, header+": "+why)
}

// decodeHex0x fills dst from "0x" + exactly 2*len(dst) hex digits.
func decodeHex0x(dst []byte, v string) bool {
	if len(v) != 2+2*len(dst) || v[0] != '0' || v[1] != 'x' {
		return false
	}
	_, err := hex.Decode(dst, []byte(v[2:]))
	return err == nil
}

// parseUnix accepts 1-19 plain decimal digits without leading zeros, so
// each instant has one spelling and the value fits time.Unix.
func parseUnix(v string) (int64, bool) {
	if len(v) == 0 || len(v) > 19 || (v[0] == '0' && len(v) > 1) {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

func hasUpperAndLower(v string) bool {
	var up, low bool
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case 'a' <= c && c <= 'f':
			low = true
		case 'A' <= c && c <= 'F':
			up = true
		}
	}
	return up && low
}
