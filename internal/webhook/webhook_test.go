package webhook_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/spend/spendtest"
	"github.com/purserhq/purser/internal/store/postgres"
	"github.com/purserhq/purser/internal/store/sqlite"
	"github.com/purserhq/purser/internal/store/sqlstore"
	"github.com/purserhq/purser/internal/store/storetest"
	"github.com/purserhq/purser/internal/webhook"
)

var ctx = context.Background()

// fast retries: the policy is injectable so that a day of backoff runs
// in milliseconds; GiveUp stays long unless a test shortens it.
var fast = webhook.RetryPolicy{First: 5 * time.Millisecond, Max: 40 * time.Millisecond, Jitter: -1, GiveUp: time.Hour}

type fixture struct {
	t     *testing.T
	env   *spendtest.Env
	store spend.Store
	hooks *webhook.Webhooks
	cfg   webhook.Config
}

func newFixture(t *testing.T, rails ...spend.Rail) *fixture {
	t.Helper()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "purser.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return newFixtureOn(t, st, rails...)
}

// engines runs fn on a fixture on SQLite, and on PostgreSQL when
// PURSER_TEST_POSTGRES is set.
func engines(t *testing.T, fn func(t *testing.T, f *fixture)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, newFixture(t))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		st, err := postgres.Open(ctx, storetest.PostgresDSN(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		fn(t, newFixtureOn(t, st))
	})
}

// newFixtureOn is newFixture on a given store.
func newFixtureOn(t *testing.T, st *sqlstore.Store, rails ...spend.Rail) *fixture {
	t.Helper()
	t.Cleanup(func() { st.Close() })
	env := spendtest.NewEnv(t, st, rails...)
	f := &fixture{t: t, env: env, store: st}
	assets, _ := money.NewRegistry(money.DefaultAssets()...)
	f.cfg = webhook.Config{Service: env.Svc, Assets: assets, PublicURL: "https://purser.example/",
		SecretKey: env.Keys.DeriveKey("webhook-secrets"), SigningKey: ed25519.NewKeyFromSeed(env.Keys.DeriveKey("webhook-ed25519")),
		Retry: fast, LeaseTTL: 5 * time.Second}
	f.restart()
	return f
}

// restart builds a new engine (and spend service) on the same store, as
// a process restart does: nothing held in memory survives.
func (f *fixture) restart() {
	f.t.Helper()
	f.env.Restart()
	f.cfg.Service = f.env.Svc
	h, err := webhook.New(f.cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.hooks = h
}

// pass runs dispatcher passes until fn holds or a few seconds passed.
func (f *fixture) until(what string, fn func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !fn() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out waiting for %s", what)
		}
		if _, err := f.hooks.Pass(ctx); err != nil {
			f.t.Fatalf("Pass: %v", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// delivery is one request a receiver got.
type delivery struct {
	id, ts, sig string
	body        []byte
	status      int
}

// receiver is a webhook receiver; status decides each answer.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []delivery
	status func(n int, d delivery) int // n counts requests from 0
}

func newReceiver(t *testing.T, status func(n int, d delivery) int) *receiver {
	r := &receiver{status: status}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		d := delivery{id: req.Header.Get("webhook-id"), ts: req.Header.Get("webhook-timestamp"), sig: req.Header.Get("webhook-signature"), body: b}
		r.mu.Lock()
		d.status = http.StatusNoContent
		if r.status != nil {
			d.status = r.status(len(r.got), d)
		}
		r.got = append(r.got, d)
		r.mu.Unlock()
		if d.status >= 300 {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(d.status)
			io.WriteString(w, "receiver says "+strconv.Itoa(d.status)) //nolint:errcheck
			return
		}
		w.WriteHeader(d.status)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) all() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// accepted returns the deliveries answered with a 2xx.
func (r *receiver) accepted() []delivery {
	var out []delivery
	for _, d := range r.all() {
		if d.status < 300 {
			out = append(out, d)
		}
	}
	return out
}

// verifyHMAC is the recipe of docs/webhooks.md, written here on its own
// (not with the signer's code): strip whsec_, base64-decode the key,
// HMAC-SHA256 over "id.timestamp.body", base64, compare with each
// space-separated "v1,<sig>" of the header, in constant time; and check
// the timestamp is recent.
func verifyHMAC(secret string, id, ts, sigHeader string, body []byte) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return errors.New("timestamp outside tolerance")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, s := range strings.Fields(sigHeader) {
		v, sig, _ := strings.Cut(s, ",")
		if v == "v1" && hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return errors.New("no v1 signature matches")
}

// verifyEd25519 is the recipe for v1a with the whpk_ public key.
func verifyEd25519(publicKey string, id, ts, sigHeader string, body []byte) error {
	pub, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(publicKey, "whpk_"))
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return errors.New("bad public key")
	}
	msg := append([]byte(id+"."+ts+"."), body...)
	for _, s := range strings.Fields(sigHeader) {
		v, sig, _ := strings.Cut(s, ",")
		raw, err := base64.StdEncoding.DecodeString(sig)
		if v == "v1a" && err == nil && ed25519.Verify(pub, msg, raw) {
			return nil
		}
	}
	return errors.New("no v1a signature matches")
}

type payload struct {
	Type      string         `json:"type"`
	Timestamp time.Time      `json:"timestamp"`
	Data      map[string]any `json:"data"`
}

func decode(t *testing.T, b []byte) payload {
	t.Helper()
	var p payload
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("payload %s: %v", b, err)
	}
	return p
}

func (f *fixture) create(p webhook.CreateParams) *webhook.Created {
	f.t.Helper()
	c, err := f.hooks.Create(ctx, p)
	if err != nil {
		f.t.Fatalf("create webhook: %v", err)
	}
	return c
}

// freezeCycle makes 2n agent events: n freezes, each followed by an
// unfreeze (which no webhook reports), on n agents; it returns the
// agent ids in the order they were frozen.
func (f *fixture) freezes(n int) []string {
	var ids []string
	for i := range n {
		a := f.env.NewAgent("agent"+strconv.Itoa(i)+"-"+strconv.FormatInt(time.Now().UnixNano(), 36), "")
		if _, err := f.env.Svc.Freeze(ctx, a.ID); err != nil {
			f.t.Fatal(err)
		}
		ids = append(ids, a.ID)
	}
	return ids
}

func TestSignatureVerifiesWithDocumentedRecipe(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rh := newReceiver(t, nil)
	re := newReceiver(t, nil)
	ch := f.create(webhook.CreateParams{URL: rh.URL + "/hook?x=1", AllowPrivate: true})
	ce := f.create(webhook.CreateParams{URL: re.URL, AllowPrivate: true, Signing: webhook.SigningEd25519})
	if !strings.HasPrefix(ch.Secret, "whsec_") || ce.Secret != "" || !strings.HasPrefix(ce.PublicKey, "whpk_") {
		t.Fatalf("secret %q, public key %q", ch.Secret, ce.PublicKey)
	}
	f.freezes(3)
	f.until("3 deliveries each", func() bool { return len(rh.accepted()) == 3 && len(re.accepted()) == 3 })
	for _, d := range rh.all() {
		if err := verifyHMAC(ch.Secret, d.id, d.ts, d.sig, d.body); err != nil {
			t.Errorf("hmac delivery %s: %v", d.id, err)
		}
		if err := verifyHMAC(ch.Secret, d.id, d.ts, d.sig, append(bytes.Clone(d.body), ' ')); err == nil {
			t.Errorf("a changed body verifies")
		}
		if p := decode(t, d.body); p.Type != webhook.TypeAgentFrozen {
			t.Errorf("type %q", p.Type)
		}
	}
	for _, d := range re.all() {
		if err := verifyEd25519(ce.PublicKey, d.id, d.ts, d.sig, d.body); err != nil {
			t.Errorf("ed25519 delivery %s: %v", d.id, err)
		}
		if err := verifyEd25519(ce.PublicKey, d.id+"x", d.ts, d.sig, d.body); err == nil {
			t.Errorf("a changed id verifies")
		}
	}
	if got := webhook.FormatPublicKey(f.hooks.PublicKey()); got != ce.PublicKey {
		t.Errorf("signing key %s, creation said %s", got, ce.PublicKey)
	}
}

// TestReceiverDownGetsRetriesInOrder: a receiver down for its first 12
// requests (503, one 429 with Retry-After, a connection-level 408) gets
// retries of the head message only (the same webhook-id and body each
// time), and then every event exactly in order, none missing.
func TestReceiverDownGetsRetriesInOrder(t *testing.T) { engines(t, testReceiverDownGetsRetriesInOrder) }

func testReceiverDownGetsRetriesInOrder(t *testing.T, f *fixture) {
	r := newReceiver(t, func(n int, _ delivery) int {
		switch {
		case n == 3:
			return http.StatusTooManyRequests
		case n == 5:
			return http.StatusRequestTimeout
		case n < 12:
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	c := f.create(webhook.CreateParams{URL: r.URL, AllowPrivate: true, Events: []string{webhook.TypeAgentFrozen}})
	ids := f.freezes(6)
	f.until("6 accepted deliveries", func() bool { return len(r.accepted()) == 6 })
	all := r.all()
	for i, d := range all[:13] { // 12 failures and the success are all the first message
		if d.id != all[0].id || !bytes.Equal(d.body, all[0].body) {
			t.Fatalf("attempt %d: id %s body %s; want the head message %s again", i, d.id, d.body, all[0].id)
		}
		if err := verifyHMAC(c.Secret, d.id, d.ts, d.sig, d.body); err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	for i, d := range r.accepted() {
		p := decode(t, d.body)
		agent, _ := p.Data["agent"].(map[string]any)
		if agent["id"] != ids[i] {
			t.Fatalf("accepted delivery %d is about agent %v; want %s (in order)", i, agent["id"], ids[i])
		}
	}
	atts, err := f.hooks.Attempts(ctx, c.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(atts) != 12+6 {
		t.Fatalf("%d attempts recorded; want 18", len(atts))
	}
	last := atts[len(atts)-1] // the oldest
	if last.StatusCode != 503 || last.Outcome != webhook.OutcomeFailed || !strings.Contains(last.ResponseBody, "receiver says 503") || last.Attempt != 1 {
		t.Fatalf("first attempt recorded as %+v", last)
	}
	if atts[0].Outcome != webhook.OutcomeDelivered || atts[0].StatusCode != 200 {
		t.Fatalf("newest attempt %+v", atts[0])
	}
}

// TestRestartDuringRetriesLosesNothing: the receiver is down; the engine
// and the service are rebuilt on the same store (a restart) twice while
// deliveries are being retried, and events happen in between; once the
// receiver is back every event arrives, in order, with the same message
// ids as before the restarts.
func TestRestartDuringRetriesLosesNothing(t *testing.T) {
	engines(t, testRestartDuringRetriesLosesNothing)
}

func testRestartDuringRetriesLosesNothing(t *testing.T, f *fixture) {
	f.cfg.LeaseTTL = 300 * time.Millisecond // the restarts below do not release the lease, as after a crash
	f.restart()
	var mu sync.Mutex
	down := true
	r := newReceiver(t, func(int, delivery) int {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	f.create(webhook.CreateParams{URL: r.URL, AllowPrivate: true})
	ids := f.freezes(2)
	f.until("a few failed attempts", func() bool { return len(r.all()) >= 3 })
	headID := r.all()[0].id
	f.restart()
	ids = append(ids, f.freezes(2)...)
	f.until("more failed attempts", func() bool { return len(r.all()) >= 6 })
	f.restart()
	if got := r.all()[len(r.all())-1].id; got != headID {
		t.Fatalf("after restarts the head message is %s; want %s", got, headID)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	ids = append(ids, f.freezes(1)...)
	f.until("5 accepted deliveries", func() bool { return len(r.accepted()) == 5 })
	acc := r.accepted()
	if acc[0].id != headID {
		t.Fatalf("first accepted %s; want %s", acc[0].id, headID)
	}
	for i, d := range acc {
		agent, _ := decode(t, d.body).Data["agent"].(map[string]any)
		if agent["id"] != ids[i] {
			t.Fatalf("accepted delivery %d is about %v; want %s", i, agent["id"], ids[i])
		}
	}
}

// TestRefusing4xxPausesTheEndpoint: a 400 is not retried; the endpoint
// pauses at that message and nothing later is sent; resume sends the same
// message again, then the rest; resume with skip passes over it.
func TestRefusing4xxPausesTheEndpoint(t *testing.T) { engines(t, testRefusing4xxPausesTheEndpoint) }

func testRefusing4xxPausesTheEndpoint(t *testing.T, f *fixture) {
	var mu sync.Mutex
	refuse := true
	r := newReceiver(t, func(int, delivery) int {
		mu.Lock()
		defer mu.Unlock()
		if refuse {
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	c := f.create(webhook.CreateParams{URL: r.URL, AllowPrivate: true})
	f.freezes(3)
	f.until("a refused delivery", func() bool { return len(r.all()) == 1 })
	for range 5 { // more passes change nothing: the endpoint is paused
		if _, err := f.hooks.Pass(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(r.all()); n != 1 {
		t.Fatalf("%d requests after a 400; want 1", n)
	}
	ep, err := f.hooks.Get(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ep.Status != spend.WebhookPaused || !strings.Contains(ep.LastError, "HTTP 400") {
		t.Fatalf("endpoint %+v; want paused with HTTP 400", ep)
	}
	first := r.all()[0].id
	mu.Lock()
	refuse = false
	mu.Unlock()
	if _, err := f.hooks.Resume(ctx, c.ID, false); err != nil {
		t.Fatal(err)
	}
	f.until("3 accepted", func() bool { return len(r.accepted()) == 3 })
	if r.accepted()[0].id != first {
		t.Fatalf("after resume the first accepted is %s; want the refused %s again", r.accepted()[0].id, first)
	}

	// Skip: pause at the next event, then resume past it.
	mu.Lock()
	refuse = true
	mu.Unlock()
	f.freezes(2)
	f.until("a second refusal", func() bool { return len(r.all()) == 5 })
	skipped := r.all()[4].id
	mu.Lock()
	refuse = false
	mu.Unlock()
	if _, err := f.hooks.Resume(ctx, c.ID, true); err != nil {
		t.Fatal(err)
	}
	f.until("the event after the skipped one", func() bool { return len(r.accepted()) == 4 })
	if got := r.accepted()[3].id; got == skipped {
		t.Fatalf("the skipped message %s was sent again", got)
	}
}

// TestGiveUpPauses: a receiver down for longer than GiveUp pauses the
// endpoint at its head message; nothing is dropped.
func TestGiveUpPauses(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cfg.Retry.GiveUp = 60 * time.Millisecond
	f.restart()
	r := newReceiver(t, func(int, delivery) int { return http.StatusServiceUnavailable })
	c := f.create(webhook.CreateParams{URL: r.URL, AllowPrivate: true})
	f.freezes(2)
	f.until("paused", func() bool {
		ep, err := f.hooks.Get(ctx, c.ID)
		return err == nil && ep.Status == spend.WebhookPaused
	})
	for _, d := range r.all() {
		if d.id != r.all()[0].id {
			t.Fatalf("a later message %s was sent while the head %s failed", d.id, r.all()[0].id)
		}
	}
}

func TestPrivateTargetsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, u := range []string{"http://127.0.0.1:9/x", "http://localhost:9/x", "http://[::1]/x", "https://10.1.2.3/",
		"http://169.254.169.254/latest/meta-data", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/", "http://100.64.0.1/", "http://192.168.1.1/"} {
		_, err := f.hooks.Create(ctx, webhook.CreateParams{URL: u})
		if spend.CodeOf(err) != webhook.CodeWebhookTargetPrivate {
			t.Errorf("create %s: %v; want %s", u, err, webhook.CodeWebhookTargetPrivate)
		}
		if _, err := f.hooks.Create(ctx, webhook.CreateParams{URL: u, AllowPrivate: true}); err != nil {
			t.Errorf("create %s with allow_private: %v", u, err)
		}
	}
	for _, u := range []string{"ftp://example.com/", "http://user:pw@example.com/", "/relative", "http://example.com/#frag", "file:///etc/passwd"} {
		if _, err := f.hooks.Create(ctx, webhook.CreateParams{URL: u, AllowPrivate: true}); spend.CodeOf(err) != spend.CodeInvalidRequest {
			t.Errorf("create %s: %v; want invalid_request", u, err)
		}
	}
	if _, err := f.hooks.Create(ctx, webhook.CreateParams{URL: "https://example.com/", Events: []string{"nope"}}); spend.CodeOf(err) != spend.CodeInvalidRequest {
		t.Errorf("unknown event type: %v", err)
	}
}

// TestRebindingRefusedAtConnect: an endpoint registered for a name that
// resolves to a loopback address by the time of delivery (DNS rebinding;
// here the row is written as if the name had resolved publicly at
// registration) is refused when connecting: the receiver gets nothing and
// the endpoint pauses with the reason.
func TestRebindingRefusedAtConnect(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := newReceiver(t, nil)
	_, port, _ := strings.Cut(strings.TrimPrefix(r.URL, "http://"), ":")
	c := f.create(webhook.CreateParams{URL: "http://localhost:" + port + "/", AllowPrivate: true})
	flipPrivate(t, f.store, c.ID)
	f.freezes(1)
	f.until("paused", func() bool {
		ep, err := f.hooks.Get(ctx, c.ID)
		return err == nil && ep.Status == spend.WebhookPaused
	})
	if n := len(r.all()); n != 0 {
		t.Fatalf("the receiver on loopback got %d requests", n)
	}
	atts, _ := f.hooks.Attempts(ctx, c.ID, 0, 10)
	if len(atts) != 1 || !strings.Contains(atts[0].Error, "private") {
		t.Fatalf("attempts %+v", atts)
	}
}

// flipPrivate rewrites an endpoint as registered without allow_private.
func flipPrivate(t *testing.T, st spend.Store, id string) {
	t.Helper()
	err := st.InTx(ctx, func(tx spend.Tx) error {
		ep, err := tx.WebhookGet(ctx, id)
		if err != nil {
			return err
		}
		if err := tx.WebhookDelete(ctx, id); err != nil {
			return err
		}
		ep.AllowPrivate = false
		return tx.WebhookCreate(ctx, ep)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSecretNeverShown: the secret is returned by Create only: not in a
// list or a get, not in the audit trail, not stored in the clear.
func TestSecretNeverShown(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.create(webhook.CreateParams{URL: "https://example.com/hook"})
	list, err := f.hooks.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(list)
	one, _ := f.hooks.Get(ctx, c.ID)
	j1, _ := json.Marshal(one)
	var audit bytes.Buffer
	if err := f.env.Svc.ExportAudit(ctx, &audit, "jsonl"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.hooks.Delete(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.env.Svc.ExportAudit(ctx, &audit, "csv"); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string][]byte{"list": j, "get": j1, "audit": audit.Bytes()} {
		if bytes.Contains(s, []byte(c.Secret)) || bytes.Contains(s, []byte(strings.TrimPrefix(c.Secret, "whsec_"))) {
			t.Errorf("the secret appears in the %s", name)
		}
	}
	if !bytes.Contains(audit.Bytes(), []byte("webhook.create")) || !bytes.Contains(audit.Bytes(), []byte("webhook.delete")) {
		t.Errorf("no webhook.create/delete in the audit trail")
	}
	c2 := f.create(webhook.CreateParams{URL: "https://example.com/hook2"})
	raw2, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(c2.Secret, "whsec_"))
	f.store.Read(ctx, func(tx spend.Tx) error { //nolint:errcheck
		ep, err := tx.WebhookGet(ctx, c2.ID)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(ep.Secret, raw2) || len(ep.Secret) <= len(raw2) {
			t.Errorf("the stored secret is not sealed")
		}
		return nil
	})
}

// TestOneDispatcherAtATime: two engines on one store (two nodes) pass
// concurrently; the lease lets one deliver at a time, so each message is
// sent once, in order.
func TestOneDispatcherAtATime(t *testing.T) { engines(t, testOneDispatcherAtATime) }

func testOneDispatcherAtATime(t *testing.T, f *fixture) {
	other, err := webhook.New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := newReceiver(t, nil)
	f.create(webhook.CreateParams{URL: r.URL, AllowPrivate: true})
	ids := f.freezes(8)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, h := range []*webhook.Webhooks{f.hooks, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := h.Pass(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(r.all()) < len(ids) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a duplicate would arrive now
	close(done)
	wg.Wait()
	got := r.all()
	if len(got) != len(ids) {
		t.Fatalf("%d deliveries for %d events", len(got), len(ids))
	}
	for i, d := range got {
		agent, _ := decode(t, d.body).Data["agent"].(map[string]any)
		if agent["id"] != ids[i] {
			t.Fatalf("delivery %d is about %v; want %s", i, agent["id"], ids[i])
		}
	}
}
