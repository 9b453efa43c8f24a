package cosign

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/taurusgroup/multi-party-sig/pkg/party"
	"github.com/taurusgroup/multi-party-sig/pkg/protocol"
)

// The two party ids the library sees. They are fixed: who is who is decided
// by the role, and everything that tells sessions apart is in the session id.
const (
	agentPartyID  party.ID = "purser-agent"
	serverPartyID party.ID = "purser-server"
)

func partyIDs(r Role) (self, other party.ID) {
	if r == RoleAgent {
		return agentPartyID, serverPartyID
	}
	return serverPartyID, agentPartyID
}

// engine runs one library handler behind Purser's framing. It is driven
// synchronously by the caller: the library handler does all its work inside
// Accept, in the caller's goroutine, and no pool is used, so nothing is
// shared between parties or sessions.
type engine struct {
	role    Role
	kind    kind
	sid     SessionID
	ssid    []byte // the library's session hash
	mac     []byte
	h       *protocol.TwoPartyHandler
	next    int // sequence number of the next message, sent or received
	failed  bool
	done    bool
	result  any
	pending []byte // the agent's first message, produced at construction
}

func newEngine(role Role, k kind, sid SessionID, link []byte, start protocol.StartFunc) (*engine, error) {
	e := &engine{role: role, kind: k, sid: sid, ssid: libSSID(sid), mac: macKey(link, sid, k), next: 1}
	var err error
	func() {
		defer func() {
			if recover() != nil {
				err = fmt.Errorf("%w: library panicked", ErrProtocol)
			}
		}()
		e.h, err = protocol.NewTwoPartyHandler(start, sid[:], role == RoleAgent)
	}()
	if err != nil {
		return nil, fmt.Errorf("%w: start", ErrProtocol)
	}
	if role == RoleAgent {
		out, err := e.collect()
		if err != nil {
			return nil, err
		}
		if out == nil {
			return nil, fmt.Errorf("%w: no first message", ErrProtocol)
		}
		e.pending = out
	}
	return e, nil
}

// collect reads what the handler produced after a step: at most one protocol
// message for the peer, a result, or an abort. It frames the message with the
// next sequence number.
func (e *engine) collect() ([]byte, error) {
	var msgs []*protocol.Message
	closed := false
drain:
	for {
		select {
		case m, ok := <-e.h.Listen():
			if !ok {
				closed = true
				break drain
			}
			msgs = append(msgs, m)
		default:
			break drain
		}
	}
	res, resErr := e.h.Result()
	if closed && resErr != nil {
		// The handler aborted; its abort notice (round 0) is not forwarded:
		// the peer learns only that the session failed.
		return nil, e.fail(fmt.Errorf("%w: %s", ErrProtocol, libReason(resErr)))
	}
	var out []byte
	for _, m := range msgs {
		if uint16(m.RoundNumber) == 0 {
			continue
		}
		if out != nil || !bytes.Equal(m.SSID, e.ssid) || senderOf(e.next) != e.role || e.next > e.kind.messages() ||
			int(uint16(m.RoundNumber)) != libRound(e.next) || len(m.Data) > maxPayload[e.kind][e.next] {
			return nil, e.fail(fmt.Errorf("%w: unexpected outgoing message", ErrProtocol))
		}
		out = sealFrame(e.mac, frame{kind: e.kind, seq: e.next, from: e.role, sid: e.sid, payload: m.Data})
		e.next++
	}
	if resErr == nil {
		e.done = true
		e.result = res
	}
	return out, nil
}

// libReason keeps the library's error text short and free of anything but
// its own static wording (the library's errors carry no key material; this
// is belt and braces against a future version that would).
func libReason(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

func (e *engine) fail(err error) error {
	e.failed = true
	e.pending = nil
	return err
}

// start hands out the agent's first message once.
func (e *engine) start() ([]byte, error) {
	if e.failed {
		return nil, ErrFailed
	}
	if e.role != RoleAgent || e.pending == nil {
		return nil, e.fail(fmt.Errorf("%w: only the agent starts, once", ErrUnexpected))
	}
	out := e.pending
	e.pending = nil
	return out, nil
}

// handle consumes the peer's next message and returns the reply, if any. Any
// error fails the session for good: a session that saw a bad message does
// not produce anything afterwards, even for a good one.
func (e *engine) handle(in []byte) (out []byte, err error) {
	if e.failed {
		return nil, ErrFailed
	}
	if e.done || e.pending != nil || e.next > e.kind.messages() || senderOf(e.next) == e.role {
		return nil, e.fail(ErrUnexpected)
	}
	payload, err := openFrame(e.mac, in, frame{kind: e.kind, seq: e.next, from: senderOf(e.next), sid: e.sid})
	if err != nil {
		return nil, e.fail(err)
	}
	self, other := partyIDs(e.role)
	msg := &protocol.Message{SSID: e.ssid, From: other, To: self, Protocol: "doerner/keygen", Data: append([]byte(nil), payload...)}
	switch libRound(e.next) {
	case 1:
		msg.RoundNumber = 1
	case 2:
		msg.RoundNumber = 2
	case 3:
		msg.RoundNumber = 3
	}
	if !e.h.CanAccept(msg) {
		return nil, e.fail(fmt.Errorf("%w: library refused the message header", ErrProtocol))
	}
	e.next++
	panicked := false
	func() {
		defer func() {
			if recover() != nil {
				panicked = true
			}
		}()
		e.h.Accept(msg)
	}()
	if panicked {
		return nil, e.fail(fmt.Errorf("%w: library panicked on the message", ErrProtocol))
	}
	out, err = e.collect()
	if err != nil {
		return nil, err
	}
	// A message the library took but did not act on would leave the
	// session stuck; a well-formed run always either answers or finishes.
	if out == nil && !e.done {
		return nil, e.fail(fmt.Errorf("%w: message not consumed", ErrProtocol))
	}
	return out, nil
}

func (e *engine) finished() (any, error) {
	if e.failed {
		return nil, ErrFailed
	}
	if !e.done {
		return nil, ErrNotDone
	}
	return e.result, nil
}

var errNoResult = errors.New("cosign: library returned an unexpected result type")
