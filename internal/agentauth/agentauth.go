package agentauth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

const (
	// MaxTTL is how far ahead of now a signature may expire (plus
	// ClockSkew); it bounds how long a leaked signed request stays usable
	// and how long the server must remember nonces.
	MaxTTL = 5 * time.Minute
	// ClockSkew tolerates agent clocks running ahead of the server's.
	ClockSkew = 30 * time.Second
)

const requestType = "Request(address agent,string method,string path,bytes32 bodyHash,bytes32 nonce,uint64 expires)"

// Computed once: the constant part of every struct hash.
var requestTypeHash = crypto.Keccak256Hash([]byte(requestType))

// secp256k1halfN is n/2; signatures with s above it are the malleated twin
// of a valid low-s signature and are refused so each request has exactly
// one valid signature per key.
var secp256k1halfN = common.FromHex("0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0")

// Signed is the authentication carried by one request.
type Signed struct {
	Agent     common.Address
	Nonce     [32]byte
	Expires   time.Time // whole seconds; that is all the header carries
	Signature [65]byte  // r ‖ s ‖ v, v as sent (27/28 or 0/1)
}

// NewNonce returns 32 random bytes for Purser-Nonce.
func NewNonce() ([32]byte, error) {
	var n [32]byte
	_, err := rand.Read(n[:])
	return n, err
}

// Digest returns the EIP-712 digest the agent signs:
// keccak256(0x19 0x01 ‖ domain separator ‖ hashStruct(Request)).
// expires is encoded as its unix seconds; callers keep it non-negative.
func Digest(dom Domain, agent common.Address, method, pathQuery string, bodyHash [32]byte, nonce [32]byte, expires time.Time) [32]byte {
	d := getDigester()
	defer d.put()
	return d.digest(dom, agent, method, pathQuery, bodyHash, nonce, expires)
}

// digester holds a Keccak state and scratch space, pooled so hashing a
// request allocates nothing: hashing through the KeccakState interface
// would otherwise move every output buffer and string copy to the heap.
type digester struct {
	k   crypto.KeccakState
	out [32]byte
	enc [7 * 32]byte
	str []byte
	sig [65]byte
	dig [32]byte
}

var digesters = sync.Pool{New: func() any { return &digester{k: crypto.NewKeccakState()} }}

func getDigester() *digester { return digesters.Get().(*digester) }

func (d *digester) put() {
	if cap(d.str) > 64<<10 {
		d.str = nil // don't pin one huge path's buffer forever
	}
	digesters.Put(d)
}

func (d *digester) hash(p []byte) [32]byte {
	d.k.Reset()
	d.k.Write(p)
	d.k.Read(d.out[:])
	return d.out
}

func (d *digester) hashString(s string) [32]byte {
	d.str = append(d.str[:0], s...)
	return d.hash(d.str)
}

func (d *digester) digest(dom Domain, agent common.Address, method, pathQuery string, bodyHash, nonce [32]byte, expires time.Time) [32]byte {
	// Every field of Request is a static 32-byte word once strings are
	// hashed, so hashStruct is keccak over a fixed 7-word buffer.
	e := &d.enc
	copy(e[0:32], requestTypeHash[:])
	clear(e[32 : 32+12])
	copy(e[32+12:64], agent[:])
	mh := d.hashString(method)
	copy(e[64:96], mh[:])
	ph := d.hashString(pathQuery)
	copy(e[96:128], ph[:])
	copy(e[128:160], bodyHash[:])
	copy(e[160:192], nonce[:])
	clear(e[192:216])
	binary.BigEndian.PutUint64(e[216:224], uint64(expires.Unix()))
	structHash := d.hash(e[:])

	// 0x19 0x01 ‖ domainSeparator ‖ structHash, reusing the buffer.
	e[0], e[1] = 0x19, 0x01
	copy(e[2:34], dom.separator[:])
	copy(e[34:66], structHash[:])
	return d.hash(e[:66])
}

// Sign signs a request in domain dom. method and pathQuery must be exactly
// what goes on the wire (see the package doc); body is the exact body (nil
// for none).
func Sign(key *ecdsa.PrivateKey, dom Domain, method, pathQuery string, body []byte, nonce [32]byte, expires time.Time) (Signed, error) {
	if key == nil {
		return Signed{}, errors.New("agentauth: nil key")
	}
	s, _, err := signImpl(Address(key), func(d [32]byte) ([]byte, error) { return crypto.Sign(d[:], key) }, dom, method, pathQuery, body, nonce, expires)
	return s, err
}

// SignWith is Sign with a key held elsewhere (an OS keychain, an HSM):
// sign is handed the EIP-712 digest and returns r ‖ s ‖ v (v 0/1 or
// 27/28). The signature is checked to recover to agent before it is used,
// so a signer holding another key fails here and not at the server.
func SignWith(agent common.Address, sign func(digest [32]byte) ([]byte, error), dom Domain, method, pathQuery string, body []byte, nonce [32]byte, expires time.Time) (Signed, error) {
	s, dig, err := signImpl(agent, sign, dom, method, pathQuery, body, nonce, expires)
	if err != nil {
		return Signed{}, err
	}
	sig := s.Signature
	sig[64] -= 27
	pub, err := crypto.SigToPub(dig[:], sig[:])
	if err != nil || crypto.PubkeyToAddress(*pub) != agent {
		return Signed{}, errors.New("agentauth: the signer's signature does not recover to its address")
	}
	return s, nil
}

func signImpl(agent common.Address, signFn func([32]byte) ([]byte, error), dom Domain, method, pathQuery string, body []byte, nonce [32]byte, expires time.Time) (Signed, [32]byte, error) {
	var dig [32]byte
	if !dom.valid() {
		return Signed{}, dig, errors.New("agentauth: no signing domain (fetch the deployment id first)")
	}
	if expires.Unix() < 0 {
		return Signed{}, dig, errors.New("agentauth: expires before 1970")
	}
	s := Signed{
		Agent:   agent,
		Nonce:   nonce,
		Expires: time.Unix(expires.Unix(), 0),
	}
	d := getDigester()
	dig = d.digest(dom, s.Agent, method, pathQuery, d.hash(body), nonce, s.Expires)
	d.put()
	sig, err := signFn(dig)
	if err != nil {
		return Signed{}, dig, err
	}
	if len(sig) != 65 {
		return Signed{}, dig, fmt.Errorf("agentauth: signature of %d bytes, want 65 (r ‖ s ‖ v)", len(sig))
	}
	copy(s.Signature[:], sig)
	switch s.Signature[64] {
	case 0, 1:
		s.Signature[64] += 27 // Ethereum wallet convention; Verify accepts both
	case 27, 28:
	default:
		return Signed{}, dig, fmt.Errorf("agentauth: signature v = %d, want 0/1 or 27/28", s.Signature[64])
	}
	return s, dig, nil
}

// Verify checks that s is unexpired at now, not too far ahead, and a
// signature by s.Agent in domain dom over this method, pathQuery and body.
// It does not check that the nonce is unused. Errors are *Error.
func (s Signed) Verify(dom Domain, method, pathQuery string, body []byte, now time.Time) error {
	if !dom.valid() {
		return errSigInvalid
	}
	// The window first: it is cheap and needs no key recovery.
	if now.After(s.Expires) {
		return newError(CodeSignatureExpired, "Purser-Expires is in the past")
	}
	if s.Expires.After(now.Add(MaxTTL + ClockSkew)) {
		return newError(CodeSignatureExpiryTooFar, "Purser-Expires is more than 5 minutes ahead")
	}

	v := s.Signature[64]
	switch v {
	case 0, 1:
	case 27, 28:
		v -= 27
	default:
		return errSigInvalid
	}
	sv := s.Signature[32:64]
	if bytes.Compare(sv, secp256k1halfN) > 0 || isZero(sv) {
		return errSigInvalid
	}
	d := getDigester()
	defer d.put()
	// The recovery inputs live in the pooled digester: locals handed to cgo
	// would each be moved to the heap.
	d.sig = s.Signature
	d.sig[64] = v
	d.dig = d.digest(dom, s.Agent, method, pathQuery, d.hash(body), s.Nonce, s.Expires)
	pub, err := crypto.Ecrecover(d.dig[:], d.sig[:])
	if err != nil || len(pub) != 65 {
		return errSigInvalid
	}
	// Address = last 20 bytes of keccak256 of the uncompressed point without
	// its 0x04 prefix; done on the raw bytes to skip building an ecdsa key.
	h := d.hash(pub[1:])
	if common.Address(h[12:]) != s.Agent {
		return errSigInvalid
	}
	return nil
}

// VerifyFor verifies s as the server of deployment domain dom (version 2)
// does, and returns the domain the signature was made in. A signature
// that fails there is tried as a version 1 (unbound) one, which is
// accepted only with acceptUnbound and otherwise answered
// signature_unbound, so that an old client learns what to change rather
// than seeing signature_invalid. A signature made for another deployment
// is signature_invalid.
func (s Signed) VerifyFor(dom Domain, acceptUnbound bool, method, pathQuery string, body []byte, now time.Time) (Domain, error) {
	err := s.Verify(dom, method, pathQuery, body, now)
	if err != errSigInvalid || dom.version != VersionBound {
		return dom, err
	}
	if s.Verify(unbound, method, pathQuery, body, now) != nil {
		return dom, errSigInvalid
	}
	if !acceptUnbound {
		return dom, errSigUnbound
	}
	return unbound, nil
}

var errSigUnbound = newError(CodeSignatureUnbound, "the request is signed in the version 1 EIP-712 domain, which binds no deployment; sign in version 2 with the deployment id from GET /v1/deployment")

var errSigInvalid = newError(CodeSignatureInvalid, "signature does not match the request, Purser-Agent or this deployment")

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
