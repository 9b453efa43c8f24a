// The official MCP TypeScript SDK's client (@modelcontextprotocol/sdk)
// against `purser mcp`, over stdio or streamable HTTP. It lists the tools,
// then calls limits, x402_fetch (paid), x402_fetch above max_amount
// (refused) and x402_fetch of a file: URL (invalid input), and a payment
// that waits for the owner's approval (URL elicitation of the approval
// page, progress notifications while it waits). The SDK checks every
// result's structuredContent against its tool's outputSchema and throws
// if one does not match. Prints one JSON object.
//
// env: MCP_TRANSPORT (stdio|http); stdio: PURSER_BIN, PURSER_AGENT_KEY,
// PURSER_SERVER, APPROVAL_URL; http: MCP_URL; both: SELLER_URL (a paid GET
// /item and a pricier /pricey that needs approval), IDEMPOTENCY_KEY.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const env = process.env;
const transport = env.MCP_TRANSPORT === "http"
  ? new StreamableHTTPClientTransport(new URL(env.MCP_URL))
  : new StdioClientTransport({
      command: env.PURSER_BIN,
      args: ["mcp", "--agent-key", env.PURSER_AGENT_KEY, "--server", env.PURSER_SERVER, "--approval-url", env.APPROVAL_URL],
      stderr: "inherit",
    });
const client = new Client({ name: "purser-interop-ts", version: "0.0.1" }, { capabilities: { elicitation: { url: {} } } });
const out = { server: null, tools: [], elicitations: [] };
// The user "opens" the approval page the server offers.
client.setRequestHandler(ElicitRequestSchema, async (req) => {
  out.elicitations.push(req.params);
  return { action: "accept" };
});
await client.connect(transport);
out.server = client.getServerVersion()?.name ?? null;
const { tools } = await client.listTools();
for (const t of tools) {
  out.tools.push({ name: t.name, annotations: t.annotations, hasOutputSchema: !!t.outputSchema });
}
const call = async (name, args) => {
  const r = await client.callTool({ name, arguments: args });
  return { isError: !!r.isError, structured: r.structuredContent, text: r.content?.[0]?.text ?? null };
};
out.limits = await call("limits", {});
out.fetch = await call("x402_fetch", { url: env.SELLER_URL + "/item", max_amount: "0.05", idempotency_key: env.IDEMPOTENCY_KEY });
out.refused = await call("x402_fetch", { url: env.SELLER_URL + "/pricey", max_amount: "0.05" });
out.invalid = await call("x402_fetch", { url: "file:///etc/passwd" });
let progress = 0;
const waited = await client.callTool(
  { name: "x402_fetch", arguments: { url: env.SELLER_URL + "/pricey", wait_for_approval_seconds: 60, idempotency_key: env.IDEMPOTENCY_KEY + "-wait" } },
  undefined,
  { onprogress: () => { progress++; }, timeout: 120000, resetTimeoutOnProgress: true },
);
out.waited = { isError: !!waited.isError, structured: waited.structuredContent, text: waited.content?.[0]?.text ?? null, progress };
console.log(JSON.stringify(out));
await client.close();
