package agentauth_test

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/base64"
	"errors"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"

	"github.com/purserhq/purser/internal/agentauth"
)

// A fixed key keeps failures reproducible.
const testKeyHex = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"

var t0 = time.Unix(1_750_000_000, 0)

// testDeployment is a fixed deployment id; testDomain binds to it.
var (
	testDeployment = [32]byte{0xd0, 0x01, 31: 0x42}
	testDomain     = agentauth.DeploymentDomain(testDeployment)
)

func testKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := crypto.HexToECDSA(testKeyHex)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testNonce(b byte) [32]byte {
	var n [32]byte
	for i := range n {
		n[i] = b + byte(i)
	}
	return n
}

func codeOf(err error) string {
	var c interface{ Code() string }
	if errors.As(err, &c) {
		return c.Code()
	}
	return ""
}

func mustSign(t testing.TB, key *ecdsa.PrivateKey, method, pq string, body []byte, nonce [32]byte, exp time.Time) agentauth.Signed {
	t.Helper()
	return mustSignIn(t, key, testDomain, method, pq, body, nonce, exp)
}

func mustSignIn(t testing.TB, key *ecdsa.PrivateKey, dom agentauth.Domain, method, pq string, body []byte, nonce [32]byte, exp time.Time) agentauth.Signed {
	t.Helper()
	s, err := agentauth.Sign(key, dom, method, pq, body, nonce, exp)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	tests := []struct {
		name, method, pq string
		body             []byte
	}{
		{"get no body", "GET", "/v1/agent/balance", nil},
		{"empty body", "POST", "/v1/agent/spends", []byte{}},
		{"json body", "POST", "/v1/agent/spends", []byte(`{"amount":"0.05","asset":"USDC"}`)},
		{"query", "GET", "/v1/agent/spends?limit=10&cursor=a%2Fb", nil},
		{"escaped path", "DELETE", "/v1/agent/holds/h%20x", nil},
		{"binary body", "PUT", "/", []byte{0, 1, 2, 0xff}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			exp := t0.Add(agentauth.MaxTTL)
			s := mustSign(t, key, tc.method, tc.pq, tc.body, testNonce(7), exp)
			if s.Agent != crypto.PubkeyToAddress(key.PublicKey) {
				t.Fatalf("agent %s", s.Agent.Hex())
			}
			if v := s.Signature[64]; v != 27 && v != 28 {
				t.Fatalf("v = %d, want 27/28", v)
			}
			h := http.Header{}
			s.Apply(h)
			got, err := agentauth.Parse(h)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got != s {
				t.Fatalf("Parse(Apply(s)) = %+v, want %+v", got, s)
			}
			if err := got.Verify(testDomain, tc.method, tc.pq, tc.body, t0); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			// v as 0/1 (raw secp256k1) is accepted too.
			raw := got
			raw.Signature[64] -= 27
			if err := raw.Verify(testDomain, tc.method, tc.pq, tc.body, t0); err != nil {
				t.Fatalf("Verify with v-27: %v", err)
			}
		})
	}
}

func TestSignFractionalExpires(t *testing.T) {
	t.Parallel()
	// The header carries whole seconds; Signed must too, or Verify after a
	// header round trip would disagree with Verify on the signer's copy.
	s := mustSign(t, testKey(t), "GET", "/", nil, testNonce(1), t0.Add(1500*time.Millisecond))
	if s.Expires != t0.Add(time.Second) {
		t.Fatalf("Expires = %v", s.Expires)
	}
	h := http.Header{}
	s.Apply(h)
	p, err := agentauth.Parse(h)
	if err != nil || p != s {
		t.Fatalf("round trip: %v %+v", err, p)
	}
}

func TestSignErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		key  *ecdsa.PrivateKey
		exp  time.Time
	}{
		{"nil key", nil, t0},
		{"before 1970", testKey(t), time.Unix(-1, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := agentauth.Sign(tc.key, testDomain, "GET", "/", nil, testNonce(0), tc.exp); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestTamper(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	const method, pq = "POST", "/v1/agent/spends?dry=1"
	body := []byte(`{"amount":"0.05"}`)
	exp := t0.Add(time.Minute)
	good := mustSign(t, key, method, pq, body, testNonce(3), exp)
	other, _ := agentauth.GenerateKey()

	type req struct {
		method, pq string
		body       []byte
	}
	tests := []struct {
		name string
		edit func(*agentauth.Signed)
		r    req
	}{
		{"method", nil, req{"PUT", pq, body}},
		{"method case", nil, req{"post", pq, body}},
		{"path", nil, req{method, "/v1/agent/spendz?dry=1", body}},
		{"query", nil, req{method, "/v1/agent/spends?dry=0", body}},
		{"query dropped", nil, req{method, "/v1/agent/spends", body}},
		{"body", nil, req{method, pq, []byte(`{"amount":"5.00"}`)}},
		{"body dropped", nil, req{method, pq, nil}},
		{"nonce", func(s *agentauth.Signed) { s.Nonce[31] ^= 1 }, req{method, pq, body}},
		{"expires", func(s *agentauth.Signed) { s.Expires = s.Expires.Add(time.Second) }, req{method, pq, body}},
		{"agent header", func(s *agentauth.Signed) { s.Agent = agentauth.Address(other) }, req{method, pq, body}},
		{"sig r byte", func(s *agentauth.Signed) { s.Signature[5] ^= 0x40 }, req{method, pq, body}},
		{"sig s byte", func(s *agentauth.Signed) { s.Signature[40] ^= 0x01 }, req{method, pq, body}},
		{"sig v flipped", func(s *agentauth.Signed) { s.Signature[64] = 55 - s.Signature[64] }, req{method, pq, body}},
		{"sig v out of range", func(s *agentauth.Signed) { s.Signature[64] = 29 }, req{method, pq, body}},
		{"sig r zero", func(s *agentauth.Signed) { clear(s.Signature[:32]) }, req{method, pq, body}},
		{"sig s zero", func(s *agentauth.Signed) { clear(s.Signature[32:64]) }, req{method, pq, body}},
		{"sig all ff", func(s *agentauth.Signed) {
			for i := range 64 {
				s.Signature[i] = 0xff
			}
		}, req{method, pq, body}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := good
			if tc.edit != nil {
				tc.edit(&s)
			}
			// Through the headers, as the server sees it, when they parse
			// (Parse already refuses some edits, such as v=29).
			h := http.Header{}
			s.Apply(h)
			if p, err := agentauth.Parse(h); err == nil {
				s = p
			}
			err := s.Verify(testDomain, tc.r.method, tc.r.pq, tc.r.body, t0)
			if codeOf(err) != agentauth.CodeSignatureInvalid {
				t.Fatalf("Verify = %v, want %s", err, agentauth.CodeSignatureInvalid)
			}
		})
	}
}

func TestImpersonation(t *testing.T) {
	t.Parallel()
	victim := testKey(t)
	attacker, err := agentauth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s := mustSign(t, attacker, "POST", "/v1/agent/spends", []byte("{}"), testNonce(9), t0.Add(time.Minute))
	s.Agent = agentauth.Address(victim)
	err = s.Verify(testDomain, "POST", "/v1/agent/spends", []byte("{}"), t0)
	if codeOf(err) != agentauth.CodeSignatureInvalid {
		t.Fatalf("Verify = %v, want %s", err, agentauth.CodeSignatureInvalid)
	}
}

func TestHighSRejected(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	s := mustSign(t, key, "GET", "/", nil, testNonce(2), t0.Add(time.Minute))
	// The malleated twin (r, n-s, v^1) is a valid ECDSA signature by the
	// same key; it must still be refused.
	n := crypto.S256().Params().N
	sv := new(big.Int).SetBytes(s.Signature[32:64])
	hi := s
	new(big.Int).Sub(n, sv).FillBytes(hi.Signature[32:64])
	hi.Signature[64] = 55 - hi.Signature[64] // 27 <-> 28

	d := agentauth.Digest(testDomain, s.Agent, "GET", "/", crypto.Keccak256Hash(nil), s.Nonce, s.Expires)
	raw := hi.Signature
	raw[64] -= 27
	pub, err := crypto.Ecrecover(d[:], raw[:])
	if err != nil || common.BytesToAddress(crypto.Keccak256(pub[1:])[12:]) != s.Agent {
		t.Fatalf("test setup: high-s twin does not recover the signer (%v)", err)
	}
	if err := hi.Verify(testDomain, "GET", "/", nil, t0); codeOf(err) != agentauth.CodeSignatureInvalid {
		t.Fatalf("Verify = %v, want %s", err, agentauth.CodeSignatureInvalid)
	}
}

func TestExpiryWindow(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	far := agentauth.MaxTTL + agentauth.ClockSkew
	tests := []struct {
		name string
		exp  time.Time
		now  time.Time
		want string
	}{
		{"now", t0, t0, ""},
		{"max ttl", t0.Add(agentauth.MaxTTL), t0, ""},
		{"max ttl plus skew", t0.Add(far), t0, ""},
		{"one past", t0, t0.Add(time.Second), agentauth.CodeSignatureExpired},
		{"just past", t0, t0.Add(time.Nanosecond), agentauth.CodeSignatureExpired},
		{"long past", t0, t0.Add(time.Hour), agentauth.CodeSignatureExpired},
		{"too far", t0.Add(far + time.Second), t0, agentauth.CodeSignatureExpiryTooFar},
		{"year ahead", t0.AddDate(1, 0, 0), t0, agentauth.CodeSignatureExpiryTooFar},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mustSign(t, key, "GET", "/x", nil, testNonce(4), tc.exp)
			if got := codeOf(s.Verify(testDomain, "GET", "/x", nil, tc.now)); got != tc.want {
				t.Fatalf("code = %q, want %q", got, tc.want)
			}
			// The window is checked before the signature.
			if tc.want != "" {
				s.Signature[1] ^= 1
				if got := codeOf(s.Verify(testDomain, "GET", "/x", nil, tc.now)); got != tc.want {
					t.Fatalf("with bad sig: code = %q, want %q", got, tc.want)
				}
			}
		})
	}
}

func validHeader(t testing.TB) http.Header {
	t.Helper()
	s := mustSign(t, testKey(t), "GET", "/", nil, testNonce(5), t0.Add(time.Minute))
	h := http.Header{}
	s.Apply(h)
	return h
}

func TestParse(t *testing.T) {
	t.Parallel()
	valid := validHeader(t)
	agent := valid.Get(agentauth.HeaderAgent)
	nonce := valid.Get(agentauth.HeaderNonce)
	sig := valid.Get(agentauth.HeaderSignature)
	setTo := func(name, v string) func(http.Header) {
		return func(h http.Header) { h.Set(name, v) }
	}
	tests := []struct {
		name string
		edit func(http.Header)
		want string
	}{
		{"valid", func(http.Header) {}, ""},
		{"lower-case agent", setTo(agentauth.HeaderAgent, strings.ToLower(agent)), ""},
		{"upper-case agent", setTo(agentauth.HeaderAgent, "0x"+strings.ToUpper(agent[2:])), ""},
		{"upper-case hex nonce", setTo(agentauth.HeaderNonce, "0x"+strings.ToUpper(nonce[2:])), ""},
		{"v=0", setTo(agentauth.HeaderSignature, sig[:130]+"00"), ""},
		{"expires zero", setTo(agentauth.HeaderExpires, "0"), ""},

		{"all missing", func(h http.Header) { clear(h) }, agentauth.CodeAuthMissing},
		{"agent missing", func(h http.Header) { h.Del(agentauth.HeaderAgent) }, agentauth.CodeAuthMalformed},
		{"nonce missing", func(h http.Header) { h.Del(agentauth.HeaderNonce) }, agentauth.CodeAuthMalformed},
		{"expires missing", func(h http.Header) { h.Del(agentauth.HeaderExpires) }, agentauth.CodeAuthMalformed},
		{"signature missing", func(h http.Header) { h.Del(agentauth.HeaderSignature) }, agentauth.CodeAuthMalformed},
		{"only agent", func(h http.Header) { clear(h); h.Set(agentauth.HeaderAgent, agent) }, agentauth.CodeAuthMalformed},
		{"empty value", setTo(agentauth.HeaderNonce, ""), agentauth.CodeAuthMalformed},

		{"duplicate agent", func(h http.Header) { h.Add(agentauth.HeaderAgent, agent) }, agentauth.CodeAuthMalformed},
		{"duplicate nonce", func(h http.Header) { h.Add(agentauth.HeaderNonce, nonce) }, agentauth.CodeAuthMalformed},
		{"duplicate expires", func(h http.Header) { h.Add(agentauth.HeaderExpires, "1") }, agentauth.CodeAuthMalformed},
		{"duplicate signature", func(h http.Header) { h.Add(agentauth.HeaderSignature, sig) }, agentauth.CodeAuthMalformed},

		{"agent no 0x", setTo(agentauth.HeaderAgent, agent[2:]), agentauth.CodeAuthMalformed},
		{"agent 0X", setTo(agentauth.HeaderAgent, "0X"+agent[2:]), agentauth.CodeAuthMalformed},
		{"agent short", setTo(agentauth.HeaderAgent, agent[:41]), agentauth.CodeAuthMalformed},
		{"agent long", setTo(agentauth.HeaderAgent, agent+"0"), agentauth.CodeAuthMalformed},
		{"agent bad hex", setTo(agentauth.HeaderAgent, agent[:41]+"g"), agentauth.CodeAuthMalformed},
		{"agent bad checksum", setTo(agentauth.HeaderAgent, flipCase(agent)), agentauth.CodeAuthMalformed},
		{"agent padded", setTo(agentauth.HeaderAgent, " "+agent), agentauth.CodeAuthMalformed},

		{"nonce short", setTo(agentauth.HeaderNonce, nonce[:65]), agentauth.CodeAuthMalformed},
		{"nonce long", setTo(agentauth.HeaderNonce, nonce+"00"), agentauth.CodeAuthMalformed},
		{"nonce no 0x", setTo(agentauth.HeaderNonce, "00"+nonce[2:]), agentauth.CodeAuthMalformed},
		{"nonce bad hex", setTo(agentauth.HeaderNonce, nonce[:65]+"z"), agentauth.CodeAuthMalformed},
		{"nonce overlong", setTo(agentauth.HeaderNonce, "0x"+strings.Repeat("a", 10000)), agentauth.CodeAuthMalformed},

		{"expires hex", setTo(agentauth.HeaderExpires, "0x6553f100"), agentauth.CodeAuthMalformed},
		{"expires negative", setTo(agentauth.HeaderExpires, "-1"), agentauth.CodeAuthMalformed},
		{"expires plus", setTo(agentauth.HeaderExpires, "+1750000060"), agentauth.CodeAuthMalformed},
		{"expires fraction", setTo(agentauth.HeaderExpires, "1750000060.5"), agentauth.CodeAuthMalformed},
		{"expires leading zero", setTo(agentauth.HeaderExpires, "01750000060"), agentauth.CodeAuthMalformed},
		{"expires underscore", setTo(agentauth.HeaderExpires, "1_750_000_060"), agentauth.CodeAuthMalformed},
		{"expires rfc3339", setTo(agentauth.HeaderExpires, "2025-06-15T15:07:40Z"), agentauth.CodeAuthMalformed},
		{"expires overflow", setTo(agentauth.HeaderExpires, "9223372036854775808"), agentauth.CodeAuthMalformed},
		{"expires overlong", setTo(agentauth.HeaderExpires, strings.Repeat("9", 40)), agentauth.CodeAuthMalformed},
		{"expires space", setTo(agentauth.HeaderExpires, "1750000060 "), agentauth.CodeAuthMalformed},

		{"sig short", setTo(agentauth.HeaderSignature, sig[:130]), agentauth.CodeAuthMalformed},
		{"sig 64 bytes", setTo(agentauth.HeaderSignature, sig[:130-2]), agentauth.CodeAuthMalformed},
		{"sig long", setTo(agentauth.HeaderSignature, sig+"1b"), agentauth.CodeAuthMalformed},
		{"sig bad hex", setTo(agentauth.HeaderSignature, sig[:131]+"x"), agentauth.CodeAuthMalformed},
		{"sig no 0x", setTo(agentauth.HeaderSignature, sig[2:]), agentauth.CodeAuthMalformed},
		{"sig v=2", setTo(agentauth.HeaderSignature, sig[:130]+"02"), agentauth.CodeAuthMalformed},
		{"sig v=29", setTo(agentauth.HeaderSignature, sig[:130]+"1d"), agentauth.CodeAuthMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := valid.Clone()
			tc.edit(h)
			_, err := agentauth.Parse(h)
			if got := codeOf(err); got != tc.want {
				t.Fatalf("Parse = %v, want code %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), nonce[2:]) {
				t.Fatalf("error echoes header value: %v", err)
			}
		})
	}
}

// flipCase swaps the case of every hex letter, breaking a mixed-case
// EIP-55 checksum while keeping the address bytes.
func flipCase(a string) string {
	b := []byte(a)
	for i := 2; i < len(b); i++ {
		switch c := b[i]; {
		case 'a' <= c && c <= 'f':
			b[i] = c - 'a' + 'A'
		case 'A' <= c && c <= 'F':
			b[i] = c - 'A' + 'a'
		}
	}
	return string(b)
}

// TestDigestMatchesAPITypes recomputes every digest with go-ethereum's
// independent EIP-712 encoder, for both versions of the domain.
func TestDigestMatchesAPITypes(t *testing.T) {
	t.Parallel()
	other, err := agentauth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		agent      common.Address
		method, pq string
		body       []byte
		nonce      [32]byte
		exp        time.Time
	}{
		{"simple", agentauth.Address(testKey(t)), "GET", "/v1/agent/balance", nil, testNonce(0), t0},
		{"body and query", agentauth.Address(other), "POST", "/v1/agent/spends?x=1&y=%20", []byte(`{"a":1}`), testNonce(0x80), t0.Add(time.Minute)},
		{"zero values", common.Address{}, "", "", []byte{}, [32]byte{}, time.Unix(0, 0)},
		{"unicode path", common.HexToAddress("0xffffffffffffffffffffffffffffffffffffffff"), "PATCH", "/v1/é/☃", bytes.Repeat([]byte{0xab}, 5000), testNonce(0xf0), time.Unix(1<<62, 0)},
	}
	domains := []struct {
		name   string
		dom    agentauth.Domain
		fields []apitypes.Type
		td     apitypes.TypedDataDomain
	}{
		{"v1", agentauth.UnboundDomain(), []apitypes.Type{{Name: "name", Type: "string"}, {Name: "version", Type: "string"}},
			apitypes.TypedDataDomain{Name: "Purser", Version: "1"}},
		{"v2", testDomain, []apitypes.Type{{Name: "name", Type: "string"}, {Name: "version", Type: "string"}, {Name: "salt", Type: "bytes32"}},
			apitypes.TypedDataDomain{Name: "Purser", Version: "2", Salt: testDomain.DeploymentHex()}},
	}
	for _, dc := range domains {
		for _, tc := range tests {
			t.Run(dc.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				bodyHash := crypto.Keccak256Hash(tc.body)
				td := apitypes.TypedData{
					Types: apitypes.Types{
						"EIP712Domain": dc.fields,
						"Request": {
							{Name: "agent", Type: "address"},
							{Name: "method", Type: "string"},
							{Name: "path", Type: "string"},
							{Name: "bodyHash", Type: "bytes32"},
							{Name: "nonce", Type: "bytes32"},
							{Name: "expires", Type: "uint64"},
						},
					},
					PrimaryType: "Request",
					Domain:      dc.td,
					Message: apitypes.TypedDataMessage{
						"agent":    tc.agent.Hex(),
						"method":   tc.method,
						"path":     tc.pq,
						"bodyHash": bodyHash[:],
						"nonce":    tc.nonce[:],
						"expires":  new(big.Int).SetInt64(tc.exp.Unix()),
					},
				}
				want, _, err := apitypes.TypedDataAndHash(td)
				if err != nil {
					t.Fatal(err)
				}
				got := agentauth.Digest(dc.dom, tc.agent, tc.method, tc.pq, bodyHash, tc.nonce, tc.exp)
				if !bytes.Equal(got[:], want) {
					t.Fatalf("Digest = %x, apitypes = %x", got, want)
				}
				// And piecewise, so a mismatch says which half is wrong.
				ds, err := td.HashStruct("EIP712Domain", td.Domain.Map())
				if err != nil {
					t.Fatal(err)
				}
				if sep := dc.dom.Separator(); !bytes.Equal(sep[:], ds) {
					t.Fatalf("domain separator %x, apitypes %x", sep, ds)
				}
				sh, err := td.HashStruct("Request", td.Message)
				if err != nil {
					t.Fatal(err)
				}
				if recomposed := crypto.Keccak256([]byte{0x19, 0x01}, ds, sh); !bytes.Equal(recomposed, want) {
					t.Fatalf("apitypes pieces disagree with its own digest")
				}
			})
		}
	}
}

// TestDomainBinding: a signature is valid in its own domain only: not
// under another deployment's id, and not as a version 1 signature (nor
// the reverse).
func TestDomainBinding(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	other := agentauth.DeploymentDomain([32]byte{0xd0, 0x02})
	body := []byte(`{"amount":"1"}`)
	for _, signIn := range []agentauth.Domain{testDomain, other, agentauth.UnboundDomain()} {
		s := mustSignIn(t, key, signIn, "POST", "/v1/agent/spends", body, testNonce(6), t0.Add(time.Minute))
		for _, verifyIn := range []agentauth.Domain{testDomain, other, agentauth.UnboundDomain(), {}} {
			err := s.Verify(verifyIn, "POST", "/v1/agent/spends", body, t0)
			same := signIn == verifyIn
			if (err == nil) != same || (!same && codeOf(err) != agentauth.CodeSignatureInvalid) {
				t.Errorf("signed in v%d %s, verified in v%d %s: %v", signIn.Version(), signIn.DeploymentHex(), verifyIn.Version(), verifyIn.DeploymentHex(), err)
			}
		}
	}
	if _, err := agentauth.Sign(key, agentauth.Domain{}, "GET", "/", nil, testNonce(0), t0); err == nil {
		t.Error("signing in the zero domain succeeded")
	}
}

func TestParseDeployment(t *testing.T) {
	t.Parallel()
	id, err := agentauth.ParseDeployment(testDomain.DeploymentHex())
	if err != nil || id != testDeployment {
		t.Fatalf("round trip: %x %v", id, err)
	}
	for _, bad := range []string{"", "0x", "0x" + strings.Repeat("0", 64), "0x" + strings.Repeat("a", 63), strings.Repeat("a", 66), "0x" + strings.Repeat("g", 64)} {
		if _, err := agentauth.ParseDeployment(bad); err == nil {
			t.Errorf("ParseDeployment(%q) succeeded", bad)
		}
	}
	if agentauth.UnboundDomain().DeploymentHex() != "" || agentauth.UnboundDomain().Version() != 1 || testDomain.Version() != 2 {
		t.Error("domain accessors")
	}
}

func TestKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, err := agentauth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "agent.key")
	if err := agentauth.WriteKeyFile(path, key); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("mode = %o, want 600", perm)
	}
	raw, _ := os.ReadFile(path)
	if len(raw) != 67 || !bytes.HasPrefix(raw, []byte("0x")) || raw[66] != '\n' {
		t.Fatalf("file layout %q", raw)
	}
	got, err := agentauth.ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if agentauth.Address(got) != agentauth.Address(key) || !got.Equal(key) {
		t.Fatal("read key differs")
	}

	// Never overwrite an identity key.
	other, _ := agentauth.GenerateKey()
	if err := agentauth.WriteKeyFile(path, other); !errors.Is(err, os.ErrExist) {
		t.Fatalf("overwrite: %v, want ErrExist", err)
	}
	if again, _ := agentauth.ReadKeyFile(path); again == nil || !again.Equal(key) {
		t.Fatal("key file changed by refused overwrite")
	}
	if err := agentauth.WriteKeyFile(filepath.Join(dir, "nil.key"), nil); err == nil {
		t.Fatal("nil key written")
	}
}

// TestKeyFileShare: a 2of2 agent's key file keeps the identity key on its
// first line (identity-only readers keep working) and adds the share; the
// write is atomic and never replaces another agent's key.
func TestKeyFileShare(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, _ := agentauth.GenerateKey()
	share := bytes.Repeat([]byte{0xA5, 0x5A, 0x01}, 1500) // the size of a real agent share
	path := filepath.Join(dir, "agent.key")
	// Adding a share to an identity-only file (what agent create does after key generation).
	if err := agentauth.WriteKeyFile(path, key); err != nil {
		t.Fatal(err)
	}
	if err := agentauth.WriteKeyFileShare(path, key, share); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("mode = %o, want 600", perm)
	}
	raw, _ := os.ReadFile(path)
	if !bytes.HasPrefix(raw, []byte("0x")) || raw[66] != '\n' || !bytes.HasPrefix(raw[67:], []byte("cosign-share: ")) {
		t.Fatalf("file layout %q...", raw[:90])
	}
	got, gotShare, err := agentauth.ReadKeyFileShare(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(key) || !bytes.Equal(gotShare, share) {
		t.Fatal("round trip differs")
	}
	idOnly, err := agentauth.ReadKeyFile(path)
	if err != nil || !idOnly.Equal(key) {
		t.Fatalf("identity-only reader: %v", err)
	}
	// An identity-only file has no share.
	plain := filepath.Join(dir, "plain.key")
	if err := agentauth.WriteKeyFile(plain, key); err != nil {
		t.Fatal(err)
	}
	if k, s, err := agentauth.ReadKeyFileShare(plain); err != nil || s != nil || !k.Equal(key) {
		t.Fatalf("identity-only file: share %d bytes, %v", len(s), err)
	}
	// A new file, straight away.
	fresh := filepath.Join(dir, "fresh.key")
	if err := agentauth.WriteKeyFileShare(fresh, key, share); err != nil {
		t.Fatal(err)
	}
	// Never replace another agent's key, nor a file that is no key file.
	other, _ := agentauth.GenerateKey()
	if err := agentauth.WriteKeyFileShare(path, other, share); !errors.Is(err, os.ErrExist) {
		t.Fatalf("other identity: %v, want ErrExist", err)
	}
	notKey := filepath.Join(dir, "notes.txt")
	os.WriteFile(notKey, []byte("my notes"), 0o600)
	if err := agentauth.WriteKeyFileShare(notKey, key, share); err == nil {
		t.Fatal("replaced a file that is no key file")
	}
	if b, _ := os.ReadFile(notKey); string(b) != "my notes" {
		t.Fatal("notes changed")
	}
	if err := agentauth.WriteKeyFileShare(path, key, nil); err == nil {
		t.Fatal("empty share written")
	}
	// No temporary file is left behind.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".purser-key-") {
			t.Fatalf("temporary file %s left behind", e.Name())
		}
	}
	// Errors about a broken share line never quote it.
	bad := filepath.Join(dir, "bad.key")
	secret := base64.StdEncoding.EncodeToString(share)
	os.WriteFile(bad, []byte("0x"+testKeyHex+"\ncosign-share: "+secret+"!!\n"), 0o600)
	if _, _, err := agentauth.ReadKeyFileShare(bad); err == nil || strings.Contains(err.Error(), secret[:16]) {
		t.Fatalf("bad share line: %v", err)
	}
}

func TestReadKeyFile(t *testing.T) {
	t.Parallel()
	want := agentauth.Address(testKey(t))
	tests := []struct {
		name, content string
		ok            bool
	}{
		{"canonical", "0x" + testKeyHex + "\n", true},
		{"no 0x", testKeyHex, true},
		{"whitespace", "\n\t  0x" + testKeyHex + " \r\n\n", true},
		{"upper hex", "0x" + strings.ToUpper(testKeyHex), true},
		{"empty", "", false},
		{"short", "0x" + testKeyHex[:62], false},
		{"long", "0x" + testKeyHex + "00", false},
		{"not hex", "0x" + testKeyHex[:63] + "g", false},
		{"zero key", "0x" + strings.Repeat("0", 64), false},
		{"above n", "0x" + strings.Repeat("f", 64), false},
		{"two keys", "0x" + testKeyHex + "\n0x" + testKeyHex, false},
		{"huge", strings.Repeat(" ", 17000) + testKeyHex, false},
		{"share line", "0x" + testKeyHex + "\ncosign-share: AAEC\n", true},
		{"later field", "0x" + testKeyHex + "\nsome-field: x\n", true},
		{"garbage line", "0x" + testKeyHex + "\nnot a field\n", false},
		{"share not base64", "0x" + testKeyHex + "\ncosign-share: ***\n", false},
		{"two shares", "0x" + testKeyHex + "\ncosign-share: AAEC\ncosign-share: AAEC\n", false},
	}
	dir := t.TempDir()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			key, err := agentauth.ReadKeyFile(path)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				if agentauth.Address(key) != want {
					t.Fatal("wrong key")
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), testKeyHex[:16]) {
				t.Fatalf("error leaks key material: %v", err)
			}
		})
	}
	if _, err := agentauth.ReadKeyFile(filepath.Join(dir, "absent")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("absent: %v", err)
	}
}

func TestNewNonce(t *testing.T) {
	t.Parallel()
	a, err := agentauth.NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	b, err := agentauth.NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	if a == b || a == [32]byte{} {
		t.Fatal("nonces not random")
	}
}

func TestErrorInterface(t *testing.T) {
	t.Parallel()
	_, err := agentauth.Parse(http.Header{})
	var e *agentauth.Error
	if !errors.As(err, &e) {
		t.Fatalf("%T is not *Error", err)
	}
	if e.Code() != agentauth.CodeAuthMissing || e.Message() == "" || !strings.HasPrefix(e.Error(), "auth_missing: ") {
		t.Fatalf("error = %q / %q", e.Code(), e.Message())
	}
}

func BenchmarkSign(b *testing.B) {
	key := testKey(b)
	body := []byte(`{"amount":"0.05","asset":"USDC","network":"base","merchant":"api.example.com"}`)
	exp := t0.Add(time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := agentauth.Sign(key, testDomain, "POST", "/v1/agent/spends", body, testNonce(1), exp); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	key := testKey(b)
	body := []byte(`{"amount":"0.05","asset":"USDC","network":"base","merchant":"api.example.com"}`)
	s := mustSign(b, key, "POST", "/v1/agent/spends", body, testNonce(1), t0.Add(time.Minute))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Verify(testDomain, "POST", "/v1/agent/spends", body, t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecover is the floor Verify is measured against: public-key
// recovery alone.
func BenchmarkRecover(b *testing.B) {
	key := testKey(b)
	s := mustSign(b, key, "GET", "/", nil, testNonce(1), t0.Add(time.Minute))
	d := agentauth.Digest(testDomain, s.Agent, "GET", "/", crypto.Keccak256Hash(nil), s.Nonce, s.Expires)
	sig := s.Signature
	sig[64] -= 27
	b.ReportAllocs()
	for b.Loop() {
		if _, err := crypto.Ecrecover(d[:], sig[:]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	h := validHeader(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := agentauth.Parse(h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDigest(b *testing.B) {
	agent := agentauth.Address(testKey(b))
	bh := crypto.Keccak256Hash([]byte("{}"))
	b.ReportAllocs()
	for b.Loop() {
		agentauth.Digest(testDomain, agent, "POST", "/v1/agent/spends", bh, testNonce(1), t0)
	}
}
