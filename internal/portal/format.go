package portal

import (
	"encoding/json"
	"html/template"
	"math/big"
	"strings"
	"time"

	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
)

var funcs = template.FuncMap{
	"usd":       usd,
	"when":      when,
	"whenShort": whenShort,
	"short":     short,
	"statusTxt": statusText,
	"reasonTxt": reasonText,
	"actionTxt": actionText,
	"pct":       pct,
	"sub":       func(a, b int) int { return a - b },
}

// usd formats micro-USD as dollars with at least two decimals.
func usd(v *big.Int) string {
	s := money.FormatAmount(v, money.USDDecimals)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	whole, frac, _ := strings.Cut(s, ".")
	for len(frac) < 2 {
		frac += "0"
	}
	// thousands separators
	var b strings.Builder
	for i, c := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := "$" + b.String() + "." + frac
	if neg {
		out = "−" + out
	}
	return out
}

// when is a time as an owner reads it: UTC, to the second.
func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2 Jan 2006 15:04:05 UTC")
}

// whenShort is a time for a table cell: day, month and minute (UTC);
// the year only when it is not the current one.
func whenShort(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	t = t.UTC()
	if t.Year() != time.Now().UTC().Year() {
		return t.Format("2 Jan 2006 15:04")
	}
	return t.Format("2 Jan 15:04")
}

// short shortens a long identifier for tables (the full value is in the
// title attribute where it matters).
func short(s string) string {
	if len(s) <= 14 {
		return s
	}
	return s[:8] + "…" + s[len(s)-4:]
}

func pct(used, limit *big.Int) int {
	if limit == nil || limit.Sign() == 0 || used == nil {
		return 0
	}
	p := new(big.Int).Mul(used, big.NewInt(100))
	p.Quo(p, limit)
	if p.Cmp(big.NewInt(100)) > 0 {
		return 100
	}
	return int(p.Int64())
}

var statusTexts = map[spend.Status]string{
	spend.StatusPendingApproval: "Waiting for you",
	spend.StatusAuthorized:      "Authorized",
	spend.StatusCaptured:        "Paid",
	spend.StatusReleased:        "Released",
	spend.StatusDenied:          "Refused",
	spend.StatusExpired:         "Expired",
	spend.StatusUnknown:         "Outcome unknown",
}

func statusText(s spend.Status) string {
	if t, ok := statusTexts[s]; ok {
		return t
	}
	return string(s)
}

var reasonTexts = map[string]string{
	"above_auto_approve":          "Above the amount approved automatically",
	"new_payee_requires_approval": "First payment to this payee",
	"daily_budget_exceeded":       "Over the daily budget",
	"lifetime_budget_exceeded":    "Over the lifetime budget",
	"per_tx_cap_exceeded":         "Above the per-payment limit",
	"host_not_allowed":            "Host not in the allowed list",
	"payee_not_allowed":           "Payee not in the allowed list",
	"payee_denied":                "Payee is on the deny list",
	"payee_pin_mismatch":          "Host is pinned to another payee",
	"rail_not_allowed":            "Payment method not allowed",
	"rate_limited":                "Too many payments in a short time",
	"mandate_expired":             "The mandate has expired",
	"mandate_not_yet_valid":       "The mandate is not valid yet",
	"no_mandate":                  "The agent has no mandate",
	"too_many_open_spends":        "Too many open payments",
	"agent_frozen":                "The agent is frozen",
	"agent_revoked":               "The agent is revoked",
	"owner_denied":                "Denied by you",
	"insufficient_funds":          "Not enough funds in the wallet",
}

// reasonText says a mandate reason code in words; unknown codes are
// shown as they are.
func reasonText(code string) string {
	if t, ok := reasonTexts[code]; ok {
		return t
	}
	return strings.ReplaceAll(code, "_", " ")
}

var actionTexts = map[string]string{
	"agent.create":              "Agent created",
	"agent.freeze":              "Agent frozen",
	"agent.unfreeze":            "Agent unfrozen",
	"agent.revoke":              "Agent revoked",
	"agent.rotate_key":          "Identity key rotated",
	"agent.fund":                "Wallet funded",
	"agent.refusals":            "Requests refused",
	"agent.cosign_keygen":       "Co-signed key generated",
	"agent.cosign_recovery_set": "Recovery key stored",
	"agent.cosign_refresh":      "Wallet shares refreshed",
	"agent.cosign_failed":       "Co-signing refused",
	"mandate.set":               "Mandate changed",
	"spend.authorize":           "Payment authorized",
	"spend.request_approval":    "Approval requested",
	"spend.approve":             "Payment approved",
	"spend.deny":                "Payment refused",
	"spend.execute":             "Payment sent",
	"spend.sign":                "Payment signed",
	"spend.cosign_prepare":      "Awaiting co-signature",
	"spend.cosign_finish":       "Co-signature received",
	"spend.capture":             "Payment completed",
	"spend.release":             "Hold released",
	"spend.expire":              "Expired",
	"spend.cancel":              "Cancelled",
	"spend.unknown":             "Outcome unknown",
	"owner.invited":             "Owner invited",
	"owner.passkey_added":       "Passkey added",
	"owner.passkey_revoked":     "Passkey revoked",
	"owner.revoked":             "Owner revoked",
	"owner.signed_in":           "Signed in",
}

func actionText(a string) string {
	if t, ok := actionTexts[a]; ok {
		return t
	}
	return a
}

// offer is what the seller says it sells, from an x402 rail request:
// the v2 resource object or the v1 offer's description and resource.
type offer struct {
	URL, Description, Resource string
}

func offerOf(raw json.RawMessage) offer {
	var rr struct {
		URL   string `json:"url"`
		Offer struct {
			Description string `json:"description"`
			Resource    string `json:"resource"`
		} `json:"offer"`
		Resource struct {
			URL         string `json:"url"`
			Description string `json:"description"`
		} `json:"resource"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &rr) != nil {
		// A v2 resource may not be an object we know: read what we can.
		_ = json.Unmarshal(raw, &struct {
			URL *string `json:"url"`
		}{&rr.URL})
	}
	o := offer{URL: rr.URL, Description: rr.Offer.Description, Resource: rr.Offer.Resource}
	if rr.Resource.Description != "" {
		o.Description = rr.Resource.Description
	}
	if rr.Resource.URL != "" {
		o.Resource = rr.Resource.URL
	}
	return o
}
