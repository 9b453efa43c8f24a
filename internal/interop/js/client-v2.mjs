// The official v2 client (@x402/fetch + @x402/evm): pays URL once and
// prints {status, body, settlement, payment} as JSON. With REPEAT=N it pays
// N times in a row and prints the latency of each paid request in ms.
import { x402Client } from "@x402/core/client";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { toClientEvmSigner } from "@x402/evm";
import { wrapFetchWithPayment } from "@x402/fetch";
import { decodePaymentResponseHeader } from "@x402/core/http";
import { account, publicClient } from "./common.mjs";

const c = new x402Client().register("eip155:84532",
  new ExactEvmScheme(toClientEvmSigner(account(process.env.PAYER_KEY), publicClient())));
let sent = null;
const spy = async (input, init) => {
  const h = new Headers(init?.headers || (input instanceof Request ? input.headers : undefined));
  if (h.get("PAYMENT-SIGNATURE")) sent = h.get("PAYMENT-SIGNATURE");
  return fetch(input, init);
};
const pay = wrapFetchWithPayment(spy, c);
const url = process.argv[2];
const repeat = Number(process.env.REPEAT || 0);
if (repeat > 0) {
  const ms = [];
  for (let i = 0; i < repeat; i++) {
    const t0 = performance.now();
    const r = await pay(url);
    await r.text();
    if (r.status !== 200) throw new Error(`status ${r.status}`);
    ms.push(performance.now() - t0);
  }
  console.log(JSON.stringify({ latencies_ms: ms }));
} else {
  const r = await pay(url);
  const h = r.headers.get("PAYMENT-RESPONSE");
  console.log(JSON.stringify({
    status: r.status, body: await r.text(),
    settlement: h ? decodePaymentResponseHeader(h) : null,
    payment: sent ? JSON.parse(Buffer.from(sent, "base64").toString()) : null,
  }));
}
