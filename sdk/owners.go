package sdk

import (
	"context"
	"net/http"

	"github.com/purserhq/purser/api"
)

// InviteOwner creates a one-time enrolment link for the owner called name
// ("" for "owner"): a new owner, or a further passkey of an existing one.
func (o *Owner) InviteOwner(ctx context.Context, name string) (*OwnerInvite, error) {
	var inv OwnerInvite
	if _, err := o.c.do(ctx, http.MethodPost, "/v1/owners/invites", nil, api.InviteOwnerRequest{Name: name}, authOwner, &inv); err != nil {
		return nil, err
	}
	return &inv, nil
}

// Owners lists the owners who sign in to the portal, with their passkeys.
func (o *Owner) Owners(ctx context.Context) ([]OwnerAccount, error) {
	var l api.OwnerList
	if _, err := o.c.do(ctx, http.MethodGet, "/v1/owners", nil, nil, authOwner, &l); err != nil {
		return nil, err
	}
	return l.Owners, nil
}

// RevokeOwner revokes an owner (id or name), their passkeys and sessions.
func (o *Owner) RevokeOwner(ctx context.Context, ref string) (*OwnerAccount, error) {
	var out OwnerAccount
	if _, err := o.c.do(ctx, http.MethodPost, "/v1/owners/"+escape(ref)+"/revoke", nil, nil, authOwner, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RevokePasskey revokes one passkey (its base64url credential id) and
// ends the sessions it signed in.
func (o *Owner) RevokePasskey(ctx context.Context, credentialID string) (*Passkey, error) {
	var out Passkey
	if _, err := o.c.do(ctx, http.MethodPost, "/v1/passkeys/"+escape(credentialID)+"/revoke", nil, nil, authOwner, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
