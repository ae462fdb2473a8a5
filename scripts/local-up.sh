#!/usr/bin/env bash
# The main job: a working HA control plane on local machines, and its status.
# On a fresh machine (as root, or through sudo): installs what is missing, builds the
# toolchain the local stack runs if it is not cached (one Kubernetes version), runs
# `pulumi up --stack local --yes --refresh` (the repair command: a refresh first looks
# at every machine and service, and what it finds lost or stopped is set up again) and
# prints a status summary.
#   bash scripts/local-up.sh [pulumi up option ...]
# Options after the script's name go to `pulumi up` as they are, e.g.
#   --config hakube:kubernetesVersion=v1.36.5   (a version listed in toolchain/build.sh)
# A kubernetesVersion set so is the one whose binaries are built.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
become_root "$0" "$@"
k8s=$(stack_kubernetes_version "$HAKUBE_STACK")
for a in "$@"; do
  case "$a" in
    hakube:kubernetesVersion=*) k8s=${a#hakube:kubernetesVersion=} ;;
  esac
done
[ -n "$k8s" ] || die "stacks/Pulumi.$HAKUBE_STACK.yaml sets no hakube:kubernetesVersion"
[[ "$k8s" =~ ^v1\.[0-9]+\.[0-9]+$ ]] || die "hakube:kubernetesVersion is '$k8s'; expected v1.<minor>.<patch>, one of the versions in toolchain/build.sh"
# shellcheck disable=SC2046
bash "$HAKUBE_ROOT/scripts/setup.sh" $(stack_families "$k8s")
pulumi_env
ensure_stack
say "pulumi up --refresh --stack $HAKUBE_STACK"
up_start=$(date +%s)
hpulumi up --yes --skip-preview --refresh "$@"
say "pulumi up took $(( $(date +%s) - up_start )) s"
(cd "$HAKUBE_ROOT" && npx tsc -p tsconfig.json && node build/ops/status.js)
echo
echo "Tear it all down with: bash scripts/local-down.sh"
