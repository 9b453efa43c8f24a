package owners_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/store/postgres"
	"github.com/purserhq/purser/internal/store/storetest"
)

// TestConcurrentApprovals: two devices of one owner approve the same spend
// at once, each with its own challenge, and the same assertion is sent
// twice at once: the spend is approved once, one spend.approve event is
// written, the others answer the approved spend (replayed) or refuse the
// reused challenge. On SQLite, and on PostgreSQL when
// PURSER_TEST_POSTGRES is set.
func TestConcurrentApprovals(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		concurrentApprovals(t, newHarness(t, ""))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		st, err := postgres.Open(ctx, storetest.PostgresDSN(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		concurrentApprovals(t, newHarnessOn(t, "", st))
	})
}

func concurrentApprovals(t *testing.T, h *harness) {
	b1, c1 := h.enrol(h.invite("alice"))
	b2, c2 := h.enrol(h.invite("alice"))
	sp := h.pending(h.agent("a1"), "5")
	a1 := h.sa.get(t, c1, b1.beginApproval(sp.ID).body["options"])
	a2 := h.sa.get(t, c2, b2.beginApproval(sp.ID).body["options"])
	var wg sync.WaitGroup
	answers := make([]answer, 4)
	for i, call := range []struct {
		b *browser
		a *assertion
	}{{b1, a1}, {b2, a2}, {b1, a1}, {b2, a2}} {
		wg.Go(func() {
			answers[i] = call.b.post(approvalPath(sp.ID, "finish"), map[string]any{"credential": call.a.json()})
		})
	}
	wg.Wait()
	approved, replayed, reused := 0, 0, 0
	for _, a := range answers {
		switch {
		case a.status == 200 && a.body["replayed"] == false:
			approved++
		case a.status == 200 && a.body["replayed"] == true:
			replayed++
		case a.status == 400 && a.code() == "challenge_invalid":
			reused++
		default:
			t.Fatalf("answer %d %v", a.status, a.body)
		}
	}
	if approved != 1 || replayed != 1 || reused != 2 || h.status(sp.ID) != spend.StatusAuthorized {
		t.Fatalf("approved %d, replayed %d, reused challenge %d; status %s", approved, replayed, reused, h.status(sp.ID))
	}
	exp := h.export()
	if n := strings.Count(string(exp), `"action":"spend.approve"`); n != 1 {
		t.Fatalf("%d spend.approve events", n)
	}
	if _, err := audit.VerifyExport(bytes.NewReader(exp), nil); err != nil {
		t.Fatal(err)
	}
}
