#!/usr/bin/env bash
# Installs the npm packages (npm ci) when they are missing or were installed from another
# package-lock.json, so that `npm start` and `npm test` work on a fresh clone with nothing
# installed by hand. "Another lock" is decided by content (its SHA-256, kept in node_modules after
# an install), not by file dates, which git checkouts and merges change without changing the lock.
# `--check`: install nothing; exit 1 (with the reason) when an install would run.
set -euo pipefail
cd "$(dirname "$0")/.."
check=false
[ "${1:-}" = --check ] && check=true
stamp=node_modules/.starsock-lock-sha256
want=$(node -e "process.stdout.write(require('node:crypto').createHash('sha256').update(require('node:fs').readFileSync('package-lock.json')).digest('hex'))")
# A symlinked node_modules is an install shared with another checkout (a git worktree): npm ci
# would empty the folder it points to, under every other checkout's feet. Leave it alone.
if [ -L node_modules ]; then
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] && [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "ensure-node-deps: node_modules is a link to a shared install ($(readlink node_modules)), maybe from another package-lock.json: not installing here; run npm ci where it points if the lock changed" >&2
  fi
  exit 0
fi
if [ -d node_modules ] && [ -f node_modules/.package-lock.json ]; then
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && exit 0
  # Not recorded for this lock, but npm wrote the install after the lock (an `npm ci` by hand or by
  # .ci/run, an `npm install PKG` that changed both): it is this lock's install. Record it.
  if ! [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "$want" > "$stamp"
    exit 0
  fi
fi
if $check; then
  echo "ensure-node-deps: node_modules is missing or not installed from this package-lock.json: npm ci (npm start and npm test run it)" >&2
  exit 1
fi
echo "ensure-node-deps: installing npm packages (npm ci)" >&2
npm ci --no-audit --no-fund
echo "$want" > "$stamp"
