// The official facilitator (@x402/core + @x402/evm), v2 and v1, over HTTP.
import express from "express";
import { x402Facilitator } from "@x402/core/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { ExactEvmScheme } from "@x402/evm/exact/facilitator";
import { ExactEvmSchemeV1 } from "@x402/evm/exact/v1/facilitator";
import { listen, walletClient } from "./common.mjs";

const client = walletClient(process.env.FACILITATOR_KEY);
const signer = toFacilitatorEvmSigner({
  address: client.account.address,
  readContract: (a) => client.readContract(a),
  verifyTypedData: (a) => client.verifyTypedData(a),
  writeContract: (a) => client.writeContract(a),
  sendTransaction: (a) => client.sendTransaction(a),
  waitForTransactionReceipt: (a) => client.waitForTransactionReceipt(a),
  getCode: (a) => client.getCode(a),
});
const f = new x402Facilitator()
  .register("eip155:84532", new ExactEvmScheme(signer))
  .registerV1("base-sepolia", new ExactEvmSchemeV1(signer));

const app = express();
app.use(express.json());
const route = (fn) => async (req, res) => {
  try {
    res.json(await fn(req.body.paymentPayload, req.body.paymentRequirements));
  } catch (e) {
    res.status(500).json({ error: String(e) });
  }
};
app.post("/verify", route((p, r) => f.verify(p, r)));
app.post("/settle", route((p, r) => f.settle(p, r)));
app.get("/supported", async (_req, res) => res.json(await f.getSupported()));
listen(app);
