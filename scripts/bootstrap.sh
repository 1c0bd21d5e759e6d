#!/usr/bin/env bash
# Create .venv and install the project with everything it needs; quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "Python 3.11 or later is needed (found: $("$PYTHON" --version 2>&1))." >&2
  exit 1
fi

# espeak-ng is an optional speech engine (a Debian package); the tests use it.
if ! command -v espeak-ng >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "Installing espeak-ng..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null) \
    || echo "Could not install espeak-ng; the espeak engine will be skipped." >&2
fi

# PostgreSQL's server programs: the storage tests run against a real server they start
# themselves (tests/postgres.py). The bot itself needs no server unless DATABASE_URL is set.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1 \
  && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "Installing postgresql (for the storage tests)..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
    || echo "Could not install postgresql; the storage tests will say how to install it." >&2
fi

# redis-server: the shard and worker tests run against a real one they start themselves
# (tests/redis_server.py). The bot itself needs none unless REDIS_URL is set.
if ! command -v redis-server >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
  && [ "$(id -u)" = 0 ]; then
  echo "Installing redis-server (for the shard tests)..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
    || echo "Could not install redis-server; the shard tests will say how to install it." >&2
fi

# prometheus (only the program): the metrics tests start their own on a free loopback port
# (tests/prometheus_server.py). --no-install-recommends leaves out the node exporter; where an
# init system starts the package's service (on port 9090), it is stopped and disabled again.
if ! command -v prometheus >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
  && [ "$(id -u)" = 0 ]; then
  echo "Installing prometheus (for the metrics tests)..."
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends prometheus >/dev/null); then
    if [ -d /run/systemd/system ]; then
      systemctl disable --now prometheus >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/prometheus ]; then
      /etc/init.d/prometheus stop >/dev/null 2>&1 || true
      update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
  else
    echo "Could not install prometheus; the metrics tests will say how to install it." >&2
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.installed
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "Installing the bot and its dependencies into .venv (first run takes a few minutes)..."
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[offline,dev]"
  echo "$want" > "$stamp"
fi
