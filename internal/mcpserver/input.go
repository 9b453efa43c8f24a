package mcpserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strings"

	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/strictjson"
)

// Input bounds. A tool call is refused before anything is asked of Purser
// or a seller when it is over one of them.
const (
	maxArgsBytes     = 256 << 10 // the whole arguments object
	MaxRequestBody   = 64 << 10  // x402_fetch body
	maxHeaders       = 32        // x402_fetch headers
	maxHeaderBytes   = 16 << 10  // all header names and values together
	maxHeaderValue   = 4 << 10
	maxURLBytes      = 2048
	maxMemoBytes     = 256
	MaxWaitSeconds   = 300
	maxIdemKeyBytes  = 128
	maxSpendIDBytes  = 64
	maxAmountBytes   = 40
	defaultAmountDec = 6
)

// Input error codes. Each is in the one registry (internal/spend/codes.go)
// and docs/api.md; besides these, the API's own invalid_request (a wrong
// JSON type, ambiguous JSON, not an object), body_too_large and amount_*
// codes.
const (
	CodeInvalidInput       = "invalid_request"        // not an object, a wrong type, an ambiguous JSON text
	CodeMissingField       = "missing_field"          // a required field is absent or empty
	CodeUnknownField       = "unknown_field"          // a field the tool does not take
	CodeInputTooLarge      = "body_too_large"         // the arguments are over 256 KiB, or the body over 64 KiB
	CodeURLInvalid         = "url_invalid"            // not an absolute URL with a host, or with credentials in it
	CodeURLSchemeForbidden = "url_scheme_not_allowed" // not http or https (file:, data:, ftp:, ...)
	CodeBodyTooLarge       = "body_too_large"
	CodeHeadersTooLarge    = "headers_too_large"
	CodeHeaderInvalid      = "header_invalid"
	CodeHeaderNotAllowed   = "header_not_allowed"
	CodeValueInvalid       = "value_invalid" // a malformed or out-of-range value (method, address, wait, key, ...); error.field names it
)

// inputError is a tool input refused with a code, naming the field.
type inputError struct {
	code, field, msg string
}

func (e *inputError) Error() string { return e.msg }

func inErr(code, field, format string, args ...any) *inputError {
	return &inputError{code: code, field: field, msg: fmt.Sprintf(format, args...)}
}

// decodeArgs reads a tool's arguments into v (a pointer to a struct whose
// json tags name the fields): an object, no unknown or case-variant keys,
// no duplicate keys, required fields present.
func decodeArgs(raw json.RawMessage, v any, required ...string) *inputError {
	if len(raw) > maxArgsBytes {
		return inErr(CodeInputTooLarge, "", "the arguments are larger than %d bytes", maxArgsBytes)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		raw = []byte("{}")
	}
	if err := strictjson.Check(raw); err != nil {
		var se *strictjson.Error
		if errors.As(err, &se) {
			return inErr(CodeInvalidInput, se.Field, "the arguments are ambiguous JSON (%s): %s", se.Reason, se.Error())
		}
		return inErr(CodeInvalidInput, "", "the arguments are not valid JSON")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return inErr(CodeInvalidInput, "", "the arguments must be a JSON object")
	}
	known := jsonFields(reflect.TypeOf(v).Elem())
	for k := range obj {
		if !known[k] {
			return inErr(CodeUnknownField, k, "unknown field %q: this tool takes %s", k, strings.Join(sortedNames(known), ", "))
		}
	}
	for _, r := range required {
		if f, ok := obj[r]; !ok || string(f) == "null" || string(f) == `""` {
			return inErr(CodeMissingField, r, "%s is required", r)
		}
	}
	for k, f := range obj {
		if string(f) == "null" {
			delete(obj, k) // an explicit null is "not given"
		}
	}
	clean, _ := json.Marshal(obj)
	dec := json.NewDecoder(bytes.NewReader(clean))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return inErr(CodeInvalidInput, te.Field, "%s must be %s, not a JSON %s", te.Field, jsonKind(te.Type), te.Value)
		}
		return inErr(CodeInvalidInput, "", "the arguments cannot be read: %v", err)
	}
	return nil
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

func jsonFields(t reflect.Type) map[string]bool {
	m := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[name] = true
		}
	}
	return m
}

func sortedNames(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	for i := range out { // tiny: insertion sort keeps imports down
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

var (
	addressRE  = regexp.MustCompile(`^0x[0-9a-fA-F]{40}$`)
	idemKeyRE  = regexp.MustCompile(`^[\x21-\x7e]{1,128}$`)
	spendIDRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	symbolRE   = regexp.MustCompile(`^[A-Za-z0-9.]{1,16}$`)
	networkRE  = regexp.MustCompile(`^[a-z0-9-]{3,8}:[A-Za-z0-9_-]{1,32}$`)
	tokenRE    = regexp.MustCompile(`^[!#$%&'*+.^_|~0-9A-Za-z-]{1,128}$`)
	allMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
)

// Request headers a caller may not set: Purser sets the payment, the HTTP
// client the framing.
var forbiddenHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true, "Upgrade": true,
	"Te": true, "Trailer": true, "Keep-Alive": true, "Proxy-Connection": true, "Proxy-Authorization": true,
	"Payment-Signature": true, "X-Payment": true,
}

func checkIdemKey(k string) *inputError {
	if k == "" {
		return nil
	}
	if len(k) > maxIdemKeyBytes || !idemKeyRE.MatchString(k) {
		return inErr(CodeValueInvalid, "idempotency_key", "idempotency_key must be 1-%d printable ASCII characters without spaces", maxIdemKeyBytes)
	}
	return nil
}

func checkSpendID(id string) *inputError {
	if !spendIDRE.MatchString(id) {
		return inErr(CodeValueInvalid, "spend_id", "spend_id must look like spd_…: letters, digits, _ and -, at most %d characters", maxSpendIDBytes)
	}
	return nil
}

func checkWait(n int) *inputError {
	if n < 0 || n > MaxWaitSeconds {
		return inErr(CodeValueInvalid, "wait_for_approval_seconds", "wait_for_approval_seconds must be between 0 and %d", MaxWaitSeconds)
	}
	return nil
}

// checkAmount parses a positive decimal amount with at most decimals
// places; the codes are money's (amount_negative, amount_too_precise, ...).
func checkAmount(field, s string, decimals uint8) *inputError {
	if len(s) > maxAmountBytes {
		return inErr(money.CodeAmountInvalid, field, "%s is longer than %d characters", field, maxAmountBytes)
	}
	if _, err := money.ParsePositive(s, decimals); err != nil {
		var me *money.Error
		if errors.As(err, &me) {
			return inErr(me.Code(), field, "%s: %s", field, me.Message())
		}
		return inErr(money.CodeAmountInvalid, field, "%s: %v", field, err)
	}
	return nil
}

// checkURL accepts absolute http and https URLs with a host and without
// credentials.
func checkURL(raw string) *inputError {
	if len(raw) > maxURLBytes {
		return inErr(CodeValueInvalid, "url", "url is longer than %d bytes", maxURLBytes)
	}
	if strings.ContainsAny(raw, " \t\r\n\x00") {
		return inErr(CodeURLInvalid, "url", "url contains spaces or control characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return inErr(CodeURLInvalid, "url", "url is not a URL: %v", errors.Unwrap(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		if u.Scheme == "" {
			return inErr(CodeURLInvalid, "url", "url must be absolute: http://… or https://…")
		}
		return inErr(CodeURLSchemeForbidden, "url", "url scheme %q is not allowed: only http and https", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return inErr(CodeURLInvalid, "url", "url has no host")
	}
	if u.User != nil {
		return inErr(CodeURLInvalid, "url", "url must not carry credentials (user:password@); pass them in headers")
	}
	return nil
}

func checkMethod(m string) (string, *inputError) {
	if m == "" {
		return http.MethodGet, nil
	}
	up := strings.ToUpper(m)
	for _, x := range allMethods {
		if up == x {
			return up, nil
		}
	}
	return "", inErr(CodeValueInvalid, "method", "method %q is not one of %s", m, strings.Join(allMethods, ", "))
}

func checkHeaders(in map[string]string) (http.Header, *inputError) {
	h := http.Header{}
	if len(in) > maxHeaders {
		return nil, inErr(CodeHeadersTooLarge, "headers", "at most %d headers", maxHeaders)
	}
	total := 0
	for k, v := range in {
		total += len(k) + len(v)
		if !tokenRE.MatchString(k) {
			return nil, inErr(CodeHeaderInvalid, "headers", "header name %q is not an HTTP token", truncate(k, 40))
		}
		if len(v) > maxHeaderValue {
			return nil, inErr(CodeHeadersTooLarge, "headers."+k, "header %s is longer than %d bytes", k, maxHeaderValue)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, inErr(CodeHeaderInvalid, "headers."+k, "header %s contains a line break or NUL", k)
		}
		ck := http.CanonicalHeaderKey(k)
		if forbiddenHeaders[ck] || strings.HasPrefix(ck, "Purser-") {
			return nil, inErr(CodeHeaderNotAllowed, "headers."+k, "header %s is set by Purser or the HTTP client, not by the caller", ck)
		}
		h.Set(ck, v)
	}
	if total > maxHeaderBytes {
		return nil, inErr(CodeHeadersTooLarge, "headers", "headers are larger than %d bytes together", maxHeaderBytes)
	}
	return h, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
