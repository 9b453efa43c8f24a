package keystore

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/crypto/argon2"
)

// KEKSource supplies the 32-byte key-encryption key that opens seed.enc.
// salt is the random salt stored in seed.enc; sources that are already
// uniformly random (FileKEK) may ignore it.
type KEKSource interface {
	KEK(salt []byte) ([]byte, error)
}

// FileKEK keeps the KEK as 32 random bytes in a 0600 file, created on first
// use. It is the development default: whoever can read the data dir can
// open the seed, so production should use a passphrase or an external KEK.
type FileKEK struct{ Path string }

// KEK reads the key file, creating it if absent. A file readable by group
// or others is refused rather than silently trusted.
func (f FileKEK) KEK([]byte) ([]byte, error) {
	if f.Path == "" {
		return nil, errors.New("keystore: FileKEK needs a path")
	}
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		key, rerr := randomBytes(kekSize)
		if rerr != nil {
			return nil, rerr
		}
		// Another process may win the race to create it; either way, read
		// what is there.
		cerr := createExclusive(f.Path, key)
		clear(key)
		if cerr != nil {
			return nil, cerr
		}
		b, err = os.ReadFile(f.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: read KEK file: %w", err)
	}
	defer clear(b)
	st, err := os.Stat(f.Path)
	if err != nil {
		return nil, fmt.Errorf("keystore: KEK file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("keystore: KEK file %s has mode %04o; it must be readable by its owner only (chmod 600)", f.Path, st.Mode().Perm())
	}
	switch t := bytes.TrimSpace(b); {
	case len(b) == kekSize:
		return bytes.Clone(b), nil
	case len(t) == 2*kekSize:
		// A hex key, as a secrets manager would hand it over.
		key := make([]byte, kekSize)
		if _, err := hex.Decode(key, t); err != nil {
			return nil, fmt.Errorf("keystore: KEK file %s is neither 32 raw bytes nor 64 hex characters", f.Path)
		}
		return key, nil
	default:
		return nil, fmt.Errorf("keystore: KEK file %s has %d bytes; want 32 raw bytes or 64 hex characters", f.Path, len(b))
	}
}

// String keeps the path visible: it is not a secret.
func (f FileKEK) String() string { return "FileKEK(" + f.Path + ")" }

// Argon2id parameters for PassphraseKEK. They are recorded in seed.enc and
// checked on open, so raising them later cannot silently lock a store out.
const (
	argonTime    = 3
	argonMemory  = 64 * 1024 // KiB
	argonThreads = 2
)

// PassphraseKEK stretches a passphrase with Argon2id
// (time=3, memory=64 MiB, threads=2) and the salt stored in seed.enc.
type PassphraseKEK struct{ Passphrase []byte }

// KEK derives the key-encryption key.
func (p PassphraseKEK) KEK(salt []byte) ([]byte, error) {
	if len(p.Passphrase) == 0 {
		return nil, errors.New("keystore: empty passphrase")
	}
	if len(salt) < 16 {
		return nil, errors.New("keystore: argon2id needs a salt of at least 16 bytes")
	}
	return argon2.IDKey(p.Passphrase, salt, argonTime, argonMemory, argonThreads, kekSize), nil
}

func (p PassphraseKEK) kdf() (string, *kdfParams) {
	return kdfArgon2id, &kdfParams{Time: argonTime, MemoryKiB: argonMemory, Threads: argonThreads}
}

func (FileKEK) kdf() (string, *kdfParams) { return kdfFile, nil }

// The passphrase never reaches a log or an error message.
func (PassphraseKEK) String() string               { return redacted }
func (PassphraseKEK) GoString() string             { return redacted }
func (PassphraseKEK) Format(f fmt.State, _ rune)   { redactFormat(f) }
func (PassphraseKEK) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (PassphraseKEK) MarshalText() ([]byte, error) { return []byte(redacted), nil }
