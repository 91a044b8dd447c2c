#!/usr/bin/env bash
# rebalance.sh - circmond's loop latency during a catch-up with a second
# daemon joining and leaving its group (make bench, part 6; alone:
# bash tests/bench/rebalance.sh, or BENCH_ONLY=rebalance make bench).
# Figures, never assertions.
#
# The stream is published once. Each run empties Redis, takes a fresh group
# id, and starts daemon A (the one that folds), each daemon with an HTTP
# endpoint of its own (the read side refreshes every 5 s, as by default):
#   - alone: A catches up by itself (the reference, same run, same load);
#   - join-leave: once A has folded REBAL_JOIN_PCT % of the stream, daemon B
#     starts in the same group (a rebalance: A's partitions are revoked, the
#     group splits them); REBAL_HOLD_S s after B got its partitions, or as
#     soon as the lag is down to REBAL_LEAVE_PCT % of the stream, B gets
#     SIGTERM (a second rebalance: A takes them all back); A catches up.
#   - crash: once A has folded REBAL_CRASH_PCT % of the stream, it gets
#     SIGKILL and is started again: it reads its positions and the
#     dead-letter partitions back (off the loop), and gets SIGTERM as soon as
#     it is assigned (its stop line: the loop latency of the read-back after
#     a crash alone); then it is started once more and catches up.
# The three kinds of run alternate (alone, join-leave, crash, alone, ...). Printed per
# run: the load average at its start, the lag when B joined and left, each
# daemon's stop line (loop latency since its start: p50/p99/max and the
# number of 10 ms probes), A's log lines of the rebalances and its 10 s
# stats lines between them (loop latency over the last 10 s), the stop line
# of an idle daemon C that runs meanwhile (its own mock cluster, empty
# topics, key prefix circmon-idle: its loop only waits, so its latency is
# the machine's alone: how late a sleeping thread gets a CPU), how long A's
# loop thread waited for a CPU while runnable (/proc/PID/schedstat: on a
# shared 2-core VM a preempted loop shows as loop latency too), and the
# machine's CPU over the run (vmstat 1: user, system, idle, steal, the
# largest run queue).
#
# Environment: REBAL_MIGRANTS (60000, about 508,000 events), REBAL_PARTITIONS
# (16), SEED (1), REBAL_RUNS (3 of each kind), REBAL_JOIN_PCT (10),
# REBAL_HOLD_S (2), REBAL_LEAVE_PCT (25), REBAL_CRASH_PCT (60), REBAL_KINDS
# ("alone join-leave crash": the kinds of run, in this order), CM_BIN (the programs' directory,
# bin), REBAL_CONF (extra lines for both daemons' configuration,
# e.g. $'[circmon]\nbatch_size = 1000').
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
MIGRANTS=${REBAL_MIGRANTS:-60000}
PARTITIONS=${REBAL_PARTITIONS:-16}
SEED=${SEED:-1}
RUNS=${REBAL_RUNS:-3}
JOIN_PCT=${REBAL_JOIN_PCT:-10}
HOLD_S=${REBAL_HOLD_S:-2}
LEAVE_PCT=${REBAL_LEAVE_PCT:-25}
CRASH_PCT=${REBAL_CRASH_PCT:-60}
KINDS=${REBAL_KINDS:-alone join-leave crash}
bin=${CM_BIN:-bin}
. tools/services.sh

"$bin"/circmon-gen --seed "$SEED" --migrants "$MIGRANTS" --out "$work/events.bin" 2>/dev/null
echo "== loop latency in a rebalance ($MIGRANTS migrants, $PARTITIONS partitions)"
start_redis --hash-max-listpack-value 1024
start_broker "$PARTITIONS"
conf=$work/rebal.conf
write_config "$conf"
"$bin"/circmonctl publish --config "$conf" "$work/events.bin" 2>"$work/publish.log"
n=$(sed -n "s/.*: \([0-9]*\) delivered.*/\1/p" "$work/publish.log" | tail -1)
echo "published: ${n:-?} messages"
# the idle daemon's cluster: the default topics, empty
"$bin"/circmon-broker --partitions "$PARTITIONS" --port-file "$work/idle.addr" \
    >"$work/idle-broker.out" 2>"$work/idle-broker.log" &
track $!
for _ in $(seq 1 100); do
    [ -s "$work/idle.addr" ] && break
    sleep 0.1
done
[ -s "$work/idle.addr" ] || { say "the idle daemon's circmon-broker did not start"; exit 1; }

# daemon_conf NAME: $work/NAME.conf in the group of $conf, an endpoint of its own
daemon_conf() {
    cp "$conf" "$work/$1.conf"
    printf '\n[http]\nport = %s\n%s\n' "$(pick_http_port)" "${REBAL_CONF:-}" >>"$work/$1.conf"
}
# start_daemon NAME: sets dpid
start_daemon() {
    "$bin"/circmond --config "$work/$1.conf" --foreground 2>"$work/$1.log" &
    track $!
    dpid=$!
}
# wait_log NAME PID PATTERN: until NAME's log holds PATTERN
wait_log() {
    while ! grep -q "$3" "$work/$1.log" 2>/dev/null; do
        kill -0 "$2" 2>/dev/null || { say "circmond $1 stopped"; tail "$work/$1.log" >&2; return 1; }
        sleep 0.02
    done
}
stop_daemon() { # stop_daemon PID
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
# runq_ms PID: ms the thread PID (the loop: the main thread) waited runnable
# for a CPU since it started (the second field of schedstat, in ns)
runq_ms() { awk '{printf "%.0f", $2 / 1e6}' "/proc/$1/schedstat" 2>/dev/null || echo 0; }
oncpu_ms() { awk '{printf "%.0f", $1 / 1e6}' "/proc/$1/schedstat" 2>/dev/null || echo 0; }
stop_line() { # the loop latency of NAME's stop line
    sed -n 's/.*loop latency since the start p50\/p99\/max \([0-9.\/]* ms ([0-9]* probes)\).*/\1/p' \
        "$work/$1.log"
}

# rebalances NAME LABEL: the group's assignments and revokes in NAME's log,
# and the 10 s stats lines among them
# readbacks NAME: the dead-letter read-back's lines in NAME's log, summed (a
# partition logs one only when it found dead letters past its position)
readbacks() {
    sed -n 's/.*: \([0-9]*\) dead letters past offset .* (\([0-9]*\) records read).*/\1 \2/p' \
        "$work/$1.log" | awk '{k += $1; r += $2; n++}
            END {printf "%d dead letters past the stored positions found on the topic (%d partitions, %d records read), not sent again", k, n, r}'
}
rebalances() {
    sed -n -e "s/.*info: \(group \(assigned\|revoked\) [0-9]* partitions\)\$/$2: \1/p" \
        -e "s/.*info: \([0-9]* events\/s\).* \([0-9]* partitions, lag [0-9]*\), \(loop latency p50\/p99\/max [0-9.\/]* ms\).*/$2: 10 s stats: \1, \2, \3/p" \
        "$work/$1.log"
}

run() { # run alone|join-leave|crash RUN
    local kind=$1 a b=
    rcli flushall >/dev/null
    write_config "$conf" # a fresh group id: no wait for the previous members
    daemon_conf a
    daemon_conf b
    cp config/demo.conf "$work/c.conf"
    cat >>"$work/c.conf" <<CONF

[kafka]
brokers = $(cat "$work/idle.addr")
topic = circmon.events
group_id = circmon-idle-$$-$RANDOM
rdkafka.session.timeout.ms = 6000

[redis]
unix_socket = $redis_sock
key_prefix = circmon-idle

[http]
port = 0
CONF
    echo
    echo "-- $kind, run $2 (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    vmstat 1 >"$work/vmstat.txt" &
    local vm=$!
    track $vm
    local c
    start_daemon c
    c=$dpid
    wait_log c "$c" 'assigned [0-9]* partitions from'
    start_daemon a
    a=$dpid
    wait_log a "$a" 'assigned [0-9]* partitions from'
    if [ "$kind" = crash ]; then
        local lag
        while lag=$(total_lag "$conf"); [ -z "$lag" ] || [ "$lag" -gt $((n * (100 - CRASH_PCT) / 100)) ]; do
            kill -0 "$a" 2>/dev/null || { say "circmond a stopped"; return 1; }
            sleep 0.05
        done
        kill -KILL "$a"
        wait "$a" 2>/dev/null || true
        echo "A killed (SIGKILL): lag $(total_lag "$conf")"
        mv "$work/a.log" "$work/a-killed.log"
        local t0 t1
        t0=$(date +%s%N)
        start_daemon a
        a=$dpid
        wait_log a "$a" 'assigned [0-9]* partitions from'
        t1=$(date +%s%N)
        stop_daemon "$a"
        printf 'A restarted: assigned %d ms after its start; read back: %s\n' \
            "$(((t1 - t0) / 1000000))" "$(readbacks a)"
        echo "A stopped once assigned: loop latency p50/p99/max $(stop_line a)"
        mv "$work/a.log" "$work/a-readback.log"
        start_daemon a
        a=$dpid
        wait_log a "$a" 'assigned [0-9]* partitions from'
        echo "A restarted again: read back: $(readbacks a)"
        wait_caught_up "$conf" "$a" 600
    elif [ "$kind" = join-leave ]; then
        local lag
        while lag=$(total_lag "$conf"); [ -z "$lag" ] || [ "$lag" -gt $((n * (100 - JOIN_PCT) / 100)) ]; do
            kill -0 "$a" 2>/dev/null || { say "circmond a stopped"; return 1; }
            sleep 0.05
        done
        local q0 c0
        q0=$(runq_ms "$a")
        c0=$(oncpu_ms "$a")
        echo "B starts: lag $lag"
        start_daemon b
        b=$dpid
        wait_log b "$b" 'assigned [1-9][0-9]* partitions from'
        echo "B assigned: lag $(total_lag "$conf")"
        local until=$(($(date +%s%N) + HOLD_S * 1000000000))
        while (($(date +%s%N) < until)); do
            lag=$(total_lag "$conf")
            [ -z "$lag" ] || [ "$lag" -gt $((n * LEAVE_PCT / 100)) ] || break
            sleep 0.1
        done
        stop_daemon "$b"
        echo "B stopped (SIGTERM): lag $(total_lag "$conf")"
        wait_caught_up "$conf" "$a" 600
        printf 'A, B start to caught up: loop thread on CPU %d ms, waiting for a CPU %d ms\n' \
            "$(($(oncpu_ms "$a") - c0))" "$(($(runq_ms "$a") - q0))"
    else
        wait_caught_up "$conf" "$a" 600
    fi
    printf 'A, start to caught up: loop thread on CPU %d ms, waiting for a CPU %d ms\n' \
        "$(oncpu_ms "$a")" "$(runq_ms "$a")"
    stop_daemon "$a"
    stop_daemon "$c"
    kill "$vm" 2>/dev/null || true
    wait "$vm" 2>/dev/null || true
    echo "A stopped: loop latency p50/p99/max $(stop_line a)"
    [ -z "$b" ] || echo "B stopped: loop latency p50/p99/max $(stop_line b)"
    echo "C (idle) stopped: loop latency p50/p99/max $(stop_line c)"
    rebalances a A
    [ -z "$b" ] || rebalances b B
    awk 'NR > 2 && $1 ~ /^[0-9]+$/ {n++; us += $13; sy += $14; id += $15; st += $17; if ($1 > r) r = $1}
         END {if (n) printf "vmstat 1 (%d s): CPU user %.0f%%, system %.0f%%, idle %.0f%%, steal %.0f%%; run queue up to %d\n",
                  n, us / n, sy / n, id / n, st / n, r}' "$work/vmstat.txt"
}

for r in $(seq "$RUNS"); do
    for k in $KINDS; do
        run "$k" "$r"
    done
done
