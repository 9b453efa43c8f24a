package keystore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

const (
	kekSize     = 32
	seedSize    = 64
	saltSize    = 32
	seedVersion = 1
	seedFile    = "seed.enc"

	kdfFile     = "file"
	kdfArgon2id = "argon2id"
	kdfExternal = "external" // any other KEKSource

	envelopeVersion = 1
	envelopeHeader  = 4 + 1 + 12 // term, version, nonce

	redacted = "[redacted]"
)

// HKDF info strings. DeriveKey refuses purposes that would collide with
// the internal ones.
const (
	infoSeedDEK  = "purser/seed-dek/v1"
	infoAudit    = "purser/audit-key/v1"
	infoEnvelope = "purser/envelope-key/v1"
)

// ErrSealed means the key-encryption key does not open seed.enc: a wrong
// passphrase or key file, or a seed.enc that was altered (AES-GCM cannot
// tell the two apart). Its Code is "keystore_sealed".
var ErrSealed error = &codedError{code: "keystore_sealed", msg: "keystore is sealed: the key-encryption key does not open seed.enc"}

type codedError struct{ code, msg string }

func (e *codedError) Error() string { return e.msg }

// Code is the stable error code.
func (e *codedError) Code() string { return e.code }

type kdfParams struct {
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// sealedSeed is seed.enc. The seed is encrypted with AES-256-GCM under a
// data-encryption key HKDF-derived from the KEK and the salt; every other
// field is bound in as associated data.
type sealedSeed struct {
	Version    int        `json:"version"`
	KDF        string     `json:"kdf"`
	KDFParams  *kdfParams `json:"kdf_params,omitempty"`
	Salt       []byte     `json:"salt"`
	Term       uint32     `json:"term"`
	Nonce      []byte     `json:"nonce"`
	Ciphertext []byte     `json:"ciphertext"`
}

// Keystore is an opened (unsealed) keystore. It is safe for concurrent use.
type Keystore struct {
	seed     []byte
	term     uint32
	envelope cipher.AEAD // the envelope key of term
	auditPub ed25519.PublicKey
}

// Open opens the keystore in dir with kek, creating dir (0700) and a
// seed.enc with a fresh random seed on first start. A KEK that does not
// open seed.enc yields an error wrapping ErrSealed.
func Open(dir string, kek KEKSource) (*Keystore, error) {
	if kek == nil {
		return nil, errors.New("keystore: no key-encryption key source")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	path := filepath.Join(dir, seedFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := create(path, kek); err != nil {
			return nil, err
		}
		b, err = os.ReadFile(path)
	case err == nil:
		// FileKEK creates its file when absent; next to an existing seed
		// that would only mint a key that cannot open it.
		if err := keyFileExists(kek); err != nil {
			return nil, err
		}
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	seed, term, err := unseal(b, kek)
	if err != nil {
		return nil, err
	}
	return newKeystore(seed, term)
}

func keyFileExists(kek KEKSource) error {
	var path string
	switch f := kek.(type) {
	case FileKEK:
		path = f.Path
	case *FileKEK:
		path = f.Path
	default:
		return nil
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: its key file %s is missing (restore it from backup)", ErrSealed, path)
	}
	return nil
}

func newKeystore(seed []byte, term uint32) (*Keystore, error) {
	k := &Keystore{seed: seed, term: term}
	var err error
	if k.envelope, err = k.envelopeAEAD(term); err != nil {
		return nil, err
	}
	priv := k.auditKey()
	k.auditPub = bytes.Clone(priv.Public().(ed25519.PublicKey))
	clear(priv)
	return k, nil
}

// create writes a new seed.enc unless one appears first (two processes
// starting on an empty data dir agree on one seed).
func create(path string, kek KEKSource) error {
	seed, err := randomBytes(seedSize)
	if err != nil {
		return err
	}
	defer clear(seed)
	b, err := seal(seed, 1, kek)
	if err != nil {
		return err
	}
	return createExclusive(path, b)
}

func describe(kek KEKSource) (string, *kdfParams) {
	if d, ok := kek.(interface{ kdf() (string, *kdfParams) }); ok {
		return d.kdf()
	}
	return kdfExternal, nil
}

func seal(seed []byte, term uint32, kek KEKSource) ([]byte, error) {
	name, params := describe(kek)
	s := sealedSeed{Version: seedVersion, KDF: name, KDFParams: params, Term: term}
	var err error
	if s.Salt, err = randomBytes(saltSize); err != nil {
		return nil, err
	}
	aead, err := seedAEAD(kek, s.Salt)
	if err != nil {
		return nil, err
	}
	if s.Nonce, err = randomBytes(aead.NonceSize()); err != nil {
		return nil, err
	}
	s.Ciphertext = aead.Seal(nil, s.Nonce, seed, s.aad())
	b, err := json.MarshalIndent(s, "", "  ")
	return append(b, '\n'), err
}

func unseal(b []byte, kek KEKSource) ([]byte, uint32, error) {
	var s sealedSeed
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, 0, fmt.Errorf("keystore: seed.enc is malformed: %w", err)
	}
	if s.Version != seedVersion {
		return nil, 0, fmt.Errorf("keystore: seed.enc version %d is not supported", s.Version)
	}
	name, params := describe(kek)
	if s.KDF != name {
		return nil, 0, fmt.Errorf("%w (seed.enc was sealed with kdf %q, the configured key source is %q)", ErrSealed, s.KDF, name)
	}
	if (params == nil) != (s.KDFParams == nil) || params != nil && *params != *s.KDFParams {
		return nil, 0, fmt.Errorf("keystore: seed.enc kdf parameters %+v are not the supported ones", s.KDFParams)
	}
	if len(s.Salt) < 16 || len(s.Nonce) != 12 || len(s.Ciphertext) != seedSize+16 || s.Term == 0 {
		return nil, 0, errors.New("keystore: seed.enc is malformed: bad salt, nonce, ciphertext or term")
	}
	aead, err := seedAEAD(kek, s.Salt)
	if err != nil {
		return nil, 0, err
	}
	seed, err := aead.Open(nil, s.Nonce, s.Ciphertext, s.aad())
	if err != nil {
		return nil, 0, ErrSealed
	}
	return seed, s.Term, nil
}

// aad binds every header field to the ciphertext, length-prefixed.
func (s *sealedSeed) aad() []byte {
	var b []byte
	field := func(v []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	field([]byte("purser/seed/v1"))
	b = binary.BigEndian.AppendUint32(b, uint32(s.Version))
	field([]byte(s.KDF))
	if p := s.KDFParams; p != nil {
		b = binary.BigEndian.AppendUint32(b, p.Time)
		b = binary.BigEndian.AppendUint32(b, p.MemoryKiB)
		b = append(b, p.Threads)
	}
	field(s.Salt)
	return binary.BigEndian.AppendUint32(b, s.Term)
}

func seedAEAD(kek KEKSource, salt []byte) (cipher.AEAD, error) {
	key, err := kek.KEK(salt)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	if len(key) != kekSize {
		return nil, fmt.Errorf("keystore: the key-encryption key has %d bytes, want %d", len(key), kekSize)
	}
	dek, err := hkdf.Key(sha256.New, key, salt, infoSeedDEK, 32)
	if err != nil {
		return nil, err
	}
	defer clear(dek)
	return gcm(dek)
}

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func (k *Keystore) hkdf(info string) []byte {
	out, err := hkdf.Key(sha256.New, k.seed, nil, info, 32)
	if err != nil {
		panic("keystore: hkdf: " + err.Error()) // only for lengths > 255*32
	}
	return out
}

func (k *Keystore) envelopeAEAD(term uint32) (cipher.AEAD, error) {
	key := k.hkdf(infoEnvelope + "/" + fmt.Sprint(term))
	defer clear(key)
	return gcm(key)
}

// Encrypt seals plaintext for storage elsewhere (vault credentials):
// term(4B) ‖ version(1B) ‖ nonce(12B) ‖ AES-256-GCM(plaintext, aad). aad
// should name what the secret belongs to (e.g. "vault:<id>") so that a
// ciphertext moved to another row does not decrypt.
func (k *Keystore) Encrypt(plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, envelopeHeader, envelopeHeader+len(plaintext)+k.envelope.Overhead())
	binary.BigEndian.PutUint32(out, k.term)
	out[4] = envelopeVersion
	if _, err := rand.Read(out[5:envelopeHeader]); err != nil {
		return nil, err
	}
	return k.envelope.Seal(out, out[5:envelopeHeader], plaintext, aad), nil
}

// Decrypt opens what Encrypt sealed. A wrong aad or any change to the
// ciphertext is an error.
func (k *Keystore) Decrypt(ciphertext, aad []byte) ([]byte, error) {
	if len(ciphertext) < envelopeHeader+k.envelope.Overhead() {
		return nil, errors.New("keystore: decrypt: ciphertext too short")
	}
	term := binary.BigEndian.Uint32(ciphertext)
	if ciphertext[4] != envelopeVersion {
		return nil, fmt.Errorf("keystore: decrypt: envelope version %d is not supported", ciphertext[4])
	}
	aead := k.envelope
	if term != k.term {
		// Older terms stay readable after a rekey; future ones cannot exist.
		if term == 0 || term > k.term {
			return nil, fmt.Errorf("keystore: decrypt: unknown key term %d", term)
		}
		var err error
		if aead, err = k.envelopeAEAD(term); err != nil {
			return nil, err
		}
	}
	pt, err := aead.Open(nil, ciphertext[5:envelopeHeader], ciphertext[envelopeHeader:], aad)
	if err != nil {
		return nil, errors.New("keystore: decrypt: wrong associated data, or the ciphertext was altered")
	}
	return pt, nil
}

// DeriveKey returns a 32-byte key for purpose (HKDF-SHA256 of the seed,
// info "purser/"+purpose), e.g. DeriveKey("audit-id-hmac/v1"). Put a
// version in the purpose so a key can be replaced. It panics on an empty
// purpose or one reserved for the keystore's own keys: both are
// programming errors.
func (k *Keystore) DeriveKey(purpose string) []byte {
	info := "purser/" + purpose
	if purpose == "" || strings.HasPrefix(info, infoAudit) || strings.HasPrefix(info, infoEnvelope) || strings.HasPrefix(info, infoSeedDEK) {
		panic(fmt.Sprintf("keystore: DeriveKey purpose %q is empty or reserved", purpose))
	}
	return k.hkdf(info)
}

// AuditSigner signs audit checkpoints (audit.CheckpointSigner).
type AuditSigner interface {
	Public() ed25519.PublicKey
	Sign(msg []byte) ([]byte, error)
}

// AuditSigner returns the signer of the Ed25519 audit key, HKDF-derived
// from the seed (info "purser/audit-key/v1"): the same seed always gives
// the same audit key.
func (k *Keystore) AuditSigner() AuditSigner { return auditSigner{k} }

func (k *Keystore) auditKey() ed25519.PrivateKey {
	s := k.hkdf(infoAudit)
	defer clear(s)
	return ed25519.NewKeyFromSeed(s)
}

type auditSigner struct{ k *Keystore }

func (a auditSigner) Public() ed25519.PublicKey { return bytes.Clone(a.k.auditPub) }

func (a auditSigner) Sign(msg []byte) ([]byte, error) {
	priv := a.k.auditKey()
	defer clear(priv)
	return ed25519.Sign(priv, msg), nil
}

// RandomToken returns prefix followed by 32 random bytes in unpadded
// base64url, e.g. RandomToken("pso_") for an owner token.
func RandomToken(prefix string) (string, error) {
	b, err := randomBytes(32)
	if err != nil {
		return "", err
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b), nil
}

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("keystore: random: %w", err)
	}
	return b, nil
}

// createExclusive writes data to path (0600) unless path already exists,
// atomically: a crash never leaves a half-written key file, and of two
// racing creators exactly one wins. Losing the race is not an error.
func createExclusive(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("keystore: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("keystore: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("keystore: sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("keystore: create %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the new name durable; not every platform supports it
		d.Close()
	}
	return nil
}

// Redaction: nothing that holds a secret prints one, whatever the verb.

func redactFormat(f fmt.State) { _, _ = io.WriteString(f, redacted) }

func (k *Keystore) String() string               { return redacted }
func (k *Keystore) GoString() string             { return redacted }
func (k *Keystore) Format(f fmt.State, _ rune)   { redactFormat(f) }
func (k *Keystore) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (k *Keystore) MarshalText() ([]byte, error) { return []byte(redacted), nil }

func (a auditSigner) String() string             { return redacted }
func (a auditSigner) GoString() string           { return redacted }
func (a auditSigner) Format(f fmt.State, _ rune) { redactFormat(f) }
func (a auditSigner) LogValue() slog.Value       { return slog.StringValue(redacted) }
