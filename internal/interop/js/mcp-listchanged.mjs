// The official MCP TypeScript SDK's client (@modelcontextprotocol/sdk)
// against `purser mcp` over stdio, watching the tool list: it prints one
// JSON line when connected (the tools listed) and one per
// notifications/tools/list_changed (the SDK lists the tools again). The
// first time CALL_TOOL is listed it calls it with CALL_ARGS (the SDK
// checks the result against the tool's output schema). It exits after
// WANT_CHANGES notifications.
//
// env: PURSER_BIN, PURSER_AGENT_KEY, PURSER_SERVER, WANT_CHANGES,
// CALL_TOOL, CALL_ARGS (JSON).
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const env = process.env;
const emit = (o) => console.log(JSON.stringify(o));
const want = Number(env.WANT_CHANGES || "2");
let changes = 0;
let called = false;
let done;
const finished = new Promise((resolve) => { done = resolve; });
const transport = new StdioClientTransport({
  command: env.PURSER_BIN,
  args: ["mcp", "--agent-key", env.PURSER_AGENT_KEY, "--server", env.PURSER_SERVER, "--tools-poll", "100ms"],
  stderr: "inherit",
});
const client = new Client({ name: "purser-interop-ts", version: "0.0.1" }, {
  listChanged: {
    tools: {
      onChanged: async (err, tools) => {
        if (err) {
          emit({ event: "error", error: String(err) });
          return;
        }
        const ev = { event: "changed", tools: tools.map((t) => t.name).sort() };
        if (env.CALL_TOOL && !called && ev.tools.includes(env.CALL_TOOL)) {
          called = true;
          const r = await client.callTool({ name: env.CALL_TOOL, arguments: JSON.parse(env.CALL_ARGS || "{}") });
          ev.call = { isError: !!r.isError, structured: r.structuredContent };
        }
        emit(ev);
        if (++changes >= want) done();
      },
    },
  },
});
await client.connect(transport);
const { tools } = await client.listTools();
emit({ event: "listed", tools: tools.map((t) => t.name).sort(), listChanged: !!client.getServerCapabilities()?.tools?.listChanged });
await finished;
await client.close();
