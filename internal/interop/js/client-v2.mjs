// The official v2 client (@x402/fetch + @x402/evm): pays URL once and
// prints {status, body, settlement, payment, header} as JSON (payment is the
// decoded PAYMENT-SIGNATURE it sent, header the raw value).
import { x402Client } from "@x402/core/client";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { toClientEvmSigner } from "@x402/evm";
import { wrapFetchWithPayment } from "@x402/fetch";
import { decodePaymentResponseHeader, decodePaymentSignatureHeader } from "@x402/core/http";
import { account, publicClient } from "./common.mjs";

const c = new x402Client().register("eip155:84532",
  new ExactEvmScheme(toClientEvmSigner(account(process.env.PAYER_KEY), publicClient())));
let sent = null;
const spy = async (input, init) => {
  const h = new Headers(init?.headers || (input instanceof Request ? input.headers : undefined));
  if (h.get("PAYMENT-SIGNATURE")) sent = h.get("PAYMENT-SIGNATURE");
  return fetch(input, init);
};
const r = await wrapFetchWithPayment(spy, c)(process.argv[2]);
const h = r.headers.get("PAYMENT-RESPONSE");
console.log(JSON.stringify({
  status: r.status, body: await r.text(),
  settlement: h ? decodePaymentResponseHeader(h) : null,
  payment: sent ? decodePaymentSignatureHeader(sent) : null,
  header: sent,
}));
