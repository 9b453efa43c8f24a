package spend

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/purserhq/purser/internal/audit"
)

const auditPage = 1000

// ExportAudit writes the whole audit chain to w. For "jsonl" it first
// signs a checkpoint of the current head, then writes every event up to
// that head with the stored checkpoints interleaved, so the export ends
// with a signed checkpoint and verifies offline (audit.VerifyExport).
// "csv" is for spreadsheets and carries no signatures.
func (s *Service) ExportAudit(ctx context.Context, w io.Writer, format string) error {
	switch format {
	case "", "jsonl":
	case "csv":
		return s.exportCSV(ctx, w)
	default:
		return Errorf(CodeInvalidRequest, "format must be jsonl or csv")
	}
	head, err := s.Checkpoint(ctx)
	if err != nil {
		return err
	}
	aw, err := audit.NewWriter(w, s.cfg.Checkpoints.Public(), s.now())
	if err != nil {
		return err
	}
	if head == nil { // empty chain
		return aw.Flush()
	}
	cps, err := s.store.Checkpoints(ctx, head.Seq)
	if err != nil {
		return err
	}
	var after int64
	for after < head.Seq {
		evs, err := s.store.AuditEvents(ctx, after, min(auditPage, int(head.Seq-after)))
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			break // a gap: the verifier will name it
		}
		for _, e := range evs {
			if err := aw.WriteEvent(e); err != nil {
				return err
			}
			for len(cps) > 0 && cps[0].Seq <= e.Seq {
				if cps[0].Seq == e.Seq {
					if err := aw.WriteCheckpoint(cps[0]); err != nil {
						return err
					}
				}
				cps = cps[1:]
			}
			after = e.Seq
		}
	}
	return aw.Flush()
}

func (s *Service) exportCSV(ctx context.Context, w io.Writer) error {
	var after int64
	for {
		evs, err := s.store.AuditEvents(ctx, after, auditPage)
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			return nil
		}
		if err := audit.WriteCSV(w, evs, after == 0); err != nil {
			return err
		}
		after = evs[len(evs)-1].Seq
	}
}

// AuditTail returns the last n events, oldest first.
func (s *Service) AuditTail(ctx context.Context, n int) ([]*audit.Event, error) {
	seq, _, err := s.store.AuditHead(ctx)
	if err != nil {
		return nil, err
	}
	return s.store.AuditEvents(ctx, max(0, seq-int64(n)), n)
}

// VerifyAudit checks the stored chain from genesis: every link, every
// hash, every checkpoint signature (also of checkpoints beyond the head: a
// signed head the chain no longer reaches means events were cut), that the
// stored head matches the last event, and that the chain extends the
// checkpoint kept in the anchor. It returns an *audit.VerifyError naming
// the first bad sequence number when something was altered or deleted.
func (s *Service) VerifyAudit(ctx context.Context) (audit.Result, error) {
	var pub ed25519.PublicKey
	if s.cfg.Checkpoints != nil {
		pub = s.cfg.Checkpoints.Public()
	}
	// Checkpoints and the anchor first: read before the head, an honest
	// one cannot be beyond it (see Checkpoint).
	cps, err := s.store.Checkpoints(ctx, math.MaxInt64)
	if err != nil {
		return audit.Result{}, err
	}
	v := audit.NewVerifier(pub)
	if s.cfg.Anchor != nil {
		c, err := s.cfg.Anchor.Last()
		if err != nil {
			return audit.Result{}, err
		}
		if c != nil {
			if err := v.Trust(audit.TrustCheckpoint(*c, s.cfg.Anchor.Path())); err != nil {
				return audit.Result{}, err
			}
		}
	}
	headSeq, headHash, err := s.store.AuditHead(ctx)
	if err != nil {
		return audit.Result{}, err
	}
	var after int64
	for after < headSeq {
		// Up to the head read above: later events are not this check's.
		evs, err := s.store.AuditEvents(ctx, after, int(min(auditPage, headSeq-after)))
		if err != nil {
			return audit.Result{}, err
		}
		if len(evs) == 0 {
			break
		}
		for _, e := range evs {
			if err := v.Event(e); err != nil {
				return audit.Result{}, err
			}
			for len(cps) > 0 && cps[0].Seq <= e.Seq {
				if err := v.Checkpoint(cps[0]); err != nil {
					return audit.Result{}, err
				}
				cps = cps[1:]
			}
			after = e.Seq
		}
	}
	res, err := v.Finish()
	if err != nil {
		return res, err
	}
	if res.HeadSeq != headSeq || res.HeadHash != headHash {
		bad := res.HeadSeq + 1
		return res, &audit.VerifyError{Seq: bad, Reason: fmt.Sprintf("the chain head is seq %d but events end at seq %d: events were deleted", headSeq, res.HeadSeq)}
	}
	if len(cps) > 0 { // signed heads the chain does not reach
		c := cps[len(cps)-1]
		reason := fmt.Sprintf("the chain head is seq %d, but a checkpoint is signed at seq %d: events %d to %d were cut", headSeq, c.Seq, headSeq+1, c.Seq)
		if err := c.Verify(pub); err != nil {
			reason = fmt.Sprintf("a checkpoint beyond the chain head %d does not verify: %v", headSeq, err)
		}
		return res, &audit.VerifyError{Seq: min(cps[0].Seq, headSeq+1), Reason: reason}
	}
	return res, nil
}

// IsChainBroken reports whether err is an audit verification failure.
func IsChainBroken(err error) (*audit.VerifyError, bool) {
	var ve *audit.VerifyError
	ok := errors.As(err, &ve)
	return ve, ok
}

// AuditPublicKey is the key that verifies the chain's checkpoints.
func (s *Service) AuditPublicKey() ed25519.PublicKey {
	if s.cfg.Checkpoints == nil {
		return nil
	}
	return s.cfg.Checkpoints.Public()
}
