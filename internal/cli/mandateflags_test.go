package cli

import (
	"flag"
	"testing"
)

func TestMandateFlagsMerge(t *testing.T) {
	t.Parallel()
	const cur = `{"daily":"10","per_tx_auto":"0.5","hosts":["a.com"],"approve_new_payees":true,"future_field":{"x":1}}`
	tests := []struct {
		name    string
		none    bool
		cur     string
		args    []string
		want    string
		wantErr bool
	}{
		{"only given fields change", true, cur, []string{"--daily", "20"},
			`{"approve_new_payees":true,"daily":"20","future_field":{"x":1},"hosts":["a.com"],"per_tx_auto":"0.5"}`, false},
		{"none clears", true, cur, []string{"--daily", "none", "--hosts=none", "--approve-new-payees=none"},
			`{"future_field":{"x":1},"per_tx_auto":"0.5"}`, false},
		{"bool false is kept as false", true, cur, []string{"--approve-new-payees=false"},
			`{"approve_new_payees":false,"daily":"10","future_field":{"x":1},"hosts":["a.com"],"per_tx_auto":"0.5"}`, false},
		{"bare bool is true", false, "", []string{"--approve-new-payees"}, `{"approve_new_payees":true}`, false},
		{"lists split and trimmed", false, "null", []string{"--hosts", " a.com, *.b.com ,,", "--rails=x402,payout", "--payees", "0x1,0x2", "--deny-payees", "0x3"},
			`{"deny_payees":["0x3"],"hosts":["a.com","*.b.com"],"payees":["0x1","0x2"],"rails":["x402","payout"]}`, false},
		{"empty list clears", true, cur, []string{"--hosts", ""},
			`{"approve_new_payees":true,"daily":"10","future_field":{"x":1},"per_tx_auto":"0.5"}`, false},
		{"amounts pass through as strings", false, "", []string{"--per-tx-auto", "0.50", "--per-tx-max=5", "--daily", "1e3", "--lifetime", "-1"},
			`{"daily":"1e3","lifetime":"-1","per_tx_auto":"0.50","per_tx_max":"5"}`, false},
		{"times, rate, timezone", false, "", []string{"--valid-from", "2026-01-01T00:00:00Z", "--valid-until=2026-02-01T00:00:00+01:00", "--rate", "10/1m", "--timezone", "Europe/Paris"},
			`{"rate":"10/1m","timezone":"Europe/Paris","valid_from":"2026-01-01T00:00:00Z","valid_until":"2026-02-01T00:00:00+01:00"}`, false},
		{"last flag wins", true, "", []string{"--daily", "none", "--daily", "3"}, `{"daily":"3"}`, false},
		{"none is a value without none", false, "", []string{"--daily", "none"}, `{"daily":"none"}`, false},
		{"bad time", false, "", []string{"--valid-from", "tomorrow"}, "", true},
		{"bad bool", true, "", []string{"--approve-new-payees=maybe"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			m := &mandateFlags{}
			m.register(fs, tt.none)
			_, err := parseArgs(fs, tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parse: %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			got, err := m.apply([]byte(tt.cur))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("merged\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestMandateFlagsEmpty(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	m := &mandateFlags{}
	m.register(fs, true)
	if _, err := parseArgs(fs, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	if !m.empty() {
		t.Error("no flags given but not empty")
	}
	if _, err := m.apply([]byte(`[1]`)); err == nil {
		t.Error("a non-object mandate merged")
	}
}
