package cosign

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"unsafe"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/taurusgroup/multi-party-sig/pkg/math/curve"
	"github.com/taurusgroup/multi-party-sig/protocols/doerner"
)

const (
	shareMagic    = "PCSH"
	shareVersion  = 1
	redacted      = "[redacted]"
	chainKeySize  = 32
	pubKeySize    = 33
	scalarSize    = 32
	checksumSize  = 32
	maxSetupBytes = 1 << 16
)

var group = curve.Secp256k1{}

// Share is one party's half of a co-signed wallet key: the library's key
// generation output (an additive share of the secret, the OT setup used by
// signing, the shared chain key) and the public key. It is a secret: it never
// prints, and its only serialisation is MarshalBinary, meant for an encrypted
// store (the server's envelope encryption, the agent's 0600 key file).
type Share struct {
	role Role
	pub  [pubKeySize]byte
	recv *doerner.ConfigReceiver // agent
	send *doerner.ConfigSender   // server
}

// Role says which side this share belongs to.
func (s *Share) Role() Role { return s.role }

// PublicKey is the wallet's compressed secp256k1 public key (33 bytes).
func (s *Share) PublicKey() []byte { return append([]byte(nil), s.pub[:]...) }

// Address is the wallet's Ethereum address.
func (s *Share) Address() common.Address {
	pk, err := crypto.DecompressPubkey(s.pub[:])
	if err != nil { // a Share is only built from a validated point
		panic("cosign: share holds an invalid public key")
	}
	return crypto.PubkeyToAddress(*pk)
}

func (s *Share) secret() curve.Scalar {
	if s.role == RoleAgent {
		return s.recv.SecretShare
	}
	return s.send.SecretShare
}

func (s *Share) chainKey() []byte {
	if s.role == RoleAgent {
		return s.recv.ChainKey
	}
	return s.send.ChainKey
}

func (s *Share) setup() any {
	if s.role == RoleAgent {
		return s.recv.Setup
	}
	return s.send.Setup
}

func (s *Share) String() string                    { return redacted }
func (s *Share) GoString() string                  { return redacted }
func (s *Share) Format(f fmt.State, _ rune)        { _, _ = io.WriteString(f, redacted) }
func (s *Share) LogValue() slog.Value              { return slog.StringValue(redacted) }
func (s *Share) MarshalText() ([]byte, error)      { return []byte(redacted), nil }
func (s *Share) MarshalJSON() ([]byte, error)      { return []byte(`"` + redacted + `"`), nil }
func (s *Share) publicPoint() (curve.Point, error) { return pointFrom(s.pub[:]) }

func pointFrom(b []byte) (curve.Point, error) {
	p := group.NewPoint()
	if err := p.UnmarshalBinary(b); err != nil || p.IsIdentity() {
		return nil, ErrBadShare
	}
	return p, nil
}

func newShareFromReceiver(c *doerner.ConfigReceiver) (*Share, error) {
	s := &Share{role: RoleAgent, recv: c}
	return s, s.fill(c.Public, c.SecretShare, c.ChainKey, c.Setup)
}

func newShareFromSender(c *doerner.ConfigSender) (*Share, error) {
	s := &Share{role: RoleServer, send: c}
	return s, s.fill(c.Public, c.SecretShare, c.ChainKey, c.Setup)
}

func (s *Share) fill(pub curve.Point, secret curve.Scalar, chainKey []byte, setup any) error {
	if pub == nil || pub.IsIdentity() || secret == nil || secret.IsZero() || len(chainKey) != chainKeySize || reflect.ValueOf(setup).IsNil() {
		return ErrBadShare
	}
	b, err := pub.MarshalBinary()
	if err != nil || len(b) != pubKeySize {
		return ErrBadShare
	}
	copy(s.pub[:], b)
	return nil
}

// The library keeps the OT setup in structs of unexported fixed-size byte
// arrays and offers no serialisation for them (v0.7.0-alpha). We copy their
// bytes field by field, and refuse to run if the layout is not the one this
// code was written against: a fingerprint of the field names, types and sizes
// is checked at start-up and stored in every share.
var (
	receiverSetupType = reflect.TypeOf(doerner.ConfigReceiver{}.Setup).Elem()
	senderSetupType   = reflect.TypeOf(doerner.ConfigSender{}.Setup).Elem()
	receiverLayout    = layoutOf(receiverSetupType)
	senderLayout      = layoutOf(senderSetupType)
)

// layoutOf fingerprints a struct made only of (nested) byte arrays, and
// panics on anything else: copying raw bytes is only sound for those.
func layoutOf(t reflect.Type) [8]byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s.%s:%d;", t.PkgPath(), t.Name(), t.Size())
	for i := range t.NumField() {
		f := t.Field(i)
		ft := f.Type
		for ft.Kind() == reflect.Array {
			ft = ft.Elem()
		}
		if ft.Kind() != reflect.Uint8 {
			panic("cosign: library OT setup layout changed: field " + f.Name + " is not a byte array")
		}
		fmt.Fprintf(&b, "%s:%s:%d:%d;", f.Name, f.Type, f.Offset, f.Type.Size())
	}
	sum := sha256.Sum256([]byte(b.String()))
	var fp [8]byte
	copy(fp[:], sum[:])
	return fp
}

func setupBytes(setup any) []byte {
	v := reflect.ValueOf(setup).Elem()
	var out []byte
	for i := range v.NumField() {
		f := v.Field(i)
		out = append(out, unsafe.Slice((*byte)(unsafe.Pointer(f.UnsafeAddr())), f.Type().Size())...)
	}
	return out
}

func setupFromBytes(t reflect.Type, b []byte) (reflect.Value, error) {
	p := reflect.New(t)
	v := p.Elem()
	off := 0
	for i := range v.NumField() {
		f := v.Field(i)
		n := int(f.Type().Size())
		if off+n > len(b) {
			return reflect.Value{}, ErrBadShare
		}
		copy(unsafe.Slice((*byte)(unsafe.Pointer(f.UnsafeAddr())), n), b[off:off+n])
		off += n
	}
	if off != len(b) {
		return reflect.Value{}, ErrBadShare
	}
	return p, nil
}

// MarshalBinary serialises the share: magic, version, role, library layout
// fingerprint, public key, chain key, secret share, OT setup, and a SHA-256
// checksum of all that (corruption detection; confidentiality and integrity
// against an attacker are the storage's job).
func (s *Share) MarshalBinary() ([]byte, error) {
	sec, err := s.secret().MarshalBinary()
	if err != nil || len(sec) != scalarSize {
		return nil, ErrBadShare
	}
	setup := setupBytes(s.setup())
	layout := receiverLayout
	if s.role == RoleServer {
		layout = senderLayout
	}
	out := make([]byte, 0, 4+2+8+pubKeySize+chainKeySize+scalarSize+4+len(setup)+checksumSize)
	out = append(out, shareMagic...)
	out = append(out, shareVersion, byte(s.role))
	out = append(out, layout[:]...)
	out = append(out, s.pub[:]...)
	out = append(out, s.chainKey()...)
	out = append(out, sec...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(setup)))
	out = append(out, setup...)
	sum := sha256.Sum256(out)
	return append(out, sum[:]...), nil
}

// UnmarshalShare reads a share written by MarshalBinary. Errors say what is
// wrong with the encoding, never what it holds.
func UnmarshalShare(b []byte) (*Share, error) {
	const fixed = 4 + 2 + 8 + pubKeySize + chainKeySize + scalarSize + 4
	if len(b) < fixed+checksumSize || len(b) > fixed+maxSetupBytes+checksumSize {
		return nil, fmt.Errorf("%w: wrong length", ErrBadShare)
	}
	body, sum := b[:len(b)-checksumSize], b[len(b)-checksumSize:]
	want := sha256.Sum256(body)
	if subtle.ConstantTimeCompare(want[:], sum) != 1 {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrBadShare)
	}
	if string(body[:4]) != shareMagic {
		return nil, fmt.Errorf("%w: not a co-signing share", ErrBadShare)
	}
	if body[4] != shareVersion {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrBadShare, body[4])
	}
	role := Role(body[5])
	if !role.valid() {
		return nil, fmt.Errorf("%w: unknown role", ErrBadShare)
	}
	layout, setupType := receiverLayout, receiverSetupType
	if role == RoleServer {
		layout, setupType = senderLayout, senderSetupType
	}
	if subtle.ConstantTimeCompare(body[6:14], layout[:]) != 1 {
		return nil, fmt.Errorf("%w: written by an incompatible library version", ErrBadShare)
	}
	rest := body[14:]
	pubB, rest := rest[:pubKeySize], rest[pubKeySize:]
	chain, rest := append([]byte(nil), rest[:chainKeySize]...), rest[chainKeySize:]
	secB, rest := rest[:scalarSize], rest[scalarSize:]
	n, rest := binary.BigEndian.Uint32(rest[:4]), rest[4:]
	if int(n) != len(rest) || uintptr(n) != setupType.Size() {
		return nil, fmt.Errorf("%w: wrong setup length", ErrBadShare)
	}
	pub, err := pointFrom(pubB)
	if err != nil {
		return nil, fmt.Errorf("%w: bad public key", ErrBadShare)
	}
	sec := group.NewScalar()
	if err := sec.UnmarshalBinary(secB); err != nil || sec.IsZero() {
		return nil, fmt.Errorf("%w: bad secret share", ErrBadShare)
	}
	setup, err := setupFromBytes(setupType, rest)
	if err != nil {
		return nil, fmt.Errorf("%w: bad setup", ErrBadShare)
	}
	if role == RoleAgent {
		c := doerner.EmptyConfigReceiver(group)
		c.Public, c.SecretShare, c.ChainKey = pub, sec, chain
		reflect.ValueOf(&c.Setup).Elem().Set(setup)
		return newShareFromReceiver(c)
	}
	c := doerner.EmptyConfigSender(group)
	c.Public, c.SecretShare, c.ChainKey = pub, sec, chain
	reflect.ValueOf(&c.Setup).Elem().Set(setup)
	return newShareFromSender(c)
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
