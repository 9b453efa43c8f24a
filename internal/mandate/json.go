package mandate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"

	"github.com/purserhq/purser/internal/money"
)

// Decode parses the JSON form of a mandate and validates it. It is strict,
// because a cap spelled wrong must never silently vanish: field names must
// match exactly (encoding/json alone would ignore case), each field may
// appear once, unknown fields, wrong types and trailing data are refused.
// null counts as absent. Every error is a *ValidationError listing all the
// problems found.
func Decode(data []byte) (*Mandate, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	malformed := func(format string, args ...any) error {
		return &ValidationError{Fields: []FieldError{{Code: FieldMalformedJSON, Message: fmt.Sprintf(format, args...)}}}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, malformed("a mandate must be a JSON object")
	}
	m := &Mandate{}
	var p problems
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, malformed("invalid JSON: %s", jsonErr(err))
		}
		key, _ := tok.(string) // inside an object, a key is always a string
		if seen[key] {
			p.add(key, FieldDuplicate, "field %q appears more than once", key)
		}
		seen[key] = true
		if err := m.decodeField(dec, key, &p); err != nil {
			return nil, malformed("invalid JSON: %s", jsonErr(err))
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, malformed("invalid JSON: %s", jsonErr(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, malformed("unexpected data after the mandate object")
	}
	if len(p) > 0 {
		// Validate only what parsed, so a bad field is not reported twice.
		m.validate(&p)
		return nil, p.err()
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeField reads the value of key into m. Problems with the value go to
// p; the returned error is for JSON that cannot be read on at all.
func (m *Mandate) decodeField(dec *json.Decoder, key string, p *problems) error {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	if string(raw) == "null" {
		return nil
	}
	str := func() (string, bool) {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			p.add(key, FieldWrongType, "%s must be a string", key)
			return "", false
		}
		return s, true
	}
	list := func() []string {
		var l []string
		if err := json.Unmarshal(raw, &l); err != nil {
			p.add(key, FieldWrongType, "%s must be a list of strings", key)
			return nil
		}
		if len(l) == 0 {
			return nil // empty and absent mean the same; keep one form
		}
		return l
	}
	amount := func(dst **big.Int) {
		s, ok := str()
		if !ok {
			return
		}
		v, err := money.ParseAmount(s, money.USDDecimals)
		if err != nil {
			var me *money.Error
			errors.As(err, &me)
			p.add(key, me.Code(), "%s: %s", key, me.Message())
			return
		}
		*dst = v
	}
	instant := func(dst **time.Time) {
		s, ok := str()
		if !ok {
			return
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			p.add(key, FieldInvalid, "%s %q is not an RFC 3339 time such as 2026-01-01T00:00:00Z", key, s)
			return
		}
		*dst = &t
	}
	switch key {
	case "per_tx_auto":
		amount(&m.PerTxAuto)
	case "per_tx_max":
		amount(&m.PerTxMax)
	case "daily":
		amount(&m.Daily)
	case "lifetime":
		amount(&m.Lifetime)
	case "valid_from":
		instant(&m.ValidFrom)
	case "valid_until":
		instant(&m.ValidUntil)
	case "hosts":
		m.Hosts = list()
		for i, h := range m.Hosts {
			m.Hosts[i] = lowerASCII(h)
		}
	case "payees":
		m.Payees = list()
		for i, s := range m.Payees {
			m.Payees[i] = normalizePayee(s)
		}
	case "deny_payees":
		m.DenyPayees = list()
		for i, s := range m.DenyPayees {
			m.DenyPayees[i] = normalizePayee(s)
		}
	case "rails":
		m.Rails = list()
	case "rate":
		if s, ok := str(); ok {
			r, err := ParseRate(s)
			if err != nil {
				p.add(key, FieldInvalid, "%s", err)
				return nil
			}
			m.Rate = &r
		}
	case "approve_new_payees":
		if err := json.Unmarshal(raw, &m.ApproveNewPayees); err != nil {
			p.add(key, FieldWrongType, "%s must be true or false", key)
		}
	case "pin_payees":
		if err := json.Unmarshal(raw, &m.PinPayees); err != nil {
			p.add(key, FieldWrongType, "%s must be true or false", key)
		}
	case "timezone":
		if s, ok := str(); ok {
			m.Timezone = s
		}
	default:
		p.add(key, FieldUnknown, "unknown field %q", key)
	}
	return nil
}

// jsonErr drops encoding/json's "json: " prefix: the message is for an owner.
func jsonErr(err error) string {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return "unexpected end of input"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// wire is the JSON form written by MarshalJSON; omitempty makes an unset
// limit absent, which Decode reads back as unset.
type wire struct {
	PerTxAuto        string   `json:"per_tx_auto,omitempty"`
	PerTxMax         string   `json:"per_tx_max,omitempty"`
	Daily            string   `json:"daily,omitempty"`
	Lifetime         string   `json:"lifetime,omitempty"`
	ValidFrom        string   `json:"valid_from,omitempty"`
	ValidUntil       string   `json:"valid_until,omitempty"`
	Hosts            []string `json:"hosts,omitempty"`
	Payees           []string `json:"payees,omitempty"`
	DenyPayees       []string `json:"deny_payees,omitempty"`
	Rails            []string `json:"rails,omitempty"`
	Rate             string   `json:"rate,omitempty"`
	ApproveNewPayees bool     `json:"approve_new_payees,omitempty"`
	PinPayees        bool     `json:"pin_payees,omitempty"`
	Timezone         string   `json:"timezone,omitempty"`
}

// MarshalJSON writes the form Decode reads: amounts as decimal USD strings,
// times in RFC 3339 with their offset, unset fields absent.
func (m *Mandate) MarshalJSON() ([]byte, error) {
	if m == nil {
		return []byte("null"), nil
	}
	amt := func(v *big.Int) string {
		if v == nil {
			return ""
		}
		return money.FormatAmount(v, money.USDDecimals)
	}
	tm := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.Format(time.RFC3339Nano)
	}
	w := wire{
		PerTxAuto: amt(m.PerTxAuto), PerTxMax: amt(m.PerTxMax), Daily: amt(m.Daily), Lifetime: amt(m.Lifetime),
		ValidFrom: tm(m.ValidFrom), ValidUntil: tm(m.ValidUntil),
		Hosts: m.Hosts, Payees: m.Payees, DenyPayees: m.DenyPayees, Rails: m.Rails,
		ApproveNewPayees: m.ApproveNewPayees, PinPayees: m.PinPayees, Timezone: m.Timezone,
	}
	if m.Rate != nil {
		w.Rate = m.Rate.String()
	}
	return json.Marshal(w)
}

// lowerASCII lower-cases ASCII letters only: strings.ToLower would turn some
// non-ASCII runes (the Kelvin sign) into ASCII and let them pass as a host.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
