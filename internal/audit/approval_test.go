package audit

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// A software passkey for the verifier's tests: it signs what a browser's
// authenticator signs, authenticatorData ‖ SHA-256(clientDataJSON).
type testPasskey struct {
	priv crypto.Signer
	spki []byte
	id   string
}

func newTestPasskey(t testing.TB, kind string) *testPasskey {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch kind {
	case "es256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rs256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "eddsa":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	rand.Read(id) //nolint:errcheck
	return &testPasskey{priv: priv, spki: spki, id: b64url.EncodeToString(id)}
}

const (
	testOrigin = "http://localhost:8402"
	testRPID   = "localhost"
)

func (p *testPasskey) assert(t testing.TB, c ApprovalCommit, flags byte, count uint32) *PasskeyAssertion {
	t.Helper()
	cd, _ := json.Marshal(map[string]any{"type": "webauthn.get", "challenge": b64url.EncodeToString(c.Challenge()), "origin": testOrigin, "crossOrigin": false})
	rp := sha256.Sum256([]byte(testRPID))
	ad := binary.BigEndian.AppendUint32(append(rp[:], flags), count)
	a := &PasskeyAssertion{OwnerID: "own_1", CredentialID: p.id, AuthenticatorData: b64url.EncodeToString(ad),
		ClientDataJSON: b64url.EncodeToString(cd), RPID: testRPID, Origin: testOrigin, Commit: c}
	p.resign(t, a)
	return a
}

// resign signs the assertion's current authenticator and client data.
func (p *testPasskey) resign(t testing.TB, a *PasskeyAssertion) {
	t.Helper()
	ad, _ := b64url.DecodeString(a.AuthenticatorData)
	cd, _ := b64url.DecodeString(a.ClientDataJSON)
	h := sha256.Sum256(cd)
	msg := append(ad, h[:]...)
	var sig []byte
	var err error
	if _, ok := p.priv.(ed25519.PrivateKey); ok {
		sig, err = p.priv.Sign(rand.Reader, msg, crypto.Hash(0))
	} else {
		d := sha256.Sum256(msg)
		sig, err = p.priv.Sign(rand.Reader, d[:], crypto.SHA256)
	}
	if err != nil {
		t.Fatal(err)
	}
	a.Signature = b64url.EncodeToString(sig)
}

func testIntent() ApprovalCommit {
	dig := IntentDigest("0x"+strings.Repeat("ab", 65), "0x"+strings.Repeat("01", 32))
	return ApprovalCommit{SpendID: "spd_1", AgentID: "agt_1", IntentDigest: hex.EncodeToString(dig[:]), Amount: "5000000",
		Asset: "USDC", Network: "eip155:8453", Payee: "0x000000000000000000000000000000000000dead", Host: "api.example.com"}
}

func testCommit() ApprovalCommit {
	c := testIntent()
	c.Nonce, c.ExpiresAt = strings.Repeat("5a", 16), t0.Add(5*time.Minute).UnixMilli()
	return c
}

// TestAssertionVerify: the assertion check itself, apart from any chain:
// a good assertion verifies under ES256, RS256 and EdDSA keys, and one
// byte changed anywhere it matters fails.
func TestAssertionVerify(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"es256", "rs256", "eddsa"} {
		p := newTestPasskey(t, kind)
		if err := p.assert(t, testCommit(), 0x05, 1).Verify(p.spki); err != nil {
			t.Fatalf("%s: a good assertion fails: %v", kind, err)
		}
	}
	p := newTestPasskey(t, "es256")
	other := newTestPasskey(t, "es256")
	flip := func(s string, i int) string {
		b, _ := b64url.DecodeString(s)
		b[i] ^= 1
		return b64url.EncodeToString(b)
	}
	for name, mutate := range map[string]func(a *PasskeyAssertion){
		"signature byte":     func(a *PasskeyAssertion) { a.Signature = flip(a.Signature, 10) },
		"client data byte":   func(a *PasskeyAssertion) { a.ClientDataJSON = flip(a.ClientDataJSON, 3) },
		"authenticator data": func(a *PasskeyAssertion) { a.AuthenticatorData = flip(a.AuthenticatorData, 36) },
		"committed amount":   func(a *PasskeyAssertion) { a.Commit.Amount = "5000001" },
		"committed payee":    func(a *PasskeyAssertion) { a.Commit.Payee = "0x000000000000000000000000000000000000beef" },
		"committed spend":    func(a *PasskeyAssertion) { a.Commit.SpendID = "spd_2" },
		"committed intent":   func(a *PasskeyAssertion) { a.Commit.IntentDigest = strings.Repeat("00", 32) },
		"committed expiry":   func(a *PasskeyAssertion) { a.Commit.ExpiresAt++ },
		"recorded origin":    func(a *PasskeyAssertion) { a.Origin = "https://evil.example" },
		"recorded RP id":     func(a *PasskeyAssertion) { a.RPID = "evil.example" },
		"another key's":      func(a *PasskeyAssertion) { other.resign(t, a) },
		"no user verification": func(a *PasskeyAssertion) {
			a.AuthenticatorData = p.assert(t, a.Commit, 0x01, 2).AuthenticatorData
			p.resign(t, a)
		},
		"a create, not a get": func(a *PasskeyAssertion) {
			cd, _ := b64url.DecodeString(a.ClientDataJSON)
			a.ClientDataJSON = b64url.EncodeToString(bytes.Replace(cd, []byte("webauthn.get"), []byte("webauthn.create"), 1))
			p.resign(t, a)
		},
	} {
		a := p.assert(t, testCommit(), 0x05, 1)
		mutate(a)
		if err := a.Verify(p.spki); err == nil {
			t.Errorf("%s: an altered assertion verifies", name)
		}
	}
}

// approvalChain is a consistent chain around one passkey approval,
// whatever its events say: each is sealed and the head signed, so only
// the approval check can fail it.
type approvalChain struct {
	t      *testing.T
	p      *testPasskey
	events []*Event
}

func (c *approvalChain) add(actor Actor, action string, details any, at time.Time) {
	raw, err := json.Marshal(details)
	if err != nil {
		c.t.Fatal(err)
	}
	e := &Event{Seq: int64(len(c.events) + 1), Time: at, Actor: actor, Action: action, Details: raw}
	var prev [32]byte
	if n := len(c.events); n > 0 {
		prev = c.events[n-1].Hash
	}
	if err := e.Seal(prev); err != nil {
		c.t.Fatal(err)
	}
	c.events = append(c.events, e)
}

func (c *approvalChain) passkeyAdded(p *testPasskey, ownerID string) {
	c.add(Actor{"owner", ownerID}, "owner.passkey_added", PasskeyAdded{OwnerID: ownerID, OwnerName: "alice", CredentialID: p.id,
		PublicKeySPKI: b64url.EncodeToString(p.spki), Algorithm: -7, RPID: testRPID, Origin: testOrigin, NewOwner: true}, t0)
}

func (c *approvalChain) requested(i ApprovalCommit) {
	c.add(Actor{"agent", i.AgentID}, "spend.request_approval", map[string]any{"spend_id": i.SpendID, "agent_id": i.AgentID,
		"rail": "x402", "host": i.Host, "payee": i.Payee, "asset": i.Asset, "network": i.Network, "amount": i.Amount,
		"intent": map[string]any{"signature": "0x" + strings.Repeat("ab", 65), "nonce": "0x" + strings.Repeat("01", 32)}}, t0.Add(time.Second))
}

func (c *approvalChain) approved(ownerID string, a *PasskeyAssertion, at time.Time) {
	c.add(Actor{"owner", ownerID}, "spend.approve", map[string]any{"spend_id": a.Commit.SpendID, "agent_id": a.Commit.AgentID,
		"status": "authorized", "passkey": a}, at)
}

func (c *approvalChain) verify() error {
	k := testKey(7)
	_, err := VerifyExport(bytes.NewReader(export(c.t, c.events, k, len(c.events))), k.Public())
	return err
}

// TestExportApprovalChecked: `audit verify` checks every passkey approval
// in a chain whose hashes and checkpoints are all consistent (as a writer
// holding the audit key could make them): a good one passes; an altered
// assertion, one for other terms than the spend's recorded intent, one
// from a key the chain never added or revoked before, one made after its
// challenge expired and a replayed one fail at the approval's seq.
func TestExportApprovalChecked(t *testing.T) {
	t.Parallel()
	p := newTestPasskey(t, "es256")
	good := func() *approvalChain {
		c := &approvalChain{t: t, p: p}
		c.passkeyAdded(p, "own_1")
		c.requested(testIntent())
		return c
	}
	c := good()
	c.approved("own_1", p.assert(t, testCommit(), 0x05, 1), t0.Add(time.Minute))
	if err := c.verify(); err != nil {
		t.Fatalf("a good approval fails: %v", err)
	}
	// A passkey revoked after it approved leaves the approval valid.
	c.add(Actor{"owner", "owner"}, "owner.passkey_revoked", map[string]any{"owner_id": "own_1", "credential_id": p.id}, t0.Add(2*time.Minute))
	c.add(Actor{"owner", "owner"}, "owner.revoked", map[string]any{"owner_id": "own_1"}, t0.Add(2*time.Minute))
	if err := c.verify(); err != nil {
		t.Fatalf("an approval before its passkey was revoked fails: %v", err)
	}

	for name, build := range map[string]func() (*approvalChain, int64){
		"altered signature": func() (*approvalChain, int64) {
			c := good()
			a := p.assert(t, testCommit(), 0x05, 1)
			sig, _ := b64url.DecodeString(a.Signature)
			sig[8] ^= 0x40
			a.Signature = b64url.EncodeToString(sig)
			c.approved("own_1", a, t0.Add(time.Minute))
			return c, 3
		},
		"altered client data": func() (*approvalChain, int64) {
			c := good()
			a := p.assert(t, testCommit(), 0x05, 1)
			cd, _ := b64url.DecodeString(a.ClientDataJSON)
			a.ClientDataJSON = b64url.EncodeToString(bytes.Replace(cd, []byte("localhost"), []byte("localhosT"), 1))
			c.approved("own_1", a, t0.Add(time.Minute))
			return c, 3
		},
		"signed over other terms": func() (*approvalChain, int64) {
			c := good()
			cm := testCommit()
			cm.Amount = "500000000"
			c.approved("own_1", p.assert(t, cm, 0x05, 1), t0.Add(time.Minute))
			return c, 3
		},
		"for another spend": func() (*approvalChain, int64) {
			c := good()
			a := p.assert(t, testCommit(), 0x05, 1)
			c.add(Actor{"owner", "own_1"}, "spend.approve", map[string]any{"spend_id": "spd_2", "passkey": a}, t0.Add(time.Minute))
			return c, 3
		},
		"unknown key": func() (*approvalChain, int64) {
			c := &approvalChain{t: t, p: p}
			c.requested(testIntent())
			c.approved("own_1", p.assert(t, testCommit(), 0x05, 1), t0.Add(time.Minute))
			return c, 2
		},
		"another key than the chain's": func() (*approvalChain, int64) {
			c := good()
			q := newTestPasskey(t, "es256")
			q.id = p.id
			c.approved("own_1", q.assert(t, testCommit(), 0x05, 1), t0.Add(time.Minute))
			return c, 3
		},
		"revoked passkey": func() (*approvalChain, int64) {
			c := good()
			c.add(Actor{"owner", "owner"}, "owner.passkey_revoked", map[string]any{"owner_id": "own_1", "credential_id": p.id}, t0.Add(2*time.Second))
			c.approved("own_1", p.assert(t, testCommit(), 0x05, 1), t0.Add(time.Minute))
			return c, 4
		},
		"revoked owner": func() (*approvalChain, int64) {
			c := good()
			c.add(Actor{"owner", "owner"}, "owner.revoked", map[string]any{"owner_id": "own_1"}, t0.Add(2*time.Second))
			c.approved("own_1", p.assert(t, testCommit(), 0x05, 1), t0.Add(time.Minute))
			return c, 4
		},
		"after expiry": func() (*approvalChain, int64) {
			c := good()
			c.approved("own_1", p.assert(t, testCommit(), 0x05, 1), t0.Add(5*time.Minute+time.Second))
			return c, 3
		},
		"after a denial": func() (*approvalChain, int64) {
			c := good()
			c.add(Actor{"owner", "owner"}, "spend.deny", map[string]any{"spend_id": "spd_1"}, t0.Add(2*time.Second))
			c.approved("own_1", p.assert(t, testCommit(), 0x05, 1), t0.Add(time.Minute))
			return c, 4
		},
		"replayed": func() (*approvalChain, int64) {
			c := good()
			a := p.assert(t, testCommit(), 0x05, 1)
			c.approved("own_1", a, t0.Add(time.Minute))
			c.approved("own_1", a, t0.Add(2*time.Minute))
			return c, 4
		},
		"another owner as actor": func() (*approvalChain, int64) {
			c := good()
			c.approved("own_2", p.assert(t, testCommit(), 0x05, 1), t0.Add(time.Minute))
			return c, 3
		},
	} {
		c, seq := build()
		err := c.verify()
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Seq != seq || !strings.Contains(ve.Reason, "approval assertion") {
			t.Errorf("%s: got %v, want a failed approval assertion at seq %d", name, err, seq)
		}
	}
}
