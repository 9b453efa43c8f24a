package spend

import (
	"context"

	"github.com/purserhq/purser/internal/mandate"
)

// ReasonTooManyOpenSpends denies an authorization on a signing rail when
// the agent already has Config.MaxOpenSigned signed spends that are not
// settled (authorized with an instrument, or unknown). Each of them is
// watched by the reconciler and holds budget until the chain settles it;
// the cap bounds that work and what one agent can leave outstanding.
const ReasonTooManyOpenSpends = "too_many_open_spends"

// capOpenSigned turns an allow or needs_approval decision for a signing
// rail into a denial when the agent is at its cap of open signed spends.
// It runs under the agent's lock, so two racing requests cannot both
// take the last place.
func (s *Service) capOpenSigned(ctx context.Context, tx Tx, a *Agent, p *prepared, dec mandate.Decision) (mandate.Decision, error) {
	if dec.Verdict == mandate.Deny || s.cfg.MaxOpenSigned <= 0 {
		return dec, nil
	}
	if _, signs := s.rails[p.req.Rail].(Signer); !signs {
		return dec, nil // nothing this spend becomes is reconciled
	}
	n, err := tx.SpendCountOpenSigned(ctx, a.ID)
	if err != nil {
		return dec, err
	}
	if n < int64(s.cfg.MaxOpenSigned) {
		return dec, nil
	}
	return mandate.Decision{Verdict: mandate.Deny, Reasons: []string{ReasonTooManyOpenSpends}}, nil
}
