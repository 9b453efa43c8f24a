package cosign

import (
	"errors"
	"testing"
)

// TestRefreshSessionIDOf: the server reads the refresh session id the
// agent chose from m1's header, and refuses a key generation's or a
// signing's first message, or a server's message, as a refresh's.
func TestRefreshSessionIDOf(t *testing.T) {
	agent, _, _ := runKeygen(t)
	sid := RefreshSessionID("agent-1", agent.PublicKey(), randomID(t))
	r, err := NewRefresh(agent, sid)
	if err != nil {
		t.Fatal(err)
	}
	m1, err := r.Start()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := RefreshSessionIDOf(m1); err != nil || got != sid {
		t.Fatalf("RefreshSessionIDOf: %x %v, want %x", got, err, sid)
	}
	kg, _ := NewKeygen(RoleAgent, KeygenSessionID("agent-1", randomID(t)))
	k1, _ := kg.Start()
	s, _ := NewAgentSigner(agent, binding(t))
	s1, _ := s.Start()
	for name, m := range map[string][]byte{"keygen m1": k1, "sign m1": s1, "truncated": m1[:20], "empty": nil} {
		if _, err := RefreshSessionIDOf(m); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s read as a refresh: %v", name, err)
		}
	}
	if _, err := KeygenSessionIDOf(m1); !errors.Is(err, ErrMalformed) {
		t.Error("a refresh m1 read as a key generation's")
	}
}

// TestRefreshCheck: the check binding differs per agent, epoch and refresh
// session, so a check signature proves the pair of one refresh only; the
// new pair signs it, and a pair mixing an old and a new share does not.
func TestRefreshCheck(t *testing.T) {
	agent, server, _ := runKeygen(t)
	sid := RefreshSessionID("agent-1", agent.PublicKey(), randomID(t))
	base := RefreshCheck("agent-1", 2, sid)
	other := RefreshSessionID("agent-1", agent.PublicKey(), randomID(t))
	for name, b := range map[string]SignBinding{"agent": RefreshCheck("agent-2", 2, sid), "epoch": RefreshCheck("agent-1", 3, sid),
		"session": RefreshCheck("agent-1", 2, other)} {
		if b.Digest == base.Digest || b.SessionID(agent.PublicKey()) == base.SessionID(agent.PublicKey()) {
			t.Errorf("another %s gives the same check", name)
		}
	}
	a, _ := NewRefresh(agent, sid)
	s, _ := NewRefresh(server, sid)
	newAgent, newServer, _ := pump(t, a, s)
	fa, _, _ := runSign(t, newAgent, newServer, base)
	checkSig(t, fa, base.Digest, newServer)
	if n := attemptSign(t, agent, newServer, base); n != 0 {
		t.Fatalf("the old agent share with the new server share: %d signatures", n)
	}
	if n := attemptSign(t, newAgent, server, base); n != 0 {
		t.Fatalf("the new agent share with the old server share: %d signatures", n)
	}
}
