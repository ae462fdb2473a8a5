#!/usr/bin/env bash
# Checks the GitHub workflows (.github/workflows/*.yml) with actionlint, the linter that
# the toolchain builds from its Go module (toolchain/build.sh actionlint). Exits non-zero
# on any finding. With shellcheck on PATH, actionlint also checks the `run:` scripts.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

actionlint=""
if [ -x "$HAKUBE_TOOLCHAIN_DIR/bin/actionlint" ]; then
  actionlint="$HAKUBE_TOOLCHAIN_DIR/bin/actionlint"
elif command -v actionlint >/dev/null; then
  actionlint=$(command -v actionlint)
else
  die "actionlint is not built: run toolchain/build.sh actionlint (or scripts/setup.sh)"
fi

cd "$HAKUBE_ROOT"
shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
[ ${#workflows[@]} -gt 0 ] || die "no workflows in .github/workflows"
say "actionlint $("$actionlint" -version | head -n 1): ${workflows[*]}"
"$actionlint" -no-color "${workflows[@]}"
say "workflows ok"
