package portal

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"

	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Session is the signed-in owner as the portal sees it.
type Session struct {
	OwnerID   string
	OwnerName string
	// CSRF is the token every state-changing form of this session
	// carries (form field csrf_token or header X-CSRF-Token).
	CSRF string
}

// Auth is what the portal needs of the owner identity backend
// (internal/owners: passkeys, sessions, CSRF tokens). The portal never
// decides who is signed in itself.
type Auth interface {
	// RequireSession lets requests with a live session through, and
	// answers the others: a page request with a redirect to
	// /signin?next=<path>, anything else with 401.
	RequireSession(next http.Handler) http.Handler
	// Session returns the session RequireSession found for the request
	// whose context ctx is.
	Session(ctx context.Context) (s Session, ok bool)
	// CheckCSRF refuses a state-changing request whose CSRF token is
	// missing or not the session's.
	CheckCSRF(r *http.Request) error
}

// Chains reads on-chain balances; nil when no chain is connected.
type Chains interface {
	Networks() []string
	Balance(ctx context.Context, network, token, owner string) (*big.Int, error)
}

// Config wires a Server.
type Config struct {
	Service *spend.Service
	Assets  *money.Registry
	Auth    Auth
	Chains  Chains
	Logger  *slog.Logger
	Clock   spend.Clock
	// Origin is the portal's public origin ("http://localhost:8402",
	// "https://wallet.example.com"): a state-changing request must come
	// from a page of this origin (Origin header), and every request must
	// name its host (Host header).
	Origin string
	// AuthHandler, when set, serves the identity backend's endpoints
	// under /auth/ (passkey ceremonies, sessions).
	AuthHandler http.Handler
	// Webhooks, when set, is the webhook engine the webhooks page
	// manages; nil leaves the page out.
	Webhooks Webhooks
	// SSEPoll is how often the live approval queue looks for changes
	// (default 1 s).
	SSEPoll time.Duration
}

// Server serves the owner portal.
type Server struct {
	cfg    Config
	svc    *spend.Service
	log    *slog.Logger
	clock  spend.Clock
	origin *url.URL
	pages  map[string]*template.Template
	mux    *http.ServeMux
}

// New builds the portal. It panics on a template that does not parse:
// templates are embedded, so that is a build fault.
func New(cfg Config) (*Server, error) {
	if cfg.Service == nil || cfg.Auth == nil || cfg.Assets == nil {
		return nil, errors.New("portal: Service, Assets and Auth are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = spend.SystemClock{}
	}
	if cfg.SSEPoll <= 0 {
		cfg.SSEPoll = time.Second
	}
	o, err := url.Parse(cfg.Origin)
	if err != nil || (o.Scheme != "http" && o.Scheme != "https") || o.Host == "" || o.Path != "" && o.Path != "/" {
		return nil, fmt.Errorf("portal: origin %q must be scheme://host[:port]", cfg.Origin)
	}
	o.Path = ""
	s := &Server{cfg: cfg, svc: cfg.Service, log: cfg.Logger, clock: cfg.Clock, origin: o, mux: http.NewServeMux()}
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

// Origin is the portal's public origin, e.g. for links in notifications.
func (s *Server) Origin() string { return s.origin.String() }

// Handler serves every portal path (everything but /v1/, /healthz and
// /metrics, which the API serves).
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// securityHeaders are on every portal answer: no inline script or style,
// no framing, no sniffing, no referrer beyond the origin.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	if !s.hostOK(r) {
		s.fail(w, r, http.StatusMisdirectedRequest, "Wrong address", "This portal does not answer under the host name in this request. Open it at "+s.origin.String()+".")
		return
	}
	if !safeMethod(r.Method) && !s.originOK(r) {
		s.fail(w, r, http.StatusForbidden, "Request refused", "This request did not come from a page of this portal, so it was not carried out.")
		return
	}
	s.mux.ServeHTTP(w, r)
}

func safeMethod(m string) bool { return m == http.MethodGet || m == http.MethodHead }

// hostOK: the Host header must be the origin's host and port. A
// DNS-rebinding page reaches the server under its own name.
func (s *Server) hostOK(r *http.Request) bool {
	return strings.EqualFold(r.Host, s.origin.Host) || strings.EqualFold(r.Host+":"+defaultPort(s.origin.Scheme), s.origin.Host) ||
		strings.EqualFold(r.Host, s.origin.Host+":"+defaultPort(s.origin.Scheme))
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

// originOK: a state change must name this portal as its origin (browsers
// send Origin on every POST); without Origin, a same-origin Referer is
// accepted. Neither: refused.
func (s *Server) originOK(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		return o == s.origin.String()
	}
	ref, err := url.Parse(r.Header.Get("Referer"))
	return err == nil && ref.Scheme == s.origin.Scheme && strings.EqualFold(ref.Host, s.origin.Host)
}

type handler func(w http.ResponseWriter, r *http.Request, sess Session) error

// page registers an owner page behind the identity backend's
// RequireSession (no live session: the browser goes to sign-in); a
// state change must also carry the session's CSRF token, checked here
// as well, whatever the backend did.
func (s *Server) page(pattern string, h handler) {
	s.mux.Handle(pattern, s.cfg.Auth.RequireSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		sess, ok := s.cfg.Auth.Session(r.Context())
		if !ok {
			// RequireSession let it through without a session: refuse
			// rather than serve an owner page to nobody.
			s.fail(w, r, http.StatusUnauthorized, "Signed out", "Your session has ended. Sign in again.")
			return
		}
		if !safeMethod(r.Method) {
			if err := s.cfg.Auth.CheckCSRF(r); err != nil {
				s.fail(w, r, http.StatusForbidden, "Request refused", "This form had expired or did not come from this portal. Reload the page and try again.")
				return
			}
		}
		s.run(w, r, func() error { return h(w, r, sess) })
	})))
}

// public registers a page that needs no session (sign-in, enrolment).
func (s *Server) public(pattern string, h func(w http.ResponseWriter, r *http.Request) error) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		s.run(w, r, func() error { return h(w, r) })
	})
}

func (s *Server) run(w http.ResponseWriter, r *http.Request, fn func() error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic in portal handler", "path", r.URL.Path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			s.fail(w, r, http.StatusInternalServerError, "Something went wrong", "The server log has the details.")
		}
	}()
	if err := fn(); err != nil {
		s.failErr(w, r, err)
	}
}

// failErr renders an error page: a coded error's safe message, or a
// generic one (its detail is logged, never shown).
func (s *Server) failErr(w http.ResponseWriter, r *http.Request, err error) {
	code := spend.CodeOf(err)
	if code == "" {
		s.log.Error("portal internal error", "path", r.URL.Path, "err", err)
		s.fail(w, r, http.StatusInternalServerError, "Something went wrong", "The server log has the details.")
		return
	}
	status, known := spend.HTTPStatus(code)
	if !known {
		status = http.StatusBadRequest
	}
	msg := err.Error()
	var se *spend.Error
	if errors.As(err, &se) {
		msg = se.Message
	}
	title := "That did not work"
	if status == http.StatusNotFound {
		title = "Not found"
	}
	s.fail(w, r, status, title, msg)
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	sess, _ := s.cfg.Auth.Session(r.Context())
	s.render(w, status, "error", &view{Title: title, Session: sess, Data: map[string]string{"Message": msg}})
}

// view is what every page template gets.
type view struct {
	Hooks   bool // the webhooks page is there
	Title   string
	Nav     string // the active section
	Session Session
	Flash   string
	Data    any
}

func (s *Server) render(w http.ResponseWriter, status int, name string, v *view) {
	v.Hooks = s.cfg.Webhooks != nil
	t, ok := s.pages[name]
	if !ok {
		panic("portal: no page " + name)
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", v); err != nil {
		s.log.Error("portal template failed", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// pageNames are the templates with their own page; each is parsed with
// the layout and the shared partials.
var pageNames = []string{"error", "signin", "enrol", "overview", "agents", "agent", "agent_new", "mandate_edit",
	"mandate_preview", "confirm", "approvals", "approval", "audit", "webhooks", "webhook"}

func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("base").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range pageNames {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+n+".html")
		if err != nil {
			return nil, err
		}
		out[n] = t
	}
	// The approval queue is also rendered alone, for the live updates.
	out["queue"] = base
	return out, nil
}

func (s *Server) routes() {
	static, _ := fs.Sub(staticFS, "static")
	files := http.FileServerFS(static)
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})))
	if s.cfg.AuthHandler != nil {
		s.mux.Handle("/auth/", s.cfg.AuthHandler)
	}
	s.public("GET /signin", s.signin)
	s.public("GET /enrol", s.enrol)

	s.page("GET /{$}", s.overview)
	s.page("GET /agents", s.agents)
	s.page("GET /agents/new", s.agentNew)
	s.page("POST /agents", s.agentCreate)
	s.page("GET /agents/{id}", s.agent)
	s.page("GET /agents/{id}/confirm/{action}", s.agentConfirm)
	s.page("POST /agents/{id}/{action}", s.agentAction)
	s.page("GET /agents/{id}/mandate", s.mandateEdit)
	s.page("POST /agents/{id}/mandate/preview", s.mandatePreview)
	s.page("POST /agents/{id}/mandate", s.mandateSave)
	s.page("GET /approvals", s.approvals)
	s.page("GET /approvals/events", s.approvalEvents)
	s.page("GET /approvals/{id}", s.approval)
	s.page("POST /approvals/{id}/deny", s.deny)
	s.page("GET /audit", s.audit)
	s.page("GET /audit/export", s.auditExport)
	s.page("POST /audit/verify", s.auditVerify)
	s.page("GET /webhooks", s.webhooksPage)
	s.page("POST /webhooks", s.webhookCreate)
	s.page("GET /webhooks/{id}", s.webhookPage)
	s.page("POST /webhooks/{id}/delete", s.webhookDelete)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, "Not found", "There is no page at this address.")
	})
}
