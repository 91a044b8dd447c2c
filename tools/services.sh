# services.sh - start and stop the embedded services (sourced by demo.sh and bench.sh).
#
# Defines: say, start_redis, rcli ARGS..., start_broker PARTITIONS,
# write_config FILE, total_lag CONFIG, wait_caught_up CONFIG PID DEADLINE_S,
# and a cleanup trap that stops every process started with `track` (in
# reverse order, each gone before the next is stopped) and removes $work,
# whatever happens. The services run in sessions of their own (setsid): a
# Ctrl-C reaches this script only, which then stops circmond before the
# Redis and the broker it needs to stop cleanly.
#
# No port is ever picked here: redis-server listens on a unix socket in $work
# only, and circmon-broker binds a port of its own choosing and reports it.
# (A port found free and handed on can be taken by anyone before it is bound:
# the ephemeral range, ip_local_port_range, is everybody's.)

say() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }

work=$(mktemp -d /tmp/circmon.XXXXXX)
pids=()
track() { pids+=("$1"); }

# stop_pid PID: SIGTERM, then SIGKILL if it is still there after 30 s.
stop_pid() {
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in $(seq 1 300); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        stop_pid "${pids[$i]}"
    done
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# start_redis [ARGS...]: a redis-server on the unix socket $redis_sock (TCP off),
# with ARGS (redis-server options) added.
start_redis() {
    redis_sock=$work/redis.sock
    setsid redis-server --port 0 --unixsocket "$redis_sock" --unixsocketperm 700 --save '' "$@" \
        --appendonly no --dir "$work" --logfile "$work/redis.log" &
    track $!
    redis_pid=$!
    for _ in $(seq 1 100); do
        rcli ping >/dev/null 2>&1 && return 0
        kill -0 "$redis_pid" 2>/dev/null || break
        sleep 0.1
    done
    say "redis-server did not start"; cat "$work/redis.log" >&2; return 1
}

# rcli ARGS...: redis-cli against the redis-server of start_redis.
# A TCP port for an HTTP endpoint on 127.0.0.1: below the ephemeral range
# (ip_local_port_range), so no outgoing connection takes it, and with nothing
# listening on it now. circmond logs an error and folds on without its
# endpoint if it is taken before circmond binds it.
pick_http_port() {
    local low p i
    low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    for i in $(seq 1 50); do
        p=$((20000 + RANDOM % (low - 20000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    echo "no free port below $low on 127.0.0.1" >&2
    return 1
}

rcli() { redis-cli -s "$redis_sock" "$@"; }

# start_broker PARTITIONS: sets brokers.
start_broker() {
    setsid "${CM_BIN:-bin}"/circmon-broker --partitions "$1" --port-file "$work/broker.addr" \
        >"$work/broker.out" 2>"$work/broker.log" &
    track $!
    local pid=$!
    for _ in $(seq 1 100); do
        [ -s "$work/broker.addr" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -s "$work/broker.addr" ] || { say "circmon-broker did not start"; cat "$work/broker.log" >&2; return 1; }
    brokers=$(cat "$work/broker.addr")
}

# write_config FILE: config/demo.conf plus the services started here.
write_config() {
    cp config/demo.conf "$1"
    cat >>"$1" <<CONF

[kafka]
brokers = $brokers
topic = circmon.events
group_id = circmon-$$-$RANDOM
rdkafka.session.timeout.ms = 6000

[redis]
unix_socket = $redis_sock
CONF
}

# total_lag CONFIG: the sum of (high watermark - stored position) over partitions.
total_lag() {
    "${CM_BIN:-bin}"/circmonctl status --config "$1" --format json 2>/dev/null |
        tr -d ' \n' | sed -n 's/.*"total":{[^}]*"lag":\(-\{0,1\}[0-9]*\).*/\1/p'
}

# wait_caught_up CONFIG PID DEADLINE_S: until the lag is 0; fails when PID stops.
wait_caught_up() {
    local start lag
    start=$(date +%s)
    while :; do
        lag=$(total_lag "$1" || true)
        [ "$lag" = 0 ] && return 0
        if ! kill -0 "$2" 2>/dev/null; then
            say "circmond stopped"
            return 1
        fi
        if (($(date +%s) - start > $3)); then
            say "circmond did not catch up within $3 s (lag ${lag:-unknown})"
            return 1
        fi
        sleep 0.2
    done
}
