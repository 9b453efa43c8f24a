package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestSpendResolve: spend resolve is an owner command that posts exactly
// one resolution; a contradictory or incomplete one is a usage error
// that sends nothing.
func TestSpendResolve(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization")+" "+string(body))
		mu.Unlock()
		var req map[string]any
		json.Unmarshal(body, &req) //nolint:errcheck
		status := "released"
		if req["captured_tx"] != nil {
			status = "captured"
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"spend_id":"spd_1","status":"`+status+`"}`)
	}))
	t.Cleanup(srv.Close)
	envv := map[string]string{"PURSER_SERVER": srv.URL, "PURSER_OWNER_TOKEN": "tok"}
	for _, args := range [][]string{
		{"spend", "resolve", "spd_1"},
		{"spend", "resolve", "spd_1", "--released"},
		{"spend", "resolve", "spd_1", "--released", "--reason", "x", "--captured", "0xabc"},
		{"spend", "resolve", "--released", "--reason", "x"},
	} {
		if code, _, errOut := runCLI(t, envv, args...); code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q; want a usage error", args, code, errOut)
		}
	}
	if len(got) != 0 {
		t.Fatalf("usage errors reached the server: %v", got)
	}
	if code, out, errOut := runCLI(t, envv, "spend", "resolve", "spd_1", "--released", "--reason", "seller refunded"); code != 0 || out != "resolved spend spd_1: status released\n" {
		t.Fatalf("released: exit %d, %q %q", code, out, errOut)
	}
	if code, out, errOut := runCLI(t, envv, "spend", "resolve", "spd_1", "--captured", "0xabc"); code != 0 || !strings.Contains(out, "status captured") {
		t.Fatalf("captured: exit %d, %q %q", code, out, errOut)
	}
	want := []string{
		`POST /v1/spends/spd_1/resolve Bearer tok {"released":true,"reason":"seller refunded"}`,
		`POST /v1/spends/spd_1/resolve Bearer tok {"captured_tx":"0xabc"}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
