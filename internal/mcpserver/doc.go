// Package mcpserver serves Purser to MCP clients: one agent's tools
// (limits, balance, x402_fetch, pay, spend_status, confirm, dry_run) over
// the official MCP Go SDK, on stdio or streamable HTTP.
package mcpserver
