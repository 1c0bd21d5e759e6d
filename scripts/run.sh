#!/usr/bin/env bash
# Run the bot. With no DISCORD_TOKEN (environment or .env) it opens the sandbox console.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m bot "$@"
