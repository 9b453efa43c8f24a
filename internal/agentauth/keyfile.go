package agentauth

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

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

// maxKeyFile bounds what the key file readers read: the identity line is
// 67 bytes, a co-signing share's line about 5.7 KB.
const maxKeyFile = 16 << 10

// shareField names the key file line that holds the agent's share of a
// co-signed (2of2) wallet key.
const shareField = "cosign-share"

// ReadKeyFile reads the identity key of a key file written by WriteKeyFile
// or WriteKeyFileShare, tolerating surrounding whitespace and a missing 0x.
// Further lines (a co-signing share) are checked for form and otherwise
// ignored. Errors never quote the file's contents.
func ReadKeyFile(path string) (*ecdsa.PrivateKey, error) {
	key, share, err := readKeyFile(path)
	clear(share)
	return key, err
}

// ReadKeyFileShare reads a key file's identity key and, when it has one,
// the agent's co-signing share (the bytes of cosign.Share.MarshalBinary; nil
// for a server-custody agent). The caller should clear the share once it
// has parsed it. Errors never quote the file's contents.
func ReadKeyFileShare(path string) (*ecdsa.PrivateKey, []byte, error) {
	return readKeyFile(path)
}

func readKeyFile(path string) (*ecdsa.PrivateKey, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("agentauth: read key file: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	defer clear(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("agentauth: read key file: %w", err)
	}
	if len(raw) > maxKeyFile {
		return nil, nil, fmt.Errorf("agentauth: key file %s: too large", path)
	}
	// Work on raw bytes, not strings, so the secrets can be wiped after.
	v := bytes.TrimSpace(raw)
	first, rest, _ := bytes.Cut(v, []byte("\n"))
	first = bytes.TrimSpace(first)
	first = bytes.TrimPrefix(bytes.TrimPrefix(first, []byte("0x")), []byte("0X"))
	if len(first) != 64 {
		return nil, nil, fmt.Errorf("agentauth: key file %s: want 64 hex digits on the first line", path)
	}
	d := make([]byte, 32)
	defer clear(d)
	if _, err := hex.Decode(d, first); err != nil {
		return nil, nil, fmt.Errorf("agentauth: key file %s: not hex", path)
	}
	key, err := crypto.ToECDSA(d)
	if err != nil {
		return nil, nil, fmt.Errorf("agentauth: key file %s: not a valid secp256k1 key", path)
	}
	var share []byte
	for n, line := 2, []byte(nil); len(rest) > 0; n++ {
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		name, val, ok := bytes.Cut(line, []byte(":"))
		if !ok || !fieldName(name) {
			return nil, nil, fmt.Errorf("agentauth: key file %s: line %d is not \"name: value\"", path, n)
		}
		if string(name) != shareField {
			continue // a field of a later version; identity readers ignore it
		}
		if share != nil {
			clear(share)
			return nil, nil, fmt.Errorf("agentauth: key file %s: more than one %s line", path, shareField)
		}
		val = bytes.TrimSpace(val)
		share = make([]byte, base64.StdEncoding.DecodedLen(len(val)))
		m, err := base64.StdEncoding.Decode(share, val)
		if err != nil || m == 0 {
			clear(share)
			return nil, nil, fmt.Errorf("agentauth: key file %s: the %s line is not base64", path, shareField)
		}
		share = share[:m]
	}
	return key, share, nil
}

func fieldName(b []byte) bool {
	if len(b) == 0 || len(b) > 64 {
		return false
	}
	for _, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// WriteKeyFileShare writes an identity key and a co-signing share (the
// bytes of cosign.Share.MarshalBinary) to path, atomically: a temporary
// file of mode 0600 in the same directory, synced, then renamed over path.
// It replaces a key file of the same identity key (adding or refreshing
// the share) but refuses a file that holds another identity key or is no
// key file: that would lose an agent for good.
func WriteKeyFileShare(path string, key *ecdsa.PrivateKey, share []byte) error {
	if key == nil {
		return errors.New("agentauth: nil key")
	}
	if len(share) == 0 {
		return errors.New("agentauth: empty co-signing share")
	}
	if old, err := ReadKeyFile(path); err == nil {
		if !old.Equal(key) {
			return fmt.Errorf("agentauth: key file %s holds another identity key: %w", path, os.ErrExist)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("agentauth: refusing to replace %s: %w", path, err)
	}
	d := crypto.FromECDSA(key)
	defer clear(d)
	buf := make([]byte, 0, 2+64+1+len(shareField)+2+base64.StdEncoding.EncodedLen(len(share))+1)
	buf = append(buf, "0x"...)
	buf = hex.AppendEncode(buf, d)
	buf = append(buf, '\n')
	buf = append(buf, shareField+": "...)
	buf = base64.StdEncoding.AppendEncode(buf, share)
	buf = append(buf, '\n')
	defer clear(buf)

	f, err := os.CreateTemp(filepath.Dir(path), ".purser-key-*") // mode 0600
	if err != nil {
		return fmt.Errorf("agentauth: create key file: %w", err)
	}
	tmp := f.Name()
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(buf)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp) // never leave a copy of the secrets behind
		return fmt.Errorf("agentauth: write key file: %w", err)
	}
	return nil
}
