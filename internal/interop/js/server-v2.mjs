// An official v2 paid server (@x402/express): GET /weather for PRICE.
import express from "express";
import { paymentMiddleware } from "@x402/express";
import { x402ResourceServer, HTTPFacilitatorClient } from "@x402/core/server";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import { listen } from "./common.mjs";

const rs = new x402ResourceServer(new HTTPFacilitatorClient({ url: process.env.FACILITATOR_URL }))
  .register("eip155:84532", new ExactEvmScheme());
const app = express();
app.use(paymentMiddleware({
  "GET /weather": {
    accepts: { scheme: "exact", price: process.env.PRICE || "$0.01", network: "eip155:84532", payTo: process.env.PAY_TO },
    description: "Weather", mimeType: "application/json",
  },
}, rs));
app.get("/weather", (_req, res) => res.json({ weather: "sunny", version: 2 }));
listen(app);
