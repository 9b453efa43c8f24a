// Package audit is Purser's tamper-evident audit trail: events hashed over
// an unambiguous binary encoding into a SHA-256 chain (each event commits
// to the previous one), Ed25519-signed checkpoints of the chain head, a
// streaming verifier that names the first bad sequence number, and the
// JSON Lines export that `purser audit verify FILE` checks offline.
//
// The package does no storage and no I/O beyond the readers and writers it
// is given; the store appends events inside the same transaction as the
// change they record.
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
func (e *Event) Seal(prev [32]byte) error {
	if e.Seq < 1 {
		return fmt.Errorf("audit: seq %d: sequence numbers start at 1", e.Seq)
	}
	if e.Action == "" || e.Actor.Type == "" {
		return errors.New("audit: an event needs an action and an actor")
	}
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	var buf bytes.Buffer
	if err := json.Compact(&buf, e.Details); err != nil {
		return fmt.Errorf("audit: details of seq %d are not JSON: %w", e.Seq, err)
	}
	e.Details = buf.Bytes()
	e.PrevHash = prev
	h, err := ComputeHash(e)
	if err != nil {
		return err
	}
	e.Hash = h
	return nil
}

// ComputeHash returns the hash of e (which covers PrevHash, not Hash).
// Every variable-length field is length-prefixed so that no two different
// events encode to the same bytes.
func ComputeHash(e *Event) ([32]byte, error) {
	var details bytes.Buffer
	if err := json.Compact(&details, e.Details); err != nil {
		return [32]byte{}, fmt.Errorf("audit: details of seq %d are not JSON: %w", e.Seq, err)
	}
	h := sha256.New()
	writeField(h, []byte(eventTag))
	writeUint(h, uint64(e.Seq))
	writeUint(h, uint64(e.Time.UnixMicro()))
	writeField(h, []byte(e.Actor.Type))
	writeField(h, []byte(e.Actor.ID))
	writeField(h, []byte(e.Action))
	writeField(h, []byte(e.Subject))
	writeField(h, details.Bytes())
	h.Write(e.PrevHash[:])
	var out [32]byte
	h.Sum(out[:0])
	return out, nil
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
}

// Verifier checks a chain fed to it in order, from seq 1.
type Verifier struct {
	pub  ed25519.PublicKey
	res  Result
	last [32]byte
}

// NewVerifier verifies checkpoints with pub (nil: a checkpoint is an
// error, since it cannot be checked).
func NewVerifier(pub ed25519.PublicKey) *Verifier {
	v := &Verifier{pub: pub}
	if pub != nil {
		v.res.KeyID = KeyID(pub)
	}
	return v
}

// Event checks the next event.
func (v *Verifier) Event(e *Event) error {
	want := v.res.HeadSeq + 1
	switch {
	case e.Seq > want:
		return &VerifyError{Seq: want, Reason: fmt.Sprintf("event %d is missing (next event is %d)", want, e.Seq)}
	case e.Seq < want:
		return &VerifyError{Seq: e.Seq, Reason: fmt.Sprintf("event %d appears again or out of order after %d", e.Seq, v.res.HeadSeq)}
	}
	if e.PrevHash != v.last {
		return &VerifyError{Seq: e.Seq, Reason: "previous-hash link does not match the event before it"}
	}
	h, err := ComputeHash(e)
	if err != nil {
		return &VerifyError{Seq: e.Seq, Reason: err.Error()}
	}
	if h != e.Hash {
		return &VerifyError{Seq: e.Seq, Reason: "hash mismatch: the event was altered"}
	}
	v.last = e.Hash
	v.res.HeadSeq, v.res.HeadHash = e.Seq, e.Hash
	v.res.Events++
	return nil
}

// Checkpoint checks a checkpoint of the event just fed.
func (v *Verifier) Checkpoint(c Checkpoint) error {
	if c.Seq != v.res.HeadSeq || c.Seq == 0 {
		return &VerifyError{Seq: c.Seq, Reason: fmt.Sprintf("checkpoint for seq %d does not follow its event (last event %d)", c.Seq, v.res.HeadSeq)}
	}
	if c.Hash != v.last {
		return &VerifyError{Seq: c.Seq, Reason: "signed checkpoint disagrees with the chain: events up to here were altered"}
	}
	if err := c.Verify(v.pub); err != nil {
		return &VerifyError{Seq: c.Seq, Reason: err.Error()}
	}
	v.res.Checkpoints++
	v.res.SignedSeq = c.Seq
	return nil
}

// Finish returns the result.
func (v *Verifier) Finish() (Result, error) { return v.res, nil }

// IdentifierHMAC makes an identifier traceable without storing it.
func IdentifierHMAC(key []byte, id string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil))
}
