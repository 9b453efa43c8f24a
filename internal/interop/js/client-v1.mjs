// The official v1 client (x402 1.x createPaymentHeader): reads the v1 402
// body, pays its first offer with X-PAYMENT, prints {status, body,
// settlement, payment} as JSON.
import { createPaymentHeader } from "x402/client";
import { account } from "./common.mjs";

const url = process.argv[2];
const first = await fetch(url);
if (first.status !== 402) throw new Error(`expected 402, got ${first.status}`);
const req = (await first.json()).accepts[0];
const header = await createPaymentHeader(account(process.env.PAYER_KEY), 1, req);
const r = await fetch(url, { headers: { "X-PAYMENT": header } });
const s = r.headers.get("X-PAYMENT-RESPONSE");
console.log(JSON.stringify({
  status: r.status, body: await r.text(),
  settlement: s ? JSON.parse(Buffer.from(s, "base64").toString()) : null,
  payment: JSON.parse(Buffer.from(header, "base64").toString()),
  header,
}));
