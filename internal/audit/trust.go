package audit

import (
	"cmp"
	"crypto/ed25519"
	"fmt"
	"io"
	"slices"
)

// Trusted is a signed head that a chain must extend: the last checkpoint
// kept outside the database (TrustCheckpoint), or the signed head of an
// earlier export (ReadTrustedExport). A chain that ends before it was cut;
// a chain that reaches it with another hash was rewritten.
type Trusted struct {
	// Checkpoint is the signed head; Seq 0 for an empty earlier export.
	Checkpoint Checkpoint
	// Source names where it comes from, for messages.
	Source string
	// hashes, when known (an earlier export), is every event hash up to
	// the head, so the first rewritten event can be named.
	hashes [][32]byte
	key    ed25519.PublicKey
}

// TrustCheckpoint trusts c, read from source. Its signature is checked by
// whoever uses it (Verifier.Trust, or the checkpointer).
func TrustCheckpoint(c Checkpoint, source string) *Trusted {
	return &Trusted{Checkpoint: c, Source: source}
}

// Key is the audit key of a trusted export (nil for TrustCheckpoint).
func (t *Trusted) Key() ed25519.PublicKey { return t.key }

// ReadTrustedExport verifies an earlier export completely (as
// VerifyExport, with pinned as the pinned key) and returns its signed head
// with every event hash up to it.
func ReadTrustedExport(r io.Reader, pinned ed25519.PublicKey, source string) (*Trusted, error) {
	v, err := verifyExport(r, pinned, nil)
	if err != nil {
		return nil, err
	}
	t := &Trusted{Source: source, hashes: v.hashes, key: v.pub}
	if v.res.HeadSeq > 0 {
		t.Checkpoint = v.last // VerifyExport requires the head to be signed
	}
	return t, nil
}

// VerifyExportExtending is VerifyExport that also fails unless the export
// extends t: it must reach t's signed head, and every event up to it must
// be the one in t. With no pinned key it pins t's key.
func VerifyExportExtending(r io.Reader, pinned ed25519.PublicKey, t *Trusted) (Result, error) {
	if pinned == nil {
		pinned = t.key
	}
	v, err := verifyExport(r, pinned, t)
	if v == nil {
		return Result{}, err
	}
	return v.res, err
}

// Trust makes the verifier fail unless the chain extends t. Call it before
// the first event.
func (v *Verifier) Trust(t *Trusted) error {
	if v.err != nil {
		return v.err
	}
	if t.Checkpoint.Seq > 0 {
		if err := t.Checkpoint.Verify(v.pub); err != nil {
			return v.fail(t.Checkpoint.Seq, fmt.Sprintf("%s: %v", t.Source, err))
		}
	}
	v.trusted = t
	return nil
}

// checkTrusted compares the event at seq, whose hash is h, with the
// trusted head.
func (v *Verifier) checkTrusted(seq int64, h [32]byte) error {
	t := v.trusted
	if t == nil || seq > t.Checkpoint.Seq {
		return nil
	}
	if t.hashes != nil {
		if h != t.hashes[seq-1] {
			return v.fail(seq, fmt.Sprintf("event %d differs from the one in %s (signed up to seq %d): it was rewritten", seq, t.Source, t.Checkpoint.Seq))
		}
		return nil
	}
	if seq == t.Checkpoint.Seq && h != t.Checkpoint.Hash {
		first := v.res.SignedSeq + 1 // what the checkpoints seen so far vouch for is intact
		return v.fail(first, fmt.Sprintf("event %d is not the one signed at seq %d in %s: an event from seq %d to %d was rewritten",
			seq, seq, t.Source, first, seq))
	}
	return nil
}

// checkReached fails when the chain ends before the trusted head.
func (v *Verifier) checkReached() error {
	if t := v.trusted; v.err == nil && t != nil && v.res.HeadSeq < t.Checkpoint.Seq {
		return v.fail(v.res.HeadSeq+1, fmt.Sprintf("the chain ends at seq %d, but %s has a head signed at seq %d: events %d to %d were cut",
			v.res.HeadSeq, t.Source, t.Checkpoint.Seq, v.res.HeadSeq+1, t.Checkpoint.Seq))
	}
	return v.err
}

// Extension checks that stored events extend trusted checkpoints up to the
// chain head, re-hashing only the segment from the lowest of them: what
// the checkpointer does before it signs a new head. Feed it the events
// from From() to the head in order, then call End.
type Extension struct {
	marks   []*Trusted // ascending seq
	from    int64
	next    int64
	prev    [32]byte
	matched int64 // the last mark the chain was seen to pass through
	err     error
}

// NewExtension checks against marks (checkpoints whose signatures the
// caller verified). With none, it re-hashes the chain from genesis.
func NewExtension(marks ...*Trusted) *Extension {
	x := &Extension{from: 1}
	for _, m := range marks {
		if m != nil && m.Checkpoint.Seq > 0 {
			x.marks = append(x.marks, m)
		}
	}
	slices.SortFunc(x.marks, func(a, b *Trusted) int { return cmp.Compare(a.Checkpoint.Seq, b.Checkpoint.Seq) })
	if len(x.marks) > 0 {
		x.from = x.marks[0].Checkpoint.Seq
	}
	x.next = x.from
	return x
}

// From is the first sequence number to feed.
func (x *Extension) From() int64 { return x.from }

func (x *Extension) fail(seq int64, reason string) error {
	x.err = &VerifyError{Seq: seq, Reason: reason}
	return x.err
}

// Cut fails when a mark lies beyond the head: events were deleted. Call
// it before reading events.
func (x *Extension) Cut(headSeq int64) error {
	if n := len(x.marks); x.err == nil && n > 0 {
		if m := x.marks[n-1]; m.Checkpoint.Seq > headSeq {
			return x.fail(headSeq+1, fmt.Sprintf("the chain head is seq %d, but %s has a head signed at seq %d: events %d to %d were cut",
				headSeq, m.Source, m.Checkpoint.Seq, headSeq+1, m.Checkpoint.Seq))
		}
	}
	return x.err
}

// Event checks the next event of the segment.
func (x *Extension) Event(e *Event) error {
	if x.err != nil {
		return x.err
	}
	if e.Seq != x.next {
		return x.fail(x.next, fmt.Sprintf("event %d is missing (next event is %d)", x.next, e.Seq))
	}
	h, err := ComputeHash(e)
	if err != nil {
		return x.fail(e.Seq, err.Error())
	}
	if h != e.Hash {
		return x.fail(e.Seq, "hash mismatch")
	}
	// The first event of a segment that starts at a mark is vouched for
	// by the mark's signature, not by a link.
	if (e.Seq != x.from || len(x.marks) == 0) && e.PrevHash != x.prev {
		return x.fail(e.Seq, "previous-hash link does not match the event before it")
	}
	for _, m := range x.marks {
		if m.Checkpoint.Seq != e.Seq {
			continue
		}
		if m.Checkpoint.Hash != h {
			if x.matched == 0 {
				return x.fail(e.Seq, fmt.Sprintf("event %d is not the one signed at seq %d in %s: it or an event before it was rewritten", e.Seq, e.Seq, m.Source))
			}
			return x.fail(x.matched+1, fmt.Sprintf("event %d is not the one signed at seq %d in %s: an event from seq %d to %d was rewritten",
				e.Seq, e.Seq, m.Source, x.matched+1, e.Seq))
		}
		x.matched = e.Seq
	}
	x.prev = h
	x.next++
	return nil
}

// End checks that the events fed end at the head (seq, hash).
func (x *Extension) End(headSeq int64, headHash [32]byte) error {
	if x.err != nil {
		return x.err
	}
	if last := x.next - 1; last < headSeq {
		return x.fail(x.next, fmt.Sprintf("event %d is missing: the chain head is seq %d", x.next, headSeq))
	} else if last > headSeq {
		return x.fail(headSeq+1, fmt.Sprintf("events go on to seq %d beyond the chain head %d", last, headSeq))
	}
	if headSeq > 0 && x.prev != headHash {
		return x.fail(headSeq, fmt.Sprintf("the chain head's hash is not the hash of event %d", headSeq))
	}
	return nil
}
