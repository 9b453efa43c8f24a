package cli

import (
	"errors"
	"flag"
	"reflect"
	"testing"
)

func TestParseArgsPermutes(t *testing.T) {
	t.Parallel()
	type got struct {
		KeyOut, Rate  string
		JSON, Approve bool
		Pos           []string
	}
	tests := []struct {
		name    string
		args    []string
		want    got
		wantErr bool
		help    bool
	}{
		{"flags after", []string{"bob", "--key-out", "F"}, got{KeyOut: "F", Pos: []string{"bob"}}, false, false},
		{"flags before", []string{"--key-out", "F", "bob"}, got{KeyOut: "F", Pos: []string{"bob"}}, false, false},
		{"single dash and equals", []string{"-key-out=F", "bob", "-json"}, got{KeyOut: "F", JSON: true, Pos: []string{"bob"}}, false, false},
		{"bool does not eat the next arg", []string{"--json", "bob"}, got{JSON: true, Pos: []string{"bob"}}, false, false},
		{"bool =false", []string{"bob", "--approve=false", "--json=true"}, got{JSON: true, Pos: []string{"bob"}}, false, false},
		{"value starting with a dash", []string{"--rate", "-1", "x"}, got{Rate: "-1", Pos: []string{"x"}}, false, false},
		{"double dash ends flags", []string{"--json", "--", "--key-out", "F"}, got{JSON: true, Pos: []string{"--key-out", "F"}}, false, false},
		{"lone dash is positional", []string{"-", "--json"}, got{JSON: true, Pos: []string{"-"}}, false, false},
		{"many positionals", []string{"a", "--rate", "1/1m", "b", "c"}, got{Rate: "1/1m", Pos: []string{"a", "b", "c"}}, false, false},
		{"unknown flag", []string{"bob", "--nope"}, got{}, true, false},
		{"missing value", []string{"bob", "--key-out"}, got{}, true, false},
		{"bad bool", []string{"--json=maybe"}, got{}, true, false},
		{"help", []string{"bob", "--help"}, got{}, true, true},
		{"h", []string{"-h"}, got{}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var g got
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.StringVar(&g.KeyOut, "key-out", "", "")
			fs.StringVar(&g.Rate, "rate", "", "")
			fs.BoolVar(&g.JSON, "json", false, "")
			fs.BoolVar(&g.Approve, "approve", false, "")
			pos, err := parseArgs(fs, tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.help != errors.Is(err, flag.ErrHelp) {
				t.Fatalf("err = %v, want help %v", err, tt.help)
			}
			if err != nil {
				return
			}
			g.Pos = pos
			if !reflect.DeepEqual(g, tt.want) {
				t.Errorf("got %+v, want %+v", g, tt.want)
			}
		})
	}
}
