package spend

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"time"
)

// Share refresh (purser agent rotate-key on a 2of2 agent): both shares are
// re-randomised, the address stays. The library does not protect a refresh
// against a peer that makes the new shares inconsistent, so the server
// keeps its old share active until a signature made with the NEW pair over
// a fixed check digest recovers to the address; only then does it switch.
//
//	POST .../cosign/refresh          m1, m3, m5 → m2, m4, done (new share pending)
//	POST .../cosign/refresh/commit   the check's signing m1 → m2 (pending share, once)
//	POST .../cosign/refresh/finish   the check signature → new share active, epoch+1
//
// The pending share lives sealed (AAD of the new epoch) in this process's
// memory only, for KeygenTTL: a refresh never committed, cut by a restart or
// failed anywhere changes nothing, and the old pair keeps working.

// refreshRun is one share refresh in progress for an agent.
type refreshRun struct {
	sess     CosignKeygenSession
	deadline time.Time
	busy     bool
	from     int64    // the epoch being refreshed
	sid      [32]byte // the refresh session id (the check digest names it)
	pending  []byte   // the new server share, sealed for epoch from+1, once generated
	signed   bool     // the check's signing session ran (the pending share signs once)
	done     []byte   // the check signature, once the new share is active
}

func (s *Service) refreshRuns() map[string]*refreshRun {
	if s.cosign.refresh == nil {
		s.cosign.refresh = map[string]*refreshRun{}
	}
	return s.cosign.refresh
}

// RefreshResult is one step of a share refresh: the server's next message,
// or, when Done, the (unchanged) address and the epoch the new shares take
// once committed.
type RefreshResult struct {
	Message []byte
	Done    bool
	Address string
	Epoch   int64
}

// refreshKey loads a 2of2 agent's ready key for a refresh. A revoked agent
// is refused (as its identity key rotation is); a frozen one may refresh:
// rotating keys is what an owner does after an incident.
func (s *Service) refreshKey(ctx context.Context, ref string) (*Agent, *CosignKey, error) {
	if s.cfg.Sealer == nil || s.cfg.Cosign == nil {
		return nil, nil, Errorf(CodeCosignNotReady, "this server has no keystore or co-signing engine")
	}
	var a *Agent
	var k *CosignKey
	err := s.read(ctx, func(tx Tx) error {
		var err error
		if a, err = getAgent(ctx, tx, ref); err != nil {
			return err
		}
		if a.Custody != Custody2of2 {
			return Errorf(CodeCosignCustodyMismatch, "agent %s has a server-held wallet: there are no shares to refresh", a.Name)
		}
		if a.Status == AgentRevoked {
			return Errorf(CodeInvalidState, "agent %s is revoked", a.Name)
		}
		if k, err = tx.CosignKeyGet(ctx, a.ID); err != nil {
			return err
		}
		if !k.Ready() {
			return Errorf(CodeCosignNotReady, "agent %s's co-signed key is not generated yet", a.Name)
		}
		return nil
	})
	return a, k, err
}

// CosignRefresh runs the server's side of a share refresh (owner only), one
// message at a time like CosignKeygen. When it ends the new server share is
// kept pending; the old one stays active until CosignRefreshFinish.
func (s *Service) CosignRefresh(ctx context.Context, ref string, msg []byte) (*RefreshResult, error) {
	if len(msg) == 0 || len(msg) > MaxCosignMessage {
		return nil, Errorf(CodeCosignMessageInvalid, "a refresh message is 1 to %d bytes", MaxCosignMessage)
	}
	a, k, err := s.refreshKey(ctx, ref)
	if err != nil {
		return nil, err
	}
	now := s.clock.Now()
	s.mu.Lock()
	runs := s.refreshRuns()
	run := runs[a.ID]
	if run != nil && !run.busy && (!now.Before(run.deadline) || run.pending != nil || run.from != k.Epoch) {
		delete(runs, a.ID) // expired, or a new refresh replaces one not committed: the old pair stays
		run = nil
	}
	switch {
	case run != nil && run.busy:
		s.mu.Unlock()
		return nil, Errorf(CodeInvalidState, "a refresh message for agent %s is being handled", a.Name)
	case run == nil:
		share, err := s.cfg.Sealer.Decrypt(k.SealedShare, shareAAD(a.ID, k.Epoch))
		if err != nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("spend: open co-signing share of agent %s: %w", a.ID, err)
		}
		sess, err := s.cfg.Cosign.NewRefresh(share, msg)
		clear(share)
		var sid [32]byte
		if err == nil {
			sid, err = s.cfg.Cosign.RefreshSessionID(msg)
		}
		if err != nil {
			s.mu.Unlock()
			return nil, Errorf(CodeCosignMessageInvalid, "no refresh is running for agent %s and this is no first message (%v)", a.Name, err)
		}
		run = &refreshRun{sess: sess, deadline: now.Add(KeygenTTL), from: k.Epoch, sid: sid}
		runs[a.ID] = run
	}
	run.busy = true
	s.mu.Unlock()

	out, herr := run.sess.Handle(msg)
	var share []byte
	if herr == nil && run.sess.Done() {
		var pub []byte
		var addr string
		if share, pub, addr, herr = run.sess.Share(); herr == nil && (addr != k.Address || !bytes.Equal(pub, k.PublicKey)) {
			herr = fmt.Errorf("the refresh changed the key")
		}
	}
	var sealed []byte
	if herr == nil && share != nil {
		sealed, herr = s.cfg.Sealer.Encrypt(share, shareAAD(a.ID, k.Epoch+1))
		clear(share)
	}
	s.mu.Lock()
	run.busy = false
	if herr != nil {
		delete(runs, a.ID)
	} else if sealed != nil {
		run.pending, run.sess = sealed, nil
	}
	s.mu.Unlock()
	if herr != nil {
		s.log.Warn("cosign refresh message refused", "agent_id", a.ID, "err", herr)
		return nil, Errorf(CodeCosignMessageInvalid, "the refresh message was refused (%v); nothing changed, start again", herr)
	}
	if sealed == nil {
		return &RefreshResult{Message: out}, nil
	}
	return &RefreshResult{Done: true, Address: k.Address, Epoch: k.Epoch + 1}, nil
}

// pendingRefresh returns agent a's refresh whose new share is pending.
func (s *Service) pendingRefresh(a *Agent, k *CosignKey) (*refreshRun, error) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	run := s.refreshRuns()[a.ID]
	if run == nil || run.pending == nil || run.from != k.Epoch && run.done == nil || !now.Before(run.deadline) {
		return nil, Errorf(CodeCosignNotReady, "agent %s has no refreshed share waiting: run the refresh first", a.Name)
	}
	return run, nil
}

// CosignRefreshCommit runs the server's part of the check signature with
// the pending share (once per refresh): m1 → m2 over the check digest of
// epoch+1. A refused message drops the pending share; the old pair stays.
func (s *Service) CosignRefreshCommit(ctx context.Context, ref string, m1 []byte) ([]byte, error) {
	if len(m1) == 0 || len(m1) > MaxCosignMessage {
		return nil, Errorf(CodeCosignMessageInvalid, "a co-signing message is 1 to %d bytes", MaxCosignMessage)
	}
	a, k, err := s.refreshKey(ctx, ref)
	if err != nil {
		return nil, err
	}
	run, err := s.pendingRefresh(a, k)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if run.signed || run.busy {
		s.mu.Unlock()
		return nil, Errorf(CodeCosignSessionUsed, "agent %s's refreshed share has signed its check already: start a new refresh", a.Name)
	}
	run.signed = true // the pending share runs one signing session, ever
	s.mu.Unlock()
	epoch := run.from + 1
	share, err := s.cfg.Sealer.Decrypt(run.pending, shareAAD(a.ID, epoch))
	if err != nil {
		return nil, fmt.Errorf("spend: open the refreshed share of agent %s: %w", a.ID, err)
	}
	defer clear(share)
	spendID, digest := s.cfg.Cosign.RefreshCheck(a.ID, epoch, run.sid)
	m2, err := s.cfg.Cosign.ServerSign(share, a.ID, spendID, digest, m1)
	if err != nil {
		s.mu.Lock()
		if s.refreshRuns()[a.ID] == run {
			delete(s.refreshRuns(), a.ID)
		}
		s.mu.Unlock()
		s.log.Warn("cosign refresh check message refused", "agent_id", a.ID, "err", err)
		return nil, Errorf(CodeCosignMessageInvalid, "the check signing message was refused (%v); nothing changed, start again", err)
	}
	return m2, nil
}

// CosignRefreshFinish takes the check signature: if it recovers to the
// agent's (unchanged) address over the check digest, the pending share
// becomes the active one under epoch+1, the old one is gone, and
// agent.cosign_refresh is appended. An agent that had a recovery blob must
// send the new share's (recoveryPub, recoveryCT): the old one holds a dead
// share. The same signature again answers the same.
func (s *Service) CosignRefreshFinish(ctx context.Context, ref string, sig []byte, recoveryPub, recoveryCT string) (*CosignKey, error) {
	if recoveryPub != "" || recoveryCT != "" {
		if err := checkRecovery(recoveryPub, recoveryCT); err != nil {
			return nil, err
		}
	}
	a, k, err := s.refreshKey(ctx, ref)
	if err != nil {
		return nil, err
	}
	run, err := s.pendingRefresh(a, k)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	signed, done := run.signed, run.done
	s.mu.Unlock()
	if done != nil {
		if !bytes.Equal(done, sig) {
			return nil, Errorf(CodeCosignSignatureInvalid, "agent %s's refresh was committed with another signature", a.Name)
		}
		return k, nil
	}
	if !signed {
		return nil, Errorf(CodeCosignNotReady, "agent %s's refreshed share has not signed its check yet: commit first", a.Name)
	}
	epoch := run.from + 1
	_, digest := s.cfg.Cosign.RefreshCheck(a.ID, epoch, run.sid)
	if !s.cfg.Cosign.VerifySignature(sig, digest, k.Address) {
		return nil, Errorf(CodeCosignSignatureInvalid, "the check signature does not recover to %s over the refresh check digest with low s and v 27/28; the old shares stay active", k.Address)
	}
	var out *CosignKey
	err = s.inTx(ctx, func(tx Tx) error {
		now := s.now()
		a, err := tx.AgentLock(ctx, a.ID)
		if err != nil {
			return err
		}
		if a.Status == AgentRevoked {
			return Errorf(CodeInvalidState, "agent %s is revoked", a.Name)
		}
		k, err := tx.CosignKeyGet(ctx, a.ID)
		if err != nil {
			return err
		}
		if k.Epoch != run.from {
			return Errorf(CodeInvalidState, "agent %s's shares changed during the refresh (epoch %d, not %d): start again", a.Name, k.Epoch, run.from)
		}
		if k.RecoveryCiphertext != "" && recoveryCT == "" {
			return Errorf(CodeInvalidRequest, "agent %s has a recovery copy of its share, which the refresh makes useless: send the new share's recovery blob", a.Name).
				WithDetails(map[string]any{"field": "recovery"})
		}
		details := map[string]any{"agent_id": a.ID, "address": k.Address, "epoch_from": k.Epoch, "epoch_to": epoch,
			"check_signature": "0x" + hex.EncodeToString(sig)}
		if recoveryCT != "" {
			k.RecoveryPublicKey, k.RecoveryCiphertext = recoveryPub, recoveryCT
			details["recovery_public_key"], details["recovery_ciphertext_sha256"] = recoveryPub, sha256Hex([]byte(recoveryCT))
		}
		k.SealedShare, k.Epoch, k.UpdatedAt = run.pending, epoch, now
		if err := tx.CosignKeyUpdate(ctx, k); err != nil {
			return err
		}
		out = k
		return appendAudit(ctx, tx, now, OwnerActor, "agent.cosign_refresh", "agent:"+a.ID, details)
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	run.done = append([]byte(nil), sig...)
	s.mu.Unlock()
	return out, nil
}
