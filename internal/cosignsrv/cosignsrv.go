// Package cosignsrv adapts the co-signing core (internal/cosign) to the
// pipeline's spend.CosignEngine: shares cross the boundary serialised,
// messages as opaque bytes, and errors as a static class of problem, so
// that the pipeline stays free of curve libraries and no error it logs or
// answers can carry key material.
package cosignsrv

import (
	"context"
	"errors"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/purserhq/purser/internal/cosign"
	"github.com/purserhq/purser/internal/spend"
)

// Engine implements spend.CosignEngine with internal/cosign.
type Engine struct{}

var _ spend.CosignEngine = Engine{}

// class is the static class of a cosign error, never a value.
func class(err error) error {
	for _, e := range []error{cosign.ErrMalformed, cosign.ErrTooLarge, cosign.ErrWrongSession, cosign.ErrUnexpected, cosign.ErrBadMAC,
		cosign.ErrProtocol, cosign.ErrFailed, cosign.ErrSessionUsed, cosign.ErrBadShare, cosign.ErrWrongRole, cosign.ErrBadSignature,
		cosign.ErrNotDone, cosign.ErrBadDigestSize} {
		if errors.Is(err, e) {
			return e
		}
	}
	return cosign.ErrProtocol
}

// NewKeygen implements spend.CosignEngine: the agent picks the session id
// (cosign.KeygenSessionID(agent id, random nonce)); key generation starts
// from no shared secret and both sides draw fresh randomness.
func (Engine) NewKeygen(m1 []byte) (spend.CosignKeygenSession, error) {
	sid, err := cosign.KeygenSessionIDOf(m1)
	if err != nil {
		return nil, class(err)
	}
	k, err := cosign.NewKeygen(cosign.RoleServer, sid)
	if err != nil {
		return nil, class(err)
	}
	return keygen{k}, nil
}

// NewRefresh implements spend.CosignEngine: a share refresh of the
// server's share, with the session id the agent picked
// (cosign.RefreshSessionID(agent id, public key, random nonce)). The new
// share keeps the public key (cosign checks it).
func (Engine) NewRefresh(share, m1 []byte) (spend.CosignKeygenSession, error) {
	s, err := cosign.UnmarshalShare(share)
	if err != nil {
		return nil, class(err)
	}
	sid, err := cosign.RefreshSessionIDOf(m1)
	if err != nil {
		return nil, class(err)
	}
	k, err := cosign.NewRefresh(s, sid)
	if err != nil {
		return nil, class(err)
	}
	return keygen{k}, nil
}

// RefreshSessionID implements spend.CosignEngine.
func (Engine) RefreshSessionID(m1 []byte) ([32]byte, error) {
	sid, err := cosign.RefreshSessionIDOf(m1)
	if err != nil {
		return [32]byte{}, class(err)
	}
	return sid, nil
}

// RefreshCheck implements spend.CosignEngine.
func (Engine) RefreshCheck(agentID string, epoch int64, sid [32]byte) (string, [32]byte) {
	b := cosign.RefreshCheck(agentID, epoch, sid)
	return b.SpendID, b.Digest
}

type keygen struct{ k *cosign.KeygenSession }

func (g keygen) Handle(msg []byte) ([]byte, error) {
	out, err := g.k.Handle(msg)
	if err != nil {
		return nil, class(err)
	}
	return out, nil
}

func (g keygen) Done() bool { return g.k.Done() }

func (g keygen) Share() ([]byte, []byte, string, error) {
	s, err := g.k.Share()
	if err != nil {
		return nil, nil, "", class(err)
	}
	raw, err := s.MarshalBinary()
	if err != nil {
		return nil, nil, "", class(err)
	}
	return raw, s.PublicKey(), s.Address().Hex(), nil
}

// SignSessionID implements spend.CosignEngine.
func (Engine) SignSessionID(publicKey []byte, agentID, spendID string, digest [32]byte) [32]byte {
	return cosign.SignBinding{AgentID: agentID, SpendID: spendID, Digest: digest}.SessionID(publicKey)
}

// claimed is the ledger of a session whose id the caller claimed already,
// in the transaction that recorded the authorization as signed.
type claimed struct{}

func (claimed) Claim(context.Context, cosign.SessionID) error { return nil }

// ServerSign implements spend.CosignEngine.
func (Engine) ServerSign(share []byte, agentID, spendID string, digest [32]byte, m1 []byte) ([]byte, error) {
	s, err := cosign.UnmarshalShare(share)
	if err != nil {
		return nil, class(err)
	}
	sg, err := cosign.NewServerSigner(context.Background(), s, cosign.SignBinding{AgentID: agentID, SpendID: spendID, Digest: digest}, claimed{})
	if err != nil {
		return nil, class(err)
	}
	m2, err := sg.Handle(m1)
	if err != nil {
		return nil, class(err)
	}
	return m2, nil
}

var halfN = new(big.Int).Rsh(crypto.S256().Params().N, 1)

// VerifySignature implements spend.CosignEngine: 65 bytes r‖s‖v, v 27 or
// 28, s in the lower half, recovering to address over digest.
func (Engine) VerifySignature(sig []byte, digest [32]byte, address string) bool {
	if len(sig) != 65 || (sig[64] != 27 && sig[64] != 28) || !common.IsHexAddress(address) {
		return false
	}
	r, sv := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:64])
	if r.Sign() == 0 || sv.Sign() == 0 || sv.Cmp(halfN) > 0 {
		return false
	}
	rec := append(append([]byte(nil), sig[:64]...), sig[64]-27)
	pub, err := crypto.SigToPub(digest[:], rec)
	if err != nil {
		return false
	}
	return crypto.PubkeyToAddress(*pub) == common.HexToAddress(address)
}
