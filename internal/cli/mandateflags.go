package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// mandateFlags collects the mandate flags given on the command line as a
// patch of the mandate's JSON object: only the fields named are touched.
type mandateFlags struct {
	set   map[string]json.RawMessage // field → new value
	clear map[string]bool            // field → remove ("none")
}

// mandateFlag describes one flag: its name, the JSON field and its kind.
type mandateFlag struct {
	flag, field, kind, usage string
}

var mandateFlagList = []mandateFlag{
	{"per-tx-auto", "per_tx_auto", "amount", "spends up to `USD` are approved automatically"},
	{"per-tx-max", "per_tx_max", "amount", "no single spend above `USD`"},
	{"daily", "daily", "amount", "budget in `USD` per calendar day"},
	{"lifetime", "lifetime", "amount", "budget in `USD` over the agent's life"},
	{"valid-from", "valid_from", "time", "RFC 3339 `TIME` the mandate starts"},
	{"valid-until", "valid_until", "time", "RFC 3339 `TIME` the mandate ends"},
	{"hosts", "hosts", "list", "allowed hosts, comma-separated `LIST` (a.com,*.b.com)"},
	{"payees", "payees", "list", "allowed payees, comma-separated `LIST`"},
	{"deny-payees", "deny_payees", "list", "refused payees, comma-separated `LIST`"},
	{"rails", "rails", "list", "allowed rails, comma-separated `LIST` (x402,payout)"},
	{"rate", "rate", "string", "at most N spends per window: `N/DURATION` (10/1m)"},
	{"approve-new-payees", "approve_new_payees", "bool", "a spend to a payee never paid before waits for approval"},
	{"pin-payees", "pin_payees", "bool", "pin each host to the first payee it was paid to; a seller switching payee is refused"},
	{"timezone", "timezone", "string", "IANA time `ZONE` of the daily budget (Europe/Paris)"},
}

// register adds the mandate flags to fs; none lets "none" clear a field.
func (m *mandateFlags) register(fs *flag.FlagSet, none bool) {
	m.set = map[string]json.RawMessage{}
	m.clear = map[string]bool{}
	for _, d := range mandateFlagList {
		usage := d.usage
		if none {
			usage += `; "none" clears it`
		}
		fs.Var(&mandateValue{m: m, d: d, none: none}, d.flag, usage)
	}
}

// empty reports whether no mandate flag was given.
func (m *mandateFlags) empty() bool { return len(m.set) == 0 && len(m.clear) == 0 }

// apply merges the patch into the mandate object cur (null or empty: no
// mandate yet). Fields the flags do not name are kept as they are,
// unknown ones included.
func (m *mandateFlags) apply(cur json.RawMessage) (json.RawMessage, error) {
	obj := map[string]json.RawMessage{}
	if s := strings.TrimSpace(string(cur)); s != "" && s != "null" {
		if err := json.Unmarshal(cur, &obj); err != nil {
			return nil, fmt.Errorf("the current mandate is not a JSON object: %w", err)
		}
		if obj == nil {
			obj = map[string]json.RawMessage{}
		}
	}
	for k := range m.clear {
		delete(obj, k)
	}
	for k, v := range m.set {
		obj[k] = v
	}
	return json.Marshal(obj)
}

// mandateValue is the flag.Value of one mandate flag.
type mandateValue struct {
	m    *mandateFlags
	d    mandateFlag
	none bool
	text string
}

func (v *mandateValue) String() string {
	if v == nil {
		return ""
	}
	return v.text
}

func (v *mandateValue) IsBoolFlag() bool { return v.d.kind == "bool" }

func (v *mandateValue) Set(s string) error {
	v.text = s
	field := v.d.field
	if v.none && s == "none" {
		delete(v.m.set, field)
		v.m.clear[field] = true
		return nil
	}
	var val any
	switch v.d.kind {
	case "amount", "string":
		val = strings.TrimSpace(s)
	case "time":
		t := strings.TrimSpace(s)
		if _, err := time.Parse(time.RFC3339, t); err != nil {
			return fmt.Errorf("not an RFC 3339 time such as 2026-01-01T00:00:00Z: %q", s)
		}
		val = t
	case "list":
		l := splitList(s)
		if len(l) == 0 {
			// An empty list and no list mean the same.
			delete(v.m.set, field)
			v.m.clear[field] = true
			return nil
		}
		val = l
	case "bool":
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		val = b
	}
	raw, err := json.Marshal(val)
	if err != nil {
		return err
	}
	delete(v.m.clear, field)
	v.m.set[field] = raw
	return nil
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
