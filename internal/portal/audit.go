package portal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/spend"
)

const (
	auditPageSize = 50
	// auditScanMax bounds the events one page request reads while
	// filtering: a rare filter pages on through "Older" instead of
	// reading the whole chain at once.
	auditScanMax = 20_000
	auditChunk   = 500
)

type auditFilter struct {
	Action, Agent string
	From, To      string // dates, YYYY-MM-DD, inclusive
	from, to      time.Time
}

func (f auditFilter) query(before int64) string {
	v := url.Values{}
	for k, x := range map[string]string{"action": f.Action, "agent": f.Agent, "from": f.From, "to": f.To} {
		if x != "" {
			v.Set(k, x)
		}
	}
	if before > 0 {
		v.Set("before", strconv.FormatInt(before, 10))
	}
	return v.Encode()
}

// agentOf is the agent an event concerns: its subject, or the agent_id
// of its details.
func agentOf(e *audit.Event) string {
	if id, ok := strings.CutPrefix(e.Subject, "agent:"); ok {
		return id
	}
	if e.Actor.Type == "agent" {
		return e.Actor.ID
	}
	var d struct {
		AgentID string `json:"agent_id"`
	}
	if bytes.Contains(e.Details, []byte(`"agent_id"`)) {
		_ = json.Unmarshal(e.Details, &d)
	}
	return d.AgentID
}

func (f auditFilter) match(e *audit.Event) bool {
	if f.Action != "" && e.Action != f.Action && !strings.HasPrefix(e.Action, f.Action+".") {
		return false
	}
	if !f.to.IsZero() && !e.Time.Before(f.to) {
		return false
	}
	if !f.from.IsZero() && e.Time.Before(f.from) {
		return false
	}
	return f.Agent == "" || agentOf(e) == f.Agent
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request, sess Session) error {
	s.auditPage(w, r, sess, "")
	return nil
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, sess Session, flash string) {
	ctx := r.Context()
	q := r.URL.Query()
	f := auditFilter{Action: q.Get("action"), Agent: q.Get("agent"), From: q.Get("from"), To: q.Get("to")}
	var problems []string
	if f.From != "" {
		t, err := time.Parse(time.DateOnly, f.From)
		if err != nil {
			problems = append(problems, "The start date must look like 2026-12-31.")
		}
		f.from = t
	}
	if f.To != "" {
		t, err := time.Parse(time.DateOnly, f.To)
		if err != nil {
			problems = append(problems, "The end date must look like 2026-12-31.")
		} else {
			f.to = t.AddDate(0, 0, 1)
		}
	}
	before, _ := strconv.ParseInt(q.Get("before"), 10, 64)
	status, err := s.svc.AuditStatus(ctx)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	if before <= 0 || before > status.HeadSeq+1 {
		before = status.HeadSeq + 1
	}
	// Walk back from before in bounded chunks, keeping what matches.
	var rows []*audit.Event
	cursor, scanned := before, 0
	for len(rows) < auditPageSize && cursor > 1 && scanned < auditScanMax && len(problems) == 0 {
		evs, err := s.svc.AuditBefore(ctx, cursor, auditChunk)
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		if len(evs) == 0 {
			break
		}
		stop := false
		for _, e := range evs {
			cursor, scanned = e.Seq, scanned+1
			if !f.from.IsZero() && e.Time.Before(f.from) {
				stop, cursor = true, 1 // older events are older still
				break
			}
			if f.match(e) {
				rows = append(rows, e)
				if len(rows) == auditPageSize {
					break
				}
			}
		}
		if stop {
			break
		}
	}
	as, err := s.svc.ListAgents(ctx)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	sort.Slice(as, func(i, j int) bool { return as[i].Name < as[j].Name })
	actions := make([]string, 0, len(actionTexts))
	for a := range actionTexts {
		actions = append(actions, a)
	}
	sort.Strings(actions)
	data := map[string]any{
		"Rows": s.eventRows(ctx, rows), "Filter": f, "Agents": as, "Actions": actions, "Status": status,
		"Problems": problems, "Scanned": scanned,
	}
	if cursor > 1 {
		data["Older"] = "/audit?" + f.query(cursor)
		data["OlderFrom"] = cursor - 1
	}
	if before <= status.HeadSeq {
		data["Newest"] = "/audit?" + f.query(0)
	}
	s.render(w, http.StatusOK, "audit", &view{Title: "Audit trail", Nav: "audit", Session: sess, Flash: flash, Data: data})
}

func (s *Server) auditExport(w http.ResponseWriter, r *http.Request, sess Session) error {
	format := r.URL.Query().Get("format")
	ct := map[string]string{"jsonl": "application/jsonl", "csv": "text/csv; charset=utf-8"}[format]
	if ct == "" {
		return spend.Errorf(spend.CodeInvalidRequest, "format must be jsonl or csv")
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="purser-audit-%s.%s"`, s.clock.Now().UTC().Format("20060102-150405"), format))
	// Once bytes are out an error cannot become a page: it is logged, and
	// the truncated JSONL export fails verification.
	if err := s.svc.ExportAudit(r.Context(), w, format); err != nil {
		s.log.Error("audit export failed", "err", err)
	}
	return nil
}

func (s *Server) auditVerify(w http.ResponseWriter, r *http.Request, sess Session) error {
	res, err := s.svc.VerifyAudit(r.Context())
	var flash string
	if err != nil {
		if spend.CodeOf(err) == "" {
			return err
		}
		flash = "The audit chain did NOT verify: " + messageOf(err)
	} else {
		flash = fmt.Sprintf("The whole audit chain verifies: %d events up to #%d, signed up to #%d by key %s.", res.Events, res.HeadSeq, res.SignedSeq, res.KeyID)
	}
	r.URL.RawQuery = ""
	s.auditPage(w, r, sess, flash)
	return nil
}
