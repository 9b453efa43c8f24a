package agentauth

// Stable error codes (see docs/api.md); all map to HTTP 401.
const (
	CodeAuthMissing           = "auth_missing"
	CodeAuthMalformed         = "auth_malformed"
	CodeSignatureInvalid      = "signature_invalid"
	CodeSignatureExpired      = "signature_expired"
	CodeSignatureExpiryTooFar = "signature_expiry_too_far"
	// CodeSignatureUnbound: a valid version 1 signature, which binds no
	// deployment, on a server that accepts only version 2.
	CodeSignatureUnbound = "signature_unbound"
)

// Error is an authentication failure safe to show to the client. The code
// is reached through Code() (not a field) so that callers such as
// spend.CodeOf, which look for interface{ Code() string }, recognise it.
type Error struct {
	code    string
	message string
}

func newError(code, message string) *Error { return &Error{code: code, message: message} }

func (e *Error) Error() string { return e.code + ": " + e.message }

// Code returns the stable machine-readable code.
func (e *Error) Code() string { return e.code }

// Message returns the human-readable explanation; it never echoes header
// values back.
func (e *Error) Message() string { return e.message }
