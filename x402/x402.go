// Package x402 is the x402 wire protocol (v1 and v2) for the EVM "exact"
// scheme: 402 requirements, payment payloads, settlement responses, the
// facilitator API and EIP-3009 digests.
package x402

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

const (
	HeaderPaymentRequired  = "PAYMENT-REQUIRED"
	HeaderPaymentSignature = "PAYMENT-SIGNATURE"
	HeaderPaymentResponse  = "PAYMENT-RESPONSE"
	HeaderXPayment         = "X-PAYMENT"
	HeaderXPaymentResponse = "X-PAYMENT-RESPONSE"
	MaxHeaderBytes         = 16 << 10
	MaxBodyBytes           = 64 << 10
)

// Error is a protocol error with a stable code.
type Error struct{ code, msg string }

func (e *Error) Error() string   { return e.code + ": " + e.msg }
func (e *Error) Code() string    { return e.code }
func (e *Error) Message() string { return e.msg }

func errorf(code, f string, a ...any) *Error { return &Error{code, fmt.Sprintf(f, a...)} }

var (
	b64RE    = regexp.MustCompile(`^[A-Za-z0-9+/]*={0,2}$`)
	amountRE = regexp.MustCompile(`^(0|[1-9][0-9]{0,77})$`)
	nonceRE  = regexp.MustCompile(`^0x[0-9a-fA-F]{64}$`)
)

func decodeB64JSON(v string) ([]byte, error) {
	if len(v) > MaxHeaderBytes {
		return nil, errorf("x402_too_large", "the header is larger than %d bytes", MaxHeaderBytes)
	}
	v = strings.TrimSpace(v)
	if v == "" || !b64RE.MatchString(v) {
		return nil, errorf("x402_malformed", "the header is not standard base64")
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, errorf("x402_malformed", "the header is not standard base64: %v", err)
	}
	if !json.Valid(b) {
		return nil, errorf("x402_malformed", "the header is not base64 of JSON")
	}
	return b, nil
}

func parseAmount(s string) (*big.Int, bool) {
	if !amountRE.MatchString(s) {
		return nil, false
	}
	v, ok := new(big.Int).SetString(s, 10)
	return v, ok
}

// Requirements is one accepts entry normalised across versions; Raw keeps
// the seller's exact bytes so a v2 payload can echo it verbatim.
type Requirements struct {
	Version               int
	Scheme                string
	Network               string
	Amount                *big.Int
	Asset                 string
	PayTo                 string
	MaxTimeoutSeconds     int64
	Resource              string
	Description, MimeType string
	Extra                 json.RawMessage
	Raw                   json.RawMessage
}

// EIP712Domain returns extra.name and extra.version.
func (r *Requirements) EIP712Domain() (name, version string, ok bool) {
	var e struct {
		Name    *string `json:"name"`
		Version *string `json:"version"`
	}
	if len(r.Extra) == 0 || json.Unmarshal(r.Extra, &e) != nil || e.Name == nil || e.Version == nil {
		return "", "", false
	}
	return *e.Name, *e.Version, *e.Name != "" && *e.Version != ""
}

// v1Networks maps the v1 network names of EVM chains to chain ids.
var v1Networks = map[string]int64{
	"base": 8453, "base-sepolia": 84532, "avalanche": 43114, "avalanche-fuji": 43113, "ethereum": 1, "sepolia": 11155111,
	"polygon": 137, "polygon-amoy": 80002, "iotex": 4689, "sei": 1329, "sei-testnet": 1328, "abstract": 2741,
	"abstract-testnet": 11124, "peaq": 3338, "story": 1514, "educhain": 41923, "skale-base-sepolia": 324705682,
	"celo": 42220,
}

// CAIP2 returns the network as a CAIP-2 id.
func (r *Requirements) CAIP2() (string, error) {
	if _, err := ChainIDOf(r.Network); err == nil {
		return r.Network, nil
	}
	if id, ok := v1Networks[r.Network]; ok {
		return "eip155:" + strconv.FormatInt(id, 10), nil
	}
	return "", errorf("x402_unknown_network", "network %q is not a known EVM network", r.Network)
}

// ChainIDOf parses "eip155:N".
func ChainIDOf(caip2 string) (*big.Int, error) {
	n, ok := strings.CutPrefix(caip2, "eip155:")
	if !ok || !regexp.MustCompile(`^[1-9][0-9]{0,18}$`).MatchString(n) {
		return nil, errorf("x402_unknown_network", "network %q is not eip155:<chain id>", caip2)
	}
	v, _ := new(big.Int).SetString(n, 10)
	return v, nil
}

// V1NetworkName returns the v1 name of a CAIP-2 network, if it has one.
func V1NetworkName(caip2 string) (string, bool) {
	id, err := ChainIDOf(caip2)
	if err != nil {
		return "", false
	}
	for name, n := range v1Networks {
		if id.Cmp(big.NewInt(n)) == 0 {
			return name, true
		}
	}
	return "", false
}

// PaymentRequired is a parsed 402.
type PaymentRequired struct {
	Version    int
	Error      string
	Resource   json.RawMessage
	Accepts    []Requirements
	Extensions json.RawMessage
}

func strField(m map[string]json.RawMessage, key string, required bool) (string, error) {
	raw, ok := m[key]
	if !ok || string(raw) == "null" {
		if required {
			return "", errorf("x402_malformed", "%s is required", key)
		}
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", errorf("x402_malformed", "%s must be a string", key)
	}
	return s, nil
}

// ParseRequirements parses one accepts entry of the given version.
func ParseRequirements(version int, raw json.RawMessage) (*Requirements, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, errorf("x402_malformed", "a requirements entry must be a JSON object")
	}
	r := &Requirements{Version: version, Raw: append(json.RawMessage(nil), bytes.TrimSpace(raw)...)}
	var err error
	get := func(key string, required bool) string {
		if err != nil {
			return ""
		}
		var s string
		s, err = strField(m, key, required)
		return s
	}
	r.Scheme, r.Network = get("scheme", true), get("network", true)
	amountKey := "amount"
	if version == 1 {
		amountKey = "maxAmountRequired"
		r.Resource, r.Description, r.MimeType = get("resource", true), get("description", false), get("mimeType", false)
	}
	amount := get(amountKey, true)
	r.Asset, r.PayTo = get("asset", true), get("payTo", true)
	if err != nil {
		return nil, err
	}
	var ok bool
	if r.Amount, ok = parseAmount(amount); !ok {
		return nil, errorf("x402_malformed", "%s %q is not a decimal integer of atomic units", amountKey, amount)
	}
	mt, has := m["maxTimeoutSeconds"]
	if !has {
		return nil, errorf("x402_malformed", "maxTimeoutSeconds is required")
	}
	if !regexp.MustCompile(`^[1-9][0-9]{0,9}$`).Match(bytes.TrimSpace(mt)) {
		return nil, errorf("x402_malformed", "maxTimeoutSeconds must be a positive integer")
	}
	r.MaxTimeoutSeconds, _ = strconv.ParseInt(string(bytes.TrimSpace(mt)), 10, 64)
	if ex, ok := m["extra"]; ok && string(ex) != "null" {
		if len(ex) == 0 || ex[0] != '{' {
			return nil, errorf("x402_malformed", "extra must be an object")
		}
		r.Extra = ex
	}
	if r.Scheme == "" || r.Network == "" {
		return nil, errorf("x402_malformed", "scheme and network must not be empty")
	}
	return r, nil
}

// ParsePaymentRequired reads a 402: the v2 PAYMENT-REQUIRED header if
// present, else a v1 JSON body.
func ParsePaymentRequired(h http.Header, body []byte) (*PaymentRequired, error) {
	var doc []byte
	if v := h.Get(HeaderPaymentRequired); v != "" {
		b, err := decodeB64JSON(v)
		if err != nil {
			return nil, err
		}
		doc = b
	} else {
		if len(body) > MaxBodyBytes {
			return nil, errorf("x402_too_large", "the 402 body is larger than %d bytes", MaxBodyBytes)
		}
		doc = body
	}
	var top struct {
		X402Version json.RawMessage   `json:"x402Version"`
		Error       json.RawMessage   `json:"error"`
		Resource    json.RawMessage   `json:"resource"`
		Accepts     []json.RawMessage `json:"accepts"`
		Extensions  json.RawMessage   `json:"extensions"`
	}
	if err := json.Unmarshal(doc, &top); err != nil {
		return nil, errorf("x402_no_requirements", "the 402 carries no x402 requirements")
	}
	var version int
	if err := json.Unmarshal(top.X402Version, &version); err != nil {
		return nil, errorf("x402_no_requirements", "the 402 carries no x402Version")
	}
	if h.Get(HeaderPaymentRequired) != "" && version != 2 || version != 1 && version != 2 {
		return nil, errorf("x402_version_unsupported", "x402Version %d is not supported", version)
	}
	pr := &PaymentRequired{Version: version, Extensions: top.Extensions}
	if len(top.Error) > 0 && string(top.Error) != "null" {
		if err := json.Unmarshal(top.Error, &pr.Error); err != nil {
			return nil, errorf("x402_malformed", "error must be a string")
		}
	}
	if version == 2 && len(top.Resource) > 0 && string(top.Resource) != "null" {
		if top.Resource[0] != '{' {
			return nil, errorf("x402_malformed", "resource must be an object")
		}
		pr.Resource = top.Resource
	}
	if len(top.Accepts) == 0 {
		return nil, errorf("x402_no_requirements", "the 402 offers no payment requirements")
	}
	for _, raw := range top.Accepts {
		r, err := ParseRequirements(version, raw)
		if err != nil {
			return nil, err
		}
		pr.Accepts = append(pr.Accepts, *r)
	}
	return pr, nil
}

// EncodePaymentRequired encodes a v2 PAYMENT-REQUIRED header value;
// accepts are written from their Raw bytes.
func EncodePaymentRequired(pr *PaymentRequired) (string, error) {
	b, err := marshalRequired(pr, 2)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// V1Body is the v1 402 JSON body.
func V1Body(pr *PaymentRequired) ([]byte, error) { return marshalRequired(pr, 1) }

func marshalRequired(pr *PaymentRequired, version int) ([]byte, error) {
	accepts := make([]json.RawMessage, len(pr.Accepts))
	for i, a := range pr.Accepts {
		if len(a.Raw) == 0 {
			return nil, errors.New("x402: requirements without Raw")
		}
		accepts[i] = a.Raw
	}
	doc := map[string]any{"x402Version": version, "error": pr.Error, "accepts": accepts}
	if version == 2 {
		if len(pr.Resource) > 0 {
			doc["resource"] = pr.Resource
		}
		if len(pr.Extensions) > 0 {
			doc["extensions"] = pr.Extensions
		}
	}
	return json.Marshal(doc)
}
