package cosignsrv

import (
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/purserhq/purser/internal/cosign"
	"github.com/purserhq/purser/internal/spend"
)

// TestBound: the pipeline's bound of a protocol message is the core's.
func TestBound(t *testing.T) {
	if spend.MaxCosignMessage != cosign.MaxMessageBytes {
		t.Fatalf("spend.MaxCosignMessage %d; cosign.MaxMessageBytes %d", spend.MaxCosignMessage, cosign.MaxMessageBytes)
	}
}

// TestVerifySignature: only r‖s‖v with v 27/28 and low s, recovering to
// the address over the digest, is accepted; the malleable twin (high s),
// v 0/1, another digest and another address are refused.
func TestVerifySignature(t *testing.T) {
	k, _ := crypto.GenerateKey()
	addr := crypto.PubkeyToAddress(k.PublicKey).Hex()
	digest := [32]byte{1, 2, 3}
	raw, err := crypto.Sign(digest[:], k) // r ‖ low s ‖ v∈{0,1}
	if err != nil {
		t.Fatal(err)
	}
	sig := append(raw[:64:64], raw[64]+27)
	e := Engine{}
	if !e.VerifySignature(sig, digest, addr) {
		t.Fatal("a valid signature is refused")
	}
	high := append([]byte(nil), sig...)
	n := crypto.S256().Params().N
	s := new(big.Int).Sub(n, new(big.Int).SetBytes(sig[32:64]))
	s.FillBytes(high[32:64])
	high[64] ^= 1 // the twin recovers with the other parity
	for name, c := range map[string]struct {
		sig    []byte
		digest [32]byte
		addr   string
	}{
		"high s":          {high, digest, addr},
		"v 0/1":           {raw, digest, addr},
		"another digest":  {sig, [32]byte{9}, addr},
		"another address": {sig, digest, "0x000000000000000000000000000000000000dEaD"},
		"short":           {sig[:64], digest, addr},
		"not an address":  {sig, digest, "alice"},
	} {
		if e.VerifySignature(c.sig, c.digest, c.addr) {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestServerSignRefusesForeignShare: the server's step needs a server
// share; an agent share, garbage or a refused m1 yield nothing.
func TestServerSignRefuses(t *testing.T) {
	e := Engine{}
	if _, err := e.ServerSign([]byte("not a share"), "a", "s", [32]byte{}, []byte("m1")); err != cosign.ErrBadShare {
		t.Fatalf("garbage share: %v", err)
	}
	if _, err := e.NewKeygen([]byte("PCSM")); err != cosign.ErrMalformed {
		t.Fatalf("garbage m1: %v", err)
	}
}
