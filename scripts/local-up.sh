#!/usr/bin/env bash
# The main job: a working HA control plane on local machines, and its status.
# On a fresh machine (as root, or through sudo): installs what is missing, builds the
# toolchain the local stack runs if it is not cached (one Kubernetes version), runs
# `pulumi up --stack local --yes --refresh` (the repair command: a refresh first looks
# at every machine and service, and what it finds lost or stopped is set up again) and
# prints a status summary.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
become_root "$0" "$@"
k8s=$(stack_kubernetes_version "$HAKUBE_STACK")
[ -n "$k8s" ] || die "stacks/Pulumi.$HAKUBE_STACK.yaml sets no hakube:kubernetesVersion"
bash "$HAKUBE_ROOT/scripts/setup.sh" pulumi plugins k8sprovider etcd versitygw "kubernetes-$k8s" "node-$k8s" images
pulumi_env
ensure_stack
say "pulumi up --refresh --stack $HAKUBE_STACK"
up_start=$(date +%s)
hpulumi up --yes --skip-preview --refresh
say "pulumi up took $(( $(date +%s) - up_start )) s"
(cd "$HAKUBE_ROOT" && npx tsc -p tsconfig.json && node build/ops/status.js)
echo
echo "Tear it all down with: bash scripts/local-down.sh"
