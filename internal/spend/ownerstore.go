package spend

import (
	"context"
	"time"
)

// Owner is a human account that signs in to the portal with a passkey.
type Owner struct {
	ID        string
	Name      string
	CreatedAt time.Time
	RevokedAt *time.Time
	Passkeys  []*Passkey // filled by reads that say so
}

// Passkey is one WebAuthn credential of an owner.
type Passkey struct {
	CredentialID   []byte
	OwnerID        string
	PublicKey      []byte // COSE_Key, as the authenticator gave it
	SignCount      uint32
	AAGUID         []byte
	BackupEligible bool
	CreatedAt      time.Time
	LastUsedAt     *time.Time
	RevokedAt      *time.Time
}

// OwnerInvite is a one-time enrolment link; only the token's hash is kept.
type OwnerInvite struct {
	TokenHash string // hex SHA-256 of the token
	Name      string // the owner to create, or to add a device to
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    *time.Time
}

// OwnerSession is a signed-in browser; only the session id's hash is kept.
type OwnerSession struct {
	IDHash       string // hex SHA-256 of the cookie's value
	OwnerID      string
	CredentialID []byte // the passkey that signed in
	CSRF         string
	CreatedAt    time.Time
	LastSeenAt   time.Time
	ExpiresAt    time.Time // absolute expiry
}

// Ceremony is a pending WebAuthn challenge: single use, short lived.
type Ceremony struct {
	ID        string // the challenge, base64url
	Kind      string // "enrol", "login", "approve"
	OwnerID   string
	Subject   string // the invite token hash, the spend id
	Data      []byte // the ceremony's session data (JSON)
	CreatedAt time.Time
	ExpiresAt time.Time
}

// OwnerTx is the part of a store transaction that keeps owners, their
// passkeys, invites, sessions and ceremonies. Methods return ErrNotFound
// when a row does not exist.
type OwnerTx interface {
	OwnerCreate(ctx context.Context, o *Owner) error
	// OwnerGet finds an owner by id or by name.
	OwnerGet(ctx context.Context, ref string) (*Owner, error)
	OwnerList(ctx context.Context) ([]*Owner, error)
	OwnerRevoke(ctx context.Context, id string, at time.Time) error

	PasskeyAdd(ctx context.Context, p *Passkey) error
	PasskeyGet(ctx context.Context, credentialID []byte) (*Passkey, error)
	// PasskeyList lists an owner's passkeys ("" for every owner's), oldest first.
	PasskeyList(ctx context.Context, ownerID string) ([]*Passkey, error)
	// PasskeyUse records a use: the new sign count and the time.
	PasskeyUse(ctx context.Context, credentialID []byte, signCount uint32, at time.Time) error
	PasskeyRevoke(ctx context.Context, credentialID []byte, at time.Time) error

	InviteAdd(ctx context.Context, i *OwnerInvite) error
	InviteGet(ctx context.Context, tokenHash string) (*OwnerInvite, error)
	// InviteUse marks an unused invite used; used is false when it was
	// used already (or does not exist).
	InviteUse(ctx context.Context, tokenHash string, at time.Time) (used bool, err error)

	SessionAdd(ctx context.Context, s *OwnerSession) error
	SessionGet(ctx context.Context, idHash string) (*OwnerSession, error)
	SessionTouch(ctx context.Context, idHash string, at time.Time) error
	SessionDelete(ctx context.Context, idHash string) error
	// SessionsDelete ends an owner's sessions, or only those signed in
	// with credentialID when it is not nil.
	SessionsDelete(ctx context.Context, ownerID string, credentialID []byte) error

	CeremonyAdd(ctx context.Context, c *Ceremony) error
	// CeremonyTake reads and deletes a ceremony: a challenge is answered
	// at most once, even by two requests at the same time.
	CeremonyTake(ctx context.Context, id string) (*Ceremony, error)
	// OwnerPrune deletes expired sessions, ceremonies and invites.
	OwnerPrune(ctx context.Context, now time.Time) (int64, error)
}
