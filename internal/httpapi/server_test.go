package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/mandate"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
)

func TestDecodeStrict(t *testing.T) {
	t.Parallel()
	type body struct {
		Amount string `json:"amount"`
	}
	cases := map[string]struct {
		in    string
		field string // "" when it must decode
		fails bool
	}{
		"ok":             {in: `{"amount":"1"}`},
		"empty body":     {in: ``},
		"unknown field":  {in: `{"amout":"1"}`, field: "amout", fails: true},
		"wrong type":     {in: `{"amount":1}`, field: "amount", fails: true},
		"trailing data":  {in: `{"amount":"1"} {}`, fails: true},
		"trailing junk":  {in: `{"amount":"1"}x`, fails: true},
		"malformed":      {in: `{"amount":`, fails: true},
		"not an object":  {in: `[1]`, fails: true},
		"whitespace end": {in: "{\"amount\":\"1\"}\n\n"},
		// What encoding/json alone accepts, keeping the last value or
		// matching case-insensitively, or re-encoding bytes.
		"duplicate key":  {in: `{"amount":"1","amount":"2"}`, field: "amount", fails: true},
		"case variant":   {in: `{"amount":"1","AMOUNT":"2"}`, field: "AMOUNT", fails: true},
		"case mismatch":  {in: `{"Amount":"1"}`, field: "Amount", fails: true},
		"invalid utf8":   {in: "{\"amount\":\"\xff\"}", field: "amount", fails: true},
		"lone surrogate": {in: `{"amount":"\udfff"}`, field: "amount", fails: true},
	}
	for name, c := range cases {
		var b body
		err := decodeStrict([]byte(c.in), &b)
		if (err != nil) != c.fails {
			t.Errorf("%s: err = %v, want failure %v", name, err, c.fails)
			continue
		}
		if err == nil {
			continue
		}
		var se *spend.Error
		if !errors.As(err, &se) || se.Code != spend.CodeInvalidRequest {
			t.Errorf("%s: err %v is not invalid_request", name, err)
		}
		if c.field != "" && (se.Details == nil || se.Details["field"] != c.field) {
			t.Errorf("%s: details %v do not name field %q", name, se.Details, c.field)
		}
	}
}

// TestWriteError: stable codes map to their statuses with safe messages;
// anything without a code is a 500 whose text stays in the log.
func TestWriteError(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	s := &Server{log: slog.New(slog.NewJSONHandler(&logs, nil))}
	_, amountErr := money.ParseAmount("-1", 6)
	_, mandateErr := mandate.Decode([]byte(`{"per_tx_auto":"2","per_tx_max":"1"}`))
	cases := map[string]struct {
		err    error
		status int
		code   string
	}{
		"spend error":    {spend.Errorf(spend.CodeIdempotencyConflict, "x"), 409, "idempotency_conflict"},
		"money error":    {amountErr, 400, "amount_negative"},
		"mandate error":  {mandateErr, 400, "mandate_invalid"},
		"chain broken":   {&audit.VerifyError{Seq: 7, Reason: "hash mismatch"}, 409, "audit_chain_broken"},
		"denied":         {&spend.Error{Code: spend.CodeSpendDenied, Message: "no"}, 403, "spend_denied"},
		"internal error": {errors.New("sqlstore: disk full at page 4711"), 500, "internal"},
	}
	for name, c := range cases {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/x", nil)
		s.writeError(rec, req, c.err)
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s: body is not JSON: %s", name, rec.Body)
		}
		if rec.Code != c.status || body["code"] != c.code || body["message"] == "" {
			t.Errorf("%s: %d %v, want %d %s", name, rec.Code, body, c.status, c.code)
		}
		if _, ok := body["details"].(map[string]any); !ok {
			t.Errorf("%s: details missing: %v", name, body)
		}
		if strings.Contains(rec.Body.String(), "4711") {
			t.Errorf("%s: internal error text leaked to the client: %s", name, rec.Body)
		}
	}
	if !strings.Contains(logs.String(), "4711") {
		t.Error("the internal error was not logged server-side")
	}
	// A client that hung up before its turn is no server fault: no
	// error line, and the answer says nothing ran.
	logs.Reset()
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	s.writeError(rec, httptest.NewRequest(http.MethodGet, "/x", nil).WithContext(gone), context.Canceled)
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), `"unavailable"`) || strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("canceled request: %d %s, log %s", rec.Code, rec.Body, logs.String())
	}
	rec = httptest.NewRecorder()
	s.writeError(rec, httptest.NewRequest(http.MethodGet, "/x", nil), mandateErr)
	if !strings.Contains(rec.Body.String(), `"per_tx_auto"`) || !strings.Contains(rec.Body.String(), `"fields"`) {
		t.Errorf("mandate error does not name the fields: %s", rec.Body)
	}
}

// TestWrongMethod: a path that exists answers another method with 405
// method_not_allowed and an Allow header naming the methods it takes; a
// path that does not exist stays 404 not_found.
func TestWrongMethod(t *testing.T) {
	t.Parallel()
	h := New(Config{OwnerToken: "t"}).Handler()
	cases := map[string]struct {
		method, path string
		status       int
		code, allow  string
	}{
		"delete on a collection": {http.MethodDelete, "/v1/agents", 405, "method_not_allowed", "GET, HEAD, POST"},
		"get on an action":       {http.MethodGet, "/v1/agents/bot/freeze", 405, "method_not_allowed", "POST"},
		"post on the mandate":    {http.MethodPost, "/v1/agents/bot/mandate", 405, "method_not_allowed", "GET, HEAD, PUT"},
		"get on agent spends":    {http.MethodGet, "/v1/agent/spends", 405, "method_not_allowed", "POST"},
		"put on healthz":         {http.MethodPut, "/healthz", 405, "method_not_allowed", "GET, HEAD"},
		"no such path":           {http.MethodGet, "/v1/nothing", 404, "not_found", ""},
		"no such path, post":     {http.MethodPost, "/v2/agents", 404, "not_found", ""},
	}
	for name, c := range cases {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, "http://127.0.0.1"+c.path, nil))
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s: body is not JSON: %s", name, rec.Body)
		}
		if rec.Code != c.status || body["code"] != c.code || rec.Header().Get("Allow") != c.allow {
			t.Errorf("%s: %s %s → %d %v Allow %q; want %d %s Allow %q", name, c.method, c.path,
				rec.Code, body["code"], rec.Header().Get("Allow"), c.status, c.code, c.allow)
		}
	}
}
