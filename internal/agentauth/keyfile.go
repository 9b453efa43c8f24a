package agentauth

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// GenerateKey returns a new random secp256k1 identity key.
func GenerateKey() (*ecdsa.PrivateKey, error) { return crypto.GenerateKey() }

// Address returns the agent address of key (zero for a nil key).
func Address(key *ecdsa.PrivateKey) common.Address {
	if key == nil {
		return common.Address{}
	}
	return crypto.PubkeyToAddress(key.PublicKey)
}

// WriteKeyFile writes key as "0x<64 hex>\n" to a new file of mode 0600. It
// refuses to replace an existing file: overwriting an identity key would
// lose the agent for good.
func WriteKeyFile(path string, key *ecdsa.PrivateKey) error {
	if key == nil {
		return errors.New("agentauth: nil key")
	}
	d := crypto.FromECDSA(key)
	defer clear(d)
	buf := make([]byte, 0, 2+64+1)
	buf = append(buf, "0x"...)
	buf = hex.AppendEncode(buf, d)
	buf = append(buf, '\n')
	defer clear(buf)

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("agentauth: create key file: %w", err)
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path) // never leave a truncated key behind
		return fmt.Errorf("agentauth: write key file: %w", err)
	}
	return nil
}

// maxKeyFile bounds what ReadKeyFile reads; a key file is 67 bytes.
const maxKeyFile = 4096

// ReadKeyFile reads a key written by WriteKeyFile, tolerating surrounding
// whitespace and a missing 0x. Errors never quote the file's contents.
func ReadKeyFile(path string) (*ecdsa.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("agentauth: read key file: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	defer clear(raw)
	if err != nil {
		return nil, fmt.Errorf("agentauth: read key file: %w", err)
	}
	if len(raw) > maxKeyFile {
		return nil, fmt.Errorf("agentauth: key file %s: too large", path)
	}
	// Work on raw bytes, not strings, so the secret can be wiped after.
	v := bytes.TrimSpace(raw)
	v = bytes.TrimPrefix(bytes.TrimPrefix(v, []byte("0x")), []byte("0X"))
	if len(v) != 64 {
		return nil, fmt.Errorf("agentauth: key file %s: want 64 hex digits", path)
	}
	d := make([]byte, 32)
	defer clear(d)
	if _, err := hex.Decode(d, v); err != nil {
		return nil, fmt.Errorf("agentauth: key file %s: not hex", path)
	}
	key, err := crypto.ToECDSA(d)
	if err != nil {
		return nil, fmt.Errorf("agentauth: key file %s: not a valid secp256k1 key", path)
	}
	return key, nil
}
