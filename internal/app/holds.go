package app

import (
	"context"
	"sync/atomic"

	"github.com/purserhq/purser/internal/spend"
)

// holdsGauge caches the number of holding spends so that a scrape never
// runs a query.
type holdsGauge struct {
	svc *spend.Service
	n   atomic.Int64
}

func newHoldsGauge(svc *spend.Service) *holdsGauge { return &holdsGauge{svc: svc} }

func (h *holdsGauge) value() float64 { return float64(h.n.Load()) }

func (h *holdsGauge) refresh(ctx context.Context) error {
	n, err := h.svc.CountHolding(ctx)
	if err != nil {
		return err
	}
	h.n.Store(n)
	return nil
}
