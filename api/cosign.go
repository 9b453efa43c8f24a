package api

// Co-signed (2-of-2) wallets: the wire types of docs/cosign-design.md,
// section "Integration contract".

// Custody values of an agent (api.Agent.Custody, CreateAgentRequest.Custody).
const (
	CustodyServer = "server"
	Custody2of2   = "2of2"
)

// WalletCustodyCosign is api.Wallet.Custody of a co-signed wallet.
const WalletCustodyCosign = "cosign-2of2"

// MaxCosignMessage is the most bytes a co-signing protocol message may carry
// (the body of POST /v1/agent/spends/{id}/cosign and of keygen messages
// once decoded).
const MaxCosignMessage = 320 << 10

// KeygenRequest is the body of POST /v1/agents/{ref}/cosign/keygen: the
// agent side's next key generation message (m1, m3, m5), base64.
type KeygenRequest struct {
	Message string `json:"message"`
}

// KeygenResponse is its answer: the server's next message (m2, m4) with
// Done false, or, after m5, Done true with the wallet's address and its
// compressed public key.
type KeygenResponse struct {
	Message   string `json:"message,omitempty"`
	Done      bool   `json:"done"`
	Address   string `json:"address,omitempty"`
	PublicKey string `json:"public_key,omitempty"`
	// Epoch is set by a share refresh's last answer: the epoch the new
	// shares take once committed (the check digest names it).
	Epoch int64 `json:"epoch,omitempty"`
}

// RefreshFinishRequest is the body of POST
// /v1/agents/{ref}/cosign/refresh/finish: the check signature made with the
// new shares (0x, 65 bytes r‖s‖v) over cosign.RefreshCheck(agent id,
// epoch, refresh session id).Digest and, when the agent has a recovery blob, the new share's
// (the old one holds a dead share).
type RefreshFinishRequest struct {
	Signature string        `json:"signature"`
	Recovery  *RecoveryBlob `json:"recovery,omitempty"`
}

// RefreshFinishResponse answers it: the new shares are active under Epoch,
// and the address is unchanged.
type RefreshFinishResponse struct {
	Address string `json:"address"`
	Epoch   int64  `json:"epoch"`
}

// RecoveryBlob is the agent share encrypted (HPKE) to the owner's X25519
// recovery public key; the server stores it without being able to open it.
// Body of POST /v1/agents/{ref}/cosign/recovery and answer of its GET.
type RecoveryBlob struct {
	PublicKey  string `json:"public_key"`
	Ciphertext string `json:"ciphertext"`
}

// CosignSigning is what a co-signed spend's agent signs with the server: the
// EIP-3009 authorization the server built, its EIP-712 domain, the digest,
// and the session id (cosign.SignBinding{AgentID, SpendID, Digest}
// .SessionID(public key)). The agent recomputes digest and session id itself.
type CosignSigning struct {
	SessionID     string              `json:"session_id"`
	Digest        string              `json:"digest"`
	Authorization CosignAuthorization `json:"authorization"`
	Domain        CosignDomain        `json:"domain"`
}

// CosignAuthorization is an EIP-3009 TransferWithAuthorization's fields;
// value and times are decimal strings, addresses and nonce 0x-hex.
type CosignAuthorization struct {
	From        string `json:"from"`
	To          string `json:"to"`
	Value       string `json:"value"`
	ValidAfter  string `json:"valid_after"`
	ValidBefore string `json:"valid_before"`
	Nonce       string `json:"nonce"`
}

// CosignDomain is the token's EIP-712 domain.
type CosignDomain struct {
	Name              string `json:"name"`
	Version           string `json:"version"`
	ChainID           string `json:"chain_id"`
	VerifyingContract string `json:"verifying_contract"`
}

// CosignFinishRequest is the body of POST
// /v1/agent/spends/{id}/cosign/finish: the finished signature r‖s‖v, 0x-hex
// of 65 bytes.
type CosignFinishRequest struct {
	Signature string `json:"signature"`
}
