package webhook

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
)

// Signing schemes of an endpoint.
const (
	SigningHMAC    = "hmac"    // v1: HMAC-SHA256 with the endpoint's whsec_ secret
	SigningEd25519 = "ed25519" // v1a: Ed25519 with the deployment's webhook key
)

// secretBytes is the size of a new HMAC secret (the spec asks for 24 to 64).
const secretBytes = 32

// NewSecret returns a fresh HMAC secret and its whsec_ form.
func NewSecret() ([]byte, string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return nil, "", err
	}
	return b, FormatSecret(b), nil
}

// FormatSecret returns the whsec_ form of an HMAC secret.
func FormatSecret(b []byte) string { return "whsec_" + base64.StdEncoding.EncodeToString(b) }

// FormatPublicKey returns the whpk_ form of an Ed25519 public key.
func FormatPublicKey(pub ed25519.PublicKey) string {
	return "whpk_" + base64.StdEncoding.EncodeToString(pub)
}

// signedContent is what both schemes sign: id.timestamp.body.
func signedContent(msgID string, ts int64, body []byte) []byte {
	var b strings.Builder
	b.Grow(len(msgID) + 24 + len(body))
	b.WriteString(msgID)
	b.WriteByte('.')
	b.WriteString(strconv.FormatInt(ts, 10))
	b.WriteByte('.')
	b.Write(body)
	return []byte(b.String())
}

// Signer makes the webhook-signature header of a message.
type Signer struct {
	Key ed25519.PrivateKey // the deployment's webhook key (v1a)
}

// Sign returns the webhook-signature header value for an endpoint's
// scheme: "v1,<base64 HMAC-SHA256>" or "v1a,<base64 Ed25519>".
func (s Signer) Sign(scheme string, secret []byte, msgID string, ts int64, body []byte) (string, error) {
	content := signedContent(msgID, ts, body)
	switch scheme {
	case SigningHMAC:
		if len(secret) == 0 {
			return "", errors.New("webhook: no HMAC secret")
		}
		m := hmac.New(sha256.New, secret)
		m.Write(content)
		return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
	case SigningEd25519:
		if len(s.Key) != ed25519.PrivateKeySize {
			return "", errors.New("webhook: no Ed25519 signing key")
		}
		return "v1a," + base64.StdEncoding.EncodeToString(ed25519.Sign(s.Key, content)), nil
	default:
		return "", errors.New("webhook: unknown signing scheme " + strconv.Quote(scheme))
	}
}
