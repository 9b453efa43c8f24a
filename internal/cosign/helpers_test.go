package cosign

import (
	"context"
	"crypto/rand"
	"testing"
)

// exchange counts the bytes and messages of one run.
type exchange struct {
	msgs  int
	bytes int
	sizes []int
}

func (x *exchange) add(b []byte) {
	if b != nil {
		x.msgs++
		x.bytes += len(b)
		x.sizes = append(x.sizes, len(b))
	}
}

func randomID(t testing.TB) []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// runKeygen runs a key generation between two fresh sessions in one
// goroutine, passing every message by hand, as a transport would.
func runKeygen(t testing.TB) (agent, server *Share, x exchange) {
	t.Helper()
	sid := KeygenSessionID("agent-1", randomID(t))
	a, err := NewKeygen(RoleAgent, sid)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewKeygen(RoleServer, sid)
	if err != nil {
		t.Fatal(err)
	}
	agent, server, x = pump(t, a, s)
	return agent, server, x
}

func pump(t testing.TB, a, s *KeygenSession) (agent, server *Share, x exchange) {
	t.Helper()
	msg, err := a.Start()
	if err != nil {
		t.Fatal(err)
	}
	x.add(msg)
	for turn := 0; msg != nil; turn++ {
		side := s
		if turn%2 == 1 {
			side = a
		}
		msg, err = side.Handle(msg)
		if err != nil {
			t.Fatalf("keygen message %d: %v", turn+1, err)
		}
		x.add(msg)
	}
	if !a.Done() || !s.Done() {
		t.Fatal("keygen did not finish on both sides")
	}
	if agent, err = a.Share(); err != nil {
		t.Fatal(err)
	}
	if server, err = s.Share(); err != nil {
		t.Fatal(err)
	}
	return agent, server, x
}

func binding(t testing.TB) SignBinding {
	var d [32]byte
	copy(d[:], randomID(t))
	return SignBinding{AgentID: "agent-1", SpendID: "spend-" + string(randomID(t)[:4]), Digest: d}
}

// runSign runs a signing and returns both sides' signatures.
func runSign(t testing.TB, agent, server *Share, b SignBinding) (fromAgent, fromServer Signature, x exchange) {
	t.Helper()
	a, err := NewAgentSigner(agent, b)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServerSigner(context.Background(), server, b, &MemoryLedger{})
	if err != nil {
		t.Fatal(err)
	}
	m1, err := a.Start()
	if err != nil {
		t.Fatal(err)
	}
	m2, err := s.Handle(m1)
	if err != nil {
		t.Fatalf("server on message 1: %v", err)
	}
	m3, err := a.Handle(m2)
	if err != nil {
		t.Fatalf("agent on message 2: %v", err)
	}
	last, err := s.Handle(m3)
	if err != nil {
		t.Fatalf("server on message 3: %v", err)
	}
	if last != nil {
		t.Fatal("server answered the last message")
	}
	x.add(m1)
	x.add(m2)
	x.add(m3)
	if fromAgent, err = a.Signature(); err != nil {
		t.Fatal(err)
	}
	if fromServer, err = s.Signature(); err != nil {
		t.Fatal(err)
	}
	return fromAgent, fromServer, x
}
