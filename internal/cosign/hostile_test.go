package cosign

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/taurusgroup/multi-party-sig/protocols/doerner"
)

// remac recomputes a message's MAC as a hostile agent could (it holds the
// chain key), after it changed the message.
func remac(share *Share, m []byte) []byte {
	var sid SessionID
	copy(sid[:], m[8:40])
	body := append([]byte(nil), m[:len(m)-macSize]...)
	h := hmac.New(sha256.New, macKey(share.chainKey(), sid, kind(m[5])))
	h.Write(body)
	return h.Sum(body)
}

type signFixture struct {
	agent, server *Share
	b             SignBinding
	m1            []byte
}

func newSignFixture(t *testing.T) *signFixture {
	t.Helper()
	agent, server, _ := runKeygen(t)
	f := &signFixture{agent: agent, server: server, b: binding(t)}
	f.m1 = f.firstMessage(t, f.b)
	return f
}

func (f *signFixture) firstMessage(t *testing.T, b SignBinding) []byte {
	a, err := NewAgentSigner(f.agent, b)
	if err != nil {
		t.Fatal(err)
	}
	m, err := a.Start()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// serverSession is a fresh server session over the fixture's binding (with a
// fresh ledger, so that each attack meets a session that has not seen it).
func (f *signFixture) serverSession(t *testing.T) *SignSession {
	s, err := NewServerSigner(context.Background(), f.server, f.b, &MemoryLedger{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// refused asserts that the server refused a message: an error, nothing to
// send, no signature, and the session dead (even the genuine message is now
// refused).
func (f *signFixture) refused(t *testing.T, s *SignSession, msg []byte, want error) {
	t.Helper()
	out, err := s.Handle(msg)
	if err == nil || out != nil {
		t.Fatalf("server accepted the message (answer of %d bytes)", len(out))
	}
	if want != nil && !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
	if _, err := s.Signature(); err == nil {
		t.Fatal("a refused session has a signature")
	}
	if out, err := s.Handle(f.m1); !errors.Is(err, ErrFailed) || out != nil {
		t.Fatalf("the failed session took the genuine message: %v", err)
	}
}

func flip(m []byte, i int) []byte {
	c := append([]byte(nil), m...)
	c[i] ^= 0x01
	return c
}

func TestServerRefusesHostileMessages(t *testing.T) {
	f := newSignFixture(t)

	t.Run("tampered header", func(t *testing.T) {
		for i := 0; i < 8; i++ { // magic, version, kind, seq, from
			f.refused(t, f.serverSession(t), flip(f.m1, i), nil)
		}
		for i := 40; i < headerSize; i++ { // payload length
			f.refused(t, f.serverSession(t), flip(f.m1, i), nil)
		}
	})
	t.Run("tampered session id", func(t *testing.T) {
		for i := 8; i < 40; i++ {
			f.refused(t, f.serverSession(t), flip(f.m1, i), ErrWrongSession)
		}
	})
	t.Run("tampered payload", func(t *testing.T) {
		n := len(f.m1) - headerSize - macSize
		for i := 0; i < n; i += n / 97 {
			f.refused(t, f.serverSession(t), flip(f.m1, headerSize+i), ErrBadMAC)
		}
	})
	t.Run("tampered mac", func(t *testing.T) {
		for i := len(f.m1) - macSize; i < len(f.m1); i++ {
			f.refused(t, f.serverSession(t), flip(f.m1, i), ErrBadMAC)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		for _, n := range []int{0, 1, 10, headerSize, headerSize + macSize - 1, len(f.m1) / 2, len(f.m1) - 1} {
			f.refused(t, f.serverSession(t), f.m1[:n], nil)
		}
		f.refused(t, f.serverSession(t), nil, ErrMalformed)
	})
	t.Run("oversized", func(t *testing.T) {
		// Within the frame's rules but over the bound for message 1, with a
		// valid MAC: refused before the MAC or the library looks at it.
		big := append([]byte(nil), f.m1[:len(f.m1)-macSize]...)
		big = append(big, make([]byte, 64<<10)...)
		binary.BigEndian.PutUint32(big[40:44], uint32(len(big)-headerSize))
		big = remac(f.agent, append(big, make([]byte, macSize)...))
		f.refused(t, f.serverSession(t), big, ErrTooLarge)
		// Far larger than any message.
		f.refused(t, f.serverSession(t), make([]byte, 16<<20), ErrTooLarge)
	})
	t.Run("reordered", func(t *testing.T) {
		// The agent's third message before its first.
		a, _ := NewAgentSigner(f.agent, f.b)
		m1, _ := a.Start()
		s1 := f.serverSession(t)
		m2, err := s1.Handle(m1)
		if err != nil {
			t.Fatal(err)
		}
		m3, err := a.Handle(m2)
		if err != nil {
			t.Fatal(err)
		}
		f.refused(t, f.serverSession(t), m3, ErrUnexpected)
		// The first message twice in one session.
		s2 := f.serverSession(t)
		if _, err := s2.Handle(f.m1); err != nil {
			t.Fatal(err)
		}
		if out, err := s2.Handle(f.m1); !errors.Is(err, ErrUnexpected) || out != nil {
			t.Fatalf("second first message: %v", err)
		}
		// The server's own message sent back to it.
		f.refused(t, f.serverSession(t), m2, nil)
	})
	t.Run("replayed from an earlier session", func(t *testing.T) {
		// A complete earlier session, then its messages against a new one.
		old := binding(t)
		a, _ := NewAgentSigner(f.agent, old)
		s, _ := NewServerSigner(context.Background(), f.server, old, &MemoryLedger{})
		m1, _ := a.Start()
		m2, _ := s.Handle(m1)
		m3, _ := a.Handle(m2)
		if _, err := s.Handle(m3); err != nil {
			t.Fatal(err)
		}
		f.refused(t, f.serverSession(t), m1, ErrWrongSession)
		f.refused(t, f.serverSession(t), m3, ErrWrongSession)
	})
	t.Run("bound to another digest", func(t *testing.T) {
		other := f.b
		other.Digest[0] ^= 0xff
		f.refused(t, f.serverSession(t), f.firstMessage(t, other), ErrWrongSession)
	})
	t.Run("bound to another spend or agent", func(t *testing.T) {
		other := f.b
		other.SpendID += "x"
		f.refused(t, f.serverSession(t), f.firstMessage(t, other), ErrWrongSession)
		other = f.b
		other.AgentID = "agent-2"
		f.refused(t, f.serverSession(t), f.firstMessage(t, other), ErrWrongSession)
	})
	t.Run("another key", func(t *testing.T) {
		otherAgent, _, _ := runKeygen(t)
		a, _ := NewAgentSigner(otherAgent, f.b)
		m1, _ := a.Start()
		f.refused(t, f.serverSession(t), m1, ErrWrongSession)
		// The same, claiming this key's session id: its MAC key is wrong.
		e, err := newEngine(RoleAgent, kindSign, f.b.SessionID(f.server.pub[:]), otherAgent.chainKey(),
			doerner.SignReceiver(otherAgent.recv, agentPartyID, serverPartyID, f.b.Digest[:], nil))
		if err != nil {
			t.Fatal(err)
		}
		m1, _ = e.start()
		f.refused(t, f.serverSession(t), m1, ErrBadMAC)
	})
	t.Run("keygen message in a signing session", func(t *testing.T) {
		k, _ := NewKeygen(RoleAgent, f.b.SessionID(f.server.pub[:]))
		m, _ := k.Start()
		f.refused(t, f.serverSession(t), m, ErrWrongSession)
	})
}

// TestHostileAgentWithValidMAC: the agent holds the MAC key, so it can send
// anything with a valid MAC. Whatever it sends, the only signature that can
// come out is over the server's digest.
func TestHostileAgentWithValidMAC(t *testing.T) {
	f := newSignFixture(t)

	t.Run("library message for another digest under this session id", func(t *testing.T) {
		var wanted [32]byte
		copy(wanted[:], randomID(t))
		// The agent runs the library over the digest it wants, framed with
		// the session id of the authorized spend.
		e, err := newEngine(RoleAgent, kindSign, f.b.SessionID(f.agent.pub[:]), f.agent.chainKey(),
			doerner.SignReceiver(f.agent.recv, agentPartyID, serverPartyID, wanted[:], nil))
		if err != nil {
			t.Fatal(err)
		}
		m1, _ := e.start()
		s := f.serverSession(t)
		m2, err := s.Handle(m1)
		if err != nil {
			t.Fatal(err) // its first message is digest-free: the server answers
		}
		if _, err := e.handle(m2); err == nil {
			t.Fatal("the agent finished a signature over a digest the server did not authorize")
		}
		if _, err := e.finished(); err == nil {
			t.Fatal("agent holds a result")
		}
	})

	t.Run("tampered payload, re-MACed", func(t *testing.T) {
		n := len(f.m1) - headerSize - macSize
		for i := 0; i < n; i += n / 41 {
			a, err := NewAgentSigner(f.agent, f.b)
			if err != nil {
				t.Fatal(err)
			}
			m1, _ := a.Start()
			bad := remac(f.agent, flip(m1, headerSize+i))
			s := f.serverSession(t)
			m2, err := s.Handle(bad)
			if err != nil {
				continue // refused outright
			}
			// The server answered a corrupted first message; the agent's
			// real state cannot finish with that answer over any digest
			// but the server's, and here not even over that one.
			m3, err := a.Handle(m2)
			if err == nil {
				sig, _ := a.Signature()
				if !validFor(sig, f.b.Digest, f.server) {
					t.Fatal("signature over another digest")
				}
				if _, err := s.Handle(m3); err != nil {
					t.Fatal(err)
				}
			}
		}
	})

	t.Run("forged final signature", func(t *testing.T) {
		a, _ := NewAgentSigner(f.agent, f.b)
		m1, _ := a.Start()
		s := f.serverSession(t)
		m2, err := s.Handle(m1)
		if err != nil {
			t.Fatal(err)
		}
		m3, err := a.Handle(m2)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{headerSize + 3, len(m3) - macSize - 1} {
			s2 := f.serverSession(t)
			if _, err := s2.Handle(m1); err != nil {
				t.Fatal(err)
			}
			if _, err := s2.Handle(remac(f.agent, flip(m3, i))); err == nil {
				t.Fatal("server took a tampered signature")
			}
			if _, err := s2.Signature(); err == nil {
				t.Fatal("server records a signature from a tampered message")
			}
		}
	})
}

func TestServerRefusesSecondSessionForSameBinding(t *testing.T) {
	agent, server, _ := runKeygen(t)
	ledger := &MemoryLedger{}
	b := binding(t)
	if _, err := NewServerSigner(context.Background(), server, b, ledger); err != nil {
		t.Fatal(err)
	}
	if _, err := NewServerSigner(context.Background(), server, b, ledger); !errors.Is(err, ErrSessionUsed) {
		t.Fatalf("second session: %v", err)
	}
	// Another spend is another session.
	b2 := b
	b2.SpendID += "-2"
	if _, err := NewServerSigner(context.Background(), server, b2, ledger); err != nil {
		t.Fatal(err)
	}
	if _, err := NewServerSigner(context.Background(), server, b, nil); !errors.Is(err, ErrNoLedger) {
		t.Fatalf("no ledger: %v", err)
	}
	if _, err := NewServerSigner(context.Background(), agent, b, ledger); !errors.Is(err, ErrWrongRole) {
		t.Fatalf("agent share on the server side: %v", err)
	}
	if _, err := NewAgentSigner(server, b); !errors.Is(err, ErrWrongRole) {
		t.Fatalf("server share on the agent side: %v", err)
	}
}

func TestAgentRefusesTamperedServerMessage(t *testing.T) {
	f := newSignFixture(t)
	for _, i := range []int{5, 20, headerSize + 100, headerSize + 150000} {
		a, _ := NewAgentSigner(f.agent, f.b)
		m1, _ := a.Start()
		s := f.serverSession(t)
		m2, err := s.Handle(m1)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := a.Handle(flip(m2, i)); err == nil || out != nil {
			t.Fatalf("agent took a tampered message at %d", i)
		}
		if _, err := a.Signature(); err == nil {
			t.Fatal("signature after a tampered message")
		}
	}
	// The agent's first message is handed out once.
	a, _ := NewAgentSigner(f.agent, f.b)
	if _, err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Start(); err == nil {
		t.Fatal("a second Start")
	}
}

// TestKeygenRefusesHostileMessages: the key generation runs on the same
// engine; one pass over its specific cases.
func TestKeygenRefusesHostileMessages(t *testing.T) {
	sid := KeygenSessionID("agent-1", randomID(t))
	a, _ := NewKeygen(RoleAgent, sid)
	m1, _ := a.Start()
	for _, tc := range []struct {
		name string
		sid  SessionID
		msg  []byte
		want error
	}{
		{"another session", KeygenSessionID("agent-2", randomID(t)), m1, ErrWrongSession},
		{"tampered payload", sid, flip(m1, headerSize+5), ErrBadMAC},
		{"truncated", sid, m1[:len(m1)-3], ErrMalformed},
	} {
		s, err := NewKeygen(RoleServer, tc.sid)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := s.Handle(tc.msg); !errors.Is(err, tc.want) || out != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if _, err := s.Share(); err == nil {
			t.Fatalf("%s: a share after a refused message", tc.name)
		}
	}
	// A server session cannot start, and the agent cannot be fed its own
	// message.
	s, _ := NewKeygen(RoleServer, sid)
	if _, err := s.Start(); err == nil {
		t.Fatal("server started a keygen")
	}
	if _, err := a.Handle(m1); !errors.Is(err, ErrUnexpected) {
		t.Fatalf("agent took its own message: %v", err)
	}
}
