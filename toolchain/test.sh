#!/usr/bin/env bash
# Vets and tests hakube's own Pulumi plugins (toolchain/pulumi: the Node.js language
# host, the command and tls providers and internal/provkit) with the Go
# environment of toolchain/build.sh: the same module and build caches, -mod=readonly
# (go.mod and go.sum are not changed; missing modules are downloaded from the Go
# module proxy), the local Go toolchain, no workspace, no cgo.
#
# Usage: toolchain/test.sh [go test flags...]   e.g. toolchain/test.sh -run TestRemote
# Needs go >= 1.26 and /bin/sh, /bin/bash; no sshd, node or network besides the proxy.
set -Eeuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GOBASE="${HAKUBE_GO_DIR:-/var/cache/hakube/go}"

T0=$(date +%s)
say() { printf '[toolchain-test %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

command -v go >/dev/null || { echo "toolchain/test.sh: 'go' is not on PATH; install Go >= 1.26 (e.g. /usr/local/go/bin)." >&2; exit 1; }
GOV=$(go env GOVERSION); GOMINOR=$(echo "$GOV" | sed -E 's/^go1\.([0-9]+).*/\1/')
[ "$GOMINOR" -ge 26 ] 2>/dev/null || { echo "toolchain/test.sh: $GOV is too old; toolchain/pulumi/go.mod wants Go >= 1.26." >&2; exit 1; }

export GOPATH="$GOBASE" GOMODCACHE="$GOBASE/pkg/mod" GOCACHE="$GOBASE/build"
export GOFLAGS="-modcacherw -mod=readonly" CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off
mkdir -p "$GOBASE"
cd "$HERE/pulumi"

log=$(mktemp)
trap 'rm -f "$log"' EXIT

say "go vet ./... in toolchain/pulumi ($GOV; the first run on a machine compiles the Pulumi SDK and takes minutes)"
if ! go vet ./... >"$log" 2>&1; then
  cat "$log" >&2
  echo "toolchain/test.sh: go vet failed (above)." >&2
  exit 1
fi

say "go test ./... in toolchain/pulumi"
rc=0
go test -count=1 -v "$@" ./... >"$log" 2>&1 || rc=$?
pass=$(grep -cE '^--- PASS' "$log" || true)
subpass=$(grep -cE '^ +--- PASS' "$log" || true)
fail=$(grep -cE '^ *--- FAIL' "$log" || true)
pkgs=$(grep -cE '^ok ' "$log" || true)
if [ "$rc" != 0 ]; then
  # Everything but the lines of tests that ran and passed.
  grep -vE '^=== (RUN|PAUSE|CONT)|^ *--- PASS' "$log" >&2 || true
  echo "toolchain/test.sh: go test failed: $fail failing (sub)tests, $pass tests passed, $pkgs packages ok (exit $rc)." >&2
  exit "$rc"
fi
say "go test: $pass tests passed ($subpass subtests) in $pkgs packages"
