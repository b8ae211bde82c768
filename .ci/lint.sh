#!/usr/bin/env bash
# Style checks (no changes): ruff over the Python code, clang-format over kernels/.
# The tools are pinned in the dev extra (bash .ci/setup.sh installs them); .ci/format.sh applies both.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
[ -x "$BIN/ruff" ] || BIN=$(dirname "$(command -v ruff)")
. .ci/c-sources.sh
status=0
"$BIN/ruff" check sdk plugins tests examples benchmarks schema || status=1
c_sources | xargs -0 -r "$BIN/clang-format" --dry-run --Werror || status=1
long=$(c_sources | xargs -0 -r awk 'length > 120 { print FILENAME ":" FNR ": " length " characters" }')
if [ -n "$long" ]; then
    echo "lines over 120 characters in kernels/:"
    echo "$long"
    status=1
fi
exit $status
