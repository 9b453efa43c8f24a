package audit

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// anchorTail is how much of the end of an anchor file Last reads: many
// times one line (about 300 bytes).
const anchorTail = 64 << 10

// AnchorFile keeps signed checkpoints outside the database: an append-only
// file of JSON lines, each a checkpoint in the export's form, written with
// O_APPEND and fsync, mode 0600. The checkpointer appends every head it
// signs (and every head another process signed that it verified), so that
// someone who can write the database but not this file cannot move the
// chain back behind it unnoticed. Only the last line is read; the others
// are history.
//
// Several processes may share one file: each line is one write, and a
// line cut short by a crash (no newline yet) is ignored.
type AnchorFile struct {
	path string
	pub  ed25519.PublicKey
	mu   sync.Mutex // orders this process's appends
}

// NewAnchorFile keeps checkpoints signed by pub at path. Nothing is
// created until the first Append.
func NewAnchorFile(path string, pub ed25519.PublicKey) *AnchorFile {
	return &AnchorFile{path: path, pub: pub}
}

// Path is the file's path, for messages.
func (a *AnchorFile) Path() string { return a.path }

// Last returns the checkpoint on the file's last complete line, its
// signature verified; nil when the file does not exist or has no line.
func (a *AnchorFile) Last() (*Checkpoint, error) {
	f, err := os.Open(a.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	n := min(st.Size(), anchorTail)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, st.Size()-n); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("audit: %s: %w", a.path, err)
	}
	end := bytes.LastIndexByte(buf, '\n')
	if end < 0 {
		if st.Size() > anchorTail {
			return nil, fmt.Errorf("audit: %s: no complete line in its last %d bytes", a.path, anchorTail)
		}
		return nil, nil // empty, or only a line cut short
	}
	buf = buf[:end]
	start := bytes.LastIndexByte(buf, '\n') + 1
	if start == 0 && st.Size() > n {
		return nil, fmt.Errorf("audit: %s: its last line is longer than %d bytes", a.path, anchorTail)
	}
	c, err := parseAnchorLine(buf[start:])
	if err != nil {
		return nil, fmt.Errorf("audit: %s: last line: %w", a.path, err)
	}
	if err := c.Verify(a.pub); err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, a.path)
	}
	return &c, nil
}

func parseAnchorLine(line []byte) (Checkpoint, error) {
	var cl checkpointLine
	if err := strict(line, &cl); err != nil {
		return Checkpoint{}, err
	}
	if cl.Type != "checkpoint" {
		return Checkpoint{}, fmt.Errorf("line type %q, want checkpoint", cl.Type)
	}
	return cl.checkpoint()
}

// Append adds c after the last line. A checkpoint below the last one is
// not written (another caller got a later head in first), nor is the same
// one again; one at the same seq with another hash is an error: the chain
// forked.
func (a *AnchorFile) Append(c Checkpoint) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	last, err := a.Last()
	if err != nil {
		return err
	}
	if last != nil && c.Seq <= last.Seq {
		if c.Seq == last.Seq && c.Hash != last.Hash {
			return &VerifyError{Seq: c.Seq, Reason: fmt.Sprintf("the head at seq %d differs from the one signed in %s", c.Seq, a.path)}
		}
		return nil
	}
	line, err := checkpointJSON(c)
	if err != nil {
		return err
	}
	_, statErr := os.Stat(a.path)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(a.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	// A line a crash cut short gets its newline first, so this one starts
	// on a line of its own.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		var b [1]byte
		if _, err := f.ReadAt(b[:], st.Size()-1); err == nil && b[0] != '\n' {
			line = append([]byte{'\n'}, line...)
		}
	}
	if _, err := f.Write(line); err != nil {
		f.Close()
		return fmt.Errorf("audit: %s: %w", a.path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit: %s: %w", a.path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("audit: %s: %w", a.path, err)
	}
	if created { // the new directory entry must survive a crash too
		if d, err := os.Open(filepath.Dir(a.path)); err == nil {
			d.Sync() //nolint:errcheck // best effort: not every platform syncs directories
			d.Close()
		}
	}
	return nil
}
