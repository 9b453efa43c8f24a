package cli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/internal/webhook"
)

// TestWebhookCommands drives `purser webhook` against a real server and a
// receiver: add (a loopback target refused unless allowed; the secret
// printed once), list (no secret), test, a delivered freeze in
// deliveries, key, rm.
func TestWebhookCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var hits atomic.Int32
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	dir := t.TempDir()
	srv, err := app.Start(ctx, app.Config{DataDir: dir, Listen: "127.0.0.1:0", WebhookPoll: 10 * time.Millisecond,
		WebhookRetry: webhook.RetryPolicy{First: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(ctx) //nolint:errcheck // the test is over
	base := []string{"--server", "http://" + srv.Addr(), "--data", dir}
	cli := func(args ...string) (int, string) {
		code, out, errOut := runCLI(t, nil, append(args, base...)...)
		return code, out + errOut
	}
	if code, out := cli("webhook", "add", recv.URL); code == 0 || !strings.Contains(out, "webhook_target_private") {
		t.Fatalf("loopback target without --allow-private: %d %s", code, out)
	}
	code, out := cli("webhook", "add", recv.URL+"/in", "--allow-private", "--events", "agent.frozen")
	if code != 0 {
		t.Fatalf("add: %d %s", code, out)
	}
	secret := regexp.MustCompile(`whsec_\S+`).FindString(out)
	id := regexp.MustCompile(`whk_[0-9a-z]+`).FindString(out)
	if secret == "" || id == "" {
		t.Fatalf("add printed no secret or id: %s", out)
	}
	if code, out := cli("webhook", "list"); code != 0 || !strings.Contains(out, id) || strings.Contains(out, strings.TrimPrefix(secret, "whsec_")) {
		t.Fatalf("list: %d %s", code, out)
	}
	if code, out := cli("webhook", "test", id); code != 0 || !strings.Contains(out, "ping delivered: HTTP 204") {
		t.Fatalf("test: %d %s", code, out)
	}
	if code, out := cli("agent", "create", "ann", "--key-out", filepath.Join(dir, "ann.key"), "--daily", "5"); code != 0 {
		t.Fatalf("agent create: %d %s", code, out)
	}
	if code, out := cli("agent", "freeze", "ann"); code != 0 {
		t.Fatalf("freeze: %d %s", code, out)
	}
	// The freeze is delivered, and its attempt logged just after.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		code, out := cli("webhook", "deliveries", id)
		if code != 0 {
			t.Fatalf("deliveries: %d %s", code, out)
		}
		if strings.Contains(out, "agent.frozen") && strings.Contains(out, "ping") && hits.Load() == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the freeze was not delivered and logged (%d requests): %s", hits.Load(), out)
		}
	}
	if code, out := cli("webhook", "key"); code != 0 || !strings.HasPrefix(out, "whpk_") {
		t.Fatalf("key: %d %s", code, out)
	}
	if code, out := cli("webhook", "rm", id); code != 0 {
		t.Fatalf("rm: %d %s", code, out)
	}
	if code, out := cli("webhook", "rm", id); code == 0 || !strings.Contains(out, "webhook_not_found") {
		t.Fatalf("second rm: %d %s", code, out)
	}
}
