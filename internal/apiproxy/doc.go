// Package apiproxy is Purser's credential vault and the rail that uses
// it: an owner stores an API's secret once (sealed with the keystore's
// envelope encryption) and grants agents narrow use of it; an agent calls
// the API through Purser (/v1/proxy/NAME/PATH, signed like every agent
// request), and each call is a spend on rail "apiproxy" through the one
// spend pipeline: the grant (in the decision's transaction, so a
// revocation stops the next call) and the mandate decide, the call's
// price is held, the request goes to the credential's fixed upstream with
// the secret injected, and the answer comes back with every form of the
// secret scrubbed. The agent sees the endpoint and the answer, never the
// key.
//
// Files: vault.go (the owner's operations), rail.go (pricing, the grant
// check in the decision's transaction, the agent's catalogue), proxy.go
// (one call: authorize, forward, settle). The forwarding core touches
// neither the database nor the pipeline: inject.go parses injection
// specs, path.go cleans the agent's path and matches grant patterns,
// forward.go sends one call to the fixed upstream through the egress
// guard (internal/egress), scrub.go removes every form of the secret from
// the answer.
package apiproxy
