package spend

import (
	"context"
	"time"
)

// PruneNonces forgets request nonces that no server would still accept,
// and returns how many it deleted.
//
// A nonce may be forgotten only when no server would still accept its
// signature: a server accepts a signed request while its own clock is at
// or before the request's expiry, so the nonce row must outlive the
// expiry on the slowest clock of any server sharing the database. The
// cut-off is read from the database's clock, not this process's (one
// clock for every pruner, however wrong its own is), and keeps nonces
// for margin after their expiry: a server whose clock lags the
// database's by less than margin never accepts a request whose nonce is
// gone. Each server runs this, so each checks its own clock against the
// database's and warns when it lags by more than half the margin.
func (s *Service) PruneNonces(ctx context.Context, margin time.Duration) (int64, error) {
	var n int64
	local := s.now()
	var dbNow time.Time
	err := s.inTx(ctx, func(tx Tx) error {
		var err error
		if dbNow, err = tx.DBNow(ctx); err != nil {
			return err
		}
		n, err = tx.NoncesPrune(ctx, dbNow.Add(-margin))
		return err
	})
	if err == nil {
		if lag := dbNow.Sub(local); lag > margin/2 || -lag > margin/2 {
			s.log.Warn("this server's clock differs from the database's; keep clocks synchronised: a server whose clock lags the database's by more than the nonce margin could accept a replayed request",
				"behind_db", lag.Round(time.Millisecond).String(), "nonce_margin", margin.String())
		}
	}
	return n, err
}
