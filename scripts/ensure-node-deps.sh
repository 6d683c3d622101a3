#!/usr/bin/env bash
# Installs the npm packages when they are missing or older than package-lock.json, so that
# `npm start` and `npm test` work on a fresh clone with nothing installed by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
# A symlinked node_modules is an install shared with another checkout (a git worktree): npm ci
# would empty the folder it points to, under every other checkout's feet. Leave it alone.
if [ -L node_modules ]; then
  if [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "ensure-node-deps: node_modules is a link to a shared install ($(readlink node_modules)), older than package-lock.json: not installing here; run npm ci where it points if the lock changed" >&2
  fi
  exit 0
fi
if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "ensure-node-deps: installing npm packages (npm ci)" >&2
  npm ci --no-audit --no-fund
fi
