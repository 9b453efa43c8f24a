#!/usr/bin/env bash
# Rebuilds DevUSD's artifacts and Go bindings: go generate ./internal/evm/token
# Needs node/npm (solc-js is installed into a temporary directory, never
# committed) and the abigen tool pinned in go.mod.
set -euo pipefail
cd "$(dirname "$0")"

SOLC_VERSION=0.8.30 # pinned: artifacts are byte-identical only for the same compiler

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
npm install --prefix "$work" --no-save --no-package-lock --no-audit --no-fund --silent "solc@${SOLC_VERSION}"
node compile.js "$work/node_modules"
go tool abigen --v2 --abi DevUSD.abi --bin DevUSD.bin --pkg token --type DevUSD --out devusd_bind.go
