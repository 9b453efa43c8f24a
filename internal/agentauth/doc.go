// Package agentauth authenticates agent API calls without bearer secrets:
// each request is signed with the agent's secp256k1 identity key as EIP-712
// typed data and carried in four Purser-* headers.
//
// The signed struct is
//
//	Request(address agent,string method,string path,bytes32 bodyHash,bytes32 nonce,uint64 expires)
//
// in one of two domains (no chainId in either: this is off-chain API auth
// and must never be replayable as a chain message):
//
//   - version 2, EIP712Domain(string name,string version,bytes32 salt) with
//     {name: "Purser", version: "2", salt: deployment id}: the signature is
//     valid on one deployment only (all nodes of one cluster share the id;
//     the server publishes it at GET /v1/deployment);
//   - version 1, EIP712Domain(string name,string version) with {name:
//     "Purser", version: "1"}: unbound, replayable to any Purser that knows
//     the agent's key; servers refuse it unless an operator allows it for a
//     transition.
//
// method is the HTTP method and path the request-target exactly as sent on
// the wire: a Go client signs req.URL.RequestURI() and the server verifies
// against r.RequestURI, so no re-encoding can make the two disagree.
// bodyHash is keccak256 of the exact body bytes.
//
// This package checks the signature and the expiry window only; single use
// of the nonce is the server store's job.
package agentauth
