package cosign

import (
	"fmt"

	"github.com/taurusgroup/multi-party-sig/pkg/protocol"
	"github.com/taurusgroup/multi-party-sig/protocols/doerner"
)

// KeygenSession runs a distributed key generation (or a share refresh) on one
// side. Messages: agent, server, agent, server, agent (5, in 3 library
// rounds). The agent's session yields its share after it produces the fifth
// message; the server's after it consumes it. Neither side ever sees the
// other's share or the whole key.
type KeygenSession struct {
	e   *engine
	old *Share // refresh only: the share being refreshed
}

// NewKeygen starts a key generation for the given side. Generation has no
// shared secret yet, so authenticating the peer is the transport's job.
func NewKeygen(role Role, sid SessionID) (*KeygenSession, error) {
	if !role.valid() {
		return nil, ErrWrongRole
	}
	self, other := partyIDs(role)
	e, err := newEngine(role, kindKeygen, sid, nil, doerner.Keygen(group, role == RoleAgent, self, other, nil))
	if err != nil {
		return nil, err
	}
	return &KeygenSession{e: e}, nil
}

// NewRefresh starts a share refresh (purser agent rotate-key): both sides
// re-randomise their shares and OT setups; the public key, hence the
// address, stays. The old shares stop working with the new ones, so a leaked
// old share becomes useless once both sides stored the new ones. Keep the old
// share until a signature with the new one succeeded: a refresh that fails
// half-way (one side stored, the other not) must be rolled back, not lost.
func NewRefresh(share *Share, sid SessionID) (*KeygenSession, error) {
	if share == nil {
		return nil, ErrBadShare
	}
	self, other := partyIDs(share.role)
	var start protocol.StartFunc
	if share.role == RoleAgent {
		start = doerner.RefreshReceiver(share.recv, self, other, nil)
	} else {
		start = doerner.RefreshSender(share.send, self, other, nil)
	}
	e, err := newEngine(share.role, kindRefresh, sid, share.chainKey(), start)
	if err != nil {
		return nil, err
	}
	return &KeygenSession{e: e, old: share}, nil
}

// Start returns the agent's first message. Only the agent calls it, once.
func (k *KeygenSession) Start() ([]byte, error) { return k.e.start() }

// Handle consumes the peer's next message and returns the reply to send, or
// nil when this side has nothing more to send.
func (k *KeygenSession) Handle(in []byte) ([]byte, error) { return k.e.handle(in) }

// Done reports whether this side holds its new share.
func (k *KeygenSession) Done() bool { return k.e.done && !k.e.failed }

// Share returns this side's new share once Done.
func (k *KeygenSession) Share() (*Share, error) {
	res, err := k.e.finished()
	if err != nil {
		return nil, err
	}
	var s *Share
	switch c := res.(type) {
	case *doerner.ConfigReceiver:
		if k.e.role != RoleAgent {
			return nil, errNoResult
		}
		s, err = newShareFromReceiver(c)
	case *doerner.ConfigSender:
		if k.e.role != RoleServer {
			return nil, errNoResult
		}
		s, err = newShareFromSender(c)
	default:
		return nil, errNoResult
	}
	if err != nil {
		return nil, err
	}
	if k.old != nil && s.pub != k.old.pub {
		return nil, fmt.Errorf("%w: refresh changed the public key", ErrProtocol)
	}
	return s, nil
}

// PublicKey is the new wallet's compressed public key, once Done.
func (k *KeygenSession) PublicKey() ([]byte, error) {
	s, err := k.Share()
	if err != nil {
		return nil, err
	}
	return s.PublicKey(), nil
}
