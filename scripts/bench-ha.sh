#!/usr/bin/env bash
# The HA benchmark: the fault scenarios of test/e2e/ha.test.ts on the local stack, with
# probes, written to bench/results/ha.json and printed as tables (ops/benchReport.ts).
#   bash scripts/bench-ha.sh [--repeat N] [--only REGEX]
#   --repeat N   run each loss scenario (1-4, 11, 2b) N times in one run, for the tail (default 1)
#   --only RE    only the scenarios whose test name matches RE (node --test-name-pattern)
#   --pod-api-access balancer|service
#                where the in-cluster probe's connections to the kubernetes Service go
#                (WorkerPool.podApiAccess; default balancer)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
become_root "$0" "$@"
repeat=1
only=""
access=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --repeat) [ "$#" -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]?$ ]] || die "--repeat takes a count from 1 to 50, got '${2:-}'"; repeat=$2; shift 2 ;;
    --only) [ "$#" -ge 2 ] || die "--only takes a test name pattern"; only=$2; shift 2 ;;
    --pod-api-access) [ "$#" -ge 2 ] && [[ "$2" =~ ^(balancer|service)$ ]] || die "--pod-api-access takes balancer or service, got '${2:-}'"; access=$2; shift 2 ;;
    *) die "unknown argument '$1' (use --repeat N, --only REGEX, --pod-api-access balancer|service)" ;;
  esac
done
[ "$repeat" -le 50 ] || die "--repeat takes a count from 1 to 50, got '$repeat'"
cd "$HAKUBE_ROOT"
npx tsc -p tsconfig.json
out=bench/results/ha.json
[ -z "$only" ] || out=bench/results/ha-partial.json
say "HA benchmark: loss scenarios $repeat time(s) each${only:+, only /$only/}; results into $out"
status=0
HAKUBE_HA_POD_API_ACCESS=$access HAKUBE_HA_REPEAT=$repeat HAKUBE_BENCH_OUT=$out node --test --test-reporter=spec ${only:+--test-name-pattern="$only"} build/test/e2e/ha.test.js || status=$?
node build/ops/benchReport.js "$out"
exit "$status"
