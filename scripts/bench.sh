#!/usr/bin/env bash
# Run every benchmark and regenerate docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m bench "$@"
