#!/usr/bin/env bash
# bench_cluster.sh - circmond catching up into one Redis and into a Redis
# Cluster of 3 masters and 3 replicas (make bench-cluster). Figures, never
# assertions.
#
# The same topic (circmon-gen, MIGRANTS migrants, PARTITIONS partitions) is
# drained from the assignment to caught up: first into one redis-server on a
# unix socket (after a warm-up run that sends the stream's dead letters, as in
# bench.sh), then into the cluster on loopback TCP, then into one
# redis-server on loopback TCP (the cluster's transport, for a fair ratio).
# Every Redis runs on the same 2 cores as circmond and the broker: the figure
# is the cost of routing and of more processes, not the gain of more machines.
#
# Environment: MIGRANTS (default 40000, about 340,000 events), PARTITIONS (16),
# SEED (1).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
MIGRANTS=${MIGRANTS:-40000}
PARTITIONS=${PARTITIONS:-16}
SEED=${SEED:-1}
. tools/services.sh

# start_cluster: 6 nodes on ports base..base+5 (bus +10000, below the
# ephemeral range), redis-cli --cluster create; sets cluster_nodes.
start_cluster() {
    local base i ok
    for _ in $(seq 1 8); do
        base=$((10000 + (RANDOM % 1200) * 8))
        ok=1
        for i in 0 1 2 3 4 5; do
            mkdir -p "$work/c$i"
            redis-server --port $((base + i)) --bind 127.0.0.1 --cluster-enabled yes \
                --cluster-config-file "$work/c$i/nodes.conf" --cluster-node-timeout 1000 \
                --save '' --appendonly no --dir "$work/c$i" --logfile "$work/c$i/redis.log" &
            track $!
        done
        for i in 0 1 2 3 4 5; do
            for _ in $(seq 1 100); do
                redis-cli -p $((base + i)) ping >/dev/null 2>&1 && break
                sleep 0.1
            done
            redis-cli -p $((base + i)) ping >/dev/null 2>&1 || ok=0
        done
        [ "$ok" = 1 ] && break
        say "ports from $base taken, another base"
    done
    [ "$ok" = 1 ] || { say "cannot start the cluster's nodes"; return 1; }
    redis-cli --cluster create $(for i in 0 1 2 3 4 5; do printf '127.0.0.1:%d ' $((base + i)); done) \
        --cluster-replicas 1 --cluster-yes >"$work/create.log" 2>&1
    for i in 0 1 2 3 4 5; do
        for _ in $(seq 1 300); do
            redis-cli -p $((base + i)) cluster info | grep -q cluster_state:ok && break
            sleep 0.1
        done
    done
    cluster_nodes="127.0.0.1:$base,127.0.0.1:$((base + 1))"
}

# catch_up NAME REDIS-SECTION: from an empty store, the rate from the
# assignment to caught up into $work/rate-NAME.txt.
catch_up() {
    local conf=$work/$1.conf t0 t1
    write_config "$conf"
    sed -i '/^\[redis\]/,$d' "$conf"
    printf '[redis]\n%s\n[http]\nport = 0\n' "$2" >>"$conf"
    : >"$work/circmond-$1.log"
    bin/circmond --config "$conf" --foreground 2>"$work/circmond-$1.log" &
    track $!
    daemon=$!
    while ! grep -q 'assigned [0-9]* partitions from' "$work/circmond-$1.log" 2>/dev/null; do
        kill -0 "$daemon" 2>/dev/null || { tail "$work/circmond-$1.log" >&2; return 1; }
        sleep 0.02
    done
    t0=$(date +%s.%N)
    wait_caught_up "$conf" "$daemon" 1200 || { tail -20 "$work/circmond-$1.log" >&2; return 1; }
    t1=$(date +%s.%N)
    kill -TERM "$daemon"
    wait "$daemon" 2>/dev/null || true
    echo "$(echo "$n / ($t1 - $t0)" | bc -l) $(echo "$t1 - $t0" | bc -l)" >"$work/rate-$1.txt"
    printf '%-28s %8.0f events/s (%.2f s)\n' "$1" $(cat "$work/rate-$1.txt")
}

echo "== circmond into one Redis and into a Redis Cluster ($MIGRANTS migrants, $PARTITIONS partitions)"
bin/circmon-gen --seed "$SEED" --migrants "$MIGRANTS" --out "$work/events.bin" 2>/dev/null
start_redis
start_broker "$PARTITIONS"
write_config "$work/pub.conf"
bin/circmonctl publish --config "$work/pub.conf" "$work/events.bin" 2>"$work/publish.log"
n=$(sed -n "s/.*: \([0-9]*\) delivered.*/\1/p" "$work/publish.log" | tail -1)
echo "published: $n messages"
catch_up warm-up "unix_socket = $redis_sock"
rcli flushall >/dev/null
catch_up one-redis-unix "unix_socket = $redis_sock"
start_cluster
catch_up cluster-3x2 "cluster = yes
nodes = $cluster_nodes"
grep 'redis cluster: followed' "$work/circmond-cluster-3x2.log" | sed 's/^[^:]*: [a-z]*: /  /'
rcli flushall >/dev/null
redis-server --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
    --logfile "$work/redis-tcp.log" --port $((${cluster_nodes##*:} + 10)) &
track $!
tcp_port=$((${cluster_nodes##*:} + 10))
for _ in $(seq 1 100); do redis-cli -p "$tcp_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
catch_up one-redis-tcp "host = 127.0.0.1
port = $tcp_port"
printf 'ratio cluster / one redis (tcp): %.2f\n' \
    "$(echo "$(awk '{print $1}' "$work/rate-cluster-3x2.txt") / $(awk '{print $1}' "$work/rate-one-redis-tcp.txt")" | bc -l)"
