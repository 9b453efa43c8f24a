// The official MCP TypeScript SDK's client (@modelcontextprotocol/sdk)
// against `purser mcp`, over stdio or streamable HTTP. It lists the tools,
// then calls limits, x402_fetch (paid), x402_fetch above max_amount
// (refused) and x402_fetch of a file: URL (invalid input). The SDK checks
// every result's structuredContent against its tool's outputSchema and
// throws if one does not match. Prints one JSON object.
//
// env: MCP_TRANSPORT (stdio|http); stdio: PURSER_BIN, PURSER_AGENT_KEY,
// PURSER_SERVER; http: MCP_URL; both: SELLER_URL (a paid GET /item and a
// pricier /pricey), IDEMPOTENCY_KEY.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const env = process.env;
const transport = env.MCP_TRANSPORT === "http"
  ? new StreamableHTTPClientTransport(new URL(env.MCP_URL))
  : new StdioClientTransport({
      command: env.PURSER_BIN,
      args: ["mcp", "--agent-key", env.PURSER_AGENT_KEY, "--server", env.PURSER_SERVER],
      stderr: "inherit",
    });
const client = new Client({ name: "purser-interop-ts", version: "0.0.1" });
await client.connect(transport);

const out = { protocol: client.getServerVersion()?.name ?? null, tools: [] };
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
console.log(JSON.stringify(out));
await client.close();
