// An official v1 paid server (x402-express 1.x): GET /weather for PRICE.
import express from "express";
import { paymentMiddleware } from "x402-express";
import { listen } from "./common.mjs";

const app = express();
app.use(paymentMiddleware(process.env.PAY_TO, {
  "GET /weather": { price: process.env.PRICE || "$0.01", network: "base-sepolia" },
}, { url: process.env.FACILITATOR_URL }));
app.get("/weather", (_req, res) => res.json({ weather: "sunny", version: 1 }));
listen(app);
