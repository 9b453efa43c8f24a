// Package httpapi is Purser's HTTP API: routing, owner-token and signed
// agent authentication, strict JSON decoding with body limits, and one
// place (writeError) that turns errors into {code, message, details,
// request_id} bodies. Handlers translate and nothing more: every rule
// lives in internal/spend.
package httpapi
