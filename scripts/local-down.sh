#!/usr/bin/env bash
# Tears the local stack down in bounded time, whatever is left of it: pulumi destroy when
# every machine answers; otherwise each machine, the bridge and its guard route are removed
# on the host and the stack's state is dropped (ops/localDown.ts). Exits 1 if anything of
# the stack is left afterwards.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
become_root "$0" "$@"
pulumi_env
ensure_stack
(cd "$HAKUBE_ROOT" && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; } && npx tsc -p tsconfig.json)
node "$HAKUBE_ROOT/build/ops/localDown.js"
