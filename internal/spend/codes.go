package spend

// The one registry of Purser's machine codes: every error code with the
// HTTP status it answers with, and every reason code a spend, a payment
// or the facilitator can carry, with its meaning. The HTTP layer takes
// its statuses from here; docs/api.md's two tables must list exactly
// these codes (codes_test.go compares them, and scans the source for
// codes that are used but not registered). Adding a code is one line.

// ErrorCode is one stable error code.
type ErrorCode struct {
	Code string
	// Status is the HTTP status of an API answer with this code; 0 for a
	// code only the CLI, the configuration or an offline check reports.
	Status  int
	Meaning string
}

// ErrorCodes lists every error code, in the order of docs/api.md.
var ErrorCodes = []ErrorCode{
	{CodeInvalidRequest, 400, "malformed JSON, unknown field, missing or malformed field (`details.field`)"},
	{"body_too_large", 413, "body over 1 MiB"},
	{"amount_invalid", 400, "the amount is not a decimal number"},
	{"amount_negative", 400, "the amount is negative"},
	{"amount_zero", 400, "the amount is zero"},
	{"amount_too_precise", 400, "the amount has more decimals than the asset"},
	{"amount_overflow", 400, "the amount is too large"},
	{"asset_unknown", 400, "the asset is not configured"},
	{"network_unknown", 400, "the network is not configured"},
	{"asset_not_usd", 400, "the asset cannot be counted in USD"},
	{CodeRailUnknown, 400, "the rail is not configured"},
	{"mandate_invalid", 400, "a mandate field is malformed or limits contradict each other (`details.fields`)"},
	{"asset_not_onchain", 400, "the asset has no token contract or EIP-712 domain, so it cannot be paid on chain"},
	{"dev_chain_only", 400, "`fund` works only with `serve --dev-chain`"},
	{"x402_malformed", 400, "the x402 offer in `rail_request` cannot be read"},
	{"x402_too_large", 400, "the x402 offer is too large"},
	{"x402_no_requirements", 400, "the x402 offer carries no payment requirements"},
	{"x402_version_unsupported", 400, "the x402 version is not supported"},
	{"x402_scheme_unsupported", 400, "the offer's scheme is not `exact`"},
	{"x402_network_unsupported", 400, "the offer's network is not one Purser pays on"},
	{"x402_domain_mismatch", 400, "the offer's EIP-712 domain is not the configured asset's"},
	{"x402_payto_invalid", 400, "the offer's `payTo` is not an address"},
	{"x402_host_mismatch", 400, "the spend's host is not the URL's host"},
	{"x402_amount_above_max", 400, "the offer asks more than the agent's own `max`"},
	{"webhook_target_private", 400, "the webhook URL is or resolves to a private, loopback or link-local address; `allow_private` permits it (`details.address`)"},
	{"proxy_path_invalid", 400, "a proxied call's path could steer the request elsewhere or is malformed: `..` or `.` segments, encoded `/`, `\\` or dots, `@`, `//`, control characters, an absolute URL (`details.reason`)"},
	{"secret_invalid", 400, "a vault secret is empty, shorter than 8 bytes, or holds a line break or NUL"},
	{"approval_required", 202, "a proxied call waits for an owner's approval (`details.spend_id`); send it again with the same `Idempotency-Key` once approved"},
	{"unauthorized", 401, "missing or wrong owner token"},
	{"auth_missing", 401, "agent signature headers missing"},
	{"auth_malformed", 401, "agent signature headers malformed"},
	{"signature_invalid", 401, "the signature does not match the request or the claimed agent"},
	{"signature_expired", 401, "`Purser-Expires` is in the past"},
	{"signature_expiry_too_far", 401, "`Purser-Expires` is more than 5 minutes ahead"},
	{"signature_unbound", 401, "a version 1 signature, which binds no deployment, on a server that accepts only version 2"},
	{CodeNonceReplayed, 401, "the nonce was used before"},
	{CodeAgentUnknown, 401, "no agent has this identity key"},
	{CodeAgentKeyRevoked, 401, "the key was rotated away or the agent revoked"},
	{"wrong_credential", 403, "an agent credential on an owner endpoint, or the reverse"},
	{CodeSpendDenied, 403, "the mandate refused the spend: `details.reasons`, `details.spend_id`, `details.spend`"},
	{CodeAgentNotFound, 404, "no such agent"},
	{CodeSpendNotFound, 404, "no such spend (an agent asking for another agent's spend gets this too)"},
	{"not_found", 404, "no such endpoint"},
	{"webhook_not_found", 404, "no such webhook endpoint"},
	{"credential_not_found", 404, "no such vault credential"},
	{"grant_not_found", 404, "the agent has no grant on this credential"},
	{"tool_not_found", 404, "no such tool on this credential"},
	{"host_not_served", 421, "the `Host` header names a host this server does not answer for (`serve --host-names`)"},
	{"method_not_allowed", 405, "the path exists but not with this method; the `Allow` header lists the methods it takes"},
	{CodeAgentExists, 409, "name or identity key taken"},
	{"credential_exists", 409, "a vault credential with this name exists"},
	{"tool_exists", 409, "another credential has a tool with this name"},
	{"call_already_made", 409, "a proxied call with this `Idempotency-Key` was carried out (or is running) already: it is not sent again (`details.spend_id`, `details.status`)"},
	{CodeIdempotencyConflict, 409, "the idempotency key was used for a different request; `details.field` names the first differing field"},
	{CodeInvalidState, 409, "the spend or agent is not in a state that allows this (`details.status`)"},
	{CodeMandateConflict, 409, "the mandate changed since the version the edit was based on"},
	{CodeCaptureExceedsHold, 409, "a capture above the authorized amount"},
	{"audit_chain_broken", 409, "`details.seq` is the first bad sequence number"},
	{CodeChainDisagrees, 409, "an owner's resolution of an unknown spend contradicts what the chain shows"},
	{"unsupported_media_type", 415, "`purser facilitator`: the body is not `application/json`"},
	{"rate_limited", 429, "`purser facilitator`: over `--rate-per-payer` or `--rate-per-source`; `Retry-After` says when to retry"},
	{CodeTooManyRequests, 429, "the agent is over its request rate (`serve --agent-rate`); nothing was written; retry after `Retry-After`"},
	{CodeRailFailed, 502, "the rail could not sign or execute; the hold stays until it expires"},
	{"upstream_unreachable", 502, "the proxy could not reach the credential's upstream; nothing was sent and the call's hold was released"},
	{"upstream_private", 502, "the credential's upstream resolves to a private, loopback or link-local address and the credential does not allow it (`vault put --allow-private`)"},
	{"upstream_timeout", 504, "the upstream did not answer within the credential's timeout; the request was sent, so its price was captured"},
	{"upstream_failed", 502, "the connection to the upstream broke after the call was sent; its price was captured"},
	{"upstream_response_too_large", 502, "the upstream's answer is larger than the proxy returns"},
	{"upstream_encoding_unsupported", 502, "the upstream answered with a content encoding the proxy cannot scrub (only identity and gzip are read)"},
	{CodeUnavailable, 503, "the database did not answer within its deadline; nothing was changed"},
	{CodeChainUnavailable, 503, "no chain is connected for the spend's network (`serve --rpc`)"},
	{"session_required", 401, "the portal or /auth request has no live owner session: sign in with a passkey (a browser's HTML GET is redirected to `/signin` instead)"},
	{"csrf_failed", 403, "a state-changing portal or /auth request lacks the session's CSRF token (`X-CSRF-Token`) or carries a wrong one"},
	{"origin_not_allowed", 403, "a state-changing portal or /auth request whose `Origin` is not the portal's public origin (`serve --public-url`)"},
	{"invite_invalid", 400, "the enrolment link is unknown, used already or expired: ask for a new one (`purser owner invite`)"},
	{"challenge_invalid", 400, "the WebAuthn challenge is unknown, answered already or expired: begin the ceremony again"},
	{"webauthn_invalid", 400, "the WebAuthn response does not verify: challenge, origin, RP id, flags or signature"},
	{"passkey_refused", 403, "the passkey is unknown or revoked, its owner is revoked, or its signature counter went back (a cloned authenticator)"},
	{"approval_mismatch", 409, "the passkey assertion commits to another spend, or the spend changed since its challenge was made"},
	{"owner_not_found", 404, "no such owner or passkey"},
	{"cosign_not_ready", 409, "the agent's wallet is co-signed (`2of2`) and its key generation has not finished, or the spend has no authorization awaiting a co-signature"},
	{"cosign_session_used", 409, "the spend's co-signing session was run already (a second session for a spend is never run, even if the first failed)"},
	{"cosign_message_invalid", 400, "a co-signing protocol message was refused (malformed, another session, out of order, tampered); nothing was answered"},
	{"cosign_signature_invalid", 400, "the co-signed signature does not recover to the wallet over the spend's digest, or its s is high or v not 27/28"},
	{"cosign_custody_mismatch", 409, "a co-signing request for an agent whose wallet is server-held, or a server-custody request (key generation) for one that is co-signed or has its key already"},
	{"internal", 500, "anything else; details are logged server-side only"},

	// Reported by the CLI, the configuration or an offline check, never
	// in an API answer.
	{"x402_unknown_network", 0, "`x402 fetch`: the offer's network is not an `eip155:` chain"},
	{"x402_no_payable_offer", 0, "`x402 fetch`: no offer of the 402 is one Purser can pay"},
	{"x402_redirect_refused", 0, "`x402 fetch`: the seller redirected to another host, or too often"},
	{"response_too_large", 0, "`x402 fetch`: the seller's response is too large"},
	{"already_paid", 0, "`x402 confirm`: the spend was paid already"},
	{"cosign_authorization_mismatch", 0, "SDK/CLI, co-signed (2of2) wallet: the authorization Purser asks the agent to co-sign is not what the agent asked for (payee, amount, token, wallet or digest); nothing is signed"},
	{"asset_invalid", 0, "`serve --assets`: an asset is malformed or configured twice"},
	{"keystore_sealed", 0, "`serve`: the key-encryption key does not open the master seed"},
	{"audit_export_malformed", 0, "`audit verify FILE`: a line of the export cannot be read"},

	// Reported by `purser mcp` in a tool result's error.code (docs/mcp.md),
	// never in an API answer.
	{"missing_field", 0, "`purser mcp`: a required tool argument is absent or empty (`error.field`)"},
	{"unknown_field", 0, "`purser mcp`: an argument the tool does not take, or one spelled in another case (`error.field`)"},
	{"value_invalid", 0, "`purser mcp`: a malformed or out-of-range argument: method, address, asset, network, memo, spend id, idempotency key, wait (`error.field`)"},
	{"url_invalid", 0, "`purser mcp`: the URL is not absolute, has no host, is too long or carries credentials"},
	{"url_scheme_not_allowed", 0, "`purser mcp`: the URL's scheme is not http or https (`file:`, `data:`, `ftp:`, ...)"},
	{"headers_too_large", 0, "`purser mcp`: more than 32 request headers, a value over 4 KiB or over 16 KiB together"},
	{"header_invalid", 0, "`purser mcp`: a header name that is not an HTTP token, or a value with a line break or NUL"},
	{"header_not_allowed", 0, "`purser mcp`: a header Purser or the HTTP client sets (`Host`, `Content-Length`, hop-by-hop, `X-PAYMENT`, `PAYMENT-SIGNATURE`, `Purser-*`)"},
	{"purser_unreachable", 0, "`purser mcp`, `purser proxy serve`: Purser could not be reached; for a call that may have paid, the status is `unknown` and a retry with the same idempotency key is safe (`proxy serve` answers it with 502 and `Purser-Error`)"},
	{"seller_unreachable", 0, "`purser mcp`: the seller could not be reached before any payment"},
}

// Reason kinds: where a reason code appears.
const (
	ReasonKindDeny        = "deny"        // a refused spend (`spend_denied`, status denied)
	ReasonKindApproval    = "approval"    // a spend waiting for the owner
	ReasonKindRelease     = "release"     // why a held spend was released or cancelled
	ReasonKindPayment     = "payment"     // `x402 fetch`: why a paid request was not served
	ReasonKindFacilitator = "facilitator" // `purser facilitator`: x402 `invalidReason`/`errorReason`
	ReasonKindBody        = "body"        // `invalid_request`'s `details.reason`: why a body is ambiguous
)

// ReasonCode is one reason code.
type ReasonCode struct {
	Code    string
	Kind    string
	Meaning string
}

// ReasonCodes lists every reason code, in the order of docs/api.md. The
// mandate's reasons come first, in the order mandate.Evaluate reports them.
var ReasonCodes = []ReasonCode{
	{"no_mandate", ReasonKindDeny, "the agent has no mandate capping its spending (per_tx_max, daily or lifetime)"},
	{"mandate_not_yet_valid", ReasonKindDeny, "the mandate is not valid yet (before valid_from)"},
	{"mandate_expired", ReasonKindDeny, "the mandate has expired (valid_until has passed)"},
	{"rail_not_allowed", ReasonKindDeny, "the mandate does not allow this payment rail"},
	{"host_not_allowed", ReasonKindDeny, "the mandate does not allow paying this host"},
	{"payee_denied", ReasonKindDeny, "the payee is on the mandate's deny list"},
	{"payee_not_allowed", ReasonKindDeny, "the payee is not on the mandate's allowlist"},
	{"per_tx_cap_exceeded", ReasonKindDeny, "the amount is above the per-transaction cap"},
	{"daily_budget_exceeded", ReasonKindDeny, "the spend would exceed today's budget"},
	{"lifetime_budget_exceeded", ReasonKindDeny, "the spend would exceed the lifetime budget"},
	{"rate_limited", ReasonKindDeny, "the agent reached its rate limit for the current window"},
	{"payee_pin_mismatch", ReasonKindDeny, "this host was paid to another payee before, and the mandate pins hosts to their payee"},
	{"agent_frozen", ReasonKindDeny, "the agent is frozen (also the reason its pending approvals were cancelled)"},
	{"agent_revoked", ReasonKindDeny, "the agent is revoked (also the reason its pending approvals were cancelled)"},
	{ReasonTooManyOpenSpends, ReasonKindDeny, "on a signing rail (x402, payout), the agent already has the server's cap of signed spends not settled yet (`serve --max-open-spends`)"},
	{"above_auto_approve", ReasonKindApproval, "the amount is above the auto-approve limit, so the owner must approve it"},
	{"new_payee_requires_approval", ReasonKindApproval, "the agent never paid this payee, so the owner must approve the first spend"},
	{"grant_missing", ReasonKindDeny, "rail apiproxy: the agent has no grant on the credential"},
	{"grant_revoked", ReasonKindDeny, "rail apiproxy: the agent's grant on the credential was revoked"},
	{"grant_expired", ReasonKindDeny, "rail apiproxy: the agent's grant on the credential has expired"},
	{"grant_method_not_allowed", ReasonKindDeny, "rail apiproxy: the grant does not allow this HTTP method"},
	{"grant_path_not_allowed", ReasonKindDeny, "rail apiproxy: the grant does not allow this path"},
	{"grant_rate_limited", ReasonKindDeny, "rail apiproxy: the grant's own rate limit is reached for the current window"},
	{"owner_denied", ReasonKindRelease, "the owner denied the spend; its hold was released"},
	{"authorization_expired_unused", ReasonKindRelease, "the signed authorization expired and the chain shows it unused"},
	{"insufficient_funds", ReasonKindRelease, "the agent's wallet cannot pay the payout"},
	{"relayer_unfunded", ReasonKindRelease, "the relayer has no gas to send the payout"},
	{"transfer_reverted", ReasonKindRelease, "the payout transfer reverted on chain"},
	{"authorization_cancelled", ReasonKindRelease, "the signed authorization was cancelled on chain (freeze --cancel-signed, or a payout that failed after signing) before its hold was released"},
	{"owner_resolved", ReasonKindRelease, "an owner resolved the unknown spend as released (`spend resolve --released`); the chain, where connected, showed its authorization unusable"},
	{"upstream_unreachable", ReasonKindRelease, "rail apiproxy: the upstream could not be reached, so nothing was sent"},
	{"upstream_not_served", ReasonKindRelease, "rail apiproxy: the upstream answered 401, 403, 407, 429 or 5xx: it did not serve the call, so its price was not captured"},
	{"invalid_utf8", ReasonKindBody, "the body is not valid UTF-8 (or escapes a lone surrogate)"},
	{"syntax", ReasonKindBody, "the body is not one JSON value"},
	{"duplicate_key", ReasonKindBody, "an object names the same key twice"},
	{"case_variant_key", ReasonKindBody, "an object has two keys that differ only in case"},
	{"key_case_mismatch", ReasonKindBody, "a key matches a field only case-insensitively (`Amount` for `amount`)"},
	{"seller_request_failed", ReasonKindPayment, "the paid request to the seller failed"},
	{"invalid_exact_evm_scheme", ReasonKindFacilitator, "the scheme is not `exact`"},
	{"invalid_exact_evm_missing_eip712_domain", ReasonKindFacilitator, "the requirements carry no EIP-712 domain"},
	{"invalid_exact_evm_network_mismatch", ReasonKindFacilitator, "payload and requirements name different networks"},
	{"invalid_exact_evm_signature", ReasonKindFacilitator, "the authorization's signature is not the payer's"},
	{"invalid_exact_evm_recipient_mismatch", ReasonKindFacilitator, "the authorization pays someone other than `payTo`"},
	{"invalid_exact_evm_payload_authorization_valid_before", ReasonKindFacilitator, "the authorization has expired or expires too soon"},
	{"invalid_exact_evm_payload_authorization_valid_after", ReasonKindFacilitator, "the authorization is not valid yet"},
	{"invalid_exact_evm_payload_authorization_value_mismatch", ReasonKindFacilitator, "the authorization's value is not the required amount"},
	{"invalid_exact_evm_authorization_value", ReasonKindFacilitator, "the authorization's value is not the required amount (x402 version 1)"},
	{"asset_not_deployed_contract", ReasonKindFacilitator, "no token contract at the asset's address"},
	{"invalid_exact_evm_eip3009_not_supported", ReasonKindFacilitator, "the token does not support EIP-3009"},
	{"invalid_exact_evm_nonce_already_used", ReasonKindFacilitator, "the authorization was used or cancelled"},
	{"invalid_exact_evm_token_name_mismatch", ReasonKindFacilitator, "the EIP-712 name is not the token's"},
	{"invalid_exact_evm_token_version_mismatch", ReasonKindFacilitator, "the EIP-712 version is not the token's"},
	{"invalid_exact_evm_insufficient_balance", ReasonKindFacilitator, "the payer's balance is below the value"},
	{"invalid_exact_evm_transaction_simulation_failed", ReasonKindFacilitator, "simulating the transfer failed"},
	{"invalid_exact_evm_transaction_failed", ReasonKindFacilitator, "the transfer failed on chain"},
	{"invalid_exact_evm_transfer_event_mismatch", ReasonKindFacilitator, "the receipt's transfer is not the authorized one"},
	{"invalid_exact_evm_required_amount", ReasonKindFacilitator, "the requirements' amount is missing, zero or malformed: nothing is verified or settled"},
	{"payto_not_allowed", ReasonKindFacilitator, "the requirements' `payTo` is not one of the facilitator's `--sellers`"},
	{"settlement_pending", ReasonKindFacilitator, "the transfer was sent but its receipt is not in yet"},
	{"invalid_network", ReasonKindFacilitator, "the facilitator does not serve this network"},
	{"invalid_payload", ReasonKindFacilitator, "the payment payload cannot be read"},
}

var statusByCode = func() map[string]int {
	m := make(map[string]int, len(ErrorCodes))
	for _, c := range ErrorCodes {
		m[c.Code] = c.Status
	}
	return m
}()

var reasonMeaning = func() map[string]string {
	m := make(map[string]string, len(ReasonCodes))
	for _, r := range ReasonCodes {
		m[r.Code] = r.Meaning
	}
	return m
}()

// HTTPStatus returns the HTTP status of an error code, and false for a
// code outside the registry or one never sent over HTTP.
func HTTPStatus(code string) (int, bool) {
	s := statusByCode[code]
	return s, s != 0
}

// DescribeReason returns a one-line explanation of a reason code, or ""
// for a code outside the registry.
func DescribeReason(code string) string { return reasonMeaning[code] }
