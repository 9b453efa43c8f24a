package cosign

import (
	"bytes"
	"context"
	"math/big"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
)

// checkSig is the wallet-side check of a signature, done with go-ethereum
// only: it recovers to the address (both Ecrecover and SigToPub), s is low,
// v is 27 or 28.
func checkSig(t testing.TB, sig Signature, digest [32]byte, share *Share) {
	t.Helper()
	if v := sig[64]; v != 27 && v != 28 {
		t.Fatalf("v = %d, want 27 or 28", v)
	}
	if new(big.Int).SetBytes(sig[32:64]).Cmp(halfN) > 0 {
		t.Fatal("s is in the upper half")
	}
	rec := sig.RecoveryForm()
	if rec[64] > 1 {
		t.Fatalf("recovery form v = %d", rec[64])
	}
	pub, err := crypto.Ecrecover(digest[:], rec)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := crypto.UnmarshalPubkey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if crypto.PubkeyToAddress(*pk) != share.Address() {
		t.Fatal("Ecrecover gives another address")
	}
	pk2, err := crypto.SigToPub(digest[:], rec)
	if err != nil || crypto.PubkeyToAddress(*pk2) != share.Address() {
		t.Fatal("SigToPub gives another address")
	}
	if !crypto.VerifySignature(crypto.CompressPubkey(pk), digest[:], rec[:64]) {
		t.Fatal("VerifySignature refuses it (go-ethereum also rejects high s)")
	}
}

func TestKeygenThenSignRandomDigests(t *testing.T) {
	const keygens, signs = 3, 50
	var agent, server *Share
	start := time.Now()
	for range keygens {
		var x exchange
		agent, server, x = runKeygen(t)
		if x.msgs != 5 {
			t.Fatalf("keygen took %d messages, want 5", x.msgs)
		}
	}
	kgMS := float64(time.Since(start).Microseconds()) / 1000 / keygens
	if !bytes.Equal(agent.PublicKey(), server.PublicKey()) || agent.Address() != server.Address() {
		t.Fatal("the two sides disagree on the public key")
	}
	if agent.Role() != RoleAgent || server.Role() != RoleServer {
		t.Fatal("roles")
	}
	// The shares survive their storage form.
	agent = roundTrip(t, agent)
	server = roundTrip(t, server)

	var total exchange
	start = time.Now()
	for i := range signs {
		b := binding(t)
		fromAgent, fromServer, x := runSign(t, agent, server, b)
		if fromAgent != fromServer {
			t.Fatalf("sign %d: the sides hold different signatures", i)
		}
		checkSig(t, fromAgent, b.Digest, agent)
		total.msgs += x.msgs
		total.bytes += x.bytes
	}
	signMS := float64(time.Since(start).Microseconds()) / 1000 / signs
	t.Logf("keygen %.1f ms, sign %.1f ms (both parties, one goroutine), %d messages and %d bytes per signature",
		kgMS, signMS, total.msgs/signs, total.bytes/signs)
}

func roundTrip(t testing.TB, s *Share) *Share {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalShare(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := back.MarshalBinary()
	if !bytes.Equal(b, b2) || back.Role() != s.Role() || back.Address() != s.Address() {
		t.Fatal("share does not round-trip")
	}
	return back
}

// TestNeitherSideAlone: each share, with everything its holder stores, fails
// to give a valid signature: used as if it were the key, or run through the
// library against a made-up other half.
func TestNeitherSideAlone(t *testing.T) {
	agent, server, _ := runKeygen(t)
	pub, err := agent.publicPoint()
	if err != nil {
		t.Fatal(err)
	}
	// The premise: together the shares are the key (additive sharing)...
	sum := group.NewScalar().Set(agent.secret()).Add(server.secret())
	if !sum.ActOnBase().Equal(pub) {
		t.Fatal("shares do not add up to the key: the test below proves nothing")
	}
	b := binding(t)
	for _, s := range []*Share{agent, server} {
		// ...but neither is the key.
		if s.secret().ActOnBase().Equal(pub) {
			t.Fatalf("the %s share alone is the key", s.Role())
		}
		// Naive use: sign with the share's scalar as an ordinary key.
		raw, _ := s.secret().MarshalBinary()
		k, err := crypto.ToECDSA(raw)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := crypto.Sign(b.Digest[:], k)
		if err != nil {
			t.Fatal(err)
		}
		if p, err := crypto.SigToPub(b.Digest[:], sig); err == nil && crypto.PubkeyToAddress(*p) == agent.Address() {
			t.Fatalf("the %s share signs for the wallet alone", s.Role())
		}
	}

	// Through the library: the server's share with an agent half from
	// another key generation (the best a thief of the server can make up),
	// and the other way round. Nothing valid comes out on either side.
	otherAgent, otherServer, _ := runKeygen(t)
	for _, tc := range []struct {
		name          string
		agent, server *Share
	}{
		{"server share alone", forgeKey(otherAgent, agent), server},
		{"agent share alone", agent, forgeKey(otherServer, server)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sigs := attemptSign(t, tc.agent, tc.server, b)
			if sigs != 0 {
				t.Fatalf("%d valid signatures", sigs)
			}
		})
	}
}

// forgeKey returns a copy of s (a share of another key) that claims pub's
// key: what someone holding only the other half could make up.
func forgeKey(s, pub *Share) *Share {
	f := *s
	f.pub = pub.pub
	p, _ := pub.publicPoint()
	if f.recv != nil {
		c := *f.recv
		c.Public = p
		c.ChainKey = pub.chainKey() // even with the real chain key (both sides store it)
		f.recv = &c
	} else {
		c := *f.send
		c.Public = p
		c.ChainKey = pub.chainKey()
		f.send = &c
	}
	return &f
}

// attemptSign runs a signing as far as it goes and counts the valid
// signatures for the wallet that either side ends with.
func attemptSign(t *testing.T, agent, server *Share, b SignBinding) int {
	t.Helper()
	a, err := NewAgentSigner(agent, b)
	if err != nil {
		return 0
	}
	s, err := NewServerSigner(context.Background(), server, b, &MemoryLedger{})
	if err != nil {
		t.Fatal(err)
	}
	valid := 0
	m1, _ := a.Start()
	m2, err := s.Handle(m1)
	if err == nil {
		var m3 []byte
		if m3, err = a.Handle(m2); err == nil {
			_, err = s.Handle(m3)
		}
	}
	for _, side := range []*SignSession{a, s} {
		if sig, err := side.Signature(); err == nil && validFor(sig, b.Digest, server) {
			valid++
		}
	}
	if err == nil && valid == 0 {
		t.Fatal("the run succeeded without a valid signature")
	}
	return valid
}

// validFor reports whether sig is a valid signature by the wallet over
// digest, by go-ethereum alone.
func validFor(sig Signature, digest [32]byte, wallet *Share) bool {
	p, err := crypto.SigToPub(digest[:], sig.RecoveryForm())
	return err == nil && crypto.PubkeyToAddress(*p) == wallet.Address()
}
