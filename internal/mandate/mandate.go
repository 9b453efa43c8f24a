// Package mandate holds an owner's spending rules for one agent and the pure
// function that judges a spend intent against them. Amounts are micro-USD
// (money.USDDecimals) in *big.Int. Nothing here touches storage or the
// clock: callers pass current usage and the time in, so every decision can
// be replayed from its inputs.
package mandate

import (
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // daily windows must not depend on the host having a zoneinfo database

	"github.com/purserhq/purser/internal/money"
)

// maxListLen bounds each list so that Evaluate's linear scans stay cheap.
const maxListLen = 1000

// Mandate is the owner's rules for one agent. A nil limit means "not set".
type Mandate struct {
	PerTxAuto *big.Int // auto-approve up to and including this; nil: anything within the other limits is auto-approved
	PerTxMax  *big.Int // hard cap per spend; nil: none
	Daily     *big.Int // per calendar day in Timezone; nil: none
	Lifetime  *big.Int // nil: none

	ValidFrom  *time.Time // inclusive
	ValidUntil *time.Time // exclusive

	Hosts      []string // lower-case; "api.x.com" exact, "*.x.com" any subdomain (not x.com itself); empty: any host
	Payees     []string // allowlist; empty: any payee
	DenyPayees []string // always refused, wins over Payees
	Rails      []string // e.g. "x402", "payout", "custom"; empty: any rail
	Rate       *Rate

	ApproveNewPayees bool   // the first spend to a payee this agent never paid needs an owner's approval
	PinPayees        bool   // a host is pinned to the first payee it was paid to; another payee for it is refused
	Timezone         string // IANA zone for the daily window; "" means UTC
}

// Field error codes used in ValidationError, besides the money amount codes
// (amount_invalid, amount_negative, amount_too_precise, amount_overflow).
const (
	FieldInvalid       = "invalid"         // malformed value
	FieldContradiction = "contradiction"   // two fields disagree; both are listed
	FieldUnknown       = "unknown_field"   // Decode: a field the mandate does not have
	FieldDuplicate     = "duplicate_field" // Decode: a field given twice
	FieldWrongType     = "wrong_type"      // Decode: e.g. a number where a string is expected
	FieldTooMany       = "too_many"        // a list longer than 1000 entries
	FieldMalformedJSON = "malformed_json"  // Decode: not one JSON object; Field is ""
)

// FieldError is one problem with one field, named by its JSON name.
type FieldError struct {
	Field, Code, Message string
}

// ValidationError lists every problem found, so that an owner fixes a
// mandate in one round trip.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("mandate invalid: ")
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteString("; ")
		}
		if f.Field != "" {
			b.WriteString(f.Field + ": ")
		}
		b.WriteString(f.Message)
	}
	return b.String()
}

// Code returns "mandate_invalid", the API error code.
func (e *ValidationError) Code() string { return "mandate_invalid" }

type problems []FieldError

func (p *problems) add(field, code, format string, args ...any) {
	*p = append(*p, FieldError{Field: field, Code: code, Message: fmt.Sprintf(format, args...)})
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &ValidationError{Fields: p}
}

// Validate checks every field and their consistency and returns a
// *ValidationError listing every problem, or nil.
func (m *Mandate) Validate() error {
	var p problems
	m.validate(&p)
	return p.err()
}

func (m *Mandate) validate(p *problems) {
	for _, a := range []struct {
		field string
		v     *big.Int
	}{{"per_tx_auto", m.PerTxAuto}, {"per_tx_max", m.PerTxMax}, {"daily", m.Daily}, {"lifetime", m.Lifetime}} {
		switch {
		case a.v == nil:
		case a.v.Sign() < 0:
			p.add(a.field, money.CodeAmountNegative, "%s is negative", a.field)
		case a.v.Cmp(money.MaxAtomic) > 0:
			p.add(a.field, money.CodeAmountOverflow, "%s is too large", a.field)
		}
	}
	contradicts := func(lo, hi string, a, b *big.Int) {
		if a != nil && b != nil && a.Cmp(b) > 0 {
			msg := fmt.Sprintf("%s (%s) is above %s (%s)", lo, usd(a), hi, usd(b))
			*p = append(*p, FieldError{lo, FieldContradiction, msg}, FieldError{hi, FieldContradiction, msg})
		}
	}
	contradicts("per_tx_auto", "per_tx_max", m.PerTxAuto, m.PerTxMax)
	contradicts("daily", "lifetime", m.Daily, m.Lifetime)
	contradicts("per_tx_max", "lifetime", m.PerTxMax, m.Lifetime)
	if m.ValidFrom != nil && m.ValidUntil != nil && !m.ValidFrom.Before(*m.ValidUntil) {
		const msg = "valid_from is not before valid_until"
		*p = append(*p, FieldError{"valid_from", FieldContradiction, msg}, FieldError{"valid_until", FieldContradiction, msg})
	}
	checkList(p, "hosts", m.Hosts, validHost, "a host name such as api.example.com or *.example.com, without scheme or port")
	checkList(p, "payees", m.Payees, validPayee, "a 0x address or 1-128 characters of letters, digits, ':', '.', '_', '@' or '-'")
	checkList(p, "deny_payees", m.DenyPayees, validPayee, "a 0x address or 1-128 characters of letters, digits, ':', '.', '_', '@' or '-'")
	checkList(p, "rails", m.Rails, validRail, "1-32 characters of a-z, 0-9, '_' or '-'")
	for _, d := range m.DenyPayees {
		if slices.ContainsFunc(m.Payees, func(a string) bool { return payeeEqual(a, d) }) {
			msg := fmt.Sprintf("payee %q is both allowed and denied", d)
			*p = append(*p, FieldError{"payees", FieldContradiction, msg}, FieldError{"deny_payees", FieldContradiction, msg})
		}
	}
	if m.Rate != nil {
		if err := m.Rate.validate(); err != nil {
			p.add("rate", FieldInvalid, "%s", err)
		}
	}
	if _, err := loadLocation(m.Timezone); err != nil {
		p.add("timezone", FieldInvalid, "timezone %q is not an IANA zone name such as Europe/Paris", m.Timezone)
	}
}

func checkList(p *problems, field string, list []string, ok func(string) bool, want string) {
	if len(list) > maxListLen {
		p.add(field, FieldTooMany, "%s has %d entries; at most %d are allowed", field, len(list), maxListLen)
		return
	}
	for _, s := range list {
		if !ok(s) {
			p.add(field, FieldInvalid, "%q is not %s", s, want)
		}
	}
}

func usd(v *big.Int) string { return money.FormatAmount(v, money.USDDecimals) + " USD" }

// Bounded reports whether the mandate caps spending at all. An unbounded
// mandate authorises nothing (Evaluate denies with no_mandate), so that an
// agent is never given an open cheque by omission.
func (m *Mandate) Bounded() bool {
	return m != nil && (m.PerTxMax != nil || m.Daily != nil || m.Lifetime != nil)
}

// DayKey returns the calendar day ("2006-01-02") of now in the mandate's
// timezone: the key of its daily budget window. An invalid timezone (a
// mandate that skipped Validate) counts in UTC.
func (m *Mandate) DayKey(now time.Time) string {
	loc, err := loadLocation(m.Timezone)
	if err != nil {
		loc = time.UTC
	}
	var buf [10]byte
	return string(now.In(loc).AppendFormat(buf[:0], time.DateOnly))
}

// RateWindowStart returns the start of the fixed rate window holding now.
// Windows are aligned to the Unix epoch, so every server agrees on them
// whatever its clock zone. It returns the zero time when there is no rate.
func (m *Mandate) RateWindowStart(now time.Time) time.Time {
	if m.Rate == nil || m.Rate.Per <= 0 {
		return time.Time{}
	}
	per := int64(m.Rate.Per)
	ns := now.UnixNano()
	start := ns - ns%per
	if ns%per < 0 {
		start -= per
	}
	return time.Unix(0, start).UTC()
}

// Clone returns a deep copy, so the caller may change it without affecting
// a mandate shared with others.
func (m *Mandate) Clone() *Mandate {
	if m == nil {
		return nil
	}
	c := *m
	c.PerTxAuto, c.PerTxMax, c.Daily, c.Lifetime = cloneInt(m.PerTxAuto), cloneInt(m.PerTxMax), cloneInt(m.Daily), cloneInt(m.Lifetime)
	c.ValidFrom, c.ValidUntil = cloneTime(m.ValidFrom), cloneTime(m.ValidUntil)
	c.Hosts, c.Payees, c.DenyPayees, c.Rails = slices.Clone(m.Hosts), slices.Clone(m.Payees), slices.Clone(m.DenyPayees), slices.Clone(m.Rails)
	if m.Rate != nil {
		r := *m.Rate
		c.Rate = &r
	}
	return &c
}

func cloneInt(v *big.Int) *big.Int {
	if v == nil {
		return nil
	}
	return new(big.Int).Set(v)
}

func cloneTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := *t
	return &c
}

// locations caches loaded zones: time.LoadLocation parses zoneinfo on every
// call, far too slow for the spend path. Only valid names are cached, so the
// map is bounded by the zone database.
var locations sync.Map // string -> *time.Location

func loadLocation(name string) (*time.Location, error) {
	if name == "" || name == "UTC" {
		return time.UTC, nil
	}
	if l, ok := locations.Load(name); ok {
		return l.(*time.Location), nil
	}
	// "Local" is the server's zone, not the owner's: refuse it.
	if name == "Local" {
		return nil, fmt.Errorf("timezone Local is not allowed")
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	locations.Store(name, l)
	return l, nil
}

// validHost accepts DNS-ish names: labels of letters, digits and '-' (not at
// either end), joined by '.', optionally after "*.".
func validHost(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(isAlnum(c) || c == '-') {
				return false
			}
		}
	}
	return true
}

// validPayee accepts a 0x address or an off-chain payee token. A token that
// starts with 0x but is not an address is refused: a mistyped address in
// deny_payees would otherwise silently never match.
func validPayee(s string) bool {
	if money.IsAddress(s) {
		return true
	}
	if len(s) == 0 || len(s) > 128 || strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isAlnum(c) || strings.IndexByte(":._@-", c) >= 0) {
			return false
		}
	}
	return true
}

func validRail(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
}

// normalizePayee lower-cases 0x addresses, the only payees whose case carries
// no meaning.
func normalizePayee(s string) string {
	if money.IsAddress(s) {
		return strings.ToLower(s)
	}
	return s
}

func payeeEqual(a, b string) bool {
	if a == b {
		return true
	}
	return money.IsAddress(a) && money.IsAddress(b) && strings.EqualFold(a, b)
}
