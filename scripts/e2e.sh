#!/usr/bin/env bash
# The end-to-end tests (npm run test:e2e): the local stack on systemd-nspawn machines, then
# the local-external topology, each test file in turn. One run id for every file, so the
# records of one run (ops/records.ts) land in one folder, bench/results/runs/<run id>/
# unless HAKUBE_RESULTS_DIR names another.
#   bash scripts/e2e.sh [node --test option ...]   e.g. --test-name-pattern='^1\.'
set -euo pipefail
. "$(dirname "$0")/lib.sh"
become_root "$0" "$@"
cd "$HAKUBE_ROOT"
npx tsc -p tsconfig.json
HAKUBE_RUN_ID=${HAKUBE_RUN_ID:-$(run_id)}
export HAKUBE_RUN_ID
say "end-to-end run $HAKUBE_RUN_ID: records into ${HAKUBE_RESULTS_DIR:-bench/results/runs/$HAKUBE_RUN_ID}"
mapfile -t files < <(find build/test/e2e -name '*.test.js' | sort)
node --test --test-reporter=spec --test-concurrency=1 "$@" "${files[@]}"
