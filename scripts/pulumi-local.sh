#!/usr/bin/env bash
# Runs the offline Pulumi CLI on the local stack: scripts/pulumi-local.sh preview --diff
set -euo pipefail
. "$(dirname "$0")/lib.sh"
become_root "$0" "$@"
pulumi_env
ensure_stack
hpulumi "$@"
