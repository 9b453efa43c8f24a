package portal

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// approvalEvents streams the approval queue as server-sent events: an
// event "queue" carrying the queue's HTML (rendered and escaped here,
// the same fragment the page has) whenever the set of pending approvals
// changes. It polls the database, so a decision taken on another node
// of a cluster shows up too; one small indexed query a second per open
// page.
func (s *Server) approvalEvents(w http.ResponseWriter, r *http.Request, sess Session) error {
	fl, ok := w.(http.Flusher)
	if !ok {
		return fmt.Errorf("portal: response writer cannot flush")
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	fl.Flush()
	ctx := r.Context()
	tick := time.NewTicker(s.cfg.SSEPoll)
	defer tick.Stop()
	last := "-" // no key looks like this: the first read is always sent
	idle := 0
	for {
		// The server's write timeout would cut a long stream: each write
		// pushes the deadline on.
		_ = rc.SetWriteDeadline(time.Now().Add(time.Minute))
		rows, err := s.pending(ctx, maxQueue)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("approval stream: read failed", "err", err)
		} else {
			var key strings.Builder
			for _, row := range rows {
				key.WriteString(row.Spend.ID + ":" + string(row.Spend.Status) + ",")
			}
			if key.String() != last {
				last = key.String()
				var b strings.Builder
				if err := s.pages["queue"].ExecuteTemplate(&b, "queue", map[string]any{"Rows": rows, "Session": sess, "Max": maxQueue}); err != nil {
					return err
				}
				fmt.Fprintf(w, "event: queue\n")
				for _, line := range strings.Split(b.String(), "\n") {
					fmt.Fprintf(w, "data: %s\n", line)
				}
				fmt.Fprint(w, "\n")
				fl.Flush()
				idle = 0
			} else if idle++; idle*int(s.cfg.SSEPoll/time.Millisecond) >= 15_000 {
				fmt.Fprint(w, ": keep-alive\n\n")
				fl.Flush()
				idle = 0
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
