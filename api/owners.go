package api

import "time"

// InviteOwnerRequest is the body of POST /v1/owners/invites: Name is the
// owner to create, or to add a passkey to when an owner has that name
// (default "owner").
type InviteOwnerRequest struct {
	Name string `json:"name,omitempty"`
}

// OwnerInvite is a one-time enrolment link. Link is
// <public-url>/enrol#<token>; it works once, until ExpiresAt.
type OwnerInvite struct {
	Link      string    `json:"link"`
	Name      string    `json:"name"`
	NewOwner  bool      `json:"new_owner"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Owner is a human who signs in to the portal with a passkey.
type Owner struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at"`
	Passkeys  []Passkey  `json:"passkeys"`
}

// Passkey is one of an owner's WebAuthn credentials.
type Passkey struct {
	CredentialID string     `json:"credential_id"` // base64url
	OwnerID      string     `json:"owner_id"`
	CreatedAt    time.Time  `json:"created_at"`
	LastUsedAt   *time.Time `json:"last_used_at"`
	RevokedAt    *time.Time `json:"revoked_at"`
}

// OwnerList is the answer of GET /v1/owners.
type OwnerList struct {
	Owners []Owner `json:"owners"`
}
