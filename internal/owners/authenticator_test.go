package owners_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"testing"
)

// softAuthenticator is a software passkey: an ECDSA P-256 key per
// credential, attestation "none", user present and verified on every
// signature. It builds exactly the JSON a browser's
// PublicKeyCredential.toJSON() gives (the real browser path is tested with
// a CDP virtual authenticator in internal/portal).
type softAuthenticator struct {
	origin string // what the browser puts in clientDataJSON
}

type softCredential struct {
	id         []byte
	key        *ecdsa.PrivateKey
	userHandle []byte
	rpID       string
	count      uint32
}

var b64 = base64.RawURLEncoding

// cbor helpers: just the shapes WebAuthn needs.
func cborHead(major byte, n int) []byte {
	switch {
	case n < 24:
		return []byte{major<<5 | byte(n)}
	case n < 256:
		return []byte{major<<5 | 24, byte(n)}
	default:
		return []byte{major<<5 | 25, byte(n >> 8), byte(n)}
	}
}

func cborBytes(b []byte) []byte { return append(cborHead(2, len(b)), b...) }
func cborText(s string) []byte  { return append(cborHead(3, len(s)), s...) }

// coseES256 is the COSE_Key of an ES256 public key.
func coseES256(pub *ecdsa.PublicKey) []byte {
	raw, _ := pub.ECDH() //nolint:errcheck // a P-256 key
	pt := raw.Bytes()    // 0x04 ‖ x ‖ y
	out := []byte{0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01}
	out = append(out, 0x21)
	out = append(out, cborBytes(pt[1:33])...)
	out = append(out, 0x22)
	return append(out, cborBytes(pt[33:65])...)
}

type publicKeyOptions struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		RPID      string `json:"rpId"`
		RP        struct {
			ID string `json:"id"`
		} `json:"rp"`
		User struct {
			ID string `json:"id"`
		} `json:"user"`
		AllowCredentials []struct {
			ID string `json:"id"`
		} `json:"allowCredentials"`
	} `json:"publicKey"`
}

func parseOptions(t *testing.T, raw any) publicKeyOptions {
	t.Helper()
	b, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	var o publicKeyOptions
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatalf("options %s: %v", b, err)
	}
	if o.PublicKey.Challenge == "" {
		t.Fatalf("options without a challenge: %s", b)
	}
	return o
}

func (sa *softAuthenticator) clientData(typ, challenge string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": sa.origin, "crossOrigin": false})
	return b
}

func authData(rpID string, flags byte, count uint32, attested []byte) []byte {
	h := sha256.Sum256([]byte(rpID))
	out := append(h[:], flags)
	out = binary.BigEndian.AppendUint32(out, count)
	return append(out, attested...)
}

// create answers navigator.credentials.create(options).
func (sa *softAuthenticator) create(t *testing.T, options any) (*softCredential, map[string]any) {
	t.Helper()
	o := parseOptions(t, options)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	uh, err := b64.DecodeString(o.PublicKey.User.ID)
	if err != nil {
		t.Fatalf("user id: %v", err)
	}
	c := &softCredential{id: make([]byte, 32), key: key, userHandle: uh, rpID: o.PublicKey.RP.ID}
	rand.Read(c.id)         //nolint:errcheck
	att := make([]byte, 16) // AAGUID: zero
	att = binary.BigEndian.AppendUint16(att, uint16(len(c.id)))
	att = append(att, c.id...)
	att = append(att, coseES256(&key.PublicKey)...)
	ad := authData(c.rpID, 0x01|0x04|0x40, 0, att) // UP, UV, AT
	attObj := []byte{0xa3}
	attObj = append(attObj, cborText("fmt")...)
	attObj = append(attObj, cborText("none")...)
	attObj = append(attObj, cborText("attStmt")...)
	attObj = append(attObj, 0xa0)
	attObj = append(attObj, cborText("authData")...)
	attObj = append(attObj, cborBytes(ad)...)
	return c, map[string]any{
		"id": b64.EncodeToString(c.id), "rawId": b64.EncodeToString(c.id), "type": "public-key",
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(sa.clientData("webauthn.create", o.PublicKey.Challenge)),
			"attestationObject": b64.EncodeToString(attObj), "transports": []string{"internal"}},
		"clientExtensionResults": map[string]any{}, "authenticatorAttachment": "platform",
	}
}

// assertion is one navigator.credentials.get() answer, its parts kept
// so tests can alter them.
type assertion struct {
	cred           *softCredential
	clientDataJSON []byte
	authData       []byte
	signature      []byte
}

func (a *assertion) json() map[string]any {
	return map[string]any{
		"id": b64.EncodeToString(a.cred.id), "rawId": b64.EncodeToString(a.cred.id), "type": "public-key",
		"response": map[string]any{
			"clientDataJSON": b64.EncodeToString(a.clientDataJSON), "authenticatorData": b64.EncodeToString(a.authData),
			"signature": b64.EncodeToString(a.signature), "userHandle": b64.EncodeToString(a.cred.userHandle)},
		"clientExtensionResults": map[string]any{}, "authenticatorAttachment": "platform",
	}
}

// get answers navigator.credentials.get(options) with c.
func (sa *softAuthenticator) get(t *testing.T, c *softCredential, options any) *assertion {
	t.Helper()
	o := parseOptions(t, options)
	return sa.sign(t, c, o.PublicKey.Challenge, 0x01|0x04)
}

// sign signs any challenge with the given flags.
func (sa *softAuthenticator) sign(t *testing.T, c *softCredential, challenge string, flags byte) *assertion {
	t.Helper()
	c.count++
	a := &assertion{cred: c, clientDataJSON: sa.clientData("webauthn.get", challenge), authData: authData(c.rpID, flags, c.count, nil)}
	a.resign(t)
	return a
}

// resign signs the assertion's current client data and authenticator data.
func (a *assertion) resign(t *testing.T) {
	t.Helper()
	cd := sha256.Sum256(a.clientDataJSON)
	d := sha256.Sum256(append(append([]byte{}, a.authData...), cd[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, a.cred.key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	a.signature = sig
}

// mustKeySPKI returns a fresh P-256 public key, PKIX DER in base64url.
func (sa *softAuthenticator) mustKeySPKI(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return b64.EncodeToString(der)
}
