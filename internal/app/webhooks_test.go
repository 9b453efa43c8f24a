package app

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/spend/spendtest"
	"github.com/purserhq/purser/internal/store/storetest"
	"github.com/purserhq/purser/internal/webhook"
	"github.com/purserhq/purser/sdk"
)

// TestWebhooksSurviveRestart: a receiver is down while Purser stops and
// starts again on the same data directory (twice, events happening in
// between); once it is back, every event arrives, in order, none missing,
// and each message keeps the webhook-id it had before the restarts. On
// SQLite, and on PostgreSQL when PURSER_TEST_POSTGRES is set.
func TestWebhooksSurviveRestart(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		testWebhooksSurviveRestart(t, "")
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		testWebhooksSurviveRestart(t, storetest.PostgresDSN(t))
	})
}

type hookDelivery struct {
	id, ts, sig string
	body        []byte
	ok          bool
}

func testWebhooksSurviveRestart(t *testing.T, dsn string) {
	var mu sync.Mutex
	var got []hookDelivery
	up := false
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		got = append(got, hookDelivery{id: r.Header.Get("webhook-id"), ts: r.Header.Get("webhook-timestamp"),
			sig: r.Header.Get("webhook-signature"), body: b, ok: up})
		if !up {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer recv.Close()
	deliveries := func() []hookDelivery {
		mu.Lock()
		defer mu.Unlock()
		return append([]hookDelivery(nil), got...)
	}
	waitFor := func(what string, fn func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !fn(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}

	dir := t.TempDir()
	logs := &syncBuffer{}
	cfg := Config{DataDir: dir, Listen: "127.0.0.1:0", DB: dsn, LogLevel: "debug", Stderr: logs, PublicURL: "https://purser.example",
		WebhookRetry: webhook.RetryPolicy{First: 10 * time.Millisecond, Max: 50 * time.Millisecond, Jitter: -1},
		WebhookPoll:  5 * time.Millisecond}
	var srv *Server
	var owner *sdk.Owner
	start := func() {
		t.Helper()
		var err error
		if srv, err = Start(bg, cfg); err != nil {
			t.Fatal(err)
		}
		tok, err := os.ReadFile(filepath.Join(dir, "owner.token"))
		if err != nil {
			t.Fatal(err)
		}
		if owner, err = sdk.NewOwner("http://"+srv.Addr(), strings.TrimSpace(string(tok))); err != nil {
			t.Fatal(err)
		}
	}
	stop := func() {
		t.Helper()
		if err := srv.Shutdown(bg); err != nil {
			t.Fatal(err)
		}
	}
	var frozen []string
	freeze := func(n int) {
		t.Helper()
		for range n {
			a, err := owner.CreateAgent(bg, sdk.CreateAgentRequest{Name: "a" + strconv.Itoa(len(frozen)), IdentityAddress: spendtest.RandomAddress()})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := owner.Freeze(bg, a.ID); err != nil {
				t.Fatal(err)
			}
			frozen = append(frozen, a.ID)
		}
	}

	start()
	defer func() { srv.Shutdown(bg) }() //nolint:errcheck
	if _, err := owner.CreateWebhook(bg, sdk.CreateWebhookRequest{URL: recv.URL}); err == nil {
		t.Fatal("a loopback receiver was accepted without allow_private")
	}
	hook, err := owner.CreateWebhook(bg, sdk.CreateWebhookRequest{URL: recv.URL + "/hook", AllowPrivate: true, Events: []string{"agent.frozen"}})
	if err != nil {
		t.Fatal(err)
	}
	freeze(2)
	waitFor("failed attempts", func() bool { return len(deliveries()) >= 3 })
	head := deliveries()[0].id
	stop()
	start()
	freeze(2)
	waitFor("failed attempts after a restart", func() bool { return len(deliveries()) >= 6 })
	stop()
	start()
	mu.Lock()
	up = true
	mu.Unlock()
	freeze(1)
	waitFor("every event", func() bool {
		n := 0
		for _, d := range deliveries() {
			if d.ok {
				n++
			}
		}
		return n == len(frozen)
	})
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(hook.Secret, "whsec_"))
	var accepted []hookDelivery
	for _, d := range deliveries() {
		if !d.ok && d.id != head {
			t.Fatalf("while the receiver was down, %s was sent besides the head %s", d.id, head)
		}
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(d.id + "." + d.ts + "." + string(d.body)))
		if d.sig != "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)) {
			t.Fatalf("delivery %s: signature %s does not verify", d.id, d.sig)
		}
		if d.ok {
			accepted = append(accepted, d)
		}
	}
	if accepted[0].id != head {
		t.Fatalf("the first accepted is %s; want the head from before the restarts, %s", accepted[0].id, head)
	}
	for i, d := range accepted {
		var p struct {
			Type string `json:"type"`
			Data struct {
				Agent struct {
					ID string `json:"id"`
				} `json:"agent"`
				PortalURL string `json:"portal_url"`
			} `json:"data"`
		}
		if err := json.Unmarshal(d.body, &p); err != nil {
			t.Fatal(err)
		}
		if p.Type != "agent.frozen" || p.Data.Agent.ID != frozen[i] || p.Data.PortalURL != "https://purser.example/agents/"+frozen[i] {
			t.Fatalf("accepted %d: %s; want agent.frozen of %s", i, d.body, frozen[i])
		}
	}
	res, err := http.Get("http://" + srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(page), `purser_webhook_attempts_total{outcome="delivered"}`) {
		t.Errorf("/metrics has no delivered webhook attempts:\n%s", page)
	}
	if raw := strings.TrimPrefix(hook.Secret, "whsec_"); strings.Contains(logs.String(), raw) {
		t.Error("the webhook secret is in the server's log")
	}
	if !strings.Contains(logs.String(), "webhook delivery failed") {
		t.Error("failed deliveries were not logged")
	}
	// The last answer is recorded just after the receiver gave it.
	waitFor("the delivery log to show every request", func() bool {
		ds, err := owner.WebhookDeliveries(bg, hook.ID, 0, 500)
		if err != nil {
			t.Fatal(err)
		}
		// more: an attempt a shutdown cut short before it was sent
		return len(ds.Deliveries) >= len(deliveries()) && ds.Deliveries[0].Outcome == "delivered"
	})
}
