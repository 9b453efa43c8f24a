// Package strictjson reads JSON that must mean the same thing to every
// reader: a signed request body is proof of what an agent asked for, so
// its bytes may not be read one way by Purser and another way by whoever
// checks the audit trail later.
//
// Check refuses what JSON parsers disagree on: invalid UTF-8 (Go replaces
// it, others refuse it), escaped lone surrogates, and two keys in one
// object that are equal, or equal under Unicode case folding (Go's
// encoding/json matches field names case-insensitively and keeps the last
// value; JavaScript keeps both spellings apart). Decode adds a schema
// check: every key must be spelled exactly as the Go field it fills.
package strictjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Reasons an input is refused (Error.Reason).
const (
	ReasonInvalidUTF8  = "invalid_utf8"      // bytes that are not UTF-8, or an escaped lone surrogate
	ReasonSyntax       = "syntax"            // not one well-formed JSON value
	ReasonDuplicateKey = "duplicate_key"     // a key twice in one object
	ReasonCaseVariant  = "case_variant_key"  // two keys of one object that differ only in case
	ReasonKeyCase      = "key_case_mismatch" // a key that names a field only case-insensitively
)

// Error says why and where an input was refused.
type Error struct {
	Reason string
	// Field is the dotted path of the offending key or value ("" for the
	// whole input), e.g. "rail_request.offer.payTo" or "items[2]".
	Field  string
	Offset int // byte offset in the input
	msg    string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.msg
	}
	return fmt.Sprintf("%s (at %s)", e.msg, e.Field)
}

// Check reports the first reason data is not one unambiguous JSON value.
// Empty or all-whitespace input is not JSON: callers decide what an empty
// body means.
func Check(data []byte) error {
	return walk(data, nil)
}

// Decode checks data like Check, decodes it into v with unknown fields and
// trailing data refused, and then refuses keys that name a field of v
// only case-insensitively. Errors from encoding/json are returned as they
// are (callers turn them into messages); the rest are *Error.
func Decode(data []byte, v any) error {
	if err := Check(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return &Error{Reason: ReasonSyntax, Offset: int(dec.InputOffset()), msg: "malformed JSON: data after the value"}
	}
	return walk(data, schemaOf(reflect.TypeOf(v)))
}

// walk validates data, comparing keys against sc when it is not nil.
func walk(data []byte, sc *schema) error {
	w := walker{data: data}
	w.space()
	if w.pos == len(w.data) {
		return w.fail(ReasonSyntax, "malformed JSON: no value")
	}
	if err := w.value(sc); err != nil {
		return err
	}
	w.space()
	if w.pos != len(w.data) {
		return w.fail(ReasonSyntax, "malformed JSON: data after the value")
	}
	return nil
}

type walker struct {
	data  []byte
	pos   int
	path  []pathElem // built into a string only for an error
	depth int
}

// pathElem is an object key or, when key is nil, an array index.
type pathElem struct {
	key []byte
	idx int
}

func (w *walker) field() string {
	var b strings.Builder
	for i, p := range w.path {
		switch {
		case p.key == nil:
			b.WriteString("[" + strconv.Itoa(p.idx) + "]")
		case i > 0:
			b.WriteByte('.')
			b.Write(p.key)
		default:
			b.Write(p.key)
		}
	}
	return b.String()
}

// maxDepth bounds recursion; encoding/json refuses deeper input too.
const maxDepth = 10000

func (w *walker) fail(reason, msg string) *Error {
	return &Error{Reason: reason, Field: w.field(), Offset: w.pos, msg: msg}
}

func (w *walker) syntax() *Error {
	if w.pos >= len(w.data) {
		return w.fail(ReasonSyntax, "malformed JSON: unexpected end of input")
	}
	return w.fail(ReasonSyntax, fmt.Sprintf("malformed JSON: unexpected %s at offset %d", quoteByte(w.data[w.pos]), w.pos))
}

func quoteByte(c byte) string {
	if c < utf8.RuneSelf {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

func (w *walker) space() {
	for w.pos < len(w.data) {
		switch w.data[w.pos] {
		case ' ', '\t', '\n', '\r':
			w.pos++
		default:
			return
		}
	}
}

func (w *walker) value(sc *schema) error {
	if w.pos >= len(w.data) {
		return w.syntax()
	}
	switch c := w.data[w.pos]; {
	case c == '{':
		return w.object(sc)
	case c == '[':
		return w.array(sc)
	case c == '"':
		_, err := w.str(false)
		return err
	case c == 't':
		return w.literal("true")
	case c == 'f':
		return w.literal("false")
	case c == 'n':
		return w.literal("null")
	case c == '-' || ('0' <= c && c <= '9'):
		return w.number()
	default:
		return w.syntax()
	}
}

func (w *walker) literal(lit string) error {
	if !bytes.HasPrefix(w.data[w.pos:], []byte(lit)) {
		return w.syntax()
	}
	w.pos += len(lit)
	return nil
}

func (w *walker) number() error {
	d := w.data
	if d[w.pos] == '-' {
		w.pos++
	}
	switch {
	case w.pos < len(d) && d[w.pos] == '0':
		w.pos++
	case w.pos < len(d) && '1' <= d[w.pos] && d[w.pos] <= '9':
		w.digits()
	default:
		return w.syntax()
	}
	if w.pos < len(d) && d[w.pos] == '.' {
		w.pos++
		if w.digits() == 0 {
			return w.syntax()
		}
	}
	if w.pos < len(d) && (d[w.pos] == 'e' || d[w.pos] == 'E') {
		w.pos++
		if w.pos < len(d) && (d[w.pos] == '+' || d[w.pos] == '-') {
			w.pos++
		}
		if w.digits() == 0 {
			return w.syntax()
		}
	}
	return nil
}

func (w *walker) digits() int {
	start := w.pos
	for w.pos < len(w.data) && '0' <= w.data[w.pos] && w.data[w.pos] <= '9' {
		w.pos++
	}
	return w.pos - start
}

func (w *walker) enter() error {
	w.depth++
	if w.depth > maxDepth {
		return w.fail(ReasonSyntax, "malformed JSON: nested too deeply")
	}
	return nil
}

func (w *walker) array(sc *schema) error {
	if err := w.enter(); err != nil {
		return err
	}
	defer func() { w.depth-- }()
	w.pos++ // [
	w.space()
	if w.pos < len(w.data) && w.data[w.pos] == ']' {
		w.pos++
		return nil
	}
	var elem *schema
	if sc != nil {
		elem = sc.elem
	}
	for i := 0; ; i++ {
		w.path = append(w.path, pathElem{idx: i})
		w.space()
		if err := w.value(elem); err != nil {
			return err
		}
		w.path = w.path[:len(w.path)-1]
		w.space()
		if w.pos >= len(w.data) {
			return w.syntax()
		}
		switch w.data[w.pos] {
		case ',':
			w.pos++
		case ']':
			w.pos++
			return nil
		default:
			return w.syntax()
		}
	}
}

// smallObject is how many keys are compared pairwise before a map pays.
const smallObject = 16

func (w *walker) object(sc *schema) error {
	if err := w.enter(); err != nil {
		return err
	}
	defer func() { w.depth-- }()
	w.pos++ // {
	w.space()
	if w.pos < len(w.data) && w.data[w.pos] == '}' {
		w.pos++
		return nil
	}
	var (
		keys [smallObject][]byte // the first keys, as unescaped
		n    int
		seen map[string][]byte // folded → key as written, past smallObject
	)
	for {
		w.space()
		if w.pos >= len(w.data) || w.data[w.pos] != '"' {
			return w.syntax()
		}
		keyAt := w.pos
		key, err := w.str(true)
		if err != nil {
			return err
		}
		var prev []byte
		dup := false
		if seen == nil {
			for i := 0; i < n; i++ {
				if bytes.EqualFold(keys[i], key) {
					prev, dup = keys[i], true
					break
				}
			}
			if !dup && n < smallObject {
				keys[n] = key
				n++
			} else if !dup {
				seen = make(map[string][]byte, 2*smallObject)
				for i := 0; i < n; i++ {
					seen[fold(string(keys[i]))] = keys[i]
				}
				seen[fold(string(key))] = key
			}
		} else {
			f := fold(string(key))
			if prev, dup = seen[f]; !dup {
				seen[f] = key
			}
		}
		if dup {
			w.pos = keyAt
			w.path = append(w.path, pathElem{key: key})
			field := w.field()
			if bytes.Equal(prev, key) {
				return &Error{Reason: ReasonDuplicateKey, Field: field, Offset: keyAt, msg: fmt.Sprintf("duplicate key %q", key)}
			}
			return &Error{Reason: ReasonCaseVariant, Field: field, Offset: keyAt, msg: fmt.Sprintf("keys %q and %q differ only in case", prev, key)}
		}
		var sub *schema
		if sc != nil {
			switch sc.kind {
			case kindStruct:
				if fs, ok := sc.fields[string(key)]; ok {
					sub = fs
				} else if name, ok := sc.folded[fold(string(key))]; ok {
					w.path = append(w.path, pathElem{key: key})
					return &Error{Reason: ReasonKeyCase, Field: w.field(), Offset: keyAt, msg: fmt.Sprintf("key %q must be spelled %q", key, name)}
				}
			case kindMap:
				sub = sc.elem
			}
		}
		w.space()
		if w.pos >= len(w.data) || w.data[w.pos] != ':' {
			return w.syntax()
		}
		w.pos++
		w.space()
		w.path = append(w.path, pathElem{key: key})
		if err := w.value(sub); err != nil {
			return err
		}
		w.path = w.path[:len(w.path)-1]
		w.space()
		if w.pos >= len(w.data) {
			return w.syntax()
		}
		switch w.data[w.pos] {
		case ',':
			w.pos++
		case '}':
			w.pos++
			return nil
		default:
			return w.syntax()
		}
	}
}

// str reads a string at w.pos (which is '"'). With wantValue it returns
// the unescaped value (a slice of the input when it has no escapes).
func (w *walker) str(wantValue bool) ([]byte, error) {
	d := w.data
	w.pos++
	start := w.pos
	var buf []byte
	escaped := false
	for {
		if w.pos >= len(d) {
			return nil, w.syntax()
		}
		c := d[w.pos]
		switch {
		case c == '"':
			var v []byte
			if wantValue {
				if escaped {
					v = buf
				} else {
					v = d[start:w.pos:w.pos]
				}
			}
			w.pos++
			return v, nil
		case c < 0x20:
			return nil, w.fail(ReasonSyntax, fmt.Sprintf("malformed JSON: control character 0x%02x in a string at offset %d", c, w.pos))
		case c == '\\':
			if !escaped && wantValue {
				buf = append(buf, d[start:w.pos]...)
			}
			escaped = true
			r, err := w.escape()
			if err != nil {
				return nil, err
			}
			if wantValue {
				buf = utf8.AppendRune(buf, r)
			}
		case c < utf8.RuneSelf:
			if escaped && wantValue {
				buf = append(buf, c)
			}
			w.pos++
		default:
			r, size := utf8.DecodeRune(d[w.pos:])
			if r == utf8.RuneError && size <= 1 {
				return nil, w.fail(ReasonInvalidUTF8, fmt.Sprintf("invalid UTF-8 at offset %d", w.pos))
			}
			if escaped && wantValue {
				buf = append(buf, d[w.pos:w.pos+size]...)
			}
			w.pos += size
		}
	}
}

// escape reads one escape sequence at w.pos ('\\') and returns its rune.
// Surrogates must come in pairs: a lone one is read as U+FFFD by Go and
// kept by JavaScript, so it cannot be part of a provable body.
func (w *walker) escape() (rune, error) {
	d := w.data
	if w.pos+1 >= len(d) {
		w.pos = len(d)
		return 0, w.syntax()
	}
	c := d[w.pos+1]
	w.pos += 2
	switch c {
	case '"', '\\', '/':
		return rune(c), nil
	case 'b':
		return '\b', nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'u':
	default:
		w.pos--
		return 0, w.syntax()
	}
	r, ok := w.hex4()
	if !ok {
		return 0, w.syntax()
	}
	if !utf16.IsSurrogate(r) {
		return r, nil
	}
	at := w.pos - 6
	if r < 0xdc00 && w.pos+1 < len(d) && d[w.pos] == '\\' && d[w.pos+1] == 'u' {
		w.pos += 2
		if r2, ok := w.hex4(); ok {
			if dec := utf16.DecodeRune(r, r2); dec != unicode.ReplacementChar {
				return dec, nil
			}
		}
	}
	w.pos = at
	return 0, w.fail(ReasonInvalidUTF8, fmt.Sprintf("lone UTF-16 surrogate escape at offset %d", at))
}

func (w *walker) hex4() (rune, bool) {
	if w.pos+4 > len(w.data) {
		return 0, false
	}
	var r rune
	for _, c := range w.data[w.pos : w.pos+4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	w.pos += 4
	return r, true
}

// fold maps s to a representative of its case-folding class: two strings
// fold equal exactly when strings.EqualFold says they are equal, which is
// how encoding/json matches keys to field names. Each rune becomes the
// smallest rune of its simple-folding orbit (so 'k', 'K' and the Kelvin
// sign all become 'K').
func fold(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || ('a' <= c && c <= 'z') {
			ascii = false
			break
		}
	}
	if ascii {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		b.WriteRune(foldRune(r))
	}
	return b.String()
}

func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		// An upper-case ASCII letter is the least of its orbit, even of
		// those holding non-ASCII runes (K and the Kelvin sign, S and ſ).
		if 'a' <= r && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}
	least := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < least {
			least = f
		}
	}
	return least
}

// ---- schema: what keys a Go type expects ----

type kind uint8

const (
	kindOpaque kind = iota // anything goes below (json.RawMessage, interfaces, Unmarshalers)
	kindStruct
	kindMap
	kindSlice
)

type schema struct {
	kind   kind
	fields map[string]*schema // struct: exact JSON name → field schema
	folded map[string]string  // struct: folded name → exact name
	elem   *schema            // map value or slice element
}

var (
	schemas  sync.Map // reflect.Type → *schema
	jsonUnm  = reflect.TypeFor[json.Unmarshaler]()
	opaqueSc = &schema{kind: kindOpaque}
)

func schemaOf(t reflect.Type) *schema {
	if t == nil {
		return opaqueSc
	}
	if s, ok := schemas.Load(t); ok {
		return s.(*schema)
	}
	s := build(t, map[reflect.Type]*schema{})
	schemas.Store(t, s)
	return s
}

func build(t reflect.Type, inProgress map[reflect.Type]*schema) *schema {
	if s, ok := inProgress[t]; ok {
		return s
	}
	if t.Implements(jsonUnm) || reflect.PointerTo(t).Implements(jsonUnm) {
		return opaqueSc
	}
	switch t.Kind() {
	case reflect.Pointer:
		return build(t.Elem(), inProgress)
	case reflect.Struct:
		s := &schema{kind: kindStruct, fields: map[string]*schema{}, folded: map[string]string{}}
		inProgress[t] = s
		addFields(s, t, inProgress)
		return s
	case reflect.Map:
		s := &schema{kind: kindMap}
		inProgress[t] = s
		s.elem = build(t.Elem(), inProgress)
		return s
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return opaqueSc // []byte is a base64 string
		}
		s := &schema{kind: kindSlice}
		inProgress[t] = s
		s.elem = build(t.Elem(), inProgress)
		return s
	default:
		return opaqueSc
	}
}

// addFields adds t's JSON fields, promoting those of untagged embedded
// structs as encoding/json does (conflicts aside: request bodies have
// none).
func addFields(s *schema, t reflect.Type, inProgress map[reflect.Type]*schema) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				addFields(s, ft, inProgress)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		s.fields[name] = build(f.Type, inProgress)
		s.folded[fold(name)] = name
	}
}
