package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"text/tabwriter"
)

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// writeRaw prints a JSON document as the server sent it, indented.
func writeRaw(w io.Writer, raw json.RawMessage) error {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		b.Reset()
		b.Write(raw)
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// rawList wraps raw objects as {"key": [...]}.
func rawList[T any](key string, items []T, raw func(*T) json.RawMessage) map[string][]json.RawMessage {
	l := make([]json.RawMessage, 0, len(items))
	for i := range items {
		l = append(l, raw(&items[i]))
	}
	return map[string][]json.RawMessage{key: l}
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// orDash is s, or "-" when empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
