package cosign

import (
	"context"
	"errors"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/taurusgroup/multi-party-sig/pkg/ecdsa"
	"github.com/taurusgroup/multi-party-sig/pkg/protocol"
	"github.com/taurusgroup/multi-party-sig/protocols/doerner"
)

// Signature is an Ethereum signature r ‖ s ‖ v with v = 27 or 28 and s in the
// lower half of the group order: what EIP-3009 and ecrecover in contracts
// take.
type Signature [65]byte

// RecoveryForm returns r ‖ s ‖ v with v = 0 or 1, the form go-ethereum's
// crypto.Ecrecover and crypto.SigToPub take.
func (s Signature) RecoveryForm() []byte {
	out := append([]byte(nil), s[:]...)
	out[64] -= 27
	return out
}

var halfN = new(big.Int).Rsh(crypto.S256().Params().N, 1)

// SignSession runs the signing protocol over one 32-byte digest on one side.
// Messages: agent (its nonce commitment and OT messages), server (its part,
// computed over the server's digest), agent (the finished signature). The
// agent learns the signature first, when it produces the third message; the
// server learns it when it consumes that message and checks it.
type SignSession struct {
	e      *engine
	share  *Share
	digest [32]byte
}

// NewAgentSigner starts the agent's side of a signing over b.Digest. Its first
// message is ready at once (Start): it does not depend on the digest.
func NewAgentSigner(share *Share, b SignBinding) (*SignSession, error) {
	if share == nil || share.role != RoleAgent {
		return nil, ErrWrongRole
	}
	return newSigner(share, b)
}

// NewServerSigner starts the server's side. b.Digest must be the digest the
// server computed itself for the authorized spend. The session id is claimed
// in the ledger first: a second session for the same binding is refused
// before anything runs.
func NewServerSigner(ctx context.Context, share *Share, b SignBinding, ledger SessionLedger) (*SignSession, error) {
	if share == nil || share.role != RoleServer {
		return nil, ErrWrongRole
	}
	if ledger == nil {
		return nil, ErrNoLedger
	}
	if err := ledger.Claim(ctx, b.SessionID(share.pub[:])); err != nil {
		if errors.Is(err, ErrSessionUsed) {
			return nil, ErrSessionUsed
		}
		return nil, fmt.Errorf("cosign: session ledger: %w", err)
	}
	return newSigner(share, b)
}

func newSigner(share *Share, b SignBinding) (*SignSession, error) {
	sid := b.SessionID(share.pub[:])
	self, other := partyIDs(share.role)
	digest := b.Digest[:]
	var start protocol.StartFunc
	if share.role == RoleAgent {
		start = doerner.SignReceiver(share.recv, self, other, digest, nil)
	} else {
		start = doerner.SignSender(share.send, self, other, digest, nil)
	}
	e, err := newEngine(share.role, kindSign, sid, share.chainKey(), start)
	if err != nil {
		return nil, err
	}
	return &SignSession{e: e, share: share, digest: b.Digest}, nil
}

// Start returns the agent's first message. Only the agent calls it, once.
func (s *SignSession) Start() ([]byte, error) { return s.e.start() }

// Handle consumes the peer's next message and returns the reply, or nil when
// this side has nothing more to send.
func (s *SignSession) Handle(in []byte) ([]byte, error) {
	out, err := s.e.handle(in)
	if err != nil {
		return nil, err
	}
	if s.e.done {
		if _, err := s.Signature(); err != nil {
			return nil, s.e.fail(err)
		}
	}
	return out, nil
}

// Done reports whether this side holds the finished, checked signature.
func (s *SignSession) Done() bool { return s.e.done && !s.e.failed }

// Signature returns the signature once Done, checked here independently of
// the library: s is normalised to the lower half, v is 27 or 28, and it
// recovers (go-ethereum) to the wallet's address over this side's digest.
func (s *SignSession) Signature() (Signature, error) {
	res, err := s.e.finished()
	if err != nil {
		return Signature{}, err
	}
	sig, ok := res.(*ecdsa.Signature)
	if !ok || sig == nil {
		return Signature{}, errNoResult
	}
	return ethSignature(*sig, s.digest, s.share)
}

func ethSignature(sig ecdsa.Signature, digest [32]byte, share *Share) (Signature, error) {
	rb, err := sig.R.MarshalBinary()
	if err != nil {
		return Signature{}, ErrBadSignature
	}
	cp := ecdsa.Signature{R: group.NewPoint(), S: group.NewScalar().Set(sig.S)}
	if err := cp.R.UnmarshalBinary(rb); err != nil {
		return Signature{}, ErrBadSignature
	}
	raw, err := cp.SigEthereum() // r ‖ low s ‖ v∈{0,1}; it mutates cp, hence the copy
	if err != nil || len(raw) != 65 || raw[64] > 1 {
		return Signature{}, ErrBadSignature
	}
	if new(big.Int).SetBytes(raw[32:64]).Cmp(halfN) > 0 {
		return Signature{}, ErrBadSignature
	}
	pub, err := crypto.Ecrecover(digest[:], raw)
	if err != nil {
		return Signature{}, ErrBadSignature
	}
	pk, err := crypto.UnmarshalPubkey(pub)
	if err != nil || crypto.PubkeyToAddress(*pk) != share.Address() {
		return Signature{}, ErrBadSignature
	}
	var out Signature
	copy(out[:], raw)
	out[64] += 27
	return out, nil
}
