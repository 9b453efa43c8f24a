package audit

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// A passkey approval is an owner's WebAuthn assertion over a challenge
// that commits to one spend: the spend.approve event carries it, and the
// verifier checks it against the passkey public key that an earlier
// owner.passkey_added event put in the same chain (docs/security.md).

const (
	approvalTag = "purser/approval-challenge/v1"
	intentTag   = "purser/intent-digest/v1"
)

// IntentDigest is the digest of an agent's signed intent as the chain
// records it (the request's signature and nonce, in the spend's
// spend.request_approval event): SHA-256 over the domain tag and both
// values, each length-prefixed. The signature is over the EIP-712 digest
// of the exact request body, so the digest names one signed request.
func IntentDigest(signature, nonce string) [32]byte {
	h := sha256.New()
	writeField(h, []byte(intentTag))
	writeField(h, []byte(signature))
	writeField(h, []byte(nonce))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// ApprovalCommit is what an approval challenge commits to: the spend, the
// agent's signed intent, what will be paid and to whom, a server nonce
// that makes each challenge single-use, and the challenge's expiry.
type ApprovalCommit struct {
	SpendID      string `json:"spend_id"`
	AgentID      string `json:"agent_id"`
	IntentDigest string `json:"intent_digest"` // hex
	Amount       string `json:"amount"`        // atomic units, decimal
	Asset        string `json:"asset"`
	Network      string `json:"network"`
	Payee        string `json:"payee"`
	Host         string `json:"host"`
	Nonce        string `json:"nonce"`      // hex, 16 random bytes
	ExpiresAt    int64  `json:"expires_at"` // unix milliseconds
}

// Challenge is the WebAuthn challenge for c: SHA-256 over the domain tag
// and every field, length-prefixed in the order declared, the expiry as
// 8 bytes big-endian.
func (c *ApprovalCommit) Challenge() []byte {
	h := sha256.New()
	writeField(h, []byte(approvalTag))
	for _, f := range []string{c.SpendID, c.AgentID, c.IntentDigest, c.Amount, c.Asset, c.Network, c.Payee, c.Host, c.Nonce} {
		writeField(h, []byte(f))
	}
	writeUint(h, uint64(c.ExpiresAt))
	return h.Sum(nil)
}

// Expires is c.ExpiresAt as a time.
func (c *ApprovalCommit) Expires() time.Time { return time.UnixMilli(c.ExpiresAt).UTC() }

// PasskeyAssertion is a WebAuthn assertion as the spend.approve event
// stores it (binary values base64url without padding).
type PasskeyAssertion struct {
	OwnerID           string         `json:"owner_id"`
	CredentialID      string         `json:"credential_id"`
	AuthenticatorData string         `json:"authenticator_data"`
	ClientDataJSON    string         `json:"client_data_json"`
	Signature         string         `json:"signature"`
	RPID              string         `json:"rp_id"`
	Origin            string         `json:"origin"`
	Commit            ApprovalCommit `json:"commit"`
}

var b64url = base64.RawURLEncoding

// Authenticator data flags.
const (
	flagUP = 0x01
	flagUV = 0x04
)

// Verify checks the assertion under the passkey's public key (PKIX DER):
// the signature over authenticatorData ‖ SHA-256(clientDataJSON) (ES256,
// RS256 or EdDSA, as the key's type says), clientDataJSON's type
// (webauthn.get), challenge (the commit's) and origin, the RP id hash and
// the user-present and user-verified flags.
func (a *PasskeyAssertion) Verify(spki []byte) error {
	authData, err := b64url.DecodeString(a.AuthenticatorData)
	if err != nil {
		return errors.New("authenticator_data is not base64url")
	}
	cdj, err := b64url.DecodeString(a.ClientDataJSON)
	if err != nil {
		return errors.New("client_data_json is not base64url")
	}
	sig, err := b64url.DecodeString(a.Signature)
	if err != nil {
		return errors.New("signature is not base64url")
	}
	pub, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		return fmt.Errorf("the passkey's public key cannot be read: %v", err)
	}
	cdHash := sha256.Sum256(cdj)
	msg := append(append([]byte{}, authData...), cdHash[:]...)
	digest := sha256.Sum256(msg)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest[:], sig) {
			return errors.New("the signature does not verify under the passkey's public key")
		}
	case *rsa.PublicKey:
		if rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) != nil {
			return errors.New("the signature does not verify under the passkey's public key")
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(k, msg, sig) {
			return errors.New("the signature does not verify under the passkey's public key")
		}
	default:
		return fmt.Errorf("passkey key type %T is not supported", pub)
	}
	var cd struct {
		Type      string `json:"type"`
		Challenge string `json:"challenge"`
		Origin    string `json:"origin"`
	}
	if err := json.Unmarshal(cdj, &cd); err != nil {
		return errors.New("client_data_json is not JSON")
	}
	if cd.Type != "webauthn.get" {
		return fmt.Errorf("client data type %q, want webauthn.get", cd.Type)
	}
	got, err := b64url.DecodeString(cd.Challenge)
	if err != nil || subtle.ConstantTimeCompare(got, a.Commit.Challenge()) != 1 {
		return errors.New("the signed challenge is not the one the committed fields give")
	}
	if cd.Origin != a.Origin {
		return fmt.Errorf("client data origin %q, want %q", cd.Origin, a.Origin)
	}
	if len(authData) < 37 {
		return errors.New("authenticator data is shorter than 37 bytes")
	}
	rp := sha256.Sum256([]byte(a.RPID))
	if !bytes.Equal(authData[:32], rp[:]) {
		return errors.New("authenticator data is for another relying party")
	}
	if authData[32]&flagUP == 0 || authData[32]&flagUV == 0 {
		return errors.New("authenticator data lacks the user-present or user-verified flag")
	}
	return nil
}

// SignCount is the authenticator's signature counter in authenticatorData.
func SignCount(authData []byte) uint32 {
	if len(authData) < 37 {
		return 0
	}
	return binary.BigEndian.Uint32(authData[33:37])
}

// PasskeyAdded is the details of an owner.passkey_added event: the
// passkey's public key enters the chain here, and later approvals are
// verified against it.
type PasskeyAdded struct {
	OwnerID       string `json:"owner_id"`
	OwnerName     string `json:"owner_name"`
	CredentialID  string `json:"credential_id"`   // base64url
	PublicKeyCOSE string `json:"public_key_cose"` // base64url COSE_Key, as the authenticator gave it
	PublicKeySPKI string `json:"public_key_spki"` // base64url PKIX DER, what the verifier uses
	Algorithm     int64  `json:"alg"`             // COSE algorithm: -7 ES256, -257 RS256, -8 EdDSA
	AAGUID        string `json:"aaguid"`
	RPID          string `json:"rp_id"`
	Origin        string `json:"origin"`
	NewOwner      bool   `json:"new_owner"`
}

// approvals is what the verifier remembers to check passkey approvals:
// the passkeys the chain added (and revoked), and each pending spend's
// recorded intent.
type approvals struct {
	passkeys map[string]*knownPasskey // credential id → key
	revoked  map[string]bool          // owner ids
	intents  map[string]*ApprovalCommit
	nonces   map[string]bool // challenge nonces already used
}

type knownPasskey struct {
	PasskeyAdded
	spki    []byte
	revoked bool
}

// observe notes what e adds and checks a passkey approval it carries;
// approval reports one that verified.
func (ap *approvals) observe(e *Event) (approval bool, err error) {
	switch e.Action {
	case "owner.passkey_added":
		var p PasskeyAdded
		if json.Unmarshal(e.Details, &p) != nil {
			return false, nil // an unusable key: approvals that name it fail
		}
		spki, err := b64url.DecodeString(p.PublicKeySPKI)
		if err != nil {
			return false, nil
		}
		ap.init()
		if _, dup := ap.passkeys[p.CredentialID]; !dup {
			ap.passkeys[p.CredentialID] = &knownPasskey{PasskeyAdded: p, spki: spki}
		}
	case "owner.passkey_revoked":
		var d struct {
			CredentialID string `json:"credential_id"`
		}
		if json.Unmarshal(e.Details, &d) == nil && ap.passkeys[d.CredentialID] != nil {
			ap.passkeys[d.CredentialID].revoked = true
		}
	case "owner.revoked":
		var d struct {
			OwnerID string `json:"owner_id"`
		}
		if json.Unmarshal(e.Details, &d) == nil {
			ap.init()
			ap.revoked[d.OwnerID] = true
		}
	case "spend.request_approval":
		var d struct {
			SpendID string `json:"spend_id"`
			AgentID string `json:"agent_id"`
			Amount  string `json:"amount"`
			Asset   string `json:"asset"`
			Network string `json:"network"`
			Payee   string `json:"payee"`
			Host    string `json:"host"`
			Intent  struct {
				Signature string `json:"signature"`
				Nonce     string `json:"nonce"`
			} `json:"intent"`
		}
		if json.Unmarshal(e.Details, &d) != nil {
			return false, nil
		}
		ap.init()
		dig := IntentDigest(d.Intent.Signature, d.Intent.Nonce)
		ap.intents[d.SpendID] = &ApprovalCommit{SpendID: d.SpendID, AgentID: d.AgentID, IntentDigest: hex.EncodeToString(dig[:]),
			Amount: d.Amount, Asset: d.Asset, Network: d.Network, Payee: d.Payee, Host: d.Host}
	case "spend.approve":
		var d struct {
			SpendID string            `json:"spend_id"`
			Passkey *PasskeyAssertion `json:"passkey"`
		}
		if err := json.Unmarshal(e.Details, &d); err != nil {
			return false, fmt.Errorf("spend.approve details: %v", err)
		}
		if d.Passkey == nil {
			delete(ap.intents, d.SpendID)
			return false, nil // approved with the owner token
		}
		ap.init()
		err := ap.checkApproval(e, d.SpendID, d.Passkey)
		delete(ap.intents, d.SpendID) // a spend is approved once
		return err == nil, err
	case "spend.deny", "spend.expire":
		var d struct {
			SpendID string `json:"spend_id"`
		}
		if json.Unmarshal(e.Details, &d) == nil {
			delete(ap.intents, d.SpendID) // decided: no approval can follow
		}
	}
	return false, nil
}

func (ap *approvals) init() {
	if ap.passkeys == nil {
		ap.passkeys, ap.revoked = map[string]*knownPasskey{}, map[string]bool{}
		ap.intents, ap.nonces = map[string]*ApprovalCommit{}, map[string]bool{}
	}
}

// CheckApproval checks one passkey approval against the passkey's
// registration and the spend's recorded intent, as the verifier does for
// each spend.approve event: the committed fields are the spend's, the
// approval came before the challenge expired, and the assertion verifies.
func CheckApproval(added *PasskeyAdded, intent *ApprovalCommit, at time.Time, a *PasskeyAssertion) error {
	if added.CredentialID != a.CredentialID || added.OwnerID != a.OwnerID {
		return errors.New("the assertion names another passkey or owner")
	}
	if added.RPID != a.RPID {
		return fmt.Errorf("the assertion is for RP id %q, the passkey was registered for %q", a.RPID, added.RPID)
	}
	c := a.Commit
	if intent == nil {
		return errors.New("no spend.request_approval event records the spend's intent")
	}
	if c.SpendID != intent.SpendID || c.AgentID != intent.AgentID || c.IntentDigest != intent.IntentDigest || c.Amount != intent.Amount ||
		c.Asset != intent.Asset || c.Network != intent.Network || c.Payee != intent.Payee || c.Host != intent.Host {
		return errors.New("the committed fields are not the spend's recorded intent")
	}
	if at.After(c.Expires()) {
		return fmt.Errorf("approved at %s, after the challenge expired at %s", at.Format(time.RFC3339Nano), c.Expires().Format(time.RFC3339Nano))
	}
	spki, err := b64url.DecodeString(added.PublicKeySPKI)
	if err != nil {
		return errors.New("the passkey's public key is not base64url")
	}
	return a.Verify(spki)
}

func (ap *approvals) checkApproval(e *Event, spendID string, a *PasskeyAssertion) error {
	pk := ap.passkeys[a.CredentialID]
	switch {
	case pk == nil:
		return errors.New("approval assertion: no earlier owner.passkey_added event holds its passkey")
	case pk.revoked || ap.revoked[pk.OwnerID]:
		return errors.New("approval assertion: the passkey or its owner was revoked before")
	case e.Actor.Type != "owner" || e.Actor.ID != pk.OwnerID:
		return errors.New("approval assertion: the event's actor is not the passkey's owner")
	case a.Commit.SpendID != spendID:
		return errors.New("approval assertion: it commits to another spend")
	case ap.nonces[a.Commit.Nonce]:
		return errors.New("approval assertion: its challenge was used before")
	}
	ap.nonces[a.Commit.Nonce] = true
	if err := CheckApproval(&pk.PasskeyAdded, ap.intents[spendID], e.Time, a); err != nil {
		return fmt.Errorf("approval assertion: %v", err)
	}
	return nil
}
