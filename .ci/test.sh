#!/usr/bin/env bash
# The README's test command: set everything up on a fresh machine, then run the tests.
# Extra arguments go to pytest (for example: bash .ci/test.sh -k format).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
bash .ci/install-cross.sh   # aarch64 cross compiler + qemu-user for the NEON tests (needs root or sudo)
bash .ci/lint.sh            # ruff and clang-format (fix with bash .ci/format.sh)
exec .venv/bin/python -m pytest "$@"
