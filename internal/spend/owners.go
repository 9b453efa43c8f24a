package spend

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/purserhq/purser/internal/audit"
)

// Owners: the humans who sign in to the portal with a passkey. This file
// keeps their records and writes their audit events; the WebAuthn
// ceremonies and the HTTP side are internal/owners'.

// Owner-side error codes (codes.go).
const (
	CodeSessionRequired  = "session_required"
	CodeInviteInvalid    = "invite_invalid"
	CodeChallengeInvalid = "challenge_invalid"
	CodeWebAuthnInvalid  = "webauthn_invalid"
	CodePasskeyRefused   = "passkey_refused"
	CodeApprovalMismatch = "approval_mismatch"
	CodeOwnerNotFound    = "owner_not_found"
)

var b64url = base64.RawURLEncoding

func ownerActorOf(id string) audit.Actor { return audit.Actor{Type: "owner", ID: id} }

// NewOwnerID returns a fresh owner id (own_...).
func NewOwnerID() string { return newID("own") }

// Now is the service's clock, at the stores' precision.
func (s *Service) Now() time.Time { return s.now() }

func checkOwnerName(name string) error {
	if name == "" || len(name) > 64 || !utf8.ValidString(name) {
		return Errorf(CodeInvalidRequest, "an owner name is 1-64 bytes of UTF-8").WithDetails(map[string]any{"field": "name"})
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return Errorf(CodeInvalidRequest, "an owner name has no control characters").WithDetails(map[string]any{"field": "name"})
		}
	}
	return nil
}

// SecretHash is how invite tokens and session ids are stored: the hex
// SHA-256 of the secret, never the secret itself.
func SecretHash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// OwnerInviteCreated is a new invite. Token is the one-time secret of the
// enrolment link; only its hash is stored.
type OwnerInviteCreated struct {
	Token     string
	Name      string
	ExpiresAt time.Time
	NewOwner  bool // no owner has this name yet: enrolment creates one
}

// InviteOwner stores a one-time enrolment invite for the owner called
// name (created on enrolment) or, when that owner exists, for a further
// passkey of theirs, valid for ttl (15 minutes when 0).
func (s *Service) InviteOwner(ctx context.Context, name string, ttl time.Duration) (*OwnerInviteCreated, error) {
	if name == "" {
		name = "owner"
	}
	if err := checkOwnerName(name); err != nil {
		return nil, err
	}
	if ttl <= 0 {
		ttl = 15 * time.Minute
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	out := &OwnerInviteCreated{Token: b64url.EncodeToString(b[:]), Name: name}
	tokenHash := SecretHash(out.Token)
	err := s.inTx(ctx, func(tx Tx) error {
		now := s.now()
		o, err := tx.OwnerGet(ctx, name)
		switch {
		case errors.Is(err, ErrNotFound):
			out.NewOwner = true
		case err != nil:
			return err
		case o.RevokedAt != nil:
			return Errorf(CodeInvalidState, "owner %q is revoked; invite under another name", name)
		}
		out.ExpiresAt = now.Add(ttl)
		if err := tx.InviteAdd(ctx, &OwnerInvite{TokenHash: tokenHash, Name: name, CreatedAt: now, ExpiresAt: out.ExpiresAt}); err != nil {
			return err
		}
		return appendAudit(ctx, tx, now, OwnerActor, "owner.invited", "owner:"+name, map[string]any{
			"name": name, "new_owner": out.NewOwner, "expires_at": out.ExpiresAt.Format(time.RFC3339), "invite": tokenHash[:16]})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// OwnerInvite returns a live invite (unused, not expired).
func (s *Service) OwnerInvite(ctx context.Context, tokenHash string) (*OwnerInvite, *Owner, error) {
	var inv *OwnerInvite
	var o *Owner
	err := s.read(ctx, func(tx Tx) error {
		var err error
		inv, err = tx.InviteGet(ctx, tokenHash)
		if errors.Is(err, ErrNotFound) || err == nil && (inv.UsedAt != nil || !s.now().Before(inv.ExpiresAt)) {
			return Errorf(CodeInviteInvalid, "this enrolment link is unknown, used or expired; ask for a new one (purser owner invite)")
		} else if err != nil {
			return err
		}
		o, err = tx.OwnerGet(ctx, inv.Name)
		if errors.Is(err, ErrNotFound) {
			o, err = nil, nil
		}
		if o != nil && o.RevokedAt != nil {
			return Errorf(CodeInviteInvalid, "the owner of this enrolment link is revoked")
		}
		return err
	})
	return inv, o, err
}

// NewPasskey is a passkey a registration ceremony produced.
type NewPasskey struct {
	CredentialID   []byte
	PublicKeyCOSE  []byte
	PublicKeySPKI  []byte // PKIX DER of the same key, for offline verification
	Algorithm      int64  // COSE algorithm
	SignCount      uint32
	AAGUID         []byte
	BackupEligible bool
	RPID, Origin   string
}

// EnrolPasskey uses the invite (once) and adds the passkey to its owner,
// creating the owner (with newOwnerID, the WebAuthn user handle the
// ceremony used) when the invite is for a new one. The owner.passkey_added
// event carries the public key, so the chain itself holds the key later
// approvals are verified against.
func (s *Service) EnrolPasskey(ctx context.Context, tokenHash, newOwnerID string, p NewPasskey) (*Owner, error) {
	var out *Owner
	err := s.inTx(ctx, func(tx Tx) error {
		now := s.now()
		inv, err := tx.InviteGet(ctx, tokenHash)
		if errors.Is(err, ErrNotFound) || err == nil && !now.Before(inv.ExpiresAt) {
			return Errorf(CodeInviteInvalid, "this enrolment link is unknown or expired; ask for a new one (purser owner invite)")
		} else if err != nil {
			return err
		}
		if used, err := tx.InviteUse(ctx, tokenHash, now); err != nil {
			return err
		} else if !used {
			return Errorf(CodeInviteInvalid, "this enrolment link was used already; ask for a new one (purser owner invite)")
		}
		o, err := tx.OwnerGet(ctx, inv.Name)
		isNew := errors.Is(err, ErrNotFound)
		switch {
		case isNew:
			o = &Owner{ID: newOwnerID, Name: inv.Name, CreatedAt: now}
			if err := tx.OwnerCreate(ctx, o); err != nil {
				return err
			}
		case err != nil:
			return err
		case o.RevokedAt != nil:
			return Errorf(CodeInviteInvalid, "the owner of this enrolment link is revoked")
		case o.ID != newOwnerID:
			return Errorf(CodeChallengeInvalid, "the enrolment ceremony was for another account; begin again")
		}
		if _, err := tx.PasskeyGet(ctx, p.CredentialID); err == nil {
			return Errorf(CodeWebAuthnInvalid, "this passkey is enrolled already")
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := tx.PasskeyAdd(ctx, &Passkey{CredentialID: p.CredentialID, OwnerID: o.ID, PublicKey: p.PublicKeyCOSE, SignCount: p.SignCount,
			AAGUID: p.AAGUID, BackupEligible: p.BackupEligible, CreatedAt: now}); err != nil {
			return err
		}
		out = o
		return appendAudit(ctx, tx, now, ownerActorOf(o.ID), "owner.passkey_added", "owner:"+o.ID, audit.PasskeyAdded{
			OwnerID: o.ID, OwnerName: o.Name, CredentialID: b64url.EncodeToString(p.CredentialID),
			PublicKeyCOSE: b64url.EncodeToString(p.PublicKeyCOSE), PublicKeySPKI: b64url.EncodeToString(p.PublicKeySPKI),
			Algorithm: p.Algorithm, AAGUID: hex.EncodeToString(p.AAGUID), RPID: p.RPID, Origin: p.Origin, NewOwner: isNew})
	})
	return out, err
}

// OwnerPasskeys returns an owner's live passkeys (nil, nil for a revoked
// or unknown owner).
func (s *Service) OwnerPasskeys(ctx context.Context, ownerID string) (*Owner, []*Passkey, error) {
	var o *Owner
	var out []*Passkey
	err := s.read(ctx, func(tx Tx) error {
		var err error
		if o, err = tx.OwnerGet(ctx, ownerID); errors.Is(err, ErrNotFound) {
			o = nil
			return nil
		} else if err != nil || o.RevokedAt != nil {
			o = nil
			return err
		}
		ps, err := tx.PasskeyList(ctx, o.ID)
		for _, p := range ps {
			if p.RevokedAt == nil {
				out = append(out, p)
			}
		}
		return err
	})
	return o, out, err
}

// livePasskey returns a passkey that may sign (not revoked, its owner not
// revoked) and its owner, and records its new signature counter: a
// counter that does not go up (when either is not zero) is refused, as
// the mark of a cloned authenticator.
func (s *Service) livePasskey(ctx context.Context, tx Tx, credentialID []byte, signCount uint32, now time.Time) (*Passkey, *Owner, error) {
	p, err := tx.PasskeyGet(ctx, credentialID)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, Errorf(CodePasskeyRefused, "this passkey is not enrolled")
	} else if err != nil {
		return nil, nil, err
	}
	if p.RevokedAt != nil {
		return nil, nil, Errorf(CodePasskeyRefused, "this passkey is revoked")
	}
	o, err := tx.OwnerGet(ctx, p.OwnerID)
	if err != nil {
		return nil, nil, err
	}
	if o.RevokedAt != nil {
		return nil, nil, Errorf(CodePasskeyRefused, "the owner of this passkey is revoked")
	}
	if (signCount != 0 || p.SignCount != 0) && signCount <= p.SignCount {
		return nil, nil, Errorf(CodePasskeyRefused, "the passkey's signature counter went back (%d after %d): it may be cloned", signCount, p.SignCount)
	}
	if err := tx.PasskeyUse(ctx, credentialID, signCount, now); err != nil {
		return nil, nil, err
	}
	return p, o, nil
}

// SignInParams starts a session for a verified assertion.
type SignInParams struct {
	CredentialID []byte
	SignCount    uint32
	SessionHash  string // hex SHA-256 of the session cookie's value
	CSRF         string
	MaxAge       time.Duration // absolute expiry
}

// SignIn starts an owner session after a verified sign-in assertion.
func (s *Service) SignIn(ctx context.Context, p SignInParams) (*Owner, *OwnerSession, error) {
	var o *Owner
	var sess *OwnerSession
	err := s.inTx(ctx, func(tx Tx) error {
		now := s.now()
		var err error
		if _, o, err = s.livePasskey(ctx, tx, p.CredentialID, p.SignCount, now); err != nil {
			return err
		}
		sess = &OwnerSession{IDHash: p.SessionHash, OwnerID: o.ID, CredentialID: p.CredentialID, CSRF: p.CSRF,
			CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(p.MaxAge)}
		if err := tx.SessionAdd(ctx, sess); err != nil {
			return err
		}
		return appendAudit(ctx, tx, now, ownerActorOf(o.ID), "owner.signed_in", "owner:"+o.ID, map[string]any{
			"owner_id": o.ID, "credential_id": b64url.EncodeToString(p.CredentialID)})
	})
	return o, sess, err
}

// sessionTouchEvery is how stale a session's last-seen time may get
// before a request writes it: a page view is a read, not a commit, and the
// idle expiry is exact to this much.
const sessionTouchEvery = time.Minute

// OwnerSessionGet returns a live session and its owner, and records the
// request: a session idle longer than idle, past its absolute expiry, or
// whose owner was revoked ends here.
func (s *Service) OwnerSessionGet(ctx context.Context, idHash string, idle time.Duration) (*OwnerSession, *Owner, error) {
	var sess *OwnerSession
	var o *Owner
	err := s.read(ctx, func(tx Tx) error {
		var err error
		if sess, err = tx.SessionGet(ctx, idHash); err != nil {
			return err
		}
		o, err = tx.OwnerGet(ctx, sess.OwnerID)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil, nil, Errorf(CodeSessionRequired, "sign in with your passkey")
	} else if err != nil {
		return nil, nil, err
	}
	now := s.now()
	if !now.Before(sess.ExpiresAt) || now.Sub(sess.LastSeenAt) >= idle || o.RevokedAt != nil {
		if err := s.inTx(ctx, func(tx Tx) error { return tx.SessionDelete(ctx, idHash) }); err != nil {
			return nil, nil, err
		}
		return nil, nil, Errorf(CodeSessionRequired, "your session ended; sign in with your passkey")
	}
	if now.Sub(sess.LastSeenAt) >= sessionTouchEvery {
		if err := s.inTx(ctx, func(tx Tx) error { return tx.SessionTouch(ctx, idHash, now) }); err != nil {
			return nil, nil, err
		}
		sess.LastSeenAt = now
	}
	return sess, o, nil
}

// EndOwnerSession ends a session (logout).
func (s *Service) EndOwnerSession(ctx context.Context, idHash string) error {
	return s.inTx(ctx, func(tx Tx) error { return tx.SessionDelete(ctx, idHash) })
}

// StartCeremony stores a WebAuthn challenge.
func (s *Service) StartCeremony(ctx context.Context, c *Ceremony) error {
	return s.inTx(ctx, func(tx Tx) error {
		if _, err := tx.OwnerPrune(ctx, s.now()); err != nil {
			return err
		}
		return tx.CeremonyAdd(ctx, c)
	})
}

// TakeCeremony consumes a WebAuthn challenge of the given kind: it can be
// answered once, before it expires.
func (s *Service) TakeCeremony(ctx context.Context, id, kind string) (*Ceremony, error) {
	var c *Ceremony
	err := s.inTx(ctx, func(tx Tx) error {
		var err error
		c, err = tx.CeremonyTake(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return Errorf(CodeChallengeInvalid, "this challenge is unknown or was answered already; begin again")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if c.Kind != kind {
		return nil, Errorf(CodeChallengeInvalid, "this challenge is not for this ceremony; begin again")
	}
	if !s.now().Before(c.ExpiresAt) {
		return nil, Errorf(CodeChallengeInvalid, "this challenge expired at %s; begin again", c.ExpiresAt.Format(time.RFC3339))
	}
	return c, nil
}

// ListOwners returns every owner with their passkeys.
func (s *Service) ListOwners(ctx context.Context) ([]*Owner, error) {
	var out []*Owner
	err := s.read(ctx, func(tx Tx) error {
		var err error
		if out, err = tx.OwnerList(ctx); err != nil {
			return err
		}
		ps, err := tx.PasskeyList(ctx, "")
		if err != nil {
			return err
		}
		byID := map[string]*Owner{}
		for _, o := range out {
			byID[o.ID], o.Passkeys = o, []*Passkey{}
		}
		for _, p := range ps {
			if o := byID[p.OwnerID]; o != nil {
				o.Passkeys = append(o.Passkeys, p)
			}
		}
		return nil
	})
	return out, err
}

// RevokeOwner revokes an owner (by id or name), their passkeys and
// sessions.
func (s *Service) RevokeOwner(ctx context.Context, ref string) (*Owner, error) {
	var o *Owner
	err := s.inTx(ctx, func(tx Tx) error {
		now := s.now()
		var err error
		o, err = tx.OwnerGet(ctx, ref)
		if errors.Is(err, ErrNotFound) {
			return Errorf(CodeOwnerNotFound, "no owner %q", ref)
		} else if err != nil {
			return err
		}
		if o.RevokedAt != nil {
			return nil // revoked already
		}
		if err := tx.OwnerRevoke(ctx, o.ID, now); err != nil {
			return err
		}
		o.RevokedAt = &now
		ps, err := tx.PasskeyList(ctx, o.ID)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.RevokedAt == nil {
				if err := tx.PasskeyRevoke(ctx, p.CredentialID, now); err != nil {
					return err
				}
			}
		}
		if err := tx.SessionsDelete(ctx, o.ID, nil); err != nil {
			return err
		}
		return appendAudit(ctx, tx, now, OwnerActor, "owner.revoked", "owner:"+o.ID, map[string]any{"owner_id": o.ID, "owner_name": o.Name})
	})
	return o, err
}

// RevokePasskey revokes one passkey (base64url credential id) and ends
// the sessions it signed in.
func (s *Service) RevokePasskey(ctx context.Context, credentialID string) (*Passkey, error) {
	id, err := b64url.DecodeString(credentialID)
	if err != nil {
		return nil, Errorf(CodeInvalidRequest, "a credential id is base64url").WithDetails(map[string]any{"field": "credential_id"})
	}
	var p *Passkey
	err = s.inTx(ctx, func(tx Tx) error {
		now := s.now()
		var err error
		p, err = tx.PasskeyGet(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return Errorf(CodeOwnerNotFound, "no passkey %s", credentialID)
		} else if err != nil {
			return err
		}
		if p.RevokedAt != nil {
			return nil
		}
		if err := tx.PasskeyRevoke(ctx, id, now); err != nil {
			return err
		}
		p.RevokedAt = &now
		if err := tx.SessionsDelete(ctx, p.OwnerID, id); err != nil {
			return err
		}
		return appendAudit(ctx, tx, now, OwnerActor, "owner.passkey_revoked", "owner:"+p.OwnerID, map[string]any{
			"owner_id": p.OwnerID, "credential_id": credentialID})
	})
	return p, err
}

// ApprovalCommitFor is what an approval challenge for sp commits to.
func ApprovalCommitFor(sp *Spend, nonce []byte, expires time.Time) audit.ApprovalCommit {
	dig := audit.IntentDigest(sp.IntentSig, sp.IntentNonce)
	return audit.ApprovalCommit{SpendID: sp.ID, AgentID: sp.AgentID, IntentDigest: hex.EncodeToString(dig[:]),
		Amount: sp.Amount.String(), Asset: sp.Asset, Network: sp.Network, Payee: sp.Payee, Host: sp.Host,
		Nonce: hex.EncodeToString(nonce), ExpiresAt: expires.UnixMilli()}
}

// Approved reports whether a spend that waited for approval was approved:
// it moved on to be authorized, paid or unknown.
func Approved(sp *Spend) bool {
	return sp.Status == StatusAuthorized || sp.Status == StatusCaptured || sp.Status == StatusUnknown
}

// ApproveWithPasskey approves a pending spend with an owner's verified
// passkey assertion (the caller checked the signature against the stored
// key and the challenge it issued). Here, in the approval's transaction:
// the passkey and its owner are live and its counter goes up, the
// committed fields are still the spend's, and the challenge has not
// expired. The spend.approve event stores the assertion, for `audit
// verify` to check offline. A spend approved already is returned as it
// is (approving twice is idempotent); replayed reports that.
func (s *Service) ApproveWithPasskey(ctx context.Context, id string, a *audit.PasskeyAssertion, signCount uint32) (sp *Spend, replayed bool, err error) {
	credID, err := b64url.DecodeString(a.CredentialID)
	if err != nil {
		return nil, false, Errorf(CodeWebAuthnInvalid, "the credential id is not base64url")
	}
	by := &approver{
		check: func(ctx context.Context, tx Tx, sp *Spend, now time.Time) (audit.Actor, error) {
			_, o, err := s.livePasskey(ctx, tx, credID, signCount, now)
			if err != nil {
				return audit.Actor{}, err
			}
			if o.ID != a.OwnerID {
				return audit.Actor{}, Errorf(CodePasskeyRefused, "the passkey is not this owner's")
			}
			nonce, err := hex.DecodeString(a.Commit.Nonce)
			if err != nil {
				return audit.Actor{}, Errorf(CodeApprovalMismatch, "the committed nonce is malformed")
			}
			want := ApprovalCommitFor(sp, nonce, a.Commit.Expires())
			if want != a.Commit || !bytes.Equal(want.Challenge(), a.Commit.Challenge()) {
				return audit.Actor{}, Errorf(CodeApprovalMismatch, "the assertion commits to another spend, or spend %s changed since its challenge", sp.ID)
			}
			if now.After(a.Commit.Expires()) {
				return audit.Actor{}, Errorf(CodeChallengeInvalid, "the approval challenge expired at %s; begin again", a.Commit.Expires().Format(time.RFC3339))
			}
			return ownerActorOf(o.ID), nil
		},
		passkey: a,
	}
	sp, err = s.decidePendingBy(ctx, id, true, "", by)
	return sp, by.replayed, err
}

// DenyAsOwner denies a pending spend for a signed-in owner.
func (s *Service) DenyAsOwner(ctx context.Context, id, reason, ownerID string) (*Spend, error) {
	if len(reason) > 512 {
		return nil, Errorf(CodeInvalidRequest, "reason is longer than 512 bytes")
	}
	return s.decidePendingBy(ctx, id, false, reason, &approver{actor: ownerActorOf(ownerID)})
}
