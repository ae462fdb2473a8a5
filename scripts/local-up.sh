#!/usr/bin/env bash
# The main job: a working HA control plane on local machines, and its status.
# On a fresh machine, as root: installs what is missing, builds the toolchain if needed,
# runs `pulumi up --stack local --yes` and prints a status summary.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_root
bash "$HAKUBE_ROOT/scripts/setup.sh"
pulumi_env
ensure_stack
say "pulumi up --stack $HAKUBE_STACK"
up_start=$(date +%s)
hpulumi up --yes --skip-preview
say "pulumi up took $(( $(date +%s) - up_start )) s"
(cd "$HAKUBE_ROOT" && npx tsc -p tsconfig.json && node build/ops/status.js)
echo
echo "Tear it all down with: sudo bash scripts/local-down.sh"
