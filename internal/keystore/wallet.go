package keystore

import (
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/big"

	"github.com/ethereum/go-ethereum/crypto"
)

const hardened = 1 << 31

// secp256k1 group order.
var curveN = crypto.S256().Params().N

// Signer signs for one HD wallet. The private key is derived from the
// seed for each signature and zeroed afterwards; only the address and path
// are kept.
type Signer interface {
	Address() string                        // EIP-55 checksummed 0x address
	Path() string                           // e.g. "m/44'/60'/0'/0/7"
	SignHash(hash [32]byte) ([]byte, error) // 65 bytes r‖s‖v, v = 27 or 28
}

// Wallet returns the signer of the Ethereum wallet at BIP-44 path
// m/44'/60'/0'/0/index. index must be below 2^31 (non-hardened).
func (k *Keystore) Wallet(index uint32) (Signer, error) {
	if index >= hardened {
		return nil, fmt.Errorf("keystore: wallet index %d is not below 2^31", index)
	}
	key, err := k.walletKey(index)
	if err != nil {
		return nil, err
	}
	defer clear(key[:])
	priv, err := crypto.ToECDSA(key[:])
	if err != nil {
		return nil, err
	}
	addr := crypto.PubkeyToAddress(priv.PublicKey).Hex()
	zeroKey(priv)
	return &wallet{k: k, index: index, addr: addr}, nil
}

type wallet struct {
	k     *Keystore
	index uint32
	addr  string
}

func (w *wallet) Address() string { return w.addr }
func (w *wallet) Path() string    { return fmt.Sprintf("m/44'/60'/0'/0/%d", w.index) }

// SignHash signs a 32-byte digest (an EIP-712 or transaction hash). The
// signature is low-S, with v in the Ethereum 27/28 convention.
func (w *wallet) SignHash(hash [32]byte) ([]byte, error) {
	key, err := w.k.walletKey(w.index)
	if err != nil {
		return nil, err
	}
	defer clear(key[:])
	// Signing needs only the scalar; skipping the public key saves a point
	// multiplication per signature.
	//lint:ignore SA1019 go-ethereum signs secp256k1 with an *ecdsa.PrivateKey; the stdlib's replacements for D do not cover that curve
	priv := &ecdsa.PrivateKey{PublicKey: ecdsa.PublicKey{Curve: crypto.S256()}, D: new(big.Int).SetBytes(key[:])}
	defer zeroKey(priv)
	sig, err := crypto.Sign(hash[:], priv)
	if err != nil {
		return nil, fmt.Errorf("keystore: sign: %w", err)
	}
	sig[64] += 27
	return sig, nil
}

// A wallet's address and path are public, but printing the value must not
// walk into the keystore it points to.
func (w *wallet) String() string             { return redacted }
func (w *wallet) GoString() string           { return redacted }
func (w *wallet) Format(f fmt.State, _ rune) { redactFormat(f) }
func (w *wallet) LogValue() slog.Value       { return slog.StringValue(redacted) }

func (k *Keystore) walletKey(index uint32) ([32]byte, error) {
	return derivePath(k.seed, []uint32{44 | hardened, 60 | hardened, 0 | hardened, 0, index})
}

// extKey is a BIP-32 extended private key.
type extKey struct {
	key, chain [32]byte
}

func (x *extKey) zero() { clear(x.key[:]); clear(x.chain[:]) }

// derivePath derives the private key at path from seed (BIP-32); the
// caller zeroes it.
func derivePath(seed []byte, path []uint32) ([32]byte, error) {
	x, err := masterKey(seed)
	if err != nil {
		return [32]byte{}, err
	}
	defer x.zero()
	for _, i := range path {
		if err := x.child(i); err != nil {
			return [32]byte{}, err
		}
	}
	return x.key, nil
}

func masterKey(seed []byte) (*extKey, error) {
	m := hmac.New(sha512.New, []byte("Bitcoin seed"))
	m.Write(seed)
	var x extKey
	if err := x.set(m.Sum(nil), nil); err != nil {
		return nil, err
	}
	return &x, nil
}

// child replaces x with its child i.
func (x *extKey) child(i uint32) error {
	m := hmac.New(sha512.New, x.chain[:])
	if i >= hardened {
		m.Write([]byte{0})
		m.Write(x.key[:])
	} else {
		priv, err := crypto.ToECDSA(x.key[:])
		if err != nil {
			return err
		}
		m.Write(crypto.CompressPubkey(&priv.PublicKey))
		zeroKey(priv)
	}
	var ib [4]byte
	binary.BigEndian.PutUint32(ib[:], i)
	m.Write(ib[:])
	return x.set(m.Sum(nil), x.key[:])
}

// set takes I = IL ‖ IR: the key becomes IL + parent (mod n), the chain
// code IR. Invalid keys (probability below 2^-127) are errors, not skipped:
// a wallet index must always mean the same key.
func (x *extKey) set(i, parent []byte) error {
	defer clear(i)
	il := new(big.Int).SetBytes(i[:32])
	defer clearInt(il)
	if il.Cmp(curveN) >= 0 {
		return errors.New("keystore: BIP-32 derivation produced an invalid key")
	}
	if parent != nil {
		p := new(big.Int).SetBytes(parent)
		il.Add(il, p)
		il.Mod(il, curveN)
		clearInt(p)
	}
	if il.Sign() == 0 {
		return errors.New("keystore: BIP-32 derivation produced an invalid key")
	}
	il.FillBytes(x.key[:])
	copy(x.chain[:], i[32:])
	return nil
}

func clearInt(v *big.Int) { clear(v.Bits()) }

func zeroKey(k *ecdsa.PrivateKey) {
	if k == nil {
		return
	}
	//lint:ignore SA1019 the secp256k1 scalar lives only in D (see SignHash)
	if d := k.D; d != nil {
		clearInt(d)
	}
}
