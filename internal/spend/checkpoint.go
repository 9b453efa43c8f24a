package spend

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/purserhq/purser/internal/audit"
)

// CheckpointAnchor keeps the last signed checkpoint outside the database
// (audit.AnchorFile, in the data directory), so that someone who can write
// the database but not the anchor cannot move the chain back behind it.
type CheckpointAnchor interface {
	// Last returns the last checkpoint kept, its signature verified; nil
	// when there is none.
	Last() (*audit.Checkpoint, error)
	// Append keeps c; one below the last kept is ignored.
	Append(c audit.Checkpoint) error
	// Path names the anchor in messages.
	Path() string
}

// Checkpoint signs the current audit chain head, if it moved since the
// last checkpoint, and returns the checkpoint that covers the head.
//
// It signs only a head that extends every head signed before that it
// knows of: the last checkpoint in the database (signed by this key, by
// this process or another sharing the database) and the last one kept in
// the anchor (what this process signed or verified). It re-hashes the
// events from the lower of the two up to the head; a head below either of
// them, or a segment that does not hash to them, is an *audit.VerifyError
// naming the first bad sequence number, and nothing is signed. The new
// checkpoint goes to the database first (which makes the events it covers
// durable), then to the anchor.
func (s *Service) Checkpoint(ctx context.Context) (*audit.Checkpoint, error) {
	if s.cfg.Checkpoints == nil {
		return nil, errors.New("spend: no checkpoint signer configured")
	}
	pub := s.cfg.Checkpoints.Public()
	// A checkpoint is only ever made over a committed head and the head
	// only grows, so what is read before the head cannot lie beyond it
	// unless events were cut.
	marks, dbLast, err := s.signedHeads(ctx, pub)
	if err != nil {
		return nil, s.refused(err)
	}
	seq, hash, err := s.store.AuditHead(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.extends(ctx, marks, seq, hash); err != nil {
		return nil, s.refused(err)
	}
	if seq == 0 {
		return nil, nil
	}
	cp := dbLast
	if cp == nil || cp.Seq != seq {
		c, err := audit.SignCheckpoint(s.cfg.Checkpoints, seq, hash, s.now())
		if err != nil {
			return nil, err
		}
		if err := s.store.CheckpointAdd(ctx, c); err != nil {
			return nil, err
		}
		cp = &c
	}
	if s.cfg.Anchor != nil {
		if err := s.cfg.Anchor.Append(*cp); err != nil {
			return nil, s.refused(err)
		}
	}
	return cp, nil
}

// refused logs a chain that the checkpointer will not sign: that is an
// alarm, not a passing failure.
func (s *Service) refused(err error) error {
	if ve, ok := IsChainBroken(err); ok {
		s.log.Error("audit chain does not extend the last signed checkpoint: refusing to sign", "seq", ve.Seq, "reason", ve.Reason)
	}
	return err
}

// signedHeads returns the heads signed before that the chain must extend:
// the anchor's last checkpoint and the database's last, each verified
// under pub, and the database's last on its own.
func (s *Service) signedHeads(ctx context.Context, pub ed25519.PublicKey) ([]*audit.Trusted, *audit.Checkpoint, error) {
	var marks []*audit.Trusted
	if s.cfg.Anchor != nil {
		c, err := s.cfg.Anchor.Last()
		if err != nil {
			return nil, nil, err
		}
		if c != nil {
			marks = append(marks, audit.TrustCheckpoint(*c, s.cfg.Anchor.Path()))
		}
	}
	last, err := s.store.CheckpointLast(ctx)
	if err != nil {
		return nil, nil, err
	}
	if last != nil {
		if err := last.Verify(pub); err != nil {
			return nil, nil, &audit.VerifyError{Seq: last.Seq, Reason: fmt.Sprintf("the database's last checkpoint: %v", err)}
		}
		marks = append(marks, audit.TrustCheckpoint(*last, "the database"))
	}
	return marks, last, nil
}

// extends re-hashes the events from the lowest mark to the head.
func (s *Service) extends(ctx context.Context, marks []*audit.Trusted, headSeq int64, headHash [32]byte) error {
	x := audit.NewExtension(marks...)
	if err := x.Cut(headSeq); err != nil {
		return err
	}
	for after := x.From() - 1; after < headSeq; {
		evs, err := s.store.AuditEvents(ctx, after, int(min(auditPage, headSeq-after)))
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			break // End names the missing event
		}
		for _, e := range evs {
			if err := x.Event(e); err != nil {
				return err
			}
			after = e.Seq
		}
	}
	return x.End(headSeq, headHash)
}
