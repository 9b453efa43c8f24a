package spend

import (
	"context"
	"math/big"
	"time"

	"github.com/purserhq/purser/internal/audit"
)

// DailyUsage is one agent's committed spend (held plus captured,
// micro-USD) on each of a run of days.
type DailyUsage struct {
	Agent *Agent
	Days  []*big.Int // one per day key asked for, in the same order
}

// maxUsageDays bounds UsageByDay: a chart of a quarter is plenty.
const maxUsageDays = 92

// UsageByDay returns, for every agent, what it committed on each of the
// last n days ending today (UTC dates). It reads the budget counters the
// pipeline keeps per agent and day, so its cost grows with agents and
// days, never with the number of spends. The day keys are returned
// oldest first. An agent whose mandate counts days in another time zone
// is read under the same date names.
func (s *Service) UsageByDay(ctx context.Context, n int) ([]string, []DailyUsage, error) {
	n = min(max(n, 1), maxUsageDays)
	today := s.now()
	keys := make([]string, n)
	windows := make([]string, n)
	for i := range n {
		keys[i] = today.AddDate(0, 0, i-n+1).Format(time.DateOnly)
		windows[i] = windowDay(keys[i])
	}
	var out []DailyUsage
	err := s.read(ctx, func(tx Tx) error {
		out = nil
		as, err := tx.AgentList(ctx)
		if err != nil {
			return err
		}
		for _, a := range as {
			used, err := tx.UsageGet(ctx, a.ID, windows)
			if err != nil {
				return err
			}
			out = append(out, DailyUsage{Agent: a, Days: used})
		}
		return nil
	})
	return keys, out, err
}

// AuditBefore returns up to limit audit events with seq < beforeSeq,
// newest first (beforeSeq <= 0: from the head). Each call reads one
// bounded range of the chain by sequence number.
func (s *Service) AuditBefore(ctx context.Context, beforeSeq int64, limit int) ([]*audit.Event, error) {
	limit = min(max(limit, 1), auditPage)
	if beforeSeq <= 0 {
		head, _, err := s.store.AuditHead(ctx)
		if err != nil {
			return nil, err
		}
		beforeSeq = head + 1
	}
	from := max(0, beforeSeq-1-int64(limit))
	evs, err := s.store.AuditEvents(ctx, from, int(beforeSeq-1-from))
	if err != nil {
		return nil, err
	}
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
	return evs, nil
}

// AuditStatus is where the audit chain stands: its head and the last
// signed checkpoint. The checkpointer signs a head only after re-hashing
// every event since the previous checkpoint, so the checkpoint's
// sequence number is how far the chain is verified.
type AuditStatus struct {
	HeadSeq    int64
	Checkpoint *audit.Checkpoint // nil before the first one
	KeyID      string            // the checkpoint key's id
}

// AuditStatus reads the chain's head and its last checkpoint.
func (s *Service) AuditStatus(ctx context.Context) (*AuditStatus, error) {
	cp, err := s.store.CheckpointLast(ctx)
	if err != nil {
		return nil, err
	}
	head, _, err := s.store.AuditHead(ctx)
	if err != nil {
		return nil, err
	}
	st := &AuditStatus{HeadSeq: head, Checkpoint: cp}
	if s.cfg.Checkpoints != nil {
		st.KeyID = audit.KeyID(s.cfg.Checkpoints.Public())
	}
	return st, nil
}
