package httpapi

import (
	"fmt"
	"net/http"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/apiproxy"
	"github.com/purserhq/purser/internal/spend"
)

func (s *Server) vaultRoutes() {
	s.handle("POST /v1/vault", s.owner(s.withVault(s.putCredential)))
	s.handle("GET /v1/vault", s.owner(s.withVault(s.listCredentials)))
	s.handle("GET /v1/vault/{name}", s.owner(s.withVault(s.getCredential)))
	s.handle("DELETE /v1/vault/{name}", s.owner(s.withVault(s.deleteCredential)))
	s.handle("POST /v1/vault/{name}/rotate", s.owner(s.withVault(s.rotateCredential)))
	s.handle("POST /v1/vault/{name}/grants", s.owner(s.withVault(s.putGrant)))
	s.handle("GET /v1/vault/{name}/grants", s.owner(s.withVault(s.listGrants)))
	s.handle("POST /v1/vault/{name}/grants/{agent}/revoke", s.owner(s.withVault(s.revokeGrant)))
	s.handle("POST /v1/vault/{name}/tools", s.owner(s.withVault(s.putTool)))
	s.handle("GET /v1/vault/{name}/tools", s.owner(s.withVault(s.listTools)))
	s.handle("DELETE /v1/vault/{name}/tools/{tool}", s.owner(s.withVault(s.deleteTool)))
	s.handle("GET /v1/agent/grants", s.agent(s.agentGrants))
	// Served by serveHTTP before the mux; registered for the route list
	// (and for paths the mux would see, e.g. behind a prefix-stripping
	// front end).
	s.handle(apiproxy.Prefix+"{name}/{path...}", s.proxied(s.proxy))
	s.proxyH = s.wrap(apiproxy.Prefix+"{name}/{path...}", s.proxied(s.proxy))
}

// withVault answers not_found where no vault is configured.
func (s *Server) withVault(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if s.vault == nil {
			return spend.Errorf("not_found", "the credential vault is not configured on this server")
		}
		return h(w, r)
	}
}

func (s *Server) putCredential(w http.ResponseWriter, r *http.Request) error {
	var req api.PutCredentialRequest
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	c, err := s.vault.Put(r.Context(), req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, c)
}

func (s *Server) listCredentials(w http.ResponseWriter, r *http.Request) error {
	cs, err := s.vault.List(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.Credentials{Credentials: cs})
}

func (s *Server) getCredential(w http.ResponseWriter, r *http.Request) error {
	c, err := s.vault.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

func (s *Server) deleteCredential(w http.ResponseWriter, r *http.Request) error {
	c, err := s.vault.Delete(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

func (s *Server) rotateCredential(w http.ResponseWriter, r *http.Request) error {
	var req api.RotateCredentialRequest
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	c, err := s.vault.Rotate(r.Context(), r.PathValue("name"), req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

func (s *Server) putGrant(w http.ResponseWriter, r *http.Request) error {
	var req api.GrantRequest
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	g, err := s.vault.Grant(r.Context(), r.PathValue("name"), req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, g)
}

func (s *Server) listGrants(w http.ResponseWriter, r *http.Request) error {
	gs, err := s.vault.Grants(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.Grants{Grants: gs})
}

func (s *Server) revokeGrant(w http.ResponseWriter, r *http.Request) error {
	if err := bindJSON(r, &struct{}{}); err != nil {
		return err
	}
	g, err := s.vault.Revoke(r.Context(), r.PathValue("name"), r.PathValue("agent"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, g)
}

func (s *Server) putTool(w http.ResponseWriter, r *http.Request) error {
	var req api.ToolRequest
	if err := bindJSON(r, &req); err != nil {
		return err
	}
	t, err := s.vault.PutTool(r.Context(), r.PathValue("name"), req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, t)
}

func (s *Server) listTools(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.vault.Tools(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.Tools{Tools: ts})
}

func (s *Server) deleteTool(w http.ResponseWriter, r *http.Request) error {
	t, err := s.vault.DeleteTool(r.Context(), r.PathValue("name"), r.PathValue("tool"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, t)
}

func (s *Server) agentGrants(w http.ResponseWriter, r *http.Request, c spend.Caller) error {
	if s.vault == nil {
		return writeJSON(w, http.StatusOK, api.AgentGrants{Grants: []api.AgentGrant{}, Tools: []api.Tool{}})
	}
	if err := decodeStrict(c.Body, &struct{}{}); err != nil {
		return err
	}
	g, err := s.vault.AgentGrants(r.Context(), c)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, g)
}

type proxyHandler func(w http.ResponseWriter, r *http.Request, c spend.Caller, body []byte) error

// proxied authenticates a proxied call: the agent's signature covers the
// method, the request-target and the SHA-256 of a body that may be
// anything (not only JSON) up to apiproxy.MaxBody; the audit trail keeps
// the hash, not the body. An Authorization header is the upstream's
// business (a client configured with a dummy key): the proxy never
// forwards it when it injects one. Purser's own answers carry
// Purser-Error.
func (s *Server) proxied(h proxyHandler) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		err := func() error {
			if s.vault == nil {
				return spend.Errorf("not_found", "the credential vault is not configured on this server")
			}
			body, err := readBody(r)
			if err != nil {
				return err
			}
			if len(body) > apiproxy.MaxBody {
				return &spend.Error{Code: "body_too_large", Message: fmt.Sprintf("a proxied call's body is at most %d bytes", apiproxy.MaxBody)}
			}
			c, err := s.verifyAgent(w, r, body, true)
			if err != nil {
				return err
			}
			return h(w, r, c, body)
		}()
		if err != nil {
			code := spend.CodeOf(err)
			if code == "" {
				code = "internal"
			}
			w.Header().Set(api.HeaderError, code)
		}
		return err
	}
}

func (s *Server) proxy(w http.ResponseWriter, r *http.Request, c spend.Caller, body []byte) error {
	return s.vault.Serve(w, r, c, body)
}
