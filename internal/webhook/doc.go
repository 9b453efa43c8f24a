// Package webhook delivers Purser's events to the URLs an owner
// registers, following the Standard Webhooks specification
// (docs/webhooks.md).
//
// The audit chain is the outbox: every event a webhook reports is an audit
// event, committed in the same transaction as the change it records. The
// Dispatcher (one per deployment, by a lease in the store) reads the chain
// after each endpoint's cursor, turns the events the endpoint asked for
// into messages, and delivers each endpoint's messages one at a time in
// chain order: the next waits until the current one is answered with a
// 2xx. A message is frozen when it is made (its id, body and first attempt
// time are stored), so a retry sends the same webhook-id and the same
// bytes, after a restart too. Failures back off exponentially for more
// than a day; a 4xx other than 408 and 429 (or retries given up) pauses the
// endpoint at that message rather than skipping it, so nothing is lost or
// reordered until the owner resumes it.
package webhook
