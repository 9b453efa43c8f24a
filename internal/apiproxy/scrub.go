package apiproxy

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/url"
	"slices"
	"strings"
)

// Redacted replaces every occurrence of a secret in an answer. Its length
// differs from the secret's, so a scrubbed body is sent without
// Content-Length unless it was scrubbed whole before the headers.
const Redacted = "[REDACTED]"

// Scrubber finds the secrets of a credential, in every form an upstream
// might echo them, and replaces them with Redacted. It is immutable and
// safe for concurrent use; Writer makes a streaming scrubber from it.
type Scrubber struct {
	patterns [][]byte      // longest first
	first    [256][]uint16 // pattern indices by first byte, longest first
	pair     []uint64      // bitmap over the first two bytes (65536 bits)
	maxLen   int
}

// NewScrubber builds a scrubber for the plaintexts given (every stored
// version of a secret; for basic injection also "user:secret"). For each
// it scrubs: the raw bytes; standard and URL-safe base64, padded and not,
// and the part of the encoding fixed by the plaintext alone at each of the
// three byte alignments, so that the plaintext is caught inside a larger
// base64 blob ("Basic base64(user:secret)" echoed back); URL query- and
// path-escaped forms, with upper and lower case hex escapes; hex in lower
// and upper case; the content of a JSON string holding it, as common
// encoders write it (Go's, with and without HTML escaping; PHP's, which
// writes / as \/). Mixed-case hex escapes are not covered.
func NewScrubber(plaintexts [][]byte) *Scrubber {
	s := &Scrubber{pair: make([]uint64, 65536/64)}
	seen := map[string]bool{}
	add := func(p string) {
		// Each form also as a JSON encoder that escapes / writes it
		// (PHP's json_encode does by default): base64 and raw secrets
		// may hold a /.
		for _, v := range []string{p, strings.ReplaceAll(p, "/", `\/`)} {
			if len(v) >= 4 && !seen[v] {
				seen[v] = true
				s.patterns = append(s.patterns, []byte(v))
			}
		}
	}
	for _, pt := range plaintexts {
		if len(pt) == 0 {
			continue
		}
		raw := string(pt)
		add(raw)
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			add(enc.EncodeToString(pt))
		}
		for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
			for off := 0; off < 3; off++ {
				buf := append(make([]byte, off), pt...)
				e := enc.EncodeToString(buf)
				from, to := (8*off+5)/6, 8*(off+len(pt))/6
				if to-from >= 6 {
					add(e[from:to])
				}
			}
		}
		for _, esc := range []string{url.QueryEscape(raw), url.PathEscape(raw), escapeAll(raw)} {
			add(esc)
			add(lowerEscapes(esc))
		}
		h := hex.EncodeToString(pt)
		add(h)
		add(strings.ToUpper(h))
		for _, j := range jsonForms(raw) {
			add(j)
		}
	}
	slices.SortFunc(s.patterns, func(a, b []byte) int { return len(b) - len(a) })
	for i, p := range s.patterns {
		s.first[p[0]] = append(s.first[p[0]], uint16(i))
		k := uint(p[0])<<8 | uint(p[1])
		s.pair[k>>6] |= 1 << (k & 63)
		s.maxLen = max(s.maxLen, len(p))
	}
	return s
}

// jsonForms are the ways an upstream's JSON encoder may write s inside a
// string (Go's encoder, with and without HTML escaping; add also covers
// / written as \/): a secret with a ", a \ or an & echoed in a JSON body
// would otherwise pass the scrubber.
func jsonForms(s string) []string {
	var out []string
	for _, html := range []bool{true, false} {
		var b bytes.Buffer
		e := json.NewEncoder(&b)
		e.SetEscapeHTML(html)
		if e.Encode(s) != nil {
			continue
		}
		j := strings.TrimSuffix(b.String(), "\n")
		j = j[1 : len(j)-1]
		out = append(out, j)
	}
	return out
}

func lowerEscapes(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1], b[i+2] = lower(b[i+1]), lower(b[i+2])
		}
	}
	return string(b)
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// match returns the length of the longest pattern at b[i:] (0 if none).
// A pattern that does not fit in b does not match.
func (s *Scrubber) match(b []byte, i int) int {
	if i+1 >= len(b) {
		return 0
	}
	k := uint(b[i])<<8 | uint(b[i+1])
	if s.pair[k>>6]&(1<<(k&63)) == 0 {
		return 0
	}
	for _, pi := range s.first[b[i]] {
		p := s.patterns[pi]
		if len(p) <= len(b)-i && bytes.Equal(b[i:i+len(p)], p) {
			return len(p)
		}
	}
	return 0
}

// scan writes b to w with matches starting before limit replaced, and
// returns the index up to which b was consumed (>= limit unless a match
// ran further).
func (s *Scrubber) scan(w io.Writer, b []byte, limit int) (int, error) {
	start := 0
	for i := 0; i < limit; {
		if n := s.match(b, i); n > 0 {
			if _, err := w.Write(b[start:i]); err != nil {
				return i, err
			}
			if _, err := io.WriteString(w, Redacted); err != nil {
				return i, err
			}
			i += n
			start = i
			continue
		}
		i++
	}
	if start < limit {
		if _, err := w.Write(b[start:limit]); err != nil {
			return limit, err
		}
		start = limit
	}
	return start, nil
}

// String returns s scrubbed (for header values and error texts).
func (s *Scrubber) String(v string) string {
	if s == nil || len(s.patterns) == 0 || len(v) < 4 {
		return v
	}
	b := []byte(v)
	if !s.Contains(b) {
		return v
	}
	var out bytes.Buffer
	s.scan(&out, b, len(b))
	return out.String()
}

// Contains reports whether b holds any pattern.
func (s *Scrubber) Contains(b []byte) bool {
	for i := range b {
		if s.match(b, i) > 0 {
			return true
		}
	}
	return false
}

// Bytes appends b scrubbed to dst.
func (s *Scrubber) Bytes(dst, b []byte) []byte {
	out := bytes.NewBuffer(dst)
	s.scan(out, b, len(b))
	return out.Bytes()
}

// ScrubWriter scrubs a stream: it holds back the last maxLen-1 bytes of
// what it was given, because a secret may straddle two writes. Close
// flushes them.
type ScrubWriter struct {
	s    *Scrubber
	w    io.Writer
	buf  []byte // held-back bytes, then the new ones
	n    int64  // bytes written to w
	werr error
}

// Writer returns a streaming scrubber writing to w.
func (s *Scrubber) Writer(w io.Writer) *ScrubWriter {
	return &ScrubWriter{s: s, w: w}
}

// Reset reuses z for another stream.
func (z *ScrubWriter) Reset(s *Scrubber, w io.Writer) {
	z.s, z.w, z.buf, z.n, z.werr = s, w, z.buf[:0], 0, nil
}

// Written is the number of bytes passed on so far.
func (z *ScrubWriter) Written() int64 { return z.n }

func (z *ScrubWriter) out(p []byte) (int, error) {
	n, err := z.w.Write(p)
	z.n += int64(n)
	return n, err
}

// Write implements io.Writer.
func (z *ScrubWriter) Write(p []byte) (int, error) {
	if z.werr != nil {
		return 0, z.werr
	}
	if len(z.s.patterns) == 0 {
		_, err := z.out(p)
		z.werr = err
		return len(p), err
	}
	z.buf = append(z.buf, p...)
	limit := len(z.buf) - (z.s.maxLen - 1)
	if limit <= 0 {
		return len(p), nil
	}
	done, err := z.s.scan(writerFunc(z.out), z.buf, limit)
	if err != nil {
		z.werr = err
		return len(p), err
	}
	z.buf = z.buf[:copy(z.buf, z.buf[done:])]
	return len(p), nil
}

// Close scrubs and writes what was held back.
func (z *ScrubWriter) Close() error {
	if z.werr != nil {
		return z.werr
	}
	_, err := z.s.scan(writerFunc(z.out), z.buf, len(z.buf))
	z.buf = z.buf[:0]
	z.werr = err
	return err
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
