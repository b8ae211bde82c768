#!/usr/bin/env bash
# Apply the style that .ci/lint.sh checks: ruff's fixes (import order, ...) and clang-format -i.
# What ruff cannot fix (long lines, ...) it lists; fix those by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
[ -x "$BIN/ruff" ] || BIN=$(dirname "$(command -v ruff)")
. .ci/c-sources.sh
c_sources | xargs -0 -r "$BIN/clang-format" -i
"$BIN/ruff" check --fix sdk plugins tests examples benchmarks schema
