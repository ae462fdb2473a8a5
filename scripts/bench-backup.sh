#!/usr/bin/env bash
# The backup and restore benchmark (ops/benchBackup.ts) on the local stack: brings the stack
# up with the main job if needed, then about 10,000 objects, a backup, every member's data
# destroyed and the restore. Results in bench/results/backup.json.
#   bash scripts/bench-backup.sh        (HAKUBE_BENCH_OBJECTS=N for another object count)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
become_root "$0" "$@"
[ "$#" -eq 0 ] || die "bench-backup.sh takes no arguments (HAKUBE_BENCH_OBJECTS=N sets the object count)"
[[ "${HAKUBE_BENCH_OBJECTS:-10000}" =~ ^[1-9][0-9]{0,5}$ ]] || die "HAKUBE_BENCH_OBJECTS is '${HAKUBE_BENCH_OBJECTS}', expected a count from 1 to 999999"
bash "$HAKUBE_ROOT/scripts/local-up.sh"
cd "$HAKUBE_ROOT"
node build/ops/benchBackup.js
