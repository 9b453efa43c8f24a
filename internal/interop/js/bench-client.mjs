// Latency baseline: the official v2 client (@x402/fetch + @x402/evm, raw
// key) pays URL COUNT times in a row in one process and prints
// {"latencies_ms":[...]}, one entry per paid request (402, sign, paid retry,
// settlement), after one unmeasured warm-up payment.
import { x402Client } from "@x402/core/client";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { toClientEvmSigner } from "@x402/evm";
import { wrapFetchWithPayment } from "@x402/fetch";
import { account, publicClient } from "./common.mjs";

const c = new x402Client().register("eip155:84532",
  new ExactEvmScheme(toClientEvmSigner(account(process.env.PAYER_KEY), publicClient())));
const pay = wrapFetchWithPayment(fetch, c);
const url = process.argv[2];
const count = Number(process.env.COUNT || 10);
const once = async () => {
  const r = await pay(url);
  await r.text();
  if (r.status !== 200 || !r.headers.get("PAYMENT-RESPONSE")) throw new Error(`status ${r.status}`);
};
await once();
const ms = [];
for (let i = 0; i < count; i++) {
  const t0 = performance.now();
  await once();
  ms.push(performance.now() - t0);
}
console.log(JSON.stringify({ latencies_ms: ms }));
