#!/usr/bin/env bash
# Tears the local stack down: pulumi destroy removes the machines, their namespaces and
# links, and the bridge.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
become_root "$0" "$@"
pulumi_env
ensure_stack
say "pulumi destroy --stack $HAKUBE_STACK"
hpulumi destroy --yes --skip-preview
say "destroyed"
