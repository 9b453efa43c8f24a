package cosign

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestRefreshKeepsAddressAndRetiresOldShares(t *testing.T) {
	agent, server, _ := runKeygen(t)
	sid := RefreshSessionID("agent-1", agent.PublicKey(), randomID(t))
	a, err := NewRefresh(agent, sid)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewRefresh(server, sid)
	if err != nil {
		t.Fatal(err)
	}
	newAgent, newServer, x := pump(t, a, s)
	if x.msgs != 5 {
		t.Fatalf("refresh took %d messages", x.msgs)
	}
	if newAgent.Address() != agent.Address() || newServer.Address() != agent.Address() {
		t.Fatal("refresh changed the address")
	}
	if newAgent.secret().Equal(agent.secret()) || newServer.secret().Equal(server.secret()) {
		t.Fatal("refresh left a share unchanged")
	}
	b := binding(t)
	sig, _, _ := runSign(t, newAgent, newServer, b)
	checkSig(t, sig, b.Digest, agent)
	// An old share with a new one gives nothing: a leaked old share is dead.
	for name, pair := range map[string][2]*Share{
		"old agent, new server": {agent, newServer},
		"new agent, old server": {newAgent, server},
	} {
		t.Run(name, func(t *testing.T) {
			if n := attemptSign(t, pair[0], pair[1], binding(t)); n != 0 {
				t.Fatalf("%d valid signatures", n)
			}
		})
	}
	// A refresh session refuses keygen-kind and other-session messages
	// like the others (same engine); one check that it is keyed: a
	// refresh first message under another key's chain key is refused.
	other, _, _ := runKeygen(t)
	oa, _ := NewRefresh(other, sid)
	m, _ := oa.Start()
	s2, _ := NewRefresh(newServer, sid)
	if _, err := s2.Handle(m); !errors.Is(err, ErrBadMAC) {
		t.Fatalf("refresh from another key: %v", err)
	}
}

func TestShareEncodingRefusesDamage(t *testing.T) {
	agent, _, _ := runKeygen(t)
	b, err := agent.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 4+2+8+33+32+32+4+4096+32 {
		t.Fatalf("agent share is %d bytes", len(b))
	}
	for _, bad := range [][]byte{nil, b[:10], b[:len(b)-1], append(append([]byte(nil), b...), 0), flip(b, 0), flip(b, 4), flip(b, 100), flip(b, len(b)-1)} {
		if _, err := UnmarshalShare(bad); !errors.Is(err, ErrBadShare) {
			t.Fatalf("damaged share accepted: %v", err)
		}
	}
	// A valid checksum over a wrong version or role is still refused.
	for _, i := range []int{4, 5, 6} {
		c := flip(b, i)
		c = reseal(c)
		if _, err := UnmarshalShare(c); !errors.Is(err, ErrBadShare) {
			t.Fatalf("byte %d changed and accepted", i)
		}
	}
}

func reseal(b []byte) []byte {
	body := b[:len(b)-checksumSize]
	sum := sha256Sum(body)
	return append(append([]byte(nil), body...), sum[:]...)
}

// TestSharesNeverPrinted searches every printable form of a share, and the
// errors of every failure path, for the share's secret bytes.
func TestSharesNeverPrinted(t *testing.T) {
	agent, server, _ := runKeygen(t)
	_, otherServer, _ := runKeygen(t)
	for _, s := range []*Share{agent, server} {
		sec, _ := s.secret().MarshalBinary()
		enc, _ := s.MarshalBinary()
		setup := setupBytes(s.setup())
		secrets := []string{hex.EncodeToString(sec), hex.EncodeToString(s.chainKey()), hex.EncodeToString(setup[:32]),
			fmt.Sprint(sec), string(sec), string(setup[:32])}

		var out strings.Builder
		fmt.Fprintf(&out, "%v %+v %#v %s %x %X %q %d\n", s, s, s, s, s, s, s, s)
		fmt.Fprintf(&out, "%v %+v\n", *s, struct{ S *Share }{s})
		j, _ := json.Marshal(map[string]any{"share": s})
		out.Write(j)
		var logs bytes.Buffer
		slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "share", s)
		slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "share", s)
		out.Write(logs.Bytes())

		// Errors of every failure path that touches a share.
		var errs []error
		_, err := UnmarshalShare(flip(enc, 200))
		errs = append(errs, err)
		_, err = UnmarshalShare(enc[:len(enc)-1])
		errs = append(errs, err)
		b := binding(t)
		if s.Role() == RoleServer {
			sess, _ := NewServerSigner(context.Background(), s, b, &MemoryLedger{})
			_, err = sess.Handle([]byte("garbage"))
			errs = append(errs, err)
			_, err = NewAgentSigner(s, b)
			errs = append(errs, err)
		} else {
			n := attemptSignErrs(s, forgeKey(otherServer, server), b)
			errs = append(errs, n...)
		}
		for _, e := range errs {
			if e == nil {
				t.Fatal("expected an error")
			}
			fmt.Fprintf(&out, "%v %+v %#v\n", e, e, e)
		}
		text := out.String()
		if !strings.Contains(text, redacted) {
			t.Fatal("the share did not print as redacted")
		}
		for _, sec := range secrets {
			if strings.Contains(text, sec) {
				t.Fatalf("%s share material printed: %s", s.Role(), text)
			}
		}
	}
}

func attemptSignErrs(agent, server *Share, b SignBinding) []error {
	a, _ := NewAgentSigner(agent, b)
	s, _ := NewServerSigner(context.Background(), server, b, &MemoryLedger{})
	m1, _ := a.Start()
	m2, err := s.Handle(m1)
	if err != nil {
		return []error{err}
	}
	_, err = a.Handle(m2)
	return []error{err}
}
