#!/usr/bin/env bash
# Run the whole test suite (unit, contract and end-to-end through the sandbox).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python -m ruff check bot tests bench
# The fuzz suite runs in a pytest process of its own: hypothesis's plugin parses source code at
# the end of a run, which on CPython 3.11 before 3.11.8 can fail with "AST constructor recursion
# depth mismatch" (CPython gh-106905) once the bot's threads ran in the same process.
.venv/bin/python -m pytest -p no:hypothesispytest --ignore=tests/fuzz "$@"
exec .venv/bin/python -m pytest tests/fuzz "$@"
