package spend

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sealer is the keystore's envelope encryption (keystore.Keystore): the
// server's cosign shares are stored sealed with it.
type Sealer interface {
	Encrypt(plaintext, aad []byte) ([]byte, error)
	Decrypt(ciphertext, aad []byte) ([]byte, error)
}

// KeygenTTL is how long a key generation may take; its state lives in this
// process only, so a restart loses it and the owner starts again.
const KeygenTTL = 2 * time.Minute

// MaxCosignMessage bounds a co-signing protocol message: internal/cosign's
// largest frame (header, 320 KiB of payload, MAC).
const MaxCosignMessage = 44 + (320 << 10) + 32 // cosignsrv tests it is cosign.MaxMessageBytes

// keygenRun is one key generation in progress for an agent.
type keygenRun struct {
	sess     CosignKeygenSession
	deadline time.Time
	busy     bool
}

// cosignState is the service's in-memory co-signing state.
type cosignState struct {
	runs    map[string]*keygenRun  // agent id → its key generation
	refresh map[string]*refreshRun // agent id → its share refresh
}

func shareAAD(agentID string, epoch int64) []byte {
	return fmt.Appendf(nil, "cosign:%s:%d", agentID, epoch)
}

// KeygenResult is one step of a key generation: the server's next message,
// or, when Done, the wallet's address and compressed public key.
type KeygenResult struct {
	Message   []byte
	Done      bool
	Address   string
	PublicKey []byte
}

// CosignKeygen runs the server's side of a co-signed agent's key generation
// (owner only), one message at a time: the agent side's m1, m3, m5. When it
// ends, the server's share is stored sealed, with one wallet per configured
// EVM network, and agent.cosign_keygen is appended. The session lives in
// memory for KeygenTTL; one runs per agent at a time.
func (s *Service) CosignKeygen(ctx context.Context, ref string, msg []byte) (*KeygenResult, error) {
	if s.cfg.Sealer == nil || s.cfg.Cosign == nil {
		return nil, Errorf(CodeCosignNotReady, "this server has no keystore or co-signing engine")
	}
	if len(msg) == 0 || len(msg) > MaxCosignMessage {
		return nil, Errorf(CodeCosignMessageInvalid, "a key generation message is 1 to %d bytes", MaxCosignMessage)
	}
	var a *Agent
	err := s.read(ctx, func(tx Tx) error {
		var err error
		if a, err = getAgent(ctx, tx, ref); err != nil {
			return err
		}
		if a.Custody != Custody2of2 {
			return Errorf(CodeCosignCustodyMismatch, "agent %s has a server-held wallet; create it with custody 2of2 to co-sign", a.Name)
		}
		k, err := tx.CosignKeyGet(ctx, a.ID)
		if err != nil {
			return err
		}
		if k.Ready() {
			return Errorf(CodeCosignCustodyMismatch, "agent %s has its co-signed key already", a.Name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	now := s.clock.Now()
	s.mu.Lock()
	if s.cosign.runs == nil {
		s.cosign.runs = map[string]*keygenRun{}
	}
	run := s.cosign.runs[a.ID]
	if run != nil && !now.Before(run.deadline) && !run.busy {
		delete(s.cosign.runs, a.ID)
		run = nil
	}
	switch {
	case run != nil && run.busy:
		s.mu.Unlock()
		return nil, Errorf(CodeInvalidState, "a key generation message for agent %s is being handled", a.Name)
	case run == nil:
		sess, err := s.cfg.Cosign.NewKeygen(msg)
		if err != nil {
			s.mu.Unlock()
			return nil, Errorf(CodeCosignMessageInvalid, "no key generation is running for agent %s and this is no first message (%v)", a.Name, err)
		}
		run = &keygenRun{sess: sess, deadline: now.Add(KeygenTTL)}
		s.cosign.runs[a.ID] = run
	}
	run.busy = true
	s.mu.Unlock()

	out, herr := run.sess.Handle(msg)
	s.mu.Lock()
	run.busy = false
	done := herr == nil && run.sess.Done()
	if herr != nil || done {
		delete(s.cosign.runs, a.ID)
	}
	s.mu.Unlock()
	if herr != nil {
		s.log.Warn("cosign key generation message refused", "agent_id", a.ID, "err", herr)
		return nil, Errorf(CodeCosignMessageInvalid, "the key generation message was refused (%v); start again", herr)
	}
	if !done {
		return &KeygenResult{Message: out}, nil
	}
	share, pub, addr, err := run.sess.Share()
	if err != nil {
		return nil, Errorf(CodeCosignMessageInvalid, "the key generation did not produce a share (%v); start again", err)
	}
	defer clear(share)
	return s.storeKeygen(ctx, a.ID, share, pub, addr)
}

func (s *Service) storeKeygen(ctx context.Context, agentID string, share, pub []byte, addr string) (*KeygenResult, error) {
	const epoch = 1
	sealed, err := s.cfg.Sealer.Encrypt(share, shareAAD(agentID, epoch))
	if err != nil {
		return nil, fmt.Errorf("spend: seal co-signing share: %w", err)
	}
	err = s.inTx(ctx, func(tx Tx) error {
		now := s.now()
		a, err := tx.AgentLock(ctx, agentID)
		if err != nil {
			return err
		}
		k, err := tx.CosignKeyGet(ctx, a.ID)
		if err != nil {
			return err
		}
		if k.Ready() {
			return Errorf(CodeCosignCustodyMismatch, "agent %s has its co-signed key already", a.Name)
		}
		k.PublicKey, k.Address, k.SealedShare, k.Epoch, k.UpdatedAt = pub, addr, sealed, epoch, now
		if err := tx.CosignKeyUpdate(ctx, k); err != nil {
			return err
		}
		var ws []Wallet
		for _, n := range s.cfg.CosignNetworks {
			w := Wallet{AgentID: a.ID, Network: n, Address: addr, Custody: WalletCustodyCosign}
			if err := tx.WalletAdd(ctx, &w); err != nil {
				return err
			}
			ws = append(ws, w)
		}
		return appendAudit(ctx, tx, now, OwnerActor, "agent.cosign_keygen", "agent:"+a.ID, map[string]any{
			"agent_id": a.ID, "address": addr, "public_key": "0x" + hex.EncodeToString(pub), "epoch": epoch, "wallets": walletDetails(ws)})
	})
	if err != nil {
		return nil, err
	}
	return &KeygenResult{Done: true, Address: addr, PublicKey: pub}, nil
}

// maxRecoveryField bounds the recovery blob's fields (base64): an HPKE
// ciphertext of a 4 KiB agent share is well under it.
const maxRecoveryField = 16 << 10

func checkRecovery(pub, ct string) error {
	p, err := base64.StdEncoding.DecodeString(pub)
	if err != nil || len(p) != 32 {
		return Errorf(CodeInvalidRequest, "recovery.public_key must be a base64 X25519 public key (32 bytes)").WithDetails(map[string]any{"field": "recovery.public_key"})
	}
	c, err := base64.StdEncoding.DecodeString(ct)
	if err != nil || len(c) == 0 || len(ct) > maxRecoveryField {
		return Errorf(CodeInvalidRequest, "recovery.ciphertext must be base64, 1 to %d characters", maxRecoveryField).WithDetails(map[string]any{"field": "recovery.ciphertext"})
	}
	return nil
}

// CosignRecoverySet stores the agent share encrypted to the owner's
// recovery key (opaque to the server), audited agent.cosign_recovery_set.
func (s *Service) CosignRecoverySet(ctx context.Context, ref, pub, ct string) (*CosignKey, error) {
	if err := checkRecovery(pub, ct); err != nil {
		return nil, err
	}
	var out *CosignKey
	err := s.inTx(ctx, func(tx Tx) error {
		now := s.now()
		a, err := lockAgent(ctx, tx, ref)
		if err != nil {
			return err
		}
		if a.Custody != Custody2of2 {
			return Errorf(CodeCosignCustodyMismatch, "agent %s has a server-held wallet", a.Name)
		}
		k, err := tx.CosignKeyGet(ctx, a.ID)
		if err != nil {
			return err
		}
		k.RecoveryPublicKey, k.RecoveryCiphertext, k.UpdatedAt = pub, ct, now
		if err := tx.CosignKeyUpdate(ctx, k); err != nil {
			return err
		}
		out = k
		sum := sha256Hex([]byte(ct))
		return appendAudit(ctx, tx, now, OwnerActor, "agent.cosign_recovery_set", "agent:"+a.ID, map[string]any{
			"agent_id": a.ID, "recovery_public_key": pub, "ciphertext_sha256": sum})
	})
	return out, err
}

// CosignRecoveryGet returns an agent's recovery blob (owner only).
func (s *Service) CosignRecoveryGet(ctx context.Context, ref string) (*CosignKey, error) {
	var out *CosignKey
	err := s.read(ctx, func(tx Tx) error {
		a, err := getAgent(ctx, tx, ref)
		if err != nil {
			return err
		}
		if a.Custody != Custody2of2 {
			return Errorf(CodeCosignCustodyMismatch, "agent %s has a server-held wallet", a.Name)
		}
		k, err := tx.CosignKeyGet(ctx, a.ID)
		if err != nil {
			return err
		}
		if k.RecoveryCiphertext == "" {
			return Errorf(CodeCosignNotReady, "agent %s has no recovery blob", a.Name)
		}
		out = k
		return nil
	})
	return out, err
}

// WalletOf reads, in one read-only transaction, an agent and, for a
// co-signed (2of2) one, its wallet address: what a signing rail needs to
// know which key signs (a server-held one at a.WalletIndex, or none).
// A co-signed agent whose key generation has not finished has no wallet:
// cosign_not_ready.
func (s *Service) WalletOf(ctx context.Context, agentID string) (*Agent, string, error) {
	var a *Agent
	var addr string
	err := s.read(ctx, func(tx Tx) error {
		var err error
		if a, err = tx.AgentGet(ctx, agentID); err != nil || a.Custody != Custody2of2 {
			return err
		}
		k, err := tx.CosignKeyGet(ctx, a.ID)
		if err != nil {
			return err
		}
		if !k.Ready() {
			return Errorf(CodeCosignNotReady, "agent %s's co-signed key is not generated yet", a.Name)
		}
		addr = k.Address
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return a, addr, nil
}

// checkCosignReady refuses, in the decision's transaction, a spend on a
// signing rail for a co-signed agent whose key does not exist yet.
func (s *Service) checkCosignReady(ctx context.Context, tx Tx, a *Agent, rail string) error {
	if a.Custody != Custody2of2 {
		return nil
	}
	if _, ok := s.rails[rail].(Signer); !ok {
		return nil
	}
	k, err := tx.CosignKeyGet(ctx, a.ID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if !k.Ready() {
		return Errorf(CodeCosignNotReady, "agent %s's co-signed wallet has no key yet: run its key generation first", a.Name)
	}
	return nil
}

// withCosign sets sp.Cosign when sp awaits its co-signature (authorized,
// an unsigned instrument built, no session run): what the agent signs.
func (s *Service) withCosign(ctx context.Context, sp *Spend) (*Spend, error) {
	if sp == nil || sp.Status != StatusAuthorized || sp.RailRef != "" || len(sp.RailData) == 0 {
		return sp, nil
	}
	cs, ok := s.rails[sp.Rail].(Cosigner)
	if !ok || s.cfg.Cosign == nil {
		return sp, nil
	}
	plan, err := cs.CosignPlan(sp)
	if err != nil || plan.Signed {
		return sp, err
	}
	var k *CosignKey
	if err := s.read(ctx, func(tx Tx) error {
		var err error
		k, err = tx.CosignKeyGet(ctx, sp.AgentID)
		return err
	}); err != nil {
		return nil, err
	}
	sid := s.cfg.Cosign.SignSessionID(k.PublicKey, sp.AgentID, sp.ID, plan.Digest)
	cp := *sp
	cp.Cosign = &CosignSigning{SessionID: "0x" + hex.EncodeToString(sid[:]), Plan: plan}
	return &cp, nil
}

// CosignSign is step 2 of co-signing: the agent's first message m1 for its
// authorized spend. In one transaction under the agent's lock it re-checks
// the spend (lastCheck: agent active, mandate, hold not expired), claims the
// session id in the durable ledger, and records the authorization as signed
// (RailRef = its nonce, the hold kept until validBefore): once the server's
// answer leaves, the agent can finish the signature without coming back.
// Only after that commit does the server compute its part, over the digest
// of the authorization it built itself, and answer it (m2).
func (s *Service) CosignSign(ctx context.Context, c Caller, spendID string, m1 []byte) ([]byte, error) {
	if len(m1) == 0 || len(m1) > MaxCosignMessage {
		return nil, Errorf(CodeCosignMessageInvalid, "a co-signing message is 1 to %d bytes", MaxCosignMessage)
	}
	var share []byte
	var agentID, sidHex string
	var digest [32]byte
	var refused error
	defer func() { clear(share) }()
	err := s.inTx(ctx, func(tx Tx) error {
		clear(share)
		share, refused = nil, nil
		now := s.now()
		a, err := s.authAgent(ctx, tx, c, true)
		if err != nil {
			return err
		}
		sp, err := ownSpend(ctx, tx, a, spendID)
		if err != nil {
			return err
		}
		_, plan, k, err := s.cosignSpend(ctx, tx, a, sp)
		if err != nil {
			return err
		}
		if sp.RailRef != "" || plan.Signed {
			return Errorf(CodeCosignSessionUsed, "spend %s was co-signed already: a spend has one signing session", sp.ID).WithDetails(map[string]any{"spend_id": sp.ID})
		}
		if !now.Before(plan.ValidBefore) {
			return Errorf(CodeInvalidState, "spend %s's authorization expired at %s", sp.ID, plan.ValidBefore.Format(time.RFC3339)).WithDetails(map[string]any{"status": sp.Status})
		}
		if refused, err = s.lastCheck(ctx, tx, a, sp, now); err != nil || refused != nil {
			return err // a refusal is committed: the spend was ended
		}
		if share, err = s.cfg.Sealer.Decrypt(k.SealedShare, shareAAD(a.ID, k.Epoch)); err != nil {
			return fmt.Errorf("spend: open co-signing share of agent %s: %w", a.ID, err)
		}
		agentID, digest = a.ID, plan.Digest
		sid := s.cfg.Cosign.SignSessionID(k.PublicKey, a.ID, sp.ID, plan.Digest)
		sidHex = "0x" + hex.EncodeToString(sid[:])
		if err := tx.CosignSessionClaim(ctx, &CosignSession{SessionID: sidHex, AgentID: a.ID, SpendID: sp.ID, Kind: "sign", CreatedAt: now}); err != nil {
			if errors.Is(err, ErrConflict) {
				return Errorf(CodeCosignSessionUsed, "spend %s's signing session was run already", sp.ID).WithDetails(map[string]any{"spend_id": sp.ID})
			}
			return err
		}
		sp.RailRef, sp.ExpiresAt, sp.UpdatedAt = plan.Ref, plan.ValidBefore.UTC().Truncate(time.Microsecond), now
		if err := tx.SpendUpdate(ctx, sp); err != nil {
			return err
		}
		return appendAudit(ctx, tx, now, agentActor(a), "spend.sign", "spend:"+sp.ID, map[string]any{
			"spend_id": sp.ID, "agent_id": sp.AgentID, "rail": sp.Rail, "rail_ref": sp.RailRef, "valid_until": sp.ExpiresAt.Unix(),
			"cosign": true, "session_id": sidHex, "digest": "0x" + hex.EncodeToString(plan.Digest[:]), "intent": intentOf(c)})
	})
	if err != nil {
		return nil, err
	}
	if refused != nil {
		return nil, refused
	}
	m2, err := s.cfg.Cosign.ServerSign(share, agentID, spendID, digest, m1)
	if err != nil {
		s.log.Warn("cosign signing message refused", "agent_id", agentID, "spend_id", spendID, "err", err)
		if ferr := s.cosignFailed(context.WithoutCancel(ctx), agentID, spendID, sidHex, err); ferr != nil {
			s.log.Error("cosign: recording a failed session", "agent_id", agentID, "spend_id", spendID, "err", ferr)
		}
		return nil, Errorf(CodeCosignMessageInvalid, "the co-signing message was refused (%v); nothing was signed and the session is spent", err).
			WithDetails(map[string]any{"spend_id": spendID})
	}
	return m2, nil
}

// cosignSpend checks that sp is a co-signed agent's spend on a rail that
// co-signs, with an unsigned instrument built, and returns its plan and
// the agent's key.
func (s *Service) cosignSpend(ctx context.Context, tx Tx, a *Agent, sp *Spend) (Cosigner, *CosignPlan, *CosignKey, error) {
	if a.Custody != Custody2of2 {
		return nil, nil, nil, Errorf(CodeCosignCustodyMismatch, "agent %s's wallet is server-held: nothing to co-sign", a.Name)
	}
	if s.cfg.Cosign == nil || s.cfg.Sealer == nil {
		return nil, nil, nil, Errorf(CodeCosignNotReady, "this server has no co-signing engine")
	}
	cs, ok := s.rails[sp.Rail].(Cosigner)
	if !ok {
		return nil, nil, nil, Errorf(CodeInvalidRequest, "rail %s signs nothing", sp.Rail)
	}
	switch sp.Status {
	case StatusAuthorized:
	case StatusPendingApproval:
		return nil, nil, nil, Errorf(CodeInvalidState, "spend %s is still waiting for an owner's approval", sp.ID).WithDetails(map[string]any{"status": sp.Status})
	case StatusDenied:
		return nil, nil, nil, deniedErr(sp, sp.Reasons)
	default:
		if sp.RailRef == "" {
			return nil, nil, nil, Errorf(CodeInvalidState, "spend %s is %s", sp.ID, sp.Status).WithDetails(map[string]any{"status": sp.Status})
		}
	}
	if len(sp.RailData) == 0 {
		return nil, nil, nil, Errorf(CodeCosignNotReady, "spend %s has no authorization to co-sign yet: confirm it first", sp.ID)
	}
	plan, err := cs.CosignPlan(sp)
	if err != nil {
		return nil, nil, nil, err
	}
	k, err := tx.CosignKeyGet(ctx, a.ID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, nil, nil, err
	}
	if !k.Ready() {
		return nil, nil, nil, Errorf(CodeCosignNotReady, "agent %s's co-signed key is not generated yet", a.Name)
	}
	if !strings.EqualFold(plan.Authorization.From, k.Address) {
		return nil, nil, nil, Errorf(CodeInvalidState, "spend %s's authorization is not from the agent's co-signed wallet", sp.ID)
	}
	return cs, plan, k, nil
}

// CosignFinish is step 3: the signature the agent assembled. The server
// checks it recovers to the co-signed wallet over the spend's digest (low
// s, v 27/28), stores it as the rail's instrument, and then carries the
// spend on as for a server-held key: an x402 answer carries the payment
// header, a payout is relayed. The same signature again answers the spend.
func (s *Service) CosignFinish(ctx context.Context, c Caller, spendID string, sig []byte) (*Spend, error) {
	var out *Spend
	var run, frozen bool
	var agentStatus AgentStatus
	err := s.inTx(ctx, func(tx Tx) error {
		run, frozen = false, false
		now := s.now()
		a, err := s.authAgent(ctx, tx, c, true)
		if err != nil {
			return err
		}
		agentStatus = a.Status
		sp, err := ownSpend(ctx, tx, a, spendID)
		if err != nil {
			return err
		}
		cs, plan, k, err := s.cosignSpend(ctx, tx, a, sp)
		if err != nil {
			return err
		}
		if sp.RailRef == "" {
			return Errorf(CodeCosignNotReady, "no co-signing session ran for spend %s", sp.ID)
		}
		if !s.cfg.Cosign.VerifySignature(sig, plan.Digest, k.Address) {
			return Errorf(CodeCosignSignatureInvalid, "the signature does not recover to %s over spend %s's digest with low s and v 27/28", k.Address, sp.ID)
		}
		data, err := cs.CosignComplete(sp, sig)
		if err != nil {
			return err
		}
		out = sp
		if plan.Signed || sp.Status != StatusAuthorized {
			return nil // finished before, or settled (or in doubt) on the chain's word already
		}
		sp.RailData, sp.UpdatedAt = data, now
		if err := tx.SpendUpdate(ctx, sp); err != nil {
			return err
		}
		_, executes := s.rails[sp.Rail].(Executor)
		run = executes && sp.Status == StatusAuthorized && a.Status == AgentActive
		frozen = a.Status != AgentActive
		return appendAudit(ctx, tx, now, agentActor(a), "spend.cosign_finish", "spend:"+sp.ID, map[string]any{
			"spend_id": sp.ID, "agent_id": sp.AgentID, "rail": sp.Rail, "rail_ref": sp.RailRef, "signature": "0x" + hex.EncodeToString(sig), "intent": intentOf(c)})
	})
	if err != nil {
		return nil, err
	}
	if frozen {
		// The signature is recorded (reconciliation reads the chain), but
		// nothing of a frozen agent is carried out.
		return nil, deniedErr(out, []string{statusReason(agentStatus)})
	}
	if run {
		return s.execute(ctx, out)
	}
	return out, nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return "0x" + hex.EncodeToString(sum[:])
}

// CosignFailureWindow is how far back failed signing sessions count
// against an agent (Config.CosignMaxFailures).
const CosignFailureWindow = 24 * time.Hour

// cosignFailed records a refused signing message. Every failed session is
// a data point for a hostile agent against the OT-based multiplication
// (docs/cosign-design.md): once an agent has failed CosignMaxFailures
// sessions within CosignFailureWindow it is frozen, and an owner decides.
func (s *Service) cosignFailed(ctx context.Context, agentID, spendID, sessionID string, cause error) error {
	return s.inTx(ctx, func(tx Tx) error {
		now := s.now()
		a, err := tx.AgentLock(ctx, agentID)
		if err != nil {
			return err
		}
		if err := tx.CosignSessionFail(ctx, sessionID); err != nil {
			return err
		}
		n, err := tx.CosignFailures(ctx, agentID, now.Add(-CosignFailureWindow))
		if err != nil {
			return err
		}
		if err := appendAudit(ctx, tx, now, SystemActor, "agent.cosign_failed", "agent:"+a.ID, map[string]any{
			"agent_id": a.ID, "spend_id": spendID, "session_id": sessionID, "reason": cause.Error(), "failures": n}); err != nil {
			return err
		}
		if limit := s.cfg.CosignMaxFailures; limit <= 0 || n < limit || a.Status != AgentActive {
			return nil
		}
		a.Status, a.UpdatedAt = AgentFrozen, now
		if err := tx.AgentUpdate(ctx, a); err != nil {
			return err
		}
		cancelled, err := s.cancelPending(ctx, tx, a, now, "agent_frozen")
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, now, SystemActor, "agent.freeze", "agent:"+a.ID, map[string]any{
			"agent_id": a.ID, "name": a.Name, "from": AgentActive, "to": AgentFrozen, "cancelled_spends": cancelled,
			"reason": "cosign_failures", "failures": n})
	})
}
