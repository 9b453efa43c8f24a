// Package audit is Purser's tamper-evident audit trail: events hashed over
// an unambiguous binary encoding into a SHA-256 chain (each event commits
// to the previous one), Ed25519-signed checkpoints of the chain head, a
// streaming verifier that names the first bad sequence number, and the
// JSON Lines export that `purser audit verify FILE` checks offline.
//
// The package does no storage and no I/O beyond the readers and writers it
// is given, except AnchorFile: the copy of the last signed checkpoint kept
// outside the database. The store appends events inside the same
// transaction as the change they record.
package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"time"
)

// Actor is who caused an event.
type Actor struct {
	Type string // "agent", "owner" or "system"
	ID   string
}

// Event is one link of the chain.
type Event struct {
	Seq      int64
	Time     time.Time
	Actor    Actor
	Action   string
	Subject  string
	Details  json.RawMessage // a JSON object; hashed in compact form
	PrevHash [32]byte
	Hash     [32]byte
}

const (
	eventTag      = "purser/audit/v1"
	checkpointTag = "purser/audit-checkpoint/v1"
)

// Seal validates e, truncates its time to microseconds (the stores'
// precision), compacts its details, links it to prev and computes its hash.
// Nil details become {} so that "nothing to add" has one encoding.
func (e *Event) Seal(prev [32]byte) error {
	if e.Seq < 1 {
		return fmt.Errorf("audit: seq %d: sequence numbers start at 1", e.Seq)
	}
	switch e.Actor.Type {
	case "agent", "owner", "system":
	default:
		return fmt.Errorf("audit: seq %d: actor type %q is not agent, owner or system", e.Seq, e.Actor.Type)
	}
	if e.Action == "" {
		return fmt.Errorf("audit: seq %d: an event needs an action", e.Seq)
	}
	if e.Time.IsZero() {
		return fmt.Errorf("audit: seq %d: an event needs a time", e.Seq)
	}
	if len(e.Details) == 0 {
		e.Details = json.RawMessage("{}")
	}
	d, err := compactObject(e.Details)
	if err != nil {
		return fmt.Errorf("audit: seq %d: %w", e.Seq, err)
	}
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	e.Details = d
	e.PrevHash = prev
	e.Hash = hashCompact(e, d) // d is compact already: compact once on the commit path
	return nil
}

// compactObject returns details in compact form, so that re-indenting an
// export (or a database's JSON normalisation) never changes a hash.
func compactObject(details []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(details))
	if err := json.Compact(&buf, details); err != nil {
		return nil, fmt.Errorf("details are not JSON: %w", err)
	}
	if buf.Len() == 0 || buf.Bytes()[0] != '{' {
		return nil, errors.New("details must be a JSON object")
	}
	return buf.Bytes(), nil
}

// ComputeHash returns the hash of e (which covers PrevHash, not Hash).
// Every variable-length field is length-prefixed so that no two different
// events encode to the same bytes.
func ComputeHash(e *Event) ([32]byte, error) {
	details, err := compactObject(e.Details)
	if err != nil {
		return [32]byte{}, fmt.Errorf("audit: seq %d: %w", e.Seq, err)
	}
	return hashCompact(e, details), nil
}

// hashCompact hashes e with its details already in compact form.
func hashCompact(e *Event, details []byte) [32]byte {
	h := sha256.New()
	writeField(h, []byte(eventTag))
	writeUint(h, uint64(e.Seq))
	writeUint(h, uint64(e.Time.UnixMicro()))
	writeField(h, []byte(e.Actor.Type))
	writeField(h, []byte(e.Actor.ID))
	writeField(h, []byte(e.Action))
	writeField(h, []byte(e.Subject))
	writeField(h, details)
	h.Write(e.PrevHash[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func writeUint(h hash.Hash, v uint64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	h.Write(b[:])
}

func writeField(h hash.Hash, b []byte) {
	writeUint(h, uint64(len(b)))
	h.Write(b)
}

// Checkpoint is a signed statement of the chain head at Seq.
type Checkpoint struct {
	Seq       int64
	Hash      [32]byte
	Time      time.Time
	KeyID     string
	Signature []byte
}

// CheckpointSigner signs checkpoints; the keystore implements it so the
// private key never leaves it.
type CheckpointSigner interface {
	Public() ed25519.PublicKey
	Sign(msg []byte) ([]byte, error)
}

func checkpointMessage(seq int64, h [32]byte, t time.Time) []byte {
	msg := make([]byte, 0, len(checkpointTag)+8+32+8)
	msg = append(msg, checkpointTag...)
	msg = binary.BigEndian.AppendUint64(msg, uint64(seq))
	msg = append(msg, h[:]...)
	return binary.BigEndian.AppendUint64(msg, uint64(t.UnixMicro()))
}

// SignCheckpoint signs the head (seq, hash) at time t.
func SignCheckpoint(s CheckpointSigner, seq int64, h [32]byte, t time.Time) (Checkpoint, error) {
	if seq < 1 {
		return Checkpoint{}, fmt.Errorf("audit: cannot sign a checkpoint at seq %d", seq)
	}
	t = t.UTC().Truncate(time.Microsecond)
	sig, err := s.Sign(checkpointMessage(seq, h, t))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	return Checkpoint{Seq: seq, Hash: h, Time: t, KeyID: KeyID(s.Public()), Signature: sig}, nil
}

// KeyID is a short, stable fingerprint of an audit key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}

// Verify checks the checkpoint's signature under pub.
func (c Checkpoint) Verify(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return errors.New("audit: no audit key to verify checkpoints with")
	}
	if c.KeyID != KeyID(pub) {
		return fmt.Errorf("audit: checkpoint at seq %d was signed by key %s, not %s", c.Seq, c.KeyID, KeyID(pub))
	}
	if !ed25519.Verify(pub, checkpointMessage(c.Seq, c.Hash, c.Time), c.Signature) {
		return fmt.Errorf("audit: checkpoint at seq %d has a bad signature", c.Seq)
	}
	return nil
}

// VerifyError reports where a chain stops being trustworthy.
type VerifyError struct {
	Seq    int64 // the first bad sequence number
	Reason string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("audit chain broken at seq %d: %s", e.Seq, e.Reason)
}

// Code is the stable error code.
func (e *VerifyError) Code() string { return "audit_chain_broken" }

// Message is the human text.
func (e *VerifyError) Message() string { return e.Error() }

// Result summarises a verified chain.
type Result struct {
	Events      int
	Checkpoints int
	HeadSeq     int64
	HeadHash    [32]byte
	KeyID       string
	// SignedSeq is the last sequence number covered by a checkpoint.
	SignedSeq int64
	// PasskeyApprovals counts the approvals signed with an owner's
	// passkey that were verified (approval.go).
	PasskeyApprovals int
}

// Verifier checks a chain fed to it in order, from seq 1. The first
// failure sticks: later calls and Finish return it, so the reported seq is
// always the first bad one. It keeps every event hash (32 bytes an event)
// so that a checkpoint may cover any event already seen.
type Verifier struct {
	pub     ed25519.PublicKey
	res     Result
	hashes  [][32]byte // hashes[i] is the hash of seq i+1
	last    Checkpoint // the last checkpoint verified
	trusted *Trusted   // a head the chain must extend (Trust)
	ap      approvals  // passkey approvals (approval.go)
	err     error
}

// NewVerifier verifies checkpoints with pub. pub may be nil only for a
// chain without checkpoints: a checkpoint that cannot be checked is an
// error, not a pass.
func NewVerifier(pub ed25519.PublicKey) *Verifier {
	v := &Verifier{pub: pub}
	if pub != nil {
		v.res.KeyID = KeyID(pub)
	}
	return v
}

func (v *Verifier) fail(seq int64, reason string) error {
	v.err = &VerifyError{Seq: seq, Reason: reason}
	return v.err
}

// Event checks the next event: contiguous seq from 1, the link to the
// previous hash, and the recomputed hash.
func (v *Verifier) Event(e *Event) error {
	if v.err != nil {
		return v.err
	}
	want := v.res.HeadSeq + 1
	switch {
	case e.Seq > want:
		return v.fail(want, fmt.Sprintf("event %d is missing (next event is %d)", want, e.Seq))
	case e.Seq < want:
		return v.fail(e.Seq, fmt.Sprintf("event %d appears again or out of order after %d", e.Seq, v.res.HeadSeq))
	}
	if e.PrevHash != v.res.HeadHash {
		return v.fail(e.Seq, "previous-hash link does not match the event before it")
	}
	h, err := ComputeHash(e)
	if err != nil {
		return v.fail(e.Seq, err.Error())
	}
	if h != e.Hash {
		return v.fail(e.Seq, "hash mismatch")
	}
	if err := v.checkTrusted(e.Seq, h); err != nil {
		return err
	}
	if ok, err := v.ap.observe(e); err != nil {
		return v.fail(e.Seq, err.Error())
	} else if ok {
		v.res.PasskeyApprovals++
	}
	v.hashes = append(v.hashes, h)
	v.res.HeadSeq, v.res.HeadHash = e.Seq, e.Hash
	v.res.Events++
	return nil
}

// Checkpoint checks a signed checkpoint: its signature, and that its hash
// is the hash of the event with its seq, which must already have been fed.
func (v *Verifier) Checkpoint(c Checkpoint) error {
	if v.err != nil {
		return v.err
	}
	if c.Seq < 1 || c.Seq > v.res.HeadSeq {
		seq := c.Seq
		if seq < 1 {
			seq = v.res.HeadSeq + 1
		}
		return v.fail(seq, fmt.Sprintf("checkpoint for seq %d comes before its event (last event %d)", c.Seq, v.res.HeadSeq))
	}
	if c.Hash != v.hashes[c.Seq-1] {
		return v.fail(c.Seq, "signed checkpoint disagrees with the chain: events up to here were altered")
	}
	if err := c.Verify(v.pub); err != nil {
		return v.fail(c.Seq, err.Error())
	}
	v.res.Checkpoints++
	if c.Seq >= v.res.SignedSeq {
		v.res.SignedSeq, v.last = c.Seq, c
	}
	return nil
}

// Finish returns what was verified, or the first failure: also a chain
// that ends before the trusted head (Trust). It does not require the head
// to be signed; VerifyExport does.
func (v *Verifier) Finish() (Result, error) { return v.res, v.checkReached() }

// IdentifierHMAC makes an identifier traceable without storing it.
func IdentifierHMAC(key []byte, id string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil))
}
