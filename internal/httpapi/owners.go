package httpapi

import (
	"encoding/base64"
	"net/http"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/spend"
)

// The owners who sign in to the portal with a passkey, managed with the
// owner token (purser owner invite|list|revoke). A portal session never
// authorizes these routes, nor any other /v1 route.

func (s *Server) ownerRoutes() {
	s.handle("POST /v1/owners/invites", s.owner(s.inviteOwner))
	s.handle("GET /v1/owners", s.owner(s.listOwners))
	s.handle("POST /v1/owners/{ref}/revoke", s.owner(s.revokeOwner))
	s.handle("POST /v1/passkeys/{id}/revoke", s.owner(s.revokePasskey))
}

func (s *Server) inviteOwner(w http.ResponseWriter, r *http.Request) error {
	var req api.InviteOwnerRequest
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	inv, err := s.svc.InviteOwner(r.Context(), req.Name, 0)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, api.OwnerInvite{Link: s.publicURL + "/enrol#" + inv.Token, Name: inv.Name,
		NewOwner: inv.NewOwner, ExpiresAt: inv.ExpiresAt})
}

var b64url = base64.RawURLEncoding

func passkeyView(p *spend.Passkey) api.Passkey {
	return api.Passkey{CredentialID: b64url.EncodeToString(p.CredentialID), OwnerID: p.OwnerID, CreatedAt: p.CreatedAt,
		LastUsedAt: p.LastUsedAt, RevokedAt: p.RevokedAt}
}

func ownerView(o *spend.Owner) api.Owner {
	v := api.Owner{ID: o.ID, Name: o.Name, CreatedAt: o.CreatedAt, RevokedAt: o.RevokedAt, Passkeys: []api.Passkey{}}
	for _, p := range o.Passkeys {
		v.Passkeys = append(v.Passkeys, passkeyView(p))
	}
	return v
}

func (s *Server) listOwners(w http.ResponseWriter, r *http.Request) error {
	os, err := s.svc.ListOwners(r.Context())
	if err != nil {
		return err
	}
	out := api.OwnerList{Owners: []api.Owner{}}
	for _, o := range os {
		out.Owners = append(out.Owners, ownerView(o))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) revokeOwner(w http.ResponseWriter, r *http.Request) error {
	if err := bindJSON(r, &struct{}{}); err != nil {
		return err
	}
	o, err := s.svc.RevokeOwner(r.Context(), r.PathValue("ref"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, ownerView(o))
}

func (s *Server) revokePasskey(w http.ResponseWriter, r *http.Request) error {
	if err := bindJSON(r, &struct{}{}); err != nil {
		return err
	}
	p, err := s.svc.RevokePasskey(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, passkeyView(p))
}
