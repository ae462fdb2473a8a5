#!/usr/bin/env bash
# The HA benchmark: the probed scenarios of the end-to-end suite (test/e2e/cluster.test.ts)
# on the local stack, the loss scenarios repeated. Every repetition is kept: one record per
# scenario run (failures by kind, longest window, VIP failover, Lease takeover, ...) in
# bench/results/runs/<run id>/ (ops/records.ts), and docs/reliability.md is generated
# again from every committed run (npm run report). Commit the run's folder with the page.
#   bash scripts/bench-ha.sh [--repeat N] [--only REGEX]
#   --repeat N   run each loss scenario (1-4, 11, 2b) N times in one run, for the tail (default 1)
#   --only RE    only the tests whose name matches RE (node --test-name-pattern); the cluster
#                is brought up and torn down around them as in the suite
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
HAKUBE_RUN_ID=$(run_id bench-)
export HAKUBE_RUN_ID
export HAKUBE_RUN_PURPOSE="bench: --repeat $repeat${only:+ --only $only}${access:+ --pod-api-access $access}"
say "HA benchmark: loss scenarios $repeat time(s) each${only:+, only /$only/}; records into bench/results/runs/$HAKUBE_RUN_ID"
status=0
HAKUBE_HA_POD_API_ACCESS=$access HAKUBE_HA_REPEAT=$repeat node --test --test-reporter=spec ${only:+--test-name-pattern="$only"} build/test/e2e/cluster.test.js || status=$?
node build/ops/report.js
say "records in bench/results/runs/$HAKUBE_RUN_ID; docs/reliability.md generated from every committed run and this one"
exit "$status"
