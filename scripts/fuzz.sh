#!/usr/bin/env bash
# A long fuzzing campaign over every parser and service that takes user input.
# FUZZ_EXAMPLES examples per target (default 10000); extra arguments go to pytest.
# The regular test run (scripts/test.sh) runs the same suite with a few examples per target.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export FUZZ_EXAMPLES="${FUZZ_EXAMPLES:-10000}"
export HYPOTHESIS_PROFILE=long
echo "Fuzzing with $FUZZ_EXAMPLES examples per target..."
exec .venv/bin/python -m pytest tests/fuzz -p no:cacheprovider --timeout 0 \
  --hypothesis-show-statistics "$@"
