// Package keystore guards Purser's keys. The 64-byte master seed is
// sealed at rest with AES-256-GCM under a key-encryption key (a 0600 key
// file, or argon2id over a passphrase); agent wallets are BIP-32 children
// of it (m/44'/60'/0'/0/index), the audit key is an HKDF derivation, and
// other secrets use envelope encryption with the record's path as
// associated data. Keys never leave the package: callers get signers.
//
// Wallet keys are derived afresh for each signature and zeroed after use
// (best effort: the runtime and the secp256k1 library may keep copies out
// of reach). Every type that holds a secret formats and logs as
// "[redacted]".
package keystore
