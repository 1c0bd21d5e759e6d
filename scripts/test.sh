#!/usr/bin/env bash
# Run the whole test suite (unit, contract and end-to-end through the sandbox).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python -m ruff check bot tests bench
exec .venv/bin/python -m pytest "$@"
