package spend

import (
	"errors"
	"fmt"
)

// Error is an error a client may see: a stable machine Code, a safe human
// Message and optional Details. Anything that is not an *Error (or does
// not implement Code) is an internal error whose text is logged, never sent.
type Error struct {
	Code    string
	Message string
	Details map[string]any
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an *Error.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithDetails returns a copy of e with details added.
func (e *Error) WithDetails(kv map[string]any) *Error {
	c := *e
	c.Details = kv
	return &c
}

// Stable error codes of the service (see docs/api.md for the whole set).
const (
	CodeInvalidRequest      = "invalid_request"
	CodeAgentNotFound       = "agent_not_found"
	CodeAgentExists         = "agent_exists"
	CodeAgentUnknown        = "agent_unknown"
	CodeAgentKeyRevoked     = "agent_key_revoked"
	CodeSpendNotFound       = "spend_not_found"
	CodeSpendDenied         = "spend_denied"
	CodeInvalidState        = "invalid_state"
	CodeIdempotencyConflict = "idempotency_conflict"
	CodeNonceReplayed       = "nonce_replayed"
	CodeMandateConflict     = "mandate_conflict"
	CodeCaptureExceedsHold  = "capture_exceeds_hold"
	CodeRailUnknown         = "rail_unknown"
	CodeUnavailable         = "unavailable"
	CodeRailFailed          = "rail_failed" // the rail could not sign or execute; the hold stays until it expires
	CodeChainUnavailable    = "chain_unavailable"
	// Co-signed (2of2) wallets.
	CodeCosignNotReady         = "cosign_not_ready"
	CodeCosignSessionUsed      = "cosign_session_used"
	CodeCosignMessageInvalid   = "cosign_message_invalid"
	CodeCosignSignatureInvalid = "cosign_signature_invalid"
	CodeCosignCustodyMismatch  = "cosign_custody_mismatch"
)

// ErrNotFound is returned by Store methods when a row does not exist.
var ErrNotFound = errors.New("spend: not found")

// ErrConflict is returned by Store methods when a row that must be unique
// exists already.
var ErrConflict = errors.New("spend: conflict")

// CodeOf returns the stable code of err, or "" for internal errors.
func CodeOf(err error) string {
	var c interface{ Code() string }
	if errors.As(err, &c) {
		return c.Code()
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
