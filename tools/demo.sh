#!/usr/bin/env bash
# demo.sh - circmon end to end on the embedded defaults (make demo).
#
# Starts redis-server (on a unix socket) and circmon-broker (librdkafka's mock
# cluster, on a loopback port it binds itself), publishes a synthetic multi-year stream from circmon-gen,
# runs circmond until it has caught up, prints the indicators read from Redis
# and checks that they equal circmonctl replay's on the same stream. Stops
# everything it started, also on Ctrl-C or failure.
#
# Environment: MIGRANTS (default 20000), SEED (1), PARTITIONS (16), DEMO_KEEP=1
# to leave circmond and its HTTP endpoint running after the check, until Ctrl-C.
# CM_BIN: the directory of the programs (default bin; make check-asan's
# check_demo sets it to build/asan/bin, the sanitized builds).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bin=${CM_BIN:-bin}
MIGRANTS=${MIGRANTS:-20000}
SEED=${SEED:-1}
PARTITIONS=${PARTITIONS:-16}
AS_OF=2025-01-01 # circmon-gen's default horizon: every event is delivered by then

tools/install-deps.sh
make -s -j2 all
. tools/services.sh

start_redis --hash-max-listpack-value 1024 # compact state buckets (README, State layout)
start_broker "$PARTITIONS"
say "redis-server on $redis_sock, circmon-broker on $brokers ($PARTITIONS partitions)"
conf=$work/circmond.conf
write_config "$conf"
http_port=$(pick_http_port)
printf '\n[http]\nport = %s\nrefresh_ms = 1000\n' "$http_port" >>"$conf"

say "generating $MIGRANTS migrants (seed $SEED)"
"$bin"/circmon-gen --seed "$SEED" --migrants "$MIGRANTS" --out "$work/events.bin"
"$bin"/circmonctl publish --config "$conf" "$work/events.bin"

say "starting circmond"
start=$(date +%s)
setsid "$bin"/circmond --config "$conf" --foreground 2>"$work/circmond.log" &
track $!
daemon=$!
say "circmond's HTTP endpoint: http://127.0.0.1:$http_port/ (/v1/indicators, /v1/status, /metrics)"
if ! wait_caught_up "$conf" $! 600; then
    tail -20 "$work/circmond.log" >&2
    exit 1
fi
say "circmond caught up in $(($(date +%s) - start)) s"

echo
"$bin"/circmonctl indicators --config "$conf" --as-of "$AS_OF" --format table
"$bin"/circmonctl indicators --config "$conf" --as-of "$AS_OF" --format json >"$work/redis.json"
"$bin"/circmonctl replay --config "$conf" --as-of "$AS_OF" --format json "$work/events.bin" >"$work/replay.json"
echo
if cmp -s "$work/redis.json" "$work/replay.json"; then
    echo "indicators as of $AS_OF read from Redis equal circmonctl replay's: yes"
else
    echo "indicators as of $AS_OF read from Redis equal circmonctl replay's: NO"
    diff "$work/replay.json" "$work/redis.json" | head -40
    exit 1
fi
if [ "${DEMO_KEEP:-0}" = 1 ]; then
    say "circmond keeps running: http://127.0.0.1:$http_port/v1/indicators (Ctrl-C stops everything)"
    wait "$daemon" || true
fi
