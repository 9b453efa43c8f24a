package agentauth

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/ethereum/go-ethereum/crypto"
)

// Signature scheme versions: the EIP-712 domain's version string.
const (
	// VersionUnbound is the first scheme, domain {name: "Purser",
	// version: "1"}: a signature is valid on every Purser that knows the
	// agent's key. Servers refuse it unless told to accept it for a
	// transition (serve --accept-unbound-signatures).
	VersionUnbound = 1
	// VersionBound binds the signature to one deployment: domain {name:
	// "Purser", version: "2", salt: the deployment id}.
	VersionBound = 2
)

// The EIP-712 domain types of each version.
const (
	domainTypeV1 = "EIP712Domain(string name,string version)"
	domainTypeV2 = "EIP712Domain(string name,string version,bytes32 salt)"
)

// Domain is the EIP-712 domain a request signature is bound to. The zero
// Domain is invalid: Sign and Verify refuse it, so a caller that forgot
// to fetch the server's deployment id fails loudly instead of signing
// something no server accepts.
type Domain struct {
	version    uint8
	deployment [32]byte
	separator  [32]byte
}

var unbound = Domain{version: VersionUnbound, separator: crypto.Keccak256Hash(
	crypto.Keccak256([]byte(domainTypeV1)),
	crypto.Keccak256([]byte("Purser")),
	crypto.Keccak256([]byte("1")),
)}

// UnboundDomain is the version 1 domain, without a deployment.
func UnboundDomain() Domain { return unbound }

// DeploymentDomain is the version 2 domain of the deployment with this id
// (the server publishes it at GET /v1/deployment).
func DeploymentDomain(id [32]byte) Domain {
	return Domain{version: VersionBound, deployment: id, separator: crypto.Keccak256Hash(
		crypto.Keccak256([]byte(domainTypeV2)),
		crypto.Keccak256([]byte("Purser")),
		crypto.Keccak256([]byte("2")),
		id[:],
	)}
}

// Version is 1 or 2 (0 for the zero Domain).
func (d Domain) Version() int { return int(d.version) }

// Deployment is the deployment id of a version 2 domain (zero for
// version 1).
func (d Domain) Deployment() [32]byte { return d.deployment }

// DeploymentHex is the deployment id as 0x and 64 hex digits, "" for
// version 1.
func (d Domain) DeploymentHex() string {
	if d.version != VersionBound {
		return ""
	}
	return "0x" + hex.EncodeToString(d.deployment[:])
}

// Separator is the EIP-712 domain separator.
func (d Domain) Separator() [32]byte { return d.separator }

func (d Domain) valid() bool { return d.version == VersionUnbound || d.version == VersionBound }

// ParseDeployment reads a deployment id written as 0x and 64 hex digits.
func ParseDeployment(s string) ([32]byte, error) {
	var id [32]byte
	if !decodeHex0x(id[:], s) {
		return id, fmt.Errorf("agentauth: deployment id %q: want 0x and 64 hex digits", s)
	}
	if id == ([32]byte{}) {
		return id, errors.New("agentauth: deployment id is zero")
	}
	return id, nil
}
