package x402

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// Authorization is an EIP-3009 TransferWithAuthorization message.
type Authorization struct {
	From, To    string
	Value       *big.Int
	ValidAfter  *big.Int
	ValidBefore *big.Int
	Nonce       [32]byte
}

type authJSON struct {
	From        string `json:"from"`
	To          string `json:"to"`
	Value       string `json:"value"`
	ValidAfter  string `json:"validAfter"`
	ValidBefore string `json:"validBefore"`
	Nonce       string `json:"nonce"`
}

// MarshalJSON writes decimal strings and a 0x nonce.
func (a Authorization) MarshalJSON() ([]byte, error) {
	s := func(v *big.Int) string {
		if v == nil {
			return "0"
		}
		return v.String()
	}
	return json.Marshal(authJSON{From: a.From, To: a.To, Value: s(a.Value), ValidAfter: s(a.ValidAfter),
		ValidBefore: s(a.ValidBefore), Nonce: "0x" + hex.EncodeToString(a.Nonce[:])})
}

// UnmarshalJSON is strict about every field's form.
func (a *Authorization) UnmarshalJSON(b []byte) error {
	var j authJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return errorf("x402_malformed", "authorization: %v", err)
	}
	if !common.IsHexAddress(j.From) || !common.IsHexAddress(j.To) {
		return errorf("x402_malformed", "authorization from and to must be addresses")
	}
	var ok1, ok2, ok3 bool
	a.Value, ok1 = parseAmount(j.Value)
	a.ValidAfter, ok2 = parseAmount(j.ValidAfter)
	a.ValidBefore, ok3 = parseAmount(j.ValidBefore)
	if !ok1 || !ok2 || !ok3 {
		return errorf("x402_malformed", "authorization value, validAfter and validBefore must be decimal integers")
	}
	if !nonceRE.MatchString(j.Nonce) {
		return errorf("x402_malformed", "authorization nonce must be 0x and 64 hex digits")
	}
	copy(a.Nonce[:], common.FromHex(j.Nonce))
	a.From, a.To = j.From, j.To
	return nil
}

// ExactPayload is the EVM exact scheme's payload.
type ExactPayload struct {
	Signature     string        `json:"signature"`
	Authorization Authorization `json:"authorization"`
}

// PaymentPayload is a decoded X-PAYMENT (v1) or PAYMENT-SIGNATURE (v2).
type PaymentPayload struct {
	Version    int
	Scheme     string
	Network    string
	Accepted   json.RawMessage
	Resource   json.RawMessage
	Extensions json.RawMessage
	Payload    ExactPayload
	Raw        json.RawMessage
}

// NewPaymentPayload builds the payload paying req.
func NewPaymentPayload(req *Requirements, resource json.RawMessage, p ExactPayload) (*PaymentPayload, error) {
	pp := &PaymentPayload{Version: req.Version, Scheme: req.Scheme, Network: req.Network, Payload: p}
	var doc map[string]any
	switch req.Version {
	case 2:
		if len(req.Raw) == 0 {
			return nil, errors.New("x402: v2 requirements need Raw to echo as accepted")
		}
		pp.Accepted, pp.Resource = req.Raw, resource
		doc = map[string]any{"x402Version": 2, "payload": p, "accepted": req.Raw}
		if len(resource) > 0 {
			doc["resource"] = resource
		}
	case 1:
		doc = map[string]any{"x402Version": 1, "scheme": req.Scheme, "network": req.Network, "payload": p}
	default:
		return nil, errorf("x402_version_unsupported", "x402Version %d is not supported", req.Version)
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	pp.Raw = raw
	return pp, nil
}

// HeaderValue returns the header name and base64 value carrying p.
func (p *PaymentPayload) HeaderValue() (string, string, error) {
	if len(p.Raw) == 0 {
		return "", "", errors.New("x402: payload has no encoding")
	}
	name := HeaderPaymentSignature
	if p.Version == 1 {
		name = HeaderXPayment
	}
	return name, base64.StdEncoding.EncodeToString(p.Raw), nil
}

// ParsePaymentPayload parses a payload's JSON.
func ParsePaymentPayload(raw []byte) (*PaymentPayload, error) {
	var top struct {
		X402Version json.RawMessage `json:"x402Version"`
		Scheme      string          `json:"scheme"`
		Network     string          `json:"network"`
		Accepted    json.RawMessage `json:"accepted"`
		Resource    json.RawMessage `json:"resource"`
		Extensions  json.RawMessage `json:"extensions"`
		Payload     json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, errorf("x402_malformed", "payment payload: %v", err)
	}
	p := &PaymentPayload{Raw: append(json.RawMessage(nil), raw...), Resource: top.Resource, Extensions: top.Extensions}
	if err := json.Unmarshal(top.X402Version, &p.Version); err != nil || (p.Version != 1 && p.Version != 2) {
		return nil, errorf("x402_version_unsupported", "payment payload: x402Version must be 1 or 2")
	}
	if p.Version == 2 {
		if len(top.Accepted) == 0 || top.Accepted[0] != '{' {
			return nil, errorf("x402_malformed", "payment payload: accepted is required")
		}
		var acc struct {
			Scheme  string `json:"scheme"`
			Network string `json:"network"`
		}
		if err := json.Unmarshal(top.Accepted, &acc); err != nil {
			return nil, errorf("x402_malformed", "payment payload: accepted: %v", err)
		}
		p.Accepted, p.Scheme, p.Network = top.Accepted, acc.Scheme, acc.Network
	} else {
		p.Scheme, p.Network = top.Scheme, top.Network
	}
	if len(top.Payload) == 0 {
		return nil, errorf("x402_malformed", "payment payload: payload is required")
	}
	var ex struct {
		Signature     *string         `json:"signature"`
		Authorization json.RawMessage `json:"authorization"`
	}
	if err := json.Unmarshal(top.Payload, &ex); err != nil || ex.Signature == nil || len(ex.Authorization) == 0 || string(ex.Authorization) == "null" {
		return nil, errorf("x402_malformed", "payment payload: payload needs a signature and an authorization")
	}
	p.Payload.Signature = *ex.Signature
	if err := json.Unmarshal(ex.Authorization, &p.Payload.Authorization); err != nil {
		var xe *Error
		if errors.As(err, &xe) {
			return nil, xe
		}
		return nil, errorf("x402_malformed", "payment payload: %v", err)
	}
	return p, nil
}

// DecodePaymentPayload decodes a payment header value.
func DecodePaymentPayload(headerValue string) (*PaymentPayload, error) {
	b, err := decodeB64JSON(headerValue)
	if err != nil {
		return nil, err
	}
	return ParsePaymentPayload(b)
}

// PaymentFromRequest reads PAYMENT-SIGNATURE (v2) or X-PAYMENT (v1);
// (nil, nil) when neither is present.
func PaymentFromRequest(r *http.Request) (*PaymentPayload, error) {
	if v := r.Header.Get(HeaderPaymentSignature); v != "" {
		p, err := DecodePaymentPayload(v)
		if err == nil && p.Version != 2 {
			return nil, errorf("x402_malformed", "PAYMENT-SIGNATURE must carry a v2 payload")
		}
		return p, err
	}
	if v := r.Header.Get(HeaderXPayment); v != "" {
		p, err := DecodePaymentPayload(v)
		if err == nil && p.Version != 1 {
			return nil, errorf("x402_malformed", "X-PAYMENT must carry a v1 payload")
		}
		return p, err
	}
	return nil, nil
}

// SettleResponse is a facilitator's settle answer and the settlement header.
type SettleResponse struct {
	Success      bool            `json:"success"`
	ErrorReason  string          `json:"errorReason,omitempty"`
	ErrorMessage string          `json:"errorMessage,omitempty"`
	Payer        string          `json:"payer,omitempty"`
	Transaction  string          `json:"transaction"`
	Network      string          `json:"network"`
	Amount       string          `json:"amount,omitempty"`
	Extensions   json.RawMessage `json:"extensions,omitempty"`
}

// DecodeSettleResponse decodes a settlement header value.
func DecodeSettleResponse(v string) (*SettleResponse, error) {
	b, err := decodeB64JSON(v)
	if err != nil {
		return nil, err
	}
	var s SettleResponse
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, errorf("x402_malformed", "settlement response: %v", err)
	}
	return &s, nil
}

// SettlementFromResponse reads PAYMENT-RESPONSE, then X-PAYMENT-RESPONSE.
func SettlementFromResponse(h http.Header) (*SettleResponse, error) {
	for _, name := range []string{HeaderPaymentResponse, HeaderXPaymentResponse} {
		if v := h.Get(name); v != "" {
			return DecodeSettleResponse(v)
		}
	}
	return nil, nil
}

// EncodeSettleResponse encodes a settlement header value.
func EncodeSettleResponse(s *SettleResponse) (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// VerifyResponse is a facilitator's verify answer.
type VerifyResponse struct {
	IsValid        bool   `json:"isValid"`
	InvalidReason  string `json:"invalidReason,omitempty"`
	InvalidMessage string `json:"invalidMessage,omitempty"`
	Payer          string `json:"payer,omitempty"`
}

// FacilitatorRequest is the body of /verify and /settle.
type FacilitatorRequest struct {
	X402Version         int             `json:"x402Version"`
	PaymentPayload      json.RawMessage `json:"paymentPayload"`
	PaymentRequirements json.RawMessage `json:"paymentRequirements"`
}

// SupportedKind is one (version, scheme, network) a facilitator settles.
type SupportedKind struct {
	X402Version int             `json:"x402Version"`
	Scheme      string          `json:"scheme"`
	Network     string          `json:"network"`
	Extra       json.RawMessage `json:"extra,omitempty"`
}

// SupportedResponse is GET /supported.
type SupportedResponse struct {
	Kinds      []SupportedKind     `json:"kinds"`
	Extensions []string            `json:"extensions"`
	Signers    map[string][]string `json:"signers"`
}

// FacilitatorClient calls a facilitator over HTTP.
type FacilitatorClient struct {
	URL  string
	HTTP *http.Client
	// Secret, when set, is sent as "Authorization: Bearer SECRET": the
	// shared secret of a facilitator that requires one (purser
	// facilitator --secret-file).
	Secret string
}

const maxFacilitatorReply = 1 << 20

func (c *FacilitatorClient) call(ctx context.Context, method, path string, in, out any, check func() error) error {
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 90 * time.Second}
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.URL, "/")+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Secret != "" {
		req.Header.Set("Authorization", "Bearer "+c.Secret)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("x402: facilitator %s: %w", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxFacilitatorReply+1))
	if err != nil || len(raw) > maxFacilitatorReply {
		return &FacilitatorError{Status: resp.StatusCode, Msg: "unreadable or oversized reply"}
	}
	if err := json.Unmarshal(raw, out); err != nil || check() != nil {
		return &FacilitatorError{Status: resp.StatusCode, Msg: fmt.Sprintf("malformed reply: %.200s", raw)}
	}
	return nil
}

// FacilitatorError is a facilitator reply that could not be used.
type FacilitatorError struct {
	Status int
	Msg    string
}

func (e *FacilitatorError) Error() string {
	return fmt.Sprintf("x402: facilitator answered %d: %s", e.Status, e.Msg)
}

func facilitatorBody(p *PaymentPayload, req *Requirements) FacilitatorRequest {
	return FacilitatorRequest{X402Version: p.Version, PaymentPayload: p.Raw, PaymentRequirements: req.Raw}
}

// Verify asks /verify; a reply without a boolean isValid is an error.
func (c *FacilitatorClient) Verify(ctx context.Context, p *PaymentPayload, req *Requirements) (*VerifyResponse, error) {
	var out struct {
		VerifyResponse
		IsValid *bool `json:"isValid"`
	}
	err := c.call(ctx, http.MethodPost, "/verify", facilitatorBody(p, req), &out, func() error {
		if out.IsValid == nil {
			return errors.New("no isValid")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out.VerifyResponse.IsValid = *out.IsValid
	return &out.VerifyResponse, nil
}

// Settle asks /settle; a reply must carry success, transaction and network.
func (c *FacilitatorClient) Settle(ctx context.Context, p *PaymentPayload, req *Requirements) (*SettleResponse, error) {
	var full SettleResponse
	raw := &struct {
		*SettleResponse
		Success     *bool   `json:"success"`
		Transaction *string `json:"transaction"`
		Network     *string `json:"network"`
	}{SettleResponse: &full}
	err := c.call(ctx, http.MethodPost, "/settle", facilitatorBody(p, req), raw, func() error {
		if raw.Success == nil || raw.Transaction == nil || raw.Network == nil {
			return errors.New("incomplete")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	full.Success, full.Transaction, full.Network = *raw.Success, *raw.Transaction, *raw.Network
	return &full, nil
}

// Supported asks /supported.
func (c *FacilitatorClient) Supported(ctx context.Context) (*SupportedResponse, error) {
	var out SupportedResponse
	err := c.call(ctx, http.MethodGet, "/supported", nil, &out, func() error {
		if out.Kinds == nil {
			return errors.New("no kinds")
		}
		return nil
	})
	return &out, err
}

var (
	domainTypeHash = crypto.Keccak256Hash([]byte("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"))
	authTypeHash   = crypto.Keccak256Hash([]byte("TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"))
)

func word(v *big.Int) []byte { return common.LeftPadBytes(v.Bytes(), 32) }

// DomainSeparator is the EIP-712 domain separator of an EIP-3009 token.
func DomainSeparator(name, version string, chainID *big.Int, verifyingContract string) ([32]byte, error) {
	if !common.IsHexAddress(verifyingContract) || chainID == nil || chainID.Sign() <= 0 {
		return [32]byte{}, errors.New("x402: domain needs a chain id and a contract address")
	}
	return crypto.Keccak256Hash(domainTypeHash[:], crypto.Keccak256([]byte(name)), crypto.Keccak256([]byte(version)),
		word(chainID), common.LeftPadBytes(common.HexToAddress(verifyingContract).Bytes(), 32)), nil
}

// Digest is the EIP-712 digest of the authorization under a domain.
func (a Authorization) Digest(domainSeparator [32]byte) ([32]byte, error) {
	if !common.IsHexAddress(a.From) || !common.IsHexAddress(a.To) || a.Value == nil || a.ValidAfter == nil || a.ValidBefore == nil ||
		a.Value.Sign() < 0 || a.ValidAfter.Sign() < 0 || a.ValidBefore.Sign() < 0 {
		return [32]byte{}, errors.New("x402: incomplete authorization")
	}
	h := crypto.Keccak256(authTypeHash[:], common.LeftPadBytes(common.HexToAddress(a.From).Bytes(), 32),
		common.LeftPadBytes(common.HexToAddress(a.To).Bytes(), 32), word(a.Value), word(a.ValidAfter), word(a.ValidBefore), a.Nonce[:])
	return crypto.Keccak256Hash([]byte{0x19, 0x01}, domainSeparator[:], h), nil
}

// RecoverAuthorizer recovers the signer of a digest from a 65-byte
// signature with v = 27 or 28 (0/1 is refused, as the token refuses it).
func RecoverAuthorizer(digest [32]byte, sig []byte) (common.Address, error) {
	if len(sig) != 65 {
		return common.Address{}, errors.New("x402: a signature is 65 bytes")
	}
	if sig[64] != 27 && sig[64] != 28 {
		return common.Address{}, errors.New("x402: signature v must be 27 or 28")
	}
	s := append([]byte(nil), sig...)
	s[64] -= 27
	pub, err := crypto.SigToPub(digest[:], s)
	if err != nil {
		return common.Address{}, err
	}
	return crypto.PubkeyToAddress(*pub), nil
}
