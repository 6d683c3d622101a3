#!/usr/bin/env bash
# Installs the npm packages when they are missing or older than package-lock.json, so that
# `npm start` and `npm test` work on a fresh clone with nothing installed by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "ensure-node-deps: installing npm packages (npm ci)" >&2
  npm ci --no-audit --no-fund
fi
