#!/usr/bin/env bash
# The bot as a cluster on this one machine, against the sandbox: a real PostgreSQL and Redis,
# two bot processes (shard 0 and shard 1 of 2, each its own DATA_DIR) and two workers. You
# chat in the sandbox console; Ctrl-D, /quit or Ctrl-C stops everything. See docs/SCALING.md.
#
# Each process serves its metrics (/metrics, /healthz, /readyz) on 127.0.0.1, a port of its
# own from METRICS_PORT_BASE (default 9460): the bots at base+0 (shard 0) and base+1 (shard 1),
# the workers at base+10 and base+11. The script prints the targets and writes a Prometheus
# configuration scraping them all (prometheus.yml in the cluster folder); docs/OPERATIONS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh  # as root it installs postgresql, redis-server and prometheus too
PY=.venv/bin/python

pg_bin=${PG_BIN:-}
if [ -z "$pg_bin" ]; then
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$pg_bin" ] || pg_bin=$(dirname "$(command -v pg_ctl 2>/dev/null || echo /none/pg_ctl)")
fi
if [ ! -x "$pg_bin/initdb" ] || [ ! -x "$pg_bin/pg_ctl" ]; then
  echo "PostgreSQL's server programs were not found: apt-get install postgresql (as root;" \
    "scripts/bootstrap.sh does it), or name their folder in PG_BIN." >&2
  exit 1
fi
redis=$(command -v redis-server || echo /usr/bin/redis-server)
if [ ! -x "$redis" ]; then
  echo "redis-server was not found: apt-get install redis-server (as root;" \
    "scripts/bootstrap.sh does it)." >&2
  exit 1
fi

home=$(mktemp -d "${TMPDIR:-/tmp}/voicechatbot-cluster.XXXXXX")
logs=$home/logs
mkdir -p "$logs" "$home/pg" "$home/redis"
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pg_port=$(free_port)
redis_port=$(free_port)
sandbox_port=$(free_port)
metrics_base=${METRICS_PORT_BASE:-9460}
bot_metrics=($((metrics_base)) $((metrics_base + 1)))
worker_metrics=($((metrics_base + 10)) $((metrics_base + 11)))
for port in "${bot_metrics[@]}" "${worker_metrics[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "Port $port (for metrics) is taken: choose another METRICS_PORT_BASE." >&2
    exit 1
  fi
done

# initdb and pg_ctl refuse to run as root: as root they run as the postgres user.
as_pg=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || { echo "No postgres user: apt-get install postgresql." >&2; exit 1; }
  chmod 711 "$home" "$logs"  # the postgres user passes through to its own folders
  chown postgres: "$home/pg"
  touch "$logs/postgres.log" && chown postgres: "$logs/postgres.log"
  as_pg=(runuser -u postgres --)
fi

pids=()
stop_all() {
  trap - EXIT INT TERM
  echo "Stopping the cluster..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -f "$home/pg/data/postmaster.pid" ]; then
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$home/pg/data" -m fast -w stop >/dev/null || true
  fi
  rm -rf "$home/pg" "$home/redis"
  echo "Logs of every process: $logs"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

echo "Cluster folder: $home (logs in $logs)"
echo "Starting PostgreSQL on port $pg_port..."
"${as_pg[@]}" "$pg_bin/initdb" -D "$home/pg/data" -U postgres --auth=trust -E UTF8 --locale=C \
  >"$logs/initdb.log" 2>&1
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$home/pg/data" -l "$logs/postgres.log" -w \
  -o "-p $pg_port -k $home/pg -c listen_addresses=127.0.0.1" start >/dev/null
"${as_pg[@]}" "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres voicechatbot

echo "Starting Redis on port $redis_port..."
"$redis" --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$home/redis" \
  --daemonize no --logfile "$logs/redis.log" &
pids+=($!)

export DATABASE_URL="postgresql://postgres@127.0.0.1:$pg_port/voicechatbot"
export REDIS_URL="redis://127.0.0.1:$redis_port/0"
export TASK_BROKER_URL="redis://127.0.0.1:$redis_port/1"
export SANDBOX_URL="http://127.0.0.1:$sandbox_port"
export SHARD_COUNT=2
export METRICS_HOST=127.0.0.1
unset DISCORD_TOKEN
"$PY" -m bot db upgrade >"$logs/migrate.log" 2>&1  # once, before the processes start

# Each waits until the sandbox (started last, in the foreground) answers.
wait_for_sandbox() { until (exec 3<>"/dev/tcp/127.0.0.1/$sandbox_port") 2>/dev/null; do sleep 0.2; done; }
for shard in 0 1; do
  (wait_for_sandbox; DATA_DIR="$home/bot-$shard" SHARD_IDS=$shard \
    METRICS_PORT=${bot_metrics[$shard]} exec "$PY" -m bot) >"$logs/bot-$shard.log" 2>&1 </dev/null &
  pids+=($!)
done
for n in 1 2; do
  DATA_DIR="$home/worker-$n" METRICS_PORT=${worker_metrics[$((n - 1))]} "$PY" -m bot worker \
    >"$logs/worker-$n.log" 2>&1 </dev/null &
  pids+=($!)
done

# Where to scrape: one target per process, labelled with its name (as the tests do).
targets=()
static_configs=""
for shard in 0 1; do targets+=("bot-$shard=127.0.0.1:${bot_metrics[$shard]}"); done
for n in 1 2; do targets+=("worker-$n=127.0.0.1:${worker_metrics[$((n - 1))]}"); done
for target in "${targets[@]}"; do
  static_configs+="      - targets: [\"${target#*=}\"]
        labels: {process: \"${target%%=*}\"}
"
done
cat >"$home/prometheus.yml" <<YAML
global: {scrape_interval: 15s}
scrape_configs:
  - job_name: voicechat
    static_configs:
$static_configs
YAML
echo "Bots (shard 0 and 1 of 2) and two workers are starting; their logs: $logs"
echo "Metrics (/metrics, /healthz, /readyz) of each: ${targets[*]}"
echo "To scrape them all: prometheus --config.file=$home/prometheus.yml" \
  "--storage.tsdb.path=$home/prometheus (dashboard: docs/grafana-dashboard.json)"
echo "They answer once connected (a few seconds; \`tail -f $logs/bot-0.log\`)."
"$PY" -m bot.sandbox --port "$sandbox_port" --shards 2 --out-dir "$home/sandbox" || true
