// Package cosign is Purser's 2-of-2 co-signing core: a secp256k1 wallet key
// shared between the agent and the Purser server, so that a signature needs
// both and neither side ever holds the whole key.
//
// It wraps github.com/taurusgroup/multi-party-sig protocols/doerner (2-party
// DKLs18, OT-based multiplication) behind Purser's own small interface, so
// the library can be replaced: callers see Share, KeygenSession, SignSession,
// opaque byte messages and a 65-byte Ethereum signature, never a library type.
//
// Roles. The agent plays doerner's Receiver ("Bob") and the server its Sender
// ("Alice"). In signing the Receiver speaks first and last and is the party
// that assembles the signature; the Sender sends exactly one message, the one
// that carries its share's contribution over its own digest. That fits the
// rule "the server answers with its part only after the mandate allowed the
// spend": the agent's first message (sent with its intent) commits to nothing
// secret of the server's; the server's single answer is computed over the
// digest the server computed itself, and the only signature it can complete
// is over that digest. The agent then sends the finished signature back, and
// the server checks it, so both learn the signature (the server needs it to
// record the authorization).
//
// Transport is the caller's: sessions consume and produce opaque messages.
// Every message is framed (version, kind, sequence number, sender role,
// session id, payload, HMAC-SHA256) and a session refuses anything that does
// not match its state: another session id, a replay, a reordering, a
// truncated or oversized message. A failed session stays failed.
//
// The library is an alpha release (v0.7.0-alpha-2025-01-28) and is not
// audited; see docs/cosign-design.md for what it does and does not promise.
package cosign
