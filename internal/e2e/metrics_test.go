package e2e

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/sdk"
)

// TestMetrics: /metrics counts authorizations by decision and reason,
// has latency histograms, the holds gauge and the group committer's
// series, and carries no token, key or signature.
func TestMetrics(t *testing.T) {
	t.Parallel()
	n := startApp(t, app.Config{})
	ctx := context.Background()
	key := n.newAgent(t, "metered", `{"per_tx_auto":"0.10","per_tx_max":"1"}`)
	c := n.agentClient(t, key)
	for _, amount := range []string{"0.05", "0.06", "0.50", "5"} { // allow, allow, needs approval, deny
		_, err := c.Authorize(ctx, sdk.AuthorizeRequest{Rail: "custom", Payee: payee, Amount: amount})
		if err != nil && amount != "5" && !isPending(err) {
			t.Fatalf("authorize %s: %v", amount, err)
		}
	}

	resp, err := http.Get(n.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := string(b)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	value := func(series string) float64 {
		t.Helper()
		m := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no series %s in:\n%s", series, out)
		}
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := value(`purser_authorizations_total{decision="allow",reason=""}`); v != 2 {
		t.Errorf("allowed = %v, want 2", v)
	}
	if v := value(`purser_authorizations_total{decision="needs_approval",reason="above_auto_approve"}`); v != 1 {
		t.Errorf("needs_approval = %v, want 1", v)
	}
	if v := value(`purser_authorizations_total{decision="deny",reason="per_tx_cap_exceeded"}`); v != 1 {
		t.Errorf("denied = %v, want 1", v)
	}
	if v := value(`purser_authorization_duration_seconds_count{decision="allow"}`); v != 2 {
		t.Errorf("allow latency count = %v, want 2", v)
	}
	value("purser_holds_outstanding")
	// Every change went through the group committer: at least the four
	// authorizations and the agent's creation.
	if v := value("purser_store_batch_callers_sum"); v < 5 {
		t.Errorf("store callers = %v, want at least 5", v)
	}
	if batches, waits := value("purser_store_batch_callers_count"), value("purser_store_queue_wait_seconds_count"); batches < 1 || waits != batches || value("purser_store_batch_duration_seconds_count") != batches {
		t.Errorf("store histograms disagree: %v batches, %v waits", batches, waits)
	}
	if v := value("purser_store_sync_duration_seconds_count"); v < 1 {
		t.Errorf("SQLite syncs = %v, want at least 1", v)
	}
	if strings.Contains(out, n.token) || regexp.MustCompile(`0x[0-9a-fA-F]{40}`).MatchString(out) {
		t.Error("/metrics carries the owner token or an address")
	}
}
