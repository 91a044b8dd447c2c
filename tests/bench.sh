#!/usr/bin/env bash
# bench.sh - circmon's benchmarks (make bench). Figures, never assertions.
#
# 1. replay: decode and fold throughput on one core: the parts
#    (build/bench/bench_fold), then circmonctl replay as a whole.
# 2. end to end: circmond draining a topic of the mock broker into a local
#    redis-server, against kcat draining the same topic with its defaults, in
#    the same run; Redis memory per migrant and circmond's peak RSS.
#
# Environment: MIGRANTS (default 125000, about 1.05 million events),
# PARTITIONS (64), SEED (1), REPLAY_RUNS (5), SKIP_E2E=1 to run the replay
# part only.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
MIGRANTS=${MIGRANTS:-125000}
PARTITIONS=${PARTITIONS:-64}
SEED=${SEED:-1}
tools/install-deps.sh >&2 # kcat, bc and time among them
. tools/services.sh

bin/circmon-gen --seed "$SEED" --migrants "$MIGRANTS" --out "$work/events.bin"
events=$(stat -c %s "$work/events.bin")
echo "== replay (one core; $MIGRANTS migrants, $events bytes)"
build/bench/bench_fold config/demo.conf "$work/events.bin" | tee "$work/bench_fold.txt"
records=$(sed -n 's/^records *\([0-9]*\).*/\1/p' "$work/bench_fold.txt")
decode=$(sed -n 's/^decode only *\([0-9]*\).*/\1/p' "$work/bench_fold.txt")
# circmonctl replay itself, as a user runs it: CPU time (user + system) of
# the whole process, file reading and output included; best and median of
# REPLAY_RUNS runs, since other tenants of a virtual machine slow some runs
runs=${REPLAY_RUNS:-5}
for _ in $(seq "$runs"); do
    /usr/bin/time -f "%U %S %e %M" -o "$work/time.txt" \
        bin/circmonctl replay --config config/demo.conf --as-of 2025-01-01 "$work/events.bin" >/dev/null
    awk '{printf "%.2f %.2f %d\n", $1 + $2, $3, $4}' "$work/time.txt"
done | sort -n >"$work/replay.txt"
best=$(awk 'NR == 1 {print $1}' "$work/replay.txt")
median=$(awk -v m=$(((runs + 1) / 2)) 'NR == m {print $1}' "$work/replay.txt")
rss=$(sort -k3 -n "$work/replay.txt" | tail -1 | awk '{print $3}')
printf 'circmonctl replay, %d records: CPU %.2f s best = %.0f events/s, %.2f s median = %.0f events/s (%d runs); peak RSS %d KiB\n' \
    "$records" "$best" "$(echo "$records / $best" | bc -l)" "$median" "$(echo "$records / $median" | bc -l)" "$runs" "$rss"
printf 'ratio circmonctl replay (best) / decode only, same run: %.2f\n' \
    "$(echo "$records / $best / $decode" | bc -l)"

[ "${SKIP_E2E:-0}" = 1 ] && exit 0

echo
echo "== end to end ($PARTITIONS partitions)"
start_redis
start_broker "$PARTITIONS"
conf=$work/circmond.conf
write_config "$conf"
bin/circmonctl publish --config "$conf" "$work/events.bin" 2>"$work/publish.log"
n=$(sed -n "s/.*: \([0-9]*\) delivered.*/\1/p" "$work/publish.log" | tail -1)
echo "published: ${n:-?} messages"

# kcat with its default settings: the Kafka ceiling on this machine
t0=$(date +%s.%N)
got=$(kcat -C -b "$brokers" -t circmon.events -e -o beginning -q -f '%o\n' | wc -l)
t1=$(date +%s.%N)
kcat_s=$(echo "$t1 - $t0" | bc -l)
kcat_rate=$(echo "$got / $kcat_s" | bc -l)
printf 'kcat -C -e -o beginning: %d messages in %.2f s = %.0f msg/s\n' "$got" "$kcat_s" "$kcat_rate"

t0=$(date +%s.%N)
bin/circmond --config "$conf" --foreground 2>"$work/circmond.log" &
track $!
daemon=$!
# the moment the partitions are assigned: the rate after the group join
(while ! grep -q 'assigned [0-9]* partitions from' "$work/circmond.log" 2>/dev/null; do
    sleep 0.05
done; date +%s.%N >"$work/assigned") &
track $!
wait_caught_up "$conf" "$daemon" 1200 || { tail -20 "$work/circmond.log" >&2; exit 1; }
t1=$(date +%s.%N)
d_s=$(echo "$t1 - $t0" | bc -l)
d_rate=$(echo "$got / $d_s" | bc -l)
hwm=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$daemon/status")
printf 'circmond (start, group join, fold, apply): %d events in %.2f s = %.0f events/s\n' "$got" "$d_s" "$d_rate"
printf 'ratio circmond / kcat: %.2f\n' "$(echo "$d_rate / $kcat_rate" | bc -l)"
if [ -s "$work/assigned" ]; then
    a_s=$(echo "$t1 - $(cat "$work/assigned")" | bc -l)
    a_rate=$(echo "$got / $a_s" | bc -l)
    printf 'circmond after the group join (assigned to caught up): %.2f s = %.0f events/s, ratio %.2f\n' \
        "$a_s" "$a_rate" "$(echo "$a_rate / $kcat_rate" | bc -l)"
fi
echo "circmond peak RSS: ${hwm:-?} KiB"

used=$(rcli info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p')
migrants=$(rcli --scan --pattern '*:m:*' | wc -l)
printf 'redis used_memory: %d bytes for %d migrant states: %.0f bytes per migrant (aggregates included)\n' \
    "$used" "$migrants" "$(echo "$used / $migrants" | bc -l)"
sample=$(rcli --scan --pattern '*:m:*' | head -1000 || true) # SIGPIPE
if [ -n "$sample" ]; then
    total=0
    cnt=0
    while read -r k; do
        u=$(rcli memory usage "$k")
        total=$((total + u))
        cnt=$((cnt + 1))
    done <<<"$sample"
    echo "MEMORY USAGE of a migrant state key (mean of $cnt): $((total / cnt)) bytes"
fi
