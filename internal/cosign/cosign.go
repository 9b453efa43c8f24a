package cosign

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"strconv"
)

// Role says which half of a co-signed key a party holds.
type Role uint8

const (
	// RoleAgent is the agent's side (doerner's Receiver).
	RoleAgent Role = 1
	// RoleServer is the Purser server's side (doerner's Sender).
	RoleServer Role = 2
)

func (r Role) String() string {
	switch r {
	case RoleAgent:
		return "agent"
	case RoleServer:
		return "server"
	}
	return "unknown"
}

func (r Role) valid() bool { return r == RoleAgent || r == RoleServer }

// SessionID names one protocol run. Both sides derive it from values they
// agree on before the first message and put it in every message; the library
// hashes it into its transcript, so it must never repeat for a key.
type SessionID [32]byte

// Errors. They never carry key material: at most a static reason.
var (
	ErrMalformed     = errors.New("cosign: malformed message")
	ErrTooLarge      = errors.New("cosign: message too large")
	ErrWrongSession  = errors.New("cosign: message belongs to another session")
	ErrUnexpected    = errors.New("cosign: message out of order or replayed")
	ErrBadMAC        = errors.New("cosign: message authentication failed")
	ErrProtocol      = errors.New("cosign: protocol failure")
	ErrFailed        = errors.New("cosign: session already failed")
	ErrNotDone       = errors.New("cosign: session not finished")
	ErrSessionUsed   = errors.New("cosign: session id already used")
	ErrBadShare      = errors.New("cosign: invalid share")
	ErrWrongRole     = errors.New("cosign: share has the wrong role for this side")
	ErrBadSignature  = errors.New("cosign: signature does not verify")
	ErrNoLedger      = errors.New("cosign: the server side needs a session ledger")
	ErrBadDigestSize = errors.New("cosign: digest must be 32 bytes")
)

// hashParts hashes a domain string and length-prefixed parts, so that no two
// different tuples give the same input.
func hashParts(domain string, parts ...[]byte) [32]byte {
	h := sha256.New()
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(domain)))
	h.Write(n[:])
	h.Write([]byte(domain))
	for _, p := range parts {
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// KeygenSessionID derives the session id of a key generation from the agent
// id and a nonce both sides know before the first message (Purser: a random
// value the server issued for this enrolment, so that the id never repeats).
func KeygenSessionID(agentID string, nonce []byte) SessionID {
	return SessionID(hashParts("purser/cosign/keygen/v1", []byte(agentID), nonce))
}

// RefreshSessionID derives the session id of a share refresh of the key with
// the given compressed public key.
func RefreshSessionID(agentID string, publicKey []byte, nonce []byte) SessionID {
	return SessionID(hashParts("purser/cosign/refresh/v1", []byte(agentID), publicKey, nonce))
}

// SignBinding is what a signing session is bound to. Each side fills it from
// its own view: the server from the spend it evaluated and the EIP-712 digest
// it computed itself, never from a digest the agent sent.
type SignBinding struct {
	AgentID string
	SpendID string
	Digest  [32]byte
}

// SessionID is the signing session id for the key with the given compressed
// public key: a hash of agent id, spend id, public key and digest. Two sides
// that disagree on any of them disagree on the id, and the server refuses the
// agent's first message before it computes anything.
func (b SignBinding) SessionID(publicKey []byte) SessionID {
	return SessionID(hashParts("purser/cosign/sign/v1", []byte(b.AgentID), []byte(b.SpendID), publicKey, b.Digest[:]))
}

// RefreshCheck is the signing binding of the check that ends a share
// refresh: both sides sign, with their NEW shares, the fixed digest
// SHA-256("purser/cosign-refresh-check/v1", agent id, epoch, refresh session
// id), where epoch is the one the new shares will have. The server activates
// its new share only once that signature recovers to the (unchanged)
// address, so a refresh that produced inconsistent shares never replaces a
// working pair. The refresh session id makes the digest that refresh's own:
// a check signature of another (abandoned) refresh to the same epoch does
// not verify for it.
func RefreshCheck(agentID string, epoch int64, refresh SessionID) SignBinding {
	e := []byte(strconv.FormatInt(epoch, 10))
	return SignBinding{AgentID: agentID, SpendID: "refresh-check:" + string(e),
		Digest: hashParts("purser/cosign-refresh-check/v1", []byte(agentID), e, refresh[:])}
}
