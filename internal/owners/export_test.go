package owners_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/audit"
)

// reseal rewrites an export after edit changed the details of some
// events: every event is sealed again and the head signed again with the
// server's own audit key, as a database writer who also stole that key
// could. What is left to catch an edit is the owner's passkey signature.
func reseal(t *testing.T, h *harness, exp []byte, edit func(action string, details map[string]any)) []byte {
	t.Helper()
	var out bytes.Buffer
	signer := h.env.Keys.AuditSigner()
	w, err := audit.NewWriter(&out, signer.Public(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var prev [32]byte
	var last *audit.Event
	for _, line := range bytes.Split(bytes.TrimSpace(exp), []byte("\n")) {
		var el struct {
			Type    string         `json:"type"`
			Seq     int64          `json:"seq"`
			Time    string         `json:"time"`
			Actor   audit.Actor    `json:"actor"`
			Action  string         `json:"action"`
			Subject string         `json:"subject"`
			Details map[string]any `json:"details"`
		}
		if err := json.Unmarshal(line, &el); err != nil {
			t.Fatal(err)
		}
		if el.Type != "event" {
			continue
		}
		edit(el.Action, el.Details)
		at, err := time.Parse("2006-01-02T15:04:05.000000Z", el.Time)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(el.Details)
		e := &audit.Event{Seq: el.Seq, Time: at, Actor: el.Actor, Action: el.Action, Subject: el.Subject, Details: raw}
		if err := e.Seal(prev); err != nil {
			t.Fatal(err)
		}
		prev, last = e.Hash, e
		if err := w.WriteEvent(e); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := audit.SignCheckpoint(signer, last.Seq, last.Hash, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteCheckpoint(cp); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestAlteredApprovalExport: `audit verify` fails on an export whose
// approval assertion was altered. Edited in place, the chain's hash
// breaks; re-sealed and re-signed with the audit key, the chain is
// consistent and the passkey signature check alone fails it.
func TestAlteredApprovalExport(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	b, cred := h.enrol(h.invite("alice"))
	sp := h.pending(h.agent("a1"), "5")
	must(t, b.approve(sp.ID, cred), 200)
	exp := h.export()
	if _, err := audit.VerifyExport(bytes.NewReader(exp), h.env.Keys.AuditSigner().Public()); err != nil {
		t.Fatalf("the untouched export fails: %v", err)
	}
	// The untouched chain survives resealing: the test's rewrite is exact.
	if _, err := audit.VerifyExport(bytes.NewReader(reseal(t, h, exp, func(string, map[string]any) {})), nil); err != nil {
		t.Fatalf("resealed untouched export fails: %v", err)
	}

	flipSig := func(action string, d map[string]any) {
		if action != "spend.approve" {
			return
		}
		pk := d["passkey"].(map[string]any)
		sig, _ := b64.DecodeString(pk["signature"].(string))
		sig[len(sig)-2] ^= 1
		pk["signature"] = b64.EncodeToString(sig)
	}
	// In place: one byte of the signature in the export's line.
	var line []byte
	for _, l := range bytes.Split(exp, []byte("\n")) {
		if bytes.Contains(l, []byte(`"action":"spend.approve"`)) {
			line = l
		}
	}
	var d struct {
		Details map[string]any `json:"details"`
	}
	json.Unmarshal(line, &d) //nolint:errcheck
	oldSig := d.Details["passkey"].(map[string]any)["signature"].(string)
	flipSig("spend.approve", d.Details)
	newSig := d.Details["passkey"].(map[string]any)["signature"].(string)
	inPlace := bytes.Replace(exp, []byte(oldSig), []byte(newSig), 1)
	if _, err := audit.VerifyExport(bytes.NewReader(inPlace), nil); err == nil {
		t.Fatal("an export with an altered signature verifies")
	}

	for name, edit := range map[string]func(string, map[string]any){
		"signature": flipSig,
		"client data": func(action string, d map[string]any) {
			if action == "spend.approve" {
				pk := d["passkey"].(map[string]any)
				cd, _ := b64.DecodeString(pk["client_data_json"].(string))
				pk["client_data_json"] = b64.EncodeToString(bytes.Replace(cd, []byte(`"crossOrigin":false`), []byte(`"crossOrigin":true `), 1))
			}
		},
		"the payee the owner saw": func(action string, d map[string]any) {
			if action == "spend.request_approval" {
				d["payee"] = "0x000000000000000000000000000000000000beef"
			}
		},
		"the passkey's public key": func(action string, d map[string]any) {
			if action == "owner.passkey_added" {
				other := (&softAuthenticator{}).mustKeySPKI(t)
				d["public_key_spki"] = other
			}
		},
	} {
		_, err := audit.VerifyExport(bytes.NewReader(reseal(t, h, exp, edit)), nil)
		var ve *audit.VerifyError
		if !errors.As(err, &ve) || !strings.Contains(ve.Reason, "approval assertion") {
			t.Errorf("%s altered and re-sealed: %v, want a failed approval assertion", name, err)
		}
	}
}
