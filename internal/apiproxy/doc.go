// Package apiproxy is the forwarding core of the credential proxy (issue
// 12): it parses injection specs and upstream URLs, cleans the agent's
// path and matches it against grant patterns, forwards one call to the
// credential's fixed upstream with the secret injected, and streams the
// answer back with every form of the secret scrubbed out.
//
// It touches neither the database nor the spend pipeline: the caller (the
// apiproxy rail) checks grant and mandate, then calls Forwarder.Do and
// decides capture or release from the Result.
package apiproxy
