package mandate

import (
	"math/big"
	"strings"
	"time"

	"github.com/purserhq/purser/internal/money"
)

// Intent is one spend to judge.
type Intent struct {
	Rail, Host, Payee string
	AmountUSD         *big.Int // micro-USD; nil counts as zero
}

// Usage is what the agent has already used, excluding this intent.
type Usage struct {
	DailyUSD, LifetimeUSD *big.Int // committed today / ever (holds + captures); nil means 0
	RateCount             int      // authorizations already counted in the current rate window
	PayeeKnown            bool     // the agent has paid or been authorised to pay this payee before
	PinnedPayee           string   // the payee the intent's host is pinned to; "" if none
}

// Verdict is the outcome of Evaluate.
type Verdict string

// Verdicts.
const (
	Allow         Verdict = "allow"
	NeedsApproval Verdict = "needs_approval"
	Deny          Verdict = "deny"
)

// Decision is a verdict and the reason codes behind it.
type Decision struct {
	Verdict Verdict
	Reasons []string
}

// Reason codes, a closed set. Evaluate reports deny reasons in the order
// listed here, then approval reasons in the order listed here. Their
// meanings are in Purser's one registry of codes, spend.ReasonCodes.
const (
	// Deny reasons.
	ReasonNoMandate              = "no_mandate"               // no mandate, or one without per_tx_max, daily or lifetime
	ReasonMandateNotYetValid     = "mandate_not_yet_valid"    // before valid_from
	ReasonMandateExpired         = "mandate_expired"          // at or after valid_until
	ReasonRailNotAllowed         = "rail_not_allowed"         // rail not in rails
	ReasonHostNotAllowed         = "host_not_allowed"         // host (or no host) not matched by hosts
	ReasonPayeeDenied            = "payee_denied"             // payee in deny_payees
	ReasonPayeeNotAllowed        = "payee_not_allowed"        // payee not in payees
	ReasonPerTxCapExceeded       = "per_tx_cap_exceeded"      // amount above per_tx_max
	ReasonDailyBudgetExceeded    = "daily_budget_exceeded"    // today's usage plus amount above daily
	ReasonLifetimeBudgetExceeded = "lifetime_budget_exceeded" // all usage plus amount above lifetime
	ReasonRateLimited            = "rate_limited"             // rate window already full
	ReasonPayeePinMismatch       = "payee_pin_mismatch"       // pin_payees: the host was paid to another payee before

	// Approval reasons.
	ReasonAboveAutoApprove         = "above_auto_approve"          // amount above per_tx_auto
	ReasonNewPayeeRequiresApproval = "new_payee_requires_approval" // first spend to this payee
)

// Evaluate judges in against m given usage u at time now. It collects every
// deny reason (so an owner sees all that is wrong at once); any deny reason
// gives Deny with only those reasons, otherwise any approval reason gives
// NeedsApproval, otherwise Allow with empty, non-nil Reasons. It is pure and
// allocates only for the reasons it returns.
func Evaluate(m *Mandate, in Intent, u Usage, now time.Time) Decision {
	if !m.Bounded() {
		return Decision{Verdict: Deny, Reasons: []string{ReasonNoMandate}}
	}
	var deny []string
	if m.ValidFrom != nil && now.Before(*m.ValidFrom) {
		deny = append(deny, ReasonMandateNotYetValid)
	}
	if m.ValidUntil != nil && !now.Before(*m.ValidUntil) {
		deny = append(deny, ReasonMandateExpired)
	}
	if len(m.Rails) > 0 && !containsExact(m.Rails, in.Rail) {
		deny = append(deny, ReasonRailNotAllowed)
	}
	if len(m.Hosts) > 0 && !hostAllowed(m.Hosts, in.Host) {
		deny = append(deny, ReasonHostNotAllowed)
	}
	switch {
	case containsPayee(m.DenyPayees, in.Payee):
		// Denied wins; "not allowed" on top would add nothing.
		deny = append(deny, ReasonPayeeDenied)
	case len(m.Payees) > 0 && !containsPayee(m.Payees, in.Payee):
		deny = append(deny, ReasonPayeeNotAllowed)
	}
	amount := in.AmountUSD
	if amount == nil {
		amount = zero
	}
	if m.PerTxMax != nil && amount.Cmp(m.PerTxMax) > 0 {
		deny = append(deny, ReasonPerTxCapExceeded)
	}
	if m.Daily != nil && sumExceeds(u.DailyUSD, amount, m.Daily) {
		deny = append(deny, ReasonDailyBudgetExceeded)
	}
	if m.Lifetime != nil && sumExceeds(u.LifetimeUSD, amount, m.Lifetime) {
		deny = append(deny, ReasonLifetimeBudgetExceeded)
	}
	if m.Rate != nil && u.RateCount >= m.Rate.Count {
		deny = append(deny, ReasonRateLimited)
	}
	if m.PinPayees && in.Host != "" && u.PinnedPayee != "" && !strings.EqualFold(u.PinnedPayee, in.Payee) {
		deny = append(deny, ReasonPayeePinMismatch)
	}
	if len(deny) > 0 {
		return Decision{Verdict: Deny, Reasons: deny}
	}
	var approve []string
	if m.PerTxAuto != nil && amount.Cmp(m.PerTxAuto) > 0 {
		approve = append(approve, ReasonAboveAutoApprove)
	}
	if m.ApproveNewPayees && !u.PayeeKnown {
		approve = append(approve, ReasonNewPayeeRequiresApproval)
	}
	if len(approve) > 0 {
		return Decision{Verdict: NeedsApproval, Reasons: approve}
	}
	return Decision{Verdict: Allow, Reasons: []string{}}
}

var zero = new(big.Int)

// sumExceeds reports whether used+amount > limit (nil used is 0). Realistic
// micro-USD values fit in a uint64, where this needs no allocation; anything
// else takes the exact big.Int path.
func sumExceeds(used, amount, limit *big.Int) bool {
	if used == nil {
		used = zero
	}
	if used.IsUint64() && amount.IsUint64() && limit.IsUint64() {
		a, b := used.Uint64(), amount.Uint64()
		s := a + b
		if s < a { // wrapped: the true sum is above any uint64 limit
			return true
		}
		return s > limit.Uint64()
	}
	var s big.Int
	return s.Add(used, amount).Cmp(limit) > 0
}

func containsExact(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func containsPayee(list []string, payee string) bool {
	if len(list) == 0 {
		return false
	}
	// Classify the payee once; an entry equal to an address up to case is
	// itself an address.
	addr := money.IsAddress(payee)
	for _, v := range list {
		if v == payee || (addr && strings.EqualFold(v, payee)) {
			return true
		}
	}
	return false
}

// hostAllowed matches the intent's host, ignoring case, any ":port" and
// one trailing dot (the DNS root: "api.x.com." is "api.x.com"), against
// exact names and "*." wildcards (which match subdomains only).
func hostAllowed(patterns []string, host string) bool {
	host = strings.TrimSuffix(stripPort(host), ".")
	if host == "" {
		return false
	}
	for _, p := range patterns {
		if suffix, ok := strings.CutPrefix(p, "*"); ok {
			// suffix is ".x.com": host must be longer than it, so x.com
			// itself does not match.
			if len(host) > len(suffix) && strings.EqualFold(host[len(host)-len(suffix):], suffix) {
				return true
			}
			continue
		}
		if strings.EqualFold(p, host) {
			return true
		}
	}
	return false
}

// stripPort drops a trailing ":digits". Hosts in a mandate are names, so an
// IPv6 literal never matches anyway.
func stripPort(host string) string {
	i := strings.LastIndexByte(host, ':')
	if i < 0 {
		return host
	}
	for j := i + 1; j < len(host); j++ {
		if !isDigit(host[j]) {
			return host
		}
	}
	return host[:i]
}
