package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Format names the export format in its header line.
const Format = "purser-audit/v1"

const timeLayout = "2006-01-02T15:04:05.000000Z"

type headerLine struct {
	Type       string `json:"type"`
	Format     string `json:"format"`
	AuditKey   string `json:"audit_key"`
	KeyID      string `json:"key_id"`
	ExportedAt string `json:"exported_at"`
}

type actorJSON struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

type eventLine struct {
	Type     string          `json:"type"`
	Seq      int64           `json:"seq"`
	Time     string          `json:"time"`
	Actor    actorJSON       `json:"actor"`
	Action   string          `json:"action"`
	Subject  string          `json:"subject"`
	Details  json.RawMessage `json:"details"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`
}

type checkpointLine struct {
	Type      string `json:"type"`
	Seq       int64  `json:"seq"`
	Hash      string `json:"hash"`
	Time      string `json:"time"`
	KeyID     string `json:"key_id"`
	Signature string `json:"signature"`
}

// Writer writes an export.
type Writer struct {
	w *bufio.Writer
}

// NewWriter writes the header line naming the audit key.
func NewWriter(w io.Writer, pub ed25519.PublicKey, now time.Time) (*Writer, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("audit: an export needs the Ed25519 audit public key")
	}
	aw := &Writer{w: bufio.NewWriterSize(w, 64<<10)}
	h := headerLine{Type: "header", Format: Format, AuditKey: hex.EncodeToString(pub), KeyID: KeyID(pub), ExportedAt: now.UTC().Format(time.RFC3339Nano)}
	return aw, aw.line(h)
}

func (w *Writer) line(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := w.w.Write(b); err != nil {
		return err
	}
	return w.w.WriteByte('\n')
}

// WriteEvent writes one event line.
func (w *Writer) WriteEvent(e *Event) error {
	return w.line(eventLine{Type: "event", Seq: e.Seq, Time: e.Time.UTC().Format(timeLayout), Actor: actorJSON(e.Actor),
		Action: e.Action, Subject: e.Subject, Details: e.Details, PrevHash: hex.EncodeToString(e.PrevHash[:]), Hash: hex.EncodeToString(e.Hash[:])})
}

// WriteCheckpoint writes one checkpoint line.
func (w *Writer) WriteCheckpoint(c Checkpoint) error { return w.line(lineOf(c)) }

func lineOf(c Checkpoint) checkpointLine {
	return checkpointLine{Type: "checkpoint", Seq: c.Seq, Hash: hex.EncodeToString(c.Hash[:]), Time: c.Time.UTC().Format(timeLayout),
		KeyID: c.KeyID, Signature: hex.EncodeToString(c.Signature)}
}

// checkpointJSON is c as one export line, newline included.
func checkpointJSON(c Checkpoint) ([]byte, error) {
	b, err := json.Marshal(lineOf(c))
	return append(b, '\n'), err
}

// Flush writes buffered lines through.
func (w *Writer) Flush() error { return w.w.Flush() }

// WriteCSV writes events as CSV (for spreadsheets; not verifiable), with
// the column header when header is true.
func WriteCSV(w io.Writer, events []*Event, header bool) error {
	cw := csv.NewWriter(w)
	if header {
		if err := cw.Write([]string{"seq", "time", "actor_type", "actor_id", "action", "subject", "details", "prev_hash", "hash"}); err != nil {
			return err
		}
	}
	for _, e := range events {
		if err := cw.Write([]string{strconv.FormatInt(e.Seq, 10), e.Time.UTC().Format(timeLayout), e.Actor.Type, e.Actor.ID, e.Action,
			e.Subject, string(e.Details), hex.EncodeToString(e.PrevHash[:]), hex.EncodeToString(e.Hash[:])}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// MaxLine bounds one export line.
const MaxLine = 1 << 20

// LineError is a malformed export line.
type LineError struct {
	Line   int
	Reason string
}

func (e *LineError) Error() string { return fmt.Sprintf("audit export line %d: %s", e.Line, e.Reason) }

// Code is the stable error code.
func (e *LineError) Code() string { return "audit_export_malformed" }

func strict(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the object")
	}
	return nil
}

// hexCanonical decodes lowercase hex only, so each value has exactly one
// spelling in an export.
func hexCanonical(s string) ([]byte, bool) {
	b, err := hex.DecodeString(s)
	if err != nil || hex.EncodeToString(b) != s {
		return nil, false
	}
	return b, true
}

func hash32(s string) ([32]byte, bool) {
	var out [32]byte
	b, ok := hexCanonical(s)
	if !ok || len(b) != 32 {
		return out, false
	}
	copy(out[:], b)
	return out, true
}

// parseTime accepts only the writer's layout: UTC with exactly six
// fractional digits, the precision that is hashed.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil || t.Format(timeLayout) != s {
		return time.Time{}, fmt.Errorf("time %q is not in the form %s", s, timeLayout)
	}
	return t, nil
}

// atLine adds the line number to a verifier error, keeping its seq.
func atLine(err error, n int) error {
	var ve *VerifyError
	if errors.As(err, &ve) {
		return &VerifyError{Seq: ve.Seq, Reason: fmt.Sprintf("%s (line %d)", ve.Reason, n)}
	}
	return err
}

// VerifyExport verifies an export read from r: strict JSON Lines (unknown
// fields, unknown line types and malformed lines are errors naming the
// line), events contiguous from seq 1, every link and hash, every
// checkpoint signature, and a last event covered by a checkpoint, so a
// dropped or appended tail fails.
//
// trusted pins the audit key. nil trusts the key in the export's header,
// which detects any edit or deletion but not a whole chain rewritten and
// re-signed with another key: only pinning the key (the server's
// <data>/audit.pub) makes such a rewrite detectable. An export cut back to
// an earlier checkpoint verifies; compare HeadSeq with what you expect.
func VerifyExport(r io.Reader, trusted ed25519.PublicKey) (Result, error) {
	v, err := verifyExport(r, trusted, nil)
	if v == nil {
		return Result{}, err
	}
	return v.res, err
}

// verifyExport verifies an export and returns its verifier (nil when it
// failed before the header was read), which must also extend t when t is
// not nil.
func verifyExport(r io.Reader, trusted ed25519.PublicKey, t *Trusted) (*Verifier, error) {
	if trusted != nil && len(trusted) != ed25519.PublicKeySize {
		return nil, errors.New("audit: the pinned audit key is not an Ed25519 public key")
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	var v *Verifier
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			return v, &LineError{Line: n, Reason: "empty line"}
		}
		var peek struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(line, &peek); err != nil {
			return v, &LineError{Line: n, Reason: "not JSON: " + err.Error()}
		}
		if n == 1 {
			if peek.Type != "header" {
				return v, &LineError{Line: 1, Reason: "the export must start with its header"}
			}
			var h headerLine
			if err := strict(line, &h); err != nil {
				return v, &LineError{Line: n, Reason: err.Error()}
			}
			if h.Format != Format {
				return v, &LineError{Line: n, Reason: fmt.Sprintf("format %q, want %q", h.Format, Format)}
			}
			if _, err := time.Parse(time.RFC3339Nano, h.ExportedAt); err != nil {
				return v, &LineError{Line: n, Reason: fmt.Sprintf("exported_at %q is not an RFC 3339 time", h.ExportedAt)}
			}
			pub, ok := hexCanonical(h.AuditKey)
			if !ok || len(pub) != ed25519.PublicKeySize {
				return v, &LineError{Line: n, Reason: "audit_key is not an Ed25519 public key"}
			}
			if trusted != nil && !bytes.Equal(trusted, pub) {
				return v, &LineError{Line: n, Reason: fmt.Sprintf("the export is signed by key %s, not the pinned key %s", KeyID(pub), KeyID(trusted))}
			}
			if h.KeyID != KeyID(pub) {
				return v, &LineError{Line: n, Reason: fmt.Sprintf("key_id %q does not match audit_key (%s)", h.KeyID, KeyID(pub))}
			}
			v = NewVerifier(pub)
			if t != nil {
				if err := v.Trust(t); err != nil {
					return v, err
				}
			}
			continue
		}
		switch peek.Type {
		case "event":
			var el eventLine
			if err := strict(line, &el); err != nil {
				return v, &LineError{Line: n, Reason: err.Error()}
			}
			e, err := el.event()
			if err != nil {
				// The line's own seq may be what was corrupted.
				head := v.res
				return v, &VerifyError{Seq: head.HeadSeq + 1, Reason: fmt.Sprintf("%v (line %d)", err, n)}
			}
			if err := v.Event(e); err != nil {
				return v, atLine(err, n)
			}
		case "checkpoint":
			var cl checkpointLine
			if err := strict(line, &cl); err != nil {
				return v, &LineError{Line: n, Reason: err.Error()}
			}
			c, err := cl.checkpoint()
			if err != nil {
				head := v.res
				return v, &VerifyError{Seq: max(head.HeadSeq, 1), Reason: fmt.Sprintf("checkpoint: %v (line %d)", err, n)}
			}
			// The writer puts each checkpoint right after its event, and the
			// store keeps one per seq: anything else was moved or copied.
			if head := v.res; c.Seq != head.HeadSeq || c.Seq <= head.SignedSeq {
				return v, &VerifyError{Seq: max(c.Seq, 1), Reason: fmt.Sprintf("checkpoint for seq %d is out of place after event %d (line %d)", c.Seq, head.HeadSeq, n)}
			}
			if err := v.Checkpoint(c); err != nil {
				return v, atLine(err, n)
			}
		default:
			return v, &LineError{Line: n, Reason: fmt.Sprintf("unknown line type %q", peek.Type)}
		}
	}
	if err := sc.Err(); err != nil {
		return v, &LineError{Line: n + 1, Reason: err.Error()}
	}
	if v == nil {
		return v, &LineError{Line: 1, Reason: "empty export"}
	}
	res, err := v.Finish()
	if err != nil {
		return v, err
	}
	if res.SignedSeq != res.HeadSeq {
		return v, &VerifyError{Seq: res.SignedSeq + 1, Reason: fmt.Sprintf("events after seq %d are not covered by a signed checkpoint: the export was cut or extended", res.SignedSeq)}
	}
	return v, nil
}

func (el *eventLine) event() (*Event, error) {
	t, err := parseTime(el.Time)
	if err != nil {
		return nil, err
	}
	prev, ok1 := hash32(el.PrevHash)
	h, ok2 := hash32(el.Hash)
	if !ok1 || !ok2 {
		return nil, errors.New("hashes must be 64 hex characters")
	}
	return &Event{Seq: el.Seq, Time: t, Actor: Actor(el.Actor), Action: el.Action, Subject: el.Subject, Details: el.Details, PrevHash: prev, Hash: h}, nil
}

func (cl *checkpointLine) checkpoint() (Checkpoint, error) {
	t, err := parseTime(cl.Time)
	if err != nil {
		return Checkpoint{}, err
	}
	h, ok := hash32(cl.Hash)
	sig, ok2 := hexCanonical(cl.Signature)
	if !ok || !ok2 {
		return Checkpoint{}, errors.New("malformed hash or signature")
	}
	return Checkpoint{Seq: cl.Seq, Hash: h, Time: t, KeyID: cl.KeyID, Signature: sig}, nil
}
