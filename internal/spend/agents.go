package spend

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/purserhq/purser/internal/mandate"
)

var (
	agentNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	addressRE   = regexp.MustCompile(`^0x[0-9a-fA-F]{40}$`)
)

// CreateAgentRequest registers an agent. The identity key is generated on
// the agent's side; only its address reaches Purser.
type CreateAgentRequest struct {
	Name            string
	IdentityAddress string
	Mandate         json.RawMessage // optional initial mandate (strict JSON)
	// Custody: CustodyServer ("" too) or Custody2of2 (no wallet until its
	// key generation, POST /v1/agents/{ref}/cosign/keygen).
	Custody string
	// RecoveryPublicKey and RecoveryCiphertext (2of2 only, optional): the
	// agent share encrypted to the owner's recovery key, opaque here.
	RecoveryPublicKey, RecoveryCiphertext string
}

// CreateAgent registers an agent, derives its wallet and, when given, sets
// its first mandate version. One audit event records all of it.
func (s *Service) CreateAgent(ctx context.Context, r CreateAgentRequest) (*Agent, error) {
	if !agentNameRE.MatchString(r.Name) || strings.HasPrefix(r.Name, "agt_") {
		return nil, Errorf(CodeInvalidRequest, "agent name %q: use 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit, not starting with agt_", r.Name)
	}
	if !addressRE.MatchString(r.IdentityAddress) {
		return nil, Errorf(CodeInvalidRequest, "identity_address must be a 0x-prefixed 20-byte hex address")
	}
	switch r.Custody {
	case "", CustodyServer:
		r.Custody = CustodyServer
		if r.RecoveryPublicKey != "" || r.RecoveryCiphertext != "" {
			return nil, Errorf(CodeInvalidRequest, "recovery is for a co-signed (2of2) agent").WithDetails(map[string]any{"field": "recovery"})
		}
	case Custody2of2:
		if s.cfg.Sealer == nil || s.cfg.Cosign == nil {
			return nil, Errorf(CodeCosignNotReady, "this server has no keystore or co-signing engine")
		}
		if r.RecoveryPublicKey != "" || r.RecoveryCiphertext != "" {
			if err := checkRecovery(r.RecoveryPublicKey, r.RecoveryCiphertext); err != nil {
				return nil, err
			}
		}
	default:
		return nil, Errorf(CodeInvalidRequest, "custody must be %q or %q", CustodyServer, Custody2of2).WithDetails(map[string]any{"field": "custody"})
	}
	var m *mandate.Mandate
	if len(r.Mandate) > 0 && string(r.Mandate) != "null" {
		var err error
		if m, err = mandate.Decode(r.Mandate); err != nil {
			return nil, err
		}
	}
	addr := checksum(r.IdentityAddress)
	var out *Agent
	err := s.inTx(ctx, func(tx Tx) error {
		now := s.now()
		if _, err := tx.AgentGet(ctx, r.Name); err == nil {
			return Errorf(CodeAgentExists, "an agent named %q exists", r.Name)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		if _, err := tx.AgentKeyGet(ctx, addr); err == nil {
			return Errorf(CodeAgentExists, "identity key %s is already registered", addr)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		maxIdx, err := tx.AgentMaxWalletIndex(ctx)
		if err != nil {
			return err
		}
		if maxIdx+1 >= 1<<31 {
			return Errorf(CodeInvalidRequest, "wallet index space exhausted")
		}
		a := &Agent{ID: newID("agt"), Name: r.Name, Status: AgentActive, IdentityAddress: addr, Custody: r.Custody,
			WalletIndex: uint32(maxIdx + 1), CreatedAt: now, UpdatedAt: now}
		var wallets []Wallet
		if a.Custody == CustodyServer {
			// A co-signed agent's index is reserved but never derived:
			// its wallet comes from its key generation.
			if wallets, err = s.cfg.Wallets.Wallets(a.WalletIndex); err != nil {
				return err
			}
		}
		var body json.RawMessage
		if m != nil {
			if body, err = json.Marshal(m); err != nil {
				return err
			}
			a.MandateVersion = 1
		}
		if err := tx.AgentCreate(ctx, a); err != nil {
			return err
		}
		if err := tx.AgentKeyAdd(ctx, &AgentKey{Address: addr, AgentID: a.ID, CreatedAt: now}); err != nil {
			return err
		}
		if a.Custody == Custody2of2 {
			if err := tx.CosignKeyCreate(ctx, &CosignKey{AgentID: a.ID, RecoveryPublicKey: r.RecoveryPublicKey,
				RecoveryCiphertext: r.RecoveryCiphertext, CreatedAt: now, UpdatedAt: now}); err != nil {
				return err
			}
		}
		for i := range wallets {
			wallets[i].AgentID = a.ID
			if err := tx.WalletAdd(ctx, &wallets[i]); err != nil {
				return err
			}
		}
		if m != nil {
			if err := tx.MandatePut(ctx, &MandateRecord{AgentID: a.ID, Version: 1, Body: body, CreatedAt: now}); err != nil {
				return err
			}
		}
		a.Wallets = wallets
		details := map[string]any{"agent_id": a.ID, "name": a.Name, "identity_address": addr,
			"wallets": walletDetails(wallets), "mandate_version": a.MandateVersion, "custody": a.Custody}
		if r.RecoveryCiphertext != "" {
			details["recovery_public_key"] = r.RecoveryPublicKey
		}
		if m != nil {
			details["mandate"] = body
		}
		out = a
		return appendAudit(ctx, tx, now, OwnerActor, "agent.create", "agent:"+a.ID, details)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func walletDetails(ws []Wallet) []map[string]string {
	out := make([]map[string]string, len(ws))
	for i, w := range ws {
		out[i] = map[string]string{"network": w.Network, "address": w.Address, "path": w.Path}
	}
	return out
}

// GetAgent returns an agent by id or name, with its wallets.
func (s *Service) GetAgent(ctx context.Context, ref string) (*Agent, error) {
	var a *Agent
	err := s.read(ctx, func(tx Tx) error {
		var err error
		if a, err = getAgent(ctx, tx, ref); err != nil {
			return err
		}
		a.Wallets, err = tx.WalletList(ctx, a.ID)
		return err
	})
	return a, err
}

func getAgent(ctx context.Context, tx Tx, ref string) (*Agent, error) {
	a, err := tx.AgentGet(ctx, ref)
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(CodeAgentNotFound, "no agent %q", ref)
	}
	return a, err
}

// lockAgent finds an agent by id or name and takes its row lock.
func lockAgent(ctx context.Context, tx Tx, ref string) (*Agent, error) {
	a, err := getAgent(ctx, tx, ref)
	if err != nil {
		return nil, err
	}
	return tx.AgentLock(ctx, a.ID)
}

// ListAgents returns every agent with its wallets, by name.
func (s *Service) ListAgents(ctx context.Context) ([]*Agent, error) {
	var out []*Agent
	err := s.read(ctx, func(tx Tx) error {
		var err error
		if out, err = tx.AgentList(ctx); err != nil {
			return err
		}
		for _, a := range out {
			if a.Wallets, err = tx.WalletList(ctx, a.ID); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// Freeze stops an agent at once: after Freeze returns, every
// authorization of the agent is denied agent_frozen (the status change
// takes the agent's row lock that every authorization takes), and its
// pending approvals are cancelled with their holds released.
func (s *Service) Freeze(ctx context.Context, ref string) (*Agent, error) {
	return s.setStatus(ctx, ref, AgentFrozen, "agent.freeze", nil)
}

// CancelResult is what FreezeCancelSigned did to one signed spend: the
// spend as it stands, and why it could not be settled now ("" when the
// chain answered).
type CancelResult struct {
	Spend *Spend
	Err   string
}

// FreezeCancelSigned freezes the agent, then makes unusable on chain every
// authorization signed for it that is not used yet (EIP-3009
// cancelAuthorization, relayed) and releases each hold once its
// cancellation is mined; one used first is captured. A cancellation that
// cannot be made now leaves its spend holding: the reconciler settles it
// from the chain, and never resubmits anything of a frozen agent.
func (s *Service) FreezeCancelSigned(ctx context.Context, ref string) (*Agent, []CancelResult, error) {
	a, err := s.setStatus(ctx, ref, AgentFrozen, "agent.freeze", map[string]any{"cancel_signed": true})
	if err != nil {
		return nil, nil, err
	}
	var signed []*Spend
	err = s.read(ctx, func(tx Tx) error {
		var err error
		signed, err = tx.SpendList(ctx, &SpendListParams{AgentID: a.ID, Statuses: []Status{StatusAuthorized, StatusUnknown}, Signed: true, Limit: 10_000})
		return err
	})
	if err != nil {
		return a, nil, err
	}
	// The cancellations run side by side (each waits for its receipt, a
	// block or more on a real chain), so the owner's freeze answers within
	// about one execution timeout however many there are.
	results := make([]CancelResult, len(signed))
	errs := make([]error, len(signed))
	sem := make(chan struct{}, cancelWorkers)
	var wg sync.WaitGroup
	for i, sp := range signed {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i], errs[i] = s.cancelSigned(ctx, sp)
		}()
	}
	wg.Wait()
	return a, results, errors.Join(errs...)
}

// cancelWorkers bounds the cancellations FreezeCancelSigned sends at once.
const cancelWorkers = 8

// cancelSigned cancels one signed spend on its rail and settles what the
// chain then shows.
func (s *Service) cancelSigned(ctx context.Context, sp *Spend) (CancelResult, error) {
	cn, ok := s.rails[sp.Rail].(Canceller)
	if !ok {
		return CancelResult{Spend: sp, Err: "rail " + sp.Rail + " cannot cancel its instruments"}, nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ExecTimeout)
	res, err := cn.Cancel(cctx, sp)
	cancel()
	if err != nil {
		s.log.Warn("cancel of a signed authorization failed", "rail", sp.Rail, "spend_id", sp.ID, "err", err)
		return CancelResult{Spend: sp, Err: "not cancelled yet; the hold stays until the chain shows the authorization unusable"}, nil
	}
	if res.Outcome == "" || res.Outcome == OutcomePending || res.Outcome == OutcomeUnknown {
		return CancelResult{Spend: sp, Err: "the chain did not confirm the cancellation yet; the hold stays"}, nil
	}
	after, err := s.settle(context.WithoutCancel(ctx), sp.ID, res, OwnerActor)
	if err != nil {
		return CancelResult{Spend: sp, Err: "cancelled on chain; recording it failed, the reconciler records it"}, err
	}
	return CancelResult{Spend: after}, nil
}

// Unfreeze lets a frozen agent spend again.
func (s *Service) Unfreeze(ctx context.Context, ref string) (*Agent, error) {
	return s.setStatus(ctx, ref, AgentActive, "agent.unfreeze", nil)
}

// Revoke retires an agent for good: its keys stop authenticating and its
// pending approvals are cancelled.
func (s *Service) Revoke(ctx context.Context, ref string) (*Agent, error) {
	return s.setStatus(ctx, ref, AgentRevoked, "agent.revoke", nil)
}

func (s *Service) setStatus(ctx context.Context, ref string, to AgentStatus, action string, extra map[string]any) (*Agent, error) {
	var out *Agent
	err := s.inTx(ctx, func(tx Tx) error {
		now := s.now()
		a, err := lockAgent(ctx, tx, ref)
		if err != nil {
			return err
		}
		from := a.Status
		if from == AgentRevoked && to != AgentRevoked {
			return Errorf(CodeInvalidState, "agent %s is revoked; create a new agent instead", a.Name)
		}
		a.Status, a.UpdatedAt = to, now
		if err := tx.AgentUpdate(ctx, a); err != nil {
			return err
		}
		var cancelled []string
		if to != AgentActive {
			if to == AgentRevoked {
				if err := tx.AgentKeysRevoke(ctx, a.ID, now); err != nil {
					return err
				}
			}
			reason := "agent_frozen"
			if to == AgentRevoked {
				reason = "agent_revoked"
			}
			if cancelled, err = s.cancelPending(ctx, tx, a, now, reason); err != nil {
				return err
			}
		}
		if a.Wallets, err = tx.WalletList(ctx, a.ID); err != nil {
			return err
		}
		out = a
		details := map[string]any{"agent_id": a.ID, "name": a.Name, "from": from, "to": to, "cancelled_spends": cancelled}
		for k, v := range extra {
			details[k] = v
		}
		return appendAudit(ctx, tx, now, OwnerActor, action, "agent:"+a.ID, details)
	})
	return out, err
}

// cancelPending ends, for a (locked) agent being frozen or revoked,
// everything that was decided but not carried out: pending approvals are
// denied, and authorized spends on rails that sign or execute but for
// which nothing was signed yet are released (an owner's earlier approval
// included). Authorized spends on rails Purser does not execute (custom)
// keep their holds: the agent may already have paid by other means and
// still reports the outcome. Signed ones keep theirs until the chain
// settles them (or `freeze --cancel-signed` cancels them).
func (s *Service) cancelPending(ctx context.Context, tx Tx, a *Agent, now time.Time, reason string) ([]string, error) {
	open, err := tx.SpendList(ctx, &SpendListParams{AgentID: a.ID, Statuses: []Status{StatusPendingApproval, StatusAuthorized},
		Unsigned: true, Limit: 10_000})
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(open))
	for _, sp := range open {
		to := StatusDenied
		if sp.Status == StatusAuthorized {
			switch s.rails[sp.Rail].(type) {
			case Signer, Executor:
				to = StatusReleased
			default:
				continue
			}
		}
		if err := s.cancelSpend(ctx, tx, sp, to, now, []string{reason}); err != nil {
			return nil, err
		}
		ids = append(ids, sp.ID)
	}
	return ids, nil
}

// RotateKey replaces an agent's identity key: the old key stops
// authenticating in the same transaction that registers the new one.
func (s *Service) RotateKey(ctx context.Context, ref, newAddress string) (*Agent, error) {
	if !addressRE.MatchString(newAddress) {
		return nil, Errorf(CodeInvalidRequest, "identity_address must be a 0x-prefixed 20-byte hex address")
	}
	addr := checksum(newAddress)
	var out *Agent
	err := s.inTx(ctx, func(tx Tx) error {
		now := s.now()
		a, err := lockAgent(ctx, tx, ref)
		if err != nil {
			return err
		}
		if a.Status == AgentRevoked {
			return Errorf(CodeInvalidState, "agent %s is revoked", a.Name)
		}
		if _, err := tx.AgentKeyGet(ctx, addr); err == nil {
			return Errorf(CodeAgentExists, "identity key %s is already registered", addr)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		old := a.IdentityAddress
		if err := tx.AgentKeysRevoke(ctx, a.ID, now); err != nil {
			return err
		}
		if err := tx.AgentKeyAdd(ctx, &AgentKey{Address: addr, AgentID: a.ID, CreatedAt: now}); err != nil {
			return err
		}
		a.IdentityAddress, a.UpdatedAt = addr, now
		if err := tx.AgentUpdate(ctx, a); err != nil {
			return err
		}
		if a.Wallets, err = tx.WalletList(ctx, a.ID); err != nil {
			return err
		}
		out = a
		return appendAudit(ctx, tx, now, OwnerActor, "agent.rotate_key", "agent:"+a.ID, map[string]any{
			"agent_id": a.ID, "old_identity_address": old, "new_identity_address": addr})
	})
	return out, err
}

// MandateView is a mandate version as stored.
type MandateView struct {
	AgentID string
	Version int64
	Mandate *mandate.Mandate // nil when the agent has none
}

// GetMandate returns an agent's current mandate.
func (s *Service) GetMandate(ctx context.Context, ref string) (*MandateView, error) {
	var out *MandateView
	err := s.read(ctx, func(tx Tx) error {
		a, err := getAgent(ctx, tx, ref)
		if err != nil {
			return err
		}
		m, err := s.mandateFor(ctx, tx, a.ID, a.MandateVersion)
		if err != nil {
			return err
		}
		out = &MandateView{AgentID: a.ID, Version: a.MandateVersion, Mandate: m}
		return nil
	})
	return out, err
}

// SetMandate stores a new mandate version. baseVersion, when >= 0, must
// equal the current version (optimistic concurrency for read-modify-write
// clients); -1 skips the check.
func (s *Service) SetMandate(ctx context.Context, ref string, body json.RawMessage, baseVersion int64) (*MandateView, error) {
	m, err := mandate.Decode(body)
	if err != nil {
		return nil, err
	}
	canon, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out *MandateView
	err = s.inTx(ctx, func(tx Tx) error {
		now := s.now()
		a, err := lockAgent(ctx, tx, ref)
		if err != nil {
			return err
		}
		if a.Status == AgentRevoked {
			return Errorf(CodeInvalidState, "agent %s is revoked", a.Name)
		}
		if baseVersion >= 0 && baseVersion != a.MandateVersion {
			return Errorf(CodeMandateConflict, "mandate of %s changed (now version %d, you edited version %d); read it again", a.Name, a.MandateVersion, baseVersion)
		}
		a.MandateVersion++
		a.UpdatedAt = now
		if err := tx.MandatePut(ctx, &MandateRecord{AgentID: a.ID, Version: a.MandateVersion, Body: canon, CreatedAt: now}); err != nil {
			return err
		}
		if err := tx.AgentUpdate(ctx, a); err != nil {
			return err
		}
		out = &MandateView{AgentID: a.ID, Version: a.MandateVersion, Mandate: m}
		return appendAudit(ctx, tx, now, OwnerActor, "mandate.set", "agent:"+a.ID, map[string]any{
			"agent_id": a.ID, "version": a.MandateVersion, "mandate": json.RawMessage(canon)})
	})
	return out, err
}

// RecordFunding appends the audit event of an owner funding an agent's
// wallet (the dev chain's faucet): money that arrives outside any spend
// is still on the record.
func (s *Service) RecordFunding(ctx context.Context, ref string, details map[string]any) error {
	return s.inTx(ctx, func(tx Tx) error {
		a, err := tx.AgentGet(ctx, ref)
		if errors.Is(err, ErrNotFound) {
			return Errorf(CodeAgentNotFound, "no agent %q", ref)
		}
		if err != nil {
			return err
		}
		d := map[string]any{"agent_id": a.ID}
		for k, v := range details {
			d[k] = v
		}
		return appendAudit(ctx, tx, s.now(), OwnerActor, "agent.fund", "agent:"+a.ID, d)
	})
}
