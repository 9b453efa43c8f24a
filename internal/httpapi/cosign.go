package httpapi

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/spend"
)

// Co-signed (2of2) wallets: docs/cosign-design.md, "Integration contract".

func (s *Server) cosignRoutes() {
	s.handle("POST /v1/agents/{ref}/cosign/keygen", s.owner(s.cosignKeygen))
	s.handle("POST /v1/agents/{ref}/cosign/recovery", s.owner(s.cosignRecoverySet))
	s.handle("GET /v1/agents/{ref}/cosign/recovery", s.owner(s.cosignRecoveryGet))
	s.handle("POST /v1/agents/{ref}/cosign/refresh", s.owner(s.cosignRefresh))
	s.handle("POST /v1/agents/{ref}/cosign/refresh/commit", s.owner(s.cosignRefreshCommit))
	s.handle("POST /v1/agents/{ref}/cosign/refresh/finish", s.owner(s.cosignRefreshFinish))
	s.handle("POST /v1/agent/spends/{id}/cosign", s.agentBinary(s.cosignSign))
	s.handle("POST /v1/agent/spends/{id}/cosign/finish", s.agent(s.cosignFinish))
}

func (s *Server) cosignKeygen(w http.ResponseWriter, r *http.Request) error {
	var req api.KeygenRequest
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	msg, err := base64.StdEncoding.DecodeString(req.Message)
	if err != nil || len(msg) == 0 {
		return spend.Errorf(spend.CodeInvalidRequest, "message must be the base64 of a key generation message").WithDetails(map[string]any{"field": "message"})
	}
	res, err := s.svc.CosignKeygen(r.Context(), r.PathValue("ref"), msg)
	if err != nil {
		return err
	}
	if !res.Done {
		return writeJSON(w, http.StatusOK, api.KeygenResponse{Message: base64.StdEncoding.EncodeToString(res.Message)})
	}
	return writeJSON(w, http.StatusOK, api.KeygenResponse{Done: true, Address: res.Address, PublicKey: "0x" + hex.EncodeToString(res.PublicKey)})
}

// protocolMessage decodes a {"message": base64} body.
func protocolMessage(r *http.Request) ([]byte, error) {
	var req api.KeygenRequest
	if err := bindJSON(r, &req); err != nil {
		return nil, err
	}
	msg, err := base64.StdEncoding.DecodeString(req.Message)
	if err != nil || len(msg) == 0 {
		return nil, spend.Errorf(spend.CodeInvalidRequest, "message must be the base64 of a protocol message").WithDetails(map[string]any{"field": "message"})
	}
	return msg, nil
}

func (s *Server) cosignRefresh(w http.ResponseWriter, r *http.Request) error {
	msg, err := protocolMessage(r)
	if err != nil {
		return err
	}
	res, err := s.svc.CosignRefresh(r.Context(), r.PathValue("ref"), msg)
	if err != nil {
		return err
	}
	if !res.Done {
		return writeJSON(w, http.StatusOK, api.KeygenResponse{Message: base64.StdEncoding.EncodeToString(res.Message)})
	}
	return writeJSON(w, http.StatusOK, api.KeygenResponse{Done: true, Address: res.Address, Epoch: res.Epoch})
}

func (s *Server) cosignRefreshCommit(w http.ResponseWriter, r *http.Request) error {
	msg, err := protocolMessage(r)
	if err != nil {
		return err
	}
	m2, err := s.svc.CosignRefreshCommit(r.Context(), r.PathValue("ref"), msg)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, api.KeygenResponse{Message: base64.StdEncoding.EncodeToString(m2)})
}

func (s *Server) cosignRefreshFinish(w http.ResponseWriter, r *http.Request) error {
	var req api.RefreshFinishRequest
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	sig, err := hex.DecodeString(strings.TrimPrefix(req.Signature, "0x"))
	if err != nil || len(sig) != 65 || !strings.HasPrefix(req.Signature, "0x") {
		return spend.Errorf(spend.CodeInvalidRequest, "signature must be 0x and 65 bytes of hex (r‖s‖v)").WithDetails(map[string]any{"field": "signature"})
	}
	var pub, ct string
	if req.Recovery != nil {
		pub, ct = req.Recovery.PublicKey, req.Recovery.Ciphertext
		if pub == "" && ct == "" {
			return spend.Errorf(spend.CodeInvalidRequest, "recovery needs public_key and ciphertext").WithDetails(map[string]any{"field": "recovery"})
		}
	}
	k, err := s.svc.CosignRefreshFinish(r.Context(), r.PathValue("ref"), sig, pub, ct)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.RefreshFinishResponse{Address: k.Address, Epoch: k.Epoch})
}

func (s *Server) cosignRecoverySet(w http.ResponseWriter, r *http.Request) error {
	var req api.RecoveryBlob
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	k, err := s.svc.CosignRecoverySet(r.Context(), r.PathValue("ref"), req.PublicKey, req.Ciphertext)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.RecoveryBlob{PublicKey: k.RecoveryPublicKey, Ciphertext: k.RecoveryCiphertext})
}

func (s *Server) cosignRecoveryGet(w http.ResponseWriter, r *http.Request) error {
	k, err := s.svc.CosignRecoveryGet(r.Context(), r.PathValue("ref"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.RecoveryBlob{PublicKey: k.RecoveryPublicKey, Ciphertext: k.RecoveryCiphertext})
}

// cosignSign answers the agent's first signing message with the server's
// part, raw bytes (application/octet-stream).
func (s *Server) cosignSign(w http.ResponseWriter, r *http.Request, c spend.Caller, body []byte) error {
	m2, err := s.svc.CosignSign(r.Context(), c, r.PathValue("id"), body)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(m2)
	return err
}

func (s *Server) cosignFinish(w http.ResponseWriter, r *http.Request, c spend.Caller) error {
	var req api.CosignFinishRequest
	if err := decodeStrict(c.Body, &req); err != nil {
		return err
	}
	sig, err := hex.DecodeString(strings.TrimPrefix(req.Signature, "0x"))
	if err != nil || len(sig) != 65 || !strings.HasPrefix(req.Signature, "0x") {
		return spend.Errorf(spend.CodeInvalidRequest, "signature must be 0x and 65 bytes of hex (r‖s‖v)").WithDetails(map[string]any{"field": "signature"})
	}
	sp, err := s.svc.CosignFinish(r.Context(), c, r.PathValue("id"), sig)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.spendView(sp, false))
}

// binaryHandler serves a signed agent request whose body is raw bytes.
type binaryHandler func(w http.ResponseWriter, r *http.Request, c spend.Caller, body []byte) error

// agentBinary is agent for a signed request whose body is a co-signing
// protocol message: raw bytes up to spend.MaxCosignMessage, which the
// audit trail keeps as their SHA-256 (the signature covers the hash).
func (s *Server) agentBinary(h binaryHandler) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := refuseBearer(s, r); err != nil {
			return err
		}
		body, err := readBody(r)
		if err != nil {
			return err
		}
		if len(body) > spend.MaxCosignMessage {
			return &spend.Error{Code: "body_too_large", Message: fmt.Sprintf("a co-signing message is at most %d bytes", spend.MaxCosignMessage)}
		}
		c, err := s.verifyAgent(w, r, body, true)
		if err != nil {
			return err
		}
		return h(w, r, c, body)
	}
}

// cosignView is the co-signing block of a spend awaiting its co-signature.
func cosignView(cs *spend.CosignSigning) *api.CosignSigning {
	if cs == nil || cs.Plan == nil {
		return nil
	}
	p := cs.Plan
	return &api.CosignSigning{
		SessionID: cs.SessionID, Digest: "0x" + hex.EncodeToString(p.Digest[:]),
		Authorization: api.CosignAuthorization{From: p.Authorization.From, To: p.Authorization.To, Value: p.Authorization.Value,
			ValidAfter: p.Authorization.ValidAfter, ValidBefore: p.Authorization.ValidBefore, Nonce: p.Authorization.Nonce},
		Domain: api.CosignDomain{Name: p.Domain.Name, Version: p.Domain.Version, ChainID: p.Domain.ChainID, VerifyingContract: p.Domain.VerifyingContract},
	}
}

// unsignedX402 reports rail data that holds an x402 authorization without
// its payment header (a co-signed one not finished yet).
func unsignedX402(data []byte) bool {
	if len(data) == 0 {
		return false
	}
	var rec struct {
		Header string `json:"header"`
	}
	return json.Unmarshal(data, &rec) == nil && rec.Header == ""
}
