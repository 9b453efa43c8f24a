package cosign

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// Frame layout (all integers big-endian):
//
//	magic "PCSM" | version | kind | seq | from role | session id (32) |
//	payload length (4) | payload | HMAC-SHA256 (32)
//
// The payload is the library's round message (CBOR). Everything the library
// would otherwise read from its own message header (session, sender, round)
// is set by this package from its own state, never taken from the wire.
const (
	frameMagic   = "PCSM"
	frameVersion = 1
	headerSize   = 4 + 1 + 1 + 1 + 1 + 32 + 4
	macSize      = 32
)

type kind uint8

const (
	kindKeygen  kind = 1
	kindRefresh kind = 2
	kindSign    kind = 3
)

// Largest payload each message may carry, by kind and sequence number: about
// 1.5 to 2 times what was measured (payloads measured: keygen 371, 5743,
// 3967, 3471, 7055 bytes; sign 64394, 208101, 79 bytes; the sizes do not
// vary between runs), so that a peer cannot make the other side parse
// megabytes. MaxMessageBytes bounds any message.
var maxPayload = map[kind][]int{
	kindKeygen:  {0, 1 << 10, 12 << 10, 8 << 10, 8 << 10, 16 << 10},
	kindRefresh: {0, 1 << 10, 12 << 10, 8 << 10, 8 << 10, 16 << 10},
	kindSign:    {0, 96 << 10, 320 << 10, 1 << 10},
}

// MaxMessageBytes is the largest message any session accepts (the server's
// signing answer, about 208 KB, is the largest message of all).
const MaxMessageBytes = headerSize + (320 << 10) + macSize

// rounds is the number of messages of each kind: the agent sends the odd
// ones, the server the even ones.
func (k kind) messages() int { return len(maxPayload[k]) - 1 }

// libRound maps a message's sequence number to the library's round number
// for it (keygen: 1,2,2,3,3; sign: 1,2,2).
func libRound(seq int) int { return seq/2 + 1 }

func senderOf(seq int) Role {
	if seq%2 == 1 {
		return RoleAgent
	}
	return RoleServer
}

type frame struct {
	kind    kind
	seq     int
	from    Role
	sid     SessionID
	payload []byte
}

func sealFrame(macKey []byte, f frame) []byte {
	out := make([]byte, 0, headerSize+len(f.payload)+macSize)
	out = append(out, frameMagic...)
	out = append(out, frameVersion, byte(f.kind), byte(f.seq), byte(f.from))
	out = append(out, f.sid[:]...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(f.payload)))
	out = append(out, f.payload...)
	m := hmac.New(sha256.New, macKey)
	m.Write(out)
	return m.Sum(out)
}

// openFrame checks a message against what the session expects next and
// returns its payload. The checks run from the cheapest to the MAC, and each
// failure names the class of problem only.
func openFrame(macKey []byte, b []byte, want frame) ([]byte, error) {
	if len(b) > MaxMessageBytes {
		return nil, ErrTooLarge
	}
	if len(b) < headerSize+macSize {
		return nil, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	if string(b[:4]) != frameMagic {
		return nil, fmt.Errorf("%w: bad magic", ErrMalformed)
	}
	if b[4] != frameVersion {
		return nil, fmt.Errorf("%w: unsupported version", ErrMalformed)
	}
	if kind(b[5]) != want.kind {
		return nil, fmt.Errorf("%w: another protocol", ErrWrongSession)
	}
	var sid SessionID
	copy(sid[:], b[8:40])
	if !hmac.Equal(sid[:], want.sid[:]) {
		return nil, ErrWrongSession
	}
	if int(b[6]) != want.seq || Role(b[7]) != want.from {
		return nil, ErrUnexpected
	}
	n := binary.BigEndian.Uint32(b[40:44])
	if int64(n) > int64(maxPayload[want.kind][want.seq]) {
		return nil, ErrTooLarge
	}
	if int64(len(b)) != int64(headerSize)+int64(n)+macSize {
		return nil, fmt.Errorf("%w: length mismatch", ErrMalformed)
	}
	m := hmac.New(sha256.New, macKey)
	m.Write(b[:len(b)-macSize])
	if !hmac.Equal(m.Sum(nil), b[len(b)-macSize:]) {
		return nil, ErrBadMAC
	}
	return b[headerSize : headerSize+int(n)], nil
}

// macKey derives a session's frame MAC key. For signing and refresh the link
// key is the chain key both shares hold (a joint random value from key
// generation that no one else has), so a message made without a share of
// this key is refused before the library parses it. Key generation has no
// shared secret yet: its MAC is only a checksum, and authenticating the peer
// is the transport's job (Purser's agent authentication).
func macKey(link []byte, sid SessionID, k kind) []byte {
	m := hmac.New(sha256.New, link)
	m.Write([]byte("purser/cosign/frame-mac/v1"))
	m.Write([]byte{byte(k)})
	m.Write(sid[:])
	return m.Sum(nil)
}
