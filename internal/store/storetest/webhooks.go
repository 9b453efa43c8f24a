package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/spend"
)

// testWebhooks: endpoints round-trip (secret bytes included), updates
// write the delivery state, the head message is the pending one with the
// lowest (seq, part), a second message for the same (endpoint, seq,
// part) is refused,
// attempts list newest first and page, a delete takes the messages and
// attempts with it, and a prune removes old attempts and finished
// messages but never a pending one.
func testWebhooks(t *testing.T, s spend.Store) {
	w := &spend.WebhookEndpoint{ID: "whk_1", URL: "https://example.test/hook", Events: []string{"approval.requested", "agent.frozen"},
		Signing: "hmac", Secret: []byte{0, 1, 2, 0xff}, AllowPrivate: true, Status: spend.WebhookActive, Cursor: 7,
		CreatedAt: at, UpdatedAt: at}
	w2 := &spend.WebhookEndpoint{ID: "whk_2", URL: "https://example.test/all", Signing: "ed25519", Secret: []byte{},
		Status: spend.WebhookActive, CreatedAt: at.Add(time.Second), UpdatedAt: at.Add(time.Second)}
	mustTx(t, s, func(tx spend.Tx) error {
		if err := tx.WebhookCreate(ctx, w); err != nil {
			return err
		}
		return tx.WebhookCreate(ctx, w2)
	})
	mustTx(t, s, func(tx spend.Tx) error {
		got, err := tx.WebhookGet(ctx, "whk_1")
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, w) {
			return fmt.Errorf("WebhookGet = %+v; want %+v", got, w)
		}
		if _, err := tx.WebhookGet(ctx, "whk_none"); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("WebhookGet(missing) = %v; want ErrNotFound", err)
		}
		list, err := tx.WebhookList(ctx)
		if err != nil {
			return err
		}
		if len(list) != 2 || list[0].ID != "whk_1" || list[1].ID != "whk_2" || list[1].Events != nil {
			return fmt.Errorf("WebhookList = %+v; want whk_1, whk_2 (no event filter)", list)
		}
		w.Status, w.Cursor, w.NextAt, w.LastError, w.UpdatedAt = spend.WebhookPaused, 42, at.Add(time.Minute), "HTTP 400", at.Add(2*time.Second)
		return tx.WebhookUpdate(ctx, w)
	})
	mustTx(t, s, func(tx spend.Tx) error {
		got, err := tx.WebhookGet(ctx, "whk_1")
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, w) {
			return fmt.Errorf("after WebhookUpdate: %+v; want %+v", got, w)
		}
		for _, m := range []*spend.WebhookMessage{
			{EndpointID: "whk_1", Seq: 9, ID: "msg_9", Type: "agent.frozen", Body: []byte(`{"a":1}`), Status: spend.MessagePending, FirstAt: at, UpdatedAt: at},
			{EndpointID: "whk_1", Seq: 8, ID: "msg_8", Type: "agent.frozen", Body: []byte(`{"a":0}`), Status: spend.MessageDelivered, Attempts: 1, FirstAt: at, UpdatedAt: at},
			{EndpointID: "whk_1", Seq: 12, Part: 1, ID: "msg_12b", Type: "budget.threshold", Body: []byte(`{}`), Status: spend.MessagePending, FirstAt: at, UpdatedAt: at},
			{EndpointID: "whk_1", Seq: 12, ID: "msg_12", Type: "agent.revoked", Body: []byte(`{}`), Status: spend.MessagePending, FirstAt: at, UpdatedAt: at},
			{EndpointID: "whk_2", Seq: 3, ID: "msg_3", Type: "agent.revoked", Body: []byte(`{}`), Status: spend.MessagePending, FirstAt: at, UpdatedAt: at},
		} {
			if err := tx.WebhookMessageAdd(ctx, m); err != nil {
				return err
			}
		}
		return nil
	})
	if err := s.InTx(ctx, func(tx spend.Tx) error {
		return tx.WebhookMessageAdd(ctx, &spend.WebhookMessage{EndpointID: "whk_1", Seq: 9, ID: "msg_dup", Type: "x", Body: []byte(`{}`), Status: spend.MessagePending, FirstAt: at, UpdatedAt: at})
	}); err == nil {
		t.Fatal("a second message for the same endpoint and seq was accepted")
	}
	mustTx(t, s, func(tx spend.Tx) error {
		m, err := tx.WebhookMessageHead(ctx, "whk_1")
		if err != nil {
			return err
		}
		if m.ID != "msg_9" || !bytes.Equal(m.Body, []byte(`{"a":1}`)) || !m.FirstAt.Equal(at) {
			return fmt.Errorf("head = %+v; want msg_9", m)
		}
		m.Status, m.Attempts, m.UpdatedAt = spend.MessageDelivered, 3, at.Add(time.Hour)
		if err := tx.WebhookMessageUpdate(ctx, m); err != nil {
			return err
		}
		if m, err = tx.WebhookMessageHead(ctx, "whk_1"); err != nil || m.ID != "msg_12" {
			return fmt.Errorf("head after delivering msg_9 = %+v, %v; want msg_12 (part 0 before part 1)", m, err)
		}
		m.Status = spend.MessageSkipped
		if err := tx.WebhookMessageUpdate(ctx, m); err != nil {
			return err
		}
		if m, err = tx.WebhookMessageHead(ctx, "whk_1"); err != nil || m.ID != "msg_12b" {
			return fmt.Errorf("head after skipping msg_12 = %+v, %v; want msg_12b", m, err)
		}
		for i := 1; i <= 5; i++ {
			a := &spend.WebhookAttempt{EndpointID: "whk_1", Seq: 9, MessageID: "msg_9", Type: "agent.frozen", Attempt: i, At: at.Add(time.Duration(i) * time.Second),
				Outcome: "retry", StatusCode: 503, ResponseBody: "down", Error: "", Duration: 1500 * time.Microsecond}
			if err := tx.WebhookAttemptAdd(ctx, a); err != nil {
				return err
			}
			if a.ID == 0 {
				return errors.New("WebhookAttemptAdd set no ID")
			}
		}
		return tx.WebhookAttemptAdd(ctx, &spend.WebhookAttempt{EndpointID: "whk_2", MessageID: "msg_3", Type: "ping", Attempt: 1, At: at, Outcome: "delivered", StatusCode: 204})
	})
	mustTx(t, s, func(tx spend.Tx) error {
		page, err := tx.WebhookAttemptList(ctx, "whk_1", 0, 3)
		if err != nil {
			return err
		}
		if len(page) != 3 || page[0].Attempt != 5 || page[2].Attempt != 3 || page[0].Duration != 1500*time.Microsecond || page[0].StatusCode != 503 || !page[0].At.Equal(at.Add(5*time.Second)) {
			return fmt.Errorf("first page = %+v; want attempts 5, 4, 3", page)
		}
		rest, err := tx.WebhookAttemptList(ctx, "whk_1", page[2].ID, 10)
		if err != nil {
			return err
		}
		if len(rest) != 2 || rest[0].Attempt != 2 || rest[1].Attempt != 1 {
			return fmt.Errorf("second page = %+v; want attempts 2, 1", rest)
		}
		return tx.WebhookDelete(ctx, "whk_1")
	})
	mustTx(t, s, func(tx spend.Tx) error {
		if _, err := tx.WebhookGet(ctx, "whk_1"); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("deleted endpoint: %v; want ErrNotFound", err)
		}
		if _, err := tx.WebhookMessageHead(ctx, "whk_1"); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("deleted endpoint's messages: %v; want ErrNotFound", err)
		}
		if as, err := tx.WebhookAttemptList(ctx, "whk_1", 0, 10); err != nil || len(as) != 0 {
			return fmt.Errorf("deleted endpoint's attempts = %d, %v; want none", len(as), err)
		}
		if err := tx.WebhookDelete(ctx, "whk_1"); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("second delete: %v; want ErrNotFound", err)
		}
		if m, err := tx.WebhookMessageHead(ctx, "whk_2"); err != nil || m.ID != "msg_3" {
			return fmt.Errorf("other endpoint's head = %+v, %v", m, err)
		}
		return nil
	})
	// Prune: old attempts and finished messages go; a pending message
	// stays however old.
	mustTx(t, s, func(tx spend.Tx) error {
		for _, m := range []*spend.WebhookMessage{
			{EndpointID: "whk_2", Seq: 4, ID: "msg_4", Type: "x", Body: []byte(`{}`), Status: spend.MessageDelivered, FirstAt: at, UpdatedAt: at},
			{EndpointID: "whk_2", Seq: 5, ID: "msg_5", Type: "x", Body: []byte(`{}`), Status: spend.MessageDelivered, FirstAt: at, UpdatedAt: at.Add(time.Hour)},
		} {
			if err := tx.WebhookMessageAdd(ctx, m); err != nil {
				return err
			}
		}
		if err := tx.WebhookAttemptAdd(ctx, &spend.WebhookAttempt{EndpointID: "whk_2", Seq: 5, MessageID: "msg_5", Type: "x", Attempt: 1, At: at.Add(time.Hour), Outcome: "delivered"}); err != nil {
			return err
		}
		n, err := tx.WebhookPrune(ctx, at.Add(time.Minute))
		if err != nil {
			return err
		}
		if n != 2 { // msg_4 and the ping attempt at `at`
			return fmt.Errorf("WebhookPrune removed %d rows; want 2", n)
		}
		if m, err := tx.WebhookMessageHead(ctx, "whk_2"); err != nil || m.ID != "msg_3" {
			return fmt.Errorf("the old pending message: %+v, %v", m, err)
		}
		as, err := tx.WebhookAttemptList(ctx, "whk_2", 0, 10)
		if err != nil || len(as) != 1 || as[0].MessageID != "msg_5" {
			return fmt.Errorf("attempts after prune: %+v, %v", as, err)
		}
		return nil
	})
	if err := s.Read(ctx, func(tx spend.Tx) error { return tx.WebhookCreate(ctx, w) }); err == nil {
		t.Fatal("WebhookCreate in a read transaction succeeded")
	}
}

// testWebhookLease: one holder at a time; the holder renews; another
// takes over once the lease ran out by the database's clock.
func testWebhookLease(t *testing.T, s spend.Store) {
	lease := func(holder string, ttl time.Duration) bool {
		t.Helper()
		var ok bool
		mustTx(t, s, func(tx spend.Tx) (err error) {
			ok, err = tx.WebhookLease(ctx, holder, ttl)
			return err
		})
		return ok
	}
	if !lease("a", time.Hour) {
		t.Fatal("a could not take a free lease")
	}
	if lease("b", time.Hour) {
		t.Fatal("b took a lease a holds")
	}
	if !lease("a", 50*time.Millisecond) {
		t.Fatal("a could not renew its lease")
	}
	time.Sleep(100 * time.Millisecond)
	if !lease("b", time.Hour) {
		t.Fatal("b could not take a lease that ran out")
	}
	if lease("a", time.Hour) {
		t.Fatal("a took back b's lease")
	}
}
