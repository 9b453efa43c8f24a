// Shared setup of the interop scripts: a viem chain on the local anvil
// node (chain id 84532, so Base Sepolia's USDC address and v1 name apply).
import { createPublicClient, createWalletClient, http, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { baseSepolia } from "viem/chains";

export const rpc = process.env.RPC_URL;
export const chain = { ...baseSepolia, rpcUrls: { default: { http: [rpc] } } };
export const publicClient = () => createPublicClient({ chain, transport: http(rpc) });
export const walletClient = (key) =>
  createWalletClient({ account: privateKeyToAccount(key), chain, transport: http(rpc) }).extend(publicActions);
export const account = (key) => privateKeyToAccount(key);

// listen starts an express app on 127.0.0.1 and prints one "ready" line.
export function listen(app) {
  const srv = app.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
    console.log(JSON.stringify({ ready: true, port: srv.address().port }));
  });
}
