#!/usr/bin/env bash
# Everything `npm start` and `npm test` need before they run: system packages, npm dependencies,
# the TypeScript build. Each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "troupe: Node.js 20 or newer is needed (found $(node --version))" >&2
  exit 1
fi

bash deploy/install.sh

# npm dependencies: install when missing or when the lock file changed since the last install.
if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "troupe: installing npm dependencies" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

# build (incremental)
node_modules/.bin/tsc -p . >&2
