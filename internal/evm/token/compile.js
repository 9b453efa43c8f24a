// Compiles DevUSD.sol with solc-js into DevUSD.abi, DevUSD.bin (creation code)
// and DevUSD.deployed.bin (runtime code). Usage: node compile.js <node_modules dir>
// Settings are fixed and the metadata hash is left out, so a rebuild with the
// same solc version is byte-identical.
"use strict";
const fs = require("fs");
const path = require("path");

const solc = require(path.join(process.argv[2], "solc"));
const dir = __dirname;
const input = {
  language: "Solidity",
  sources: { "DevUSD.sol": { content: fs.readFileSync(path.join(dir, "DevUSD.sol"), "utf8") } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    metadata: { bytecodeHash: "none", appendCBOR: false },
    outputSelection: { "DevUSD.sol": { DevUSD: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors || []).filter((e) => e.severity === "error");
for (const e of out.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);

const c = out.contracts["DevUSD.sol"].DevUSD;
fs.writeFileSync(path.join(dir, "DevUSD.abi"), JSON.stringify(c.abi, null, 2) + "\n");
fs.writeFileSync(path.join(dir, "DevUSD.bin"), c.evm.bytecode.object);
fs.writeFileSync(path.join(dir, "DevUSD.deployed.bin"), c.evm.deployedBytecode.object);
console.error("compiled DevUSD with solc " + solc.version());
