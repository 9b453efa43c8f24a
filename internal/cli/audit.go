package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/sdk"
)

func auditCommand() *command {
	return &command{
		name:    "audit",
		summary: "read, export and verify the signed audit log",
		sub: []*command{
			{name: "tail", args: "[-n N]", summary: "show the last audit events", kind: kindOwner,
				flags: func(fs *flag.FlagSet, o *opts) {
					fs.IntVar(&o.n, "n", 20, "how many events (1-1000)")
				},
				run: runAuditTail},
			{name: "export", args: "[--format jsonl|csv] [--out FILE]", summary: "export the audit log (jsonl is signed and verifiable)",
				kind: kindOwner,
				flags: func(fs *flag.FlagSet, o *opts) {
					fs.StringVar(&o.format, "format", "jsonl", "jsonl (signed) or csv")
					fs.StringVar(&o.out, "out", "", "write to `FILE` instead of stdout")
				},
				run: runAuditExport},
			{name: "verify", args: "[FILE] [--audit-key HEX] [--trusted EARLIER_EXPORT]",
				summary: "verify an export offline (FILE) or the server's chain; exit 0 only if it verifies",
				kind:    kindOwner,
				flags: func(fs *flag.FlagSet, o *opts) {
					fs.StringVar(&o.auditKey, "audit-key", "", "trust only this ed25519 audit public `KEY` (hex; default <data>/audit.pub)")
					fs.StringVar(&o.trusted, "trusted", "", "fail unless the chain extends the signed head of this earlier export `FILE`")
				},
				run: runAuditVerify},
		},
	}
}

func runAuditTail(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args); err != nil {
		return err
	}
	if o.n < 1 || o.n > 1000 {
		return usagef(o.path, "-n must be 1..1000")
	}
	c, err := e.ownerClient(o)
	if err != nil {
		return err
	}
	evs, err := c.AuditTail(ctx, o.n)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(e.stdio.Out, rawList("events", evs, func(ev *sdk.AuditEvent) json.RawMessage { return ev.Raw }))
	}
	t := newTable(e.stdio.Out)
	fmt.Fprintln(t, "SEQ\tTIME\tACTOR\tACTION\tSUBJECT")
	for _, ev := range evs {
		actor := ev.Actor.Type
		if ev.Actor.ID != "" {
			actor += ":" + ev.Actor.ID
		}
		fmt.Fprintf(t, "%d\t%s\t%s\t%s\t%s\n", ev.Seq, ev.Time.UTC().Format("2006-01-02T15:04:05Z"), actor, ev.Action, orDash(ev.Subject))
	}
	return t.Flush()
}

func runAuditExport(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args); err != nil {
		return err
	}
	if o.format != "jsonl" && o.format != "csv" {
		return usagef(o.path, "--format must be jsonl or csv")
	}
	c, err := e.ownerClient(o)
	if err != nil {
		return err
	}
	body, err := c.AuditExport(ctx, o.format)
	if err != nil {
		return err
	}
	defer body.Close()
	if o.out == "" {
		if _, err := io.Copy(e.stdio.Out, body); err != nil {
			return fmt.Errorf("audit export cut short: %w", err)
		}
		return nil
	}
	// Stream into a temporary file renamed into place once complete, so a
	// cut-short export never sits under the name asked for.
	tmp, err := os.CreateTemp(filepath.Dir(o.out), "."+filepath.Base(o.out)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, body)
	if err != nil {
		tmp.Close()
		return fmt.Errorf("audit export cut short: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), o.out)
}

// trustedAuditKey is the key to pin: --audit-key, else <data>/audit.pub.
// nil (no error) means nothing is pinned.
func (e *env) trustedAuditKey(o *opts) (ed25519.PublicKey, string, error) {
	if o.auditKey != "" {
		k, err := parseAuditKey(o.auditKey)
		if err != nil {
			return nil, "", usagef(o.path, "--audit-key: %s", err)
		}
		return k, "--audit-key", nil
	}
	// The default data dir is only taken to be the server's when the owner
	// token comes from it too; a stray ./purser-data must not pin the key
	// of some other server.
	if o.data == "" && strings.TrimSpace(e.getenv("PURSER_OWNER_TOKEN")) != "" {
		return nil, "", nil
	}
	path := filepath.Join(e.dataDir(o), "audit.pub")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	k, err := parseAuditKey(string(b))
	if err != nil {
		return nil, "", fmt.Errorf("%s: %s", path, err)
	}
	return k, path, nil
}

func parseAuditKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "0x")
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("want %d bytes of hex (an ed25519 public key)", ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

func runAuditVerify(ctx context.Context, e *env, o *opts, args []string) error {
	if len(args) > 1 {
		return usagef(o.path, "unexpected argument %q", args[1])
	}
	key, from, err := e.trustedAuditKey(o)
	if err != nil {
		return err
	}
	// An earlier export the owner kept is the anchor a database writer
	// cannot reach: it must verify on its own, and pins its key when none
	// is pinned.
	var anchor *audit.Trusted
	if o.trusted != "" {
		f, err := os.Open(o.trusted)
		if err != nil {
			return usagef(o.path, "--trusted: %s", err)
		}
		anchor, err = audit.ReadTrustedExport(f, key, o.trusted)
		f.Close()
		if err != nil {
			return verifyFailed(e, o, fmt.Errorf("the trusted export %s does not verify: %v", o.trusted, err))
		}
		if key == nil {
			key, from = anchor.Key(), "--trusted "+o.trusted
		}
	}
	var r io.ReadCloser
	if len(args) == 1 {
		// Offline: no server involved.
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		r = f
	} else {
		c, err := e.ownerClient(o)
		if err != nil {
			return err
		}
		// The server checks what an export cannot show: checkpoints beyond
		// the head and the copy of the last one in its data directory.
		if _, err := c.AuditVerify(ctx); err != nil {
			var ae *sdk.Error
			if errors.As(err, &ae) && ae.Code == "audit_chain_broken" {
				seq, _ := ae.Details["seq"].(float64)
				reason, _ := ae.Details["reason"].(string)
				return verifyFailed(e, o, &audit.VerifyError{Seq: int64(seq), Reason: reason})
			}
			return err
		}
		if r, err = c.AuditExport(ctx, "jsonl"); err != nil {
			return err
		}
	}
	defer r.Close()
	if key == nil && !o.json {
		fmt.Fprintf(e.stdio.Err, "note: the audit key is not pinned (no --audit-key, no %s): trusting the key in the export's own header\n",
			filepath.Join(e.dataDir(o), "audit.pub"))
	}
	var res audit.Result
	if anchor != nil {
		res, err = audit.VerifyExportExtending(r, key, anchor)
	} else {
		res, err = audit.VerifyExport(r, key)
	}
	if err != nil {
		return verifyFailed(e, o, err)
	}
	if o.json {
		out := map[string]any{"ok": true, "events": res.Events, "head_seq": res.HeadSeq,
			"checkpoints": res.Checkpoints, "key_id": res.KeyID, "pinned": key != nil, "passkey_approvals": res.PasskeyApprovals}
		if anchor != nil {
			out["trusted_seq"] = anchor.Checkpoint.Seq
		}
		return writeJSON(e.stdio.Out, out)
	}
	pinned := "not pinned"
	if key != nil {
		pinned = "pinned by " + from
	}
	fmt.Fprintf(e.stdio.Out, "audit chain OK: %v events, head seq %v, %v checkpoints, key %v (%s)\n",
		res.Events, res.HeadSeq, res.Checkpoints, res.KeyID, pinned)
	if anchor != nil {
		fmt.Fprintf(e.stdio.Out, "extends %s (signed head seq %d)\n", o.trusted, anchor.Checkpoint.Seq)
	}
	if res.PasskeyApprovals > 0 {
		fmt.Fprintf(e.stdio.Out, "%d approvals signed with an owner's passkey verified\n", res.PasskeyApprovals)
	}
	return nil
}

// verifyFailed reports a chain that does not verify and exits 1.
func verifyFailed(e *env, o *opts, err error) error {
	var ve *audit.VerifyError
	if o.json {
		out := map[string]any{"ok": false, "error": err.Error()}
		if errors.As(err, &ve) {
			out["seq"], out["reason"] = ve.Seq, ve.Reason
		}
		writeJSON(e.stdio.Out, out) //nolint:errcheck // the exit code says it
	} else if errors.As(err, &ve) {
		fmt.Fprintf(e.stdio.Out, "audit chain BROKEN at seq %d: %s\n", ve.Seq, ve.Reason)
	} else {
		fmt.Fprintf(e.stdio.Out, "audit chain NOT verified: %s\n", err)
	}
	return exitCode(ExitFailure)
}
