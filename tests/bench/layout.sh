#!/usr/bin/env bash
# layout.sh - the Redis state layouts compared in one run (make bench, part 4;
# alone: bash tests/bench/layout.sh). Figures, never assertions.
#
# For each layout in LAYOUTS (a list of [redis] state_buckets values, each
# optionally /V: Redis's hash-max-listpack-value for that run, 1024 (what the
# README asks for) otherwise; 0 is the one string key per migrant of earlier
# versions), in the same run, on the same topic: an empty Redis, a fresh
# consumer group, circmond from the assignment to caught up, and then
#   - bytes per migrant: INFO memory used_memory after minus before, divided
#     by the migrants (aggregates, positions and marks included), and the part
#     of it the aggregate hashes hold (MEMORY USAGE of every :agg and :agg:<n>
#     key);
#   - MEMORY USAGE per migrant of the state keys (every key: string keys, or
#     bucket hashes divided by their fields) and their encoding;
#   - Redis CPU per event: INFO cpu used_cpu_sys + used_cpu_user after minus
#     before, divided by the events folded;
#   - end-to-end events/s from the assignment to caught up;
#   - the read: circmonctl indicators (of the same build) as of a fixed
#     instant, READS times (default 5) on the idle Redis, its best wall time
#     and the Redis CPU per read; and whether its document equals the first
#     layout's of the run (the figures must not depend on the layout).
# LAYOUT_RUNS (default 1) runs of each, interleaved (old, new, old, new...).
# A layout written prev:B runs the circmond of PREV_BIN (a bin/ directory of
# an earlier build, e.g. one whose aggregate is one hash per partition) with
# state_buckets B: the previous build measured in the same run.
#
# Environment: MIGRANTS (125000), PARTITIONS (64), SEED (1), LAYOUTS
# ("0 256 32 256/64": the old layout, the default, the bench stream's sizing
# of ~100 migrants per bucket, and the default with Redis's own default of 64),
# LAYOUT_RUNS (1), PREV_BIN (unset), READS (5).
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
MIGRANTS=${MIGRANTS:-125000}
PARTITIONS=${PARTITIONS:-64}
SEED=${SEED:-1}
LAYOUTS=${LAYOUTS:-0 256 32 256/64}
LAYOUT_RUNS=${LAYOUT_RUNS:-1}
READS=${READS:-5}
. tools/services.sh

bin/circmon-gen --seed "$SEED" --migrants "$MIGRANTS" --out "$work/events.bin"
echo "== Redis state layouts ($MIGRANTS migrants, $PARTITIONS partitions)"
start_redis
start_broker "$PARTITIONS"
conf=$work/layout.conf
write_config "$conf"
bin/circmonctl publish --config "$conf" "$work/events.bin" 2>"$work/publish.log"
n=$(sed -n "s/.*: \([0-9]*\) delivered.*/\1/p" "$work/publish.log" | tail -1)
echo "published: ${n:-?} messages"

info_field() { rcli info "$1" | tr -d '\r' | sed -n "s/^$2:\([0-9.]*\).*/\1/p"; }
cpu() { echo "$(info_field cpu used_cpu_sys) + $(info_field cpu used_cpu_user)" | bc -l; }

# state_usage B: "bytes-per-migrant migrants encodings" over every state key
# (MEMORY USAGE ... SAMPLES 0: every element counted), one script call
state_usage() {
    local pat
    if [ "$1" = 0 ] || [ "$1" = none ]; then pat='*:m:*'; else pat='*:s:*'; fi
    rcli eval "
local cur, b, m, v, mid, enc = '0', 0, 0, 0, 0, {}
repeat
  local r = redis.call('SCAN', cur, 'MATCH', ARGV[1], 'COUNT', 1000)
  cur = r[1]
  for _, k in ipairs(r[2]) do
    b = b + redis.call('MEMORY', 'USAGE', k, 'SAMPLES', '0')
    local t = redis.call('TYPE', k).ok
    if t == 'hash' then
      local f = redis.call('HGETALL', k)
      for x = 1, #f, 2 do
        m = m + 1; v = v + #f[x + 1]; mid = mid + #f[x]
      end
    else
      m = m + 1; v = v + redis.call('STRLEN', k); mid = mid + #k
    end
    local e = redis.call('OBJECT', 'ENCODING', k)
    enc[e] = (enc[e] or 0) + 1
  end
until cur == '0'
local s = ''
for e, c in pairs(enc) do s = s .. e .. ':' .. c .. ',' end
return {tostring(b), tostring(m), s, tostring(v), tostring(mid)}" 0 "$pat" | tr '\n' ' ' |
        awk '{printf "%.1f %d %s %.1f %.1f\n", $2 ? $1 / $2 : 0, $2, $3, $4 / $2, $5 / $2}'
}
agg_usage() {
    rcli eval "
local cur, b = '0', 0
repeat
  local r = redis.call('SCAN', cur, 'MATCH', '*:agg*', 'COUNT', 1000)
  cur = r[1]
  for _, k in ipairs(r[2]) do b = b + redis.call('MEMORY', 'USAGE', k, 'SAMPLES', '0') end
until cur == '0'
return tostring(b)" 0
}

run_one() { # run_one [prev:]BUCKETS[/LISTPACK_VALUE] RUN
    local spec=${1#prev:} dbin=bin build=this
    [[ $1 == prev:* ]] && { dbin=${PREV_BIN:?prev: needs PREV_BIN}; build=previous; }
    local b=${spec%%/*} lv=1024 log=$work/circmond-${1//[\/:]/-}-$2.log
    [[ $spec == */* ]] && lv=${spec#*/}
    rcli flushall >/dev/null
    rcli config set hash-max-listpack-value "$lv" >/dev/null
    rcli memory purge >/dev/null 2>&1 || true
    write_config "$conf" # a fresh group id
    [ "$b" = none ] || printf '\n[redis]\nstate_buckets = %s\n' "$b" >>"$conf"
    printf '\n[http]\nport = 0\n' >>"$conf"
    local m0 c0 t0 t1 m1 c1
    m0=$(info_field memory used_memory)
    c0=$(cpu)
    "$dbin/circmond" --config "$conf" --foreground 2>"$log" &
    track $!
    daemon=$!
    while ! grep -q 'assigned [0-9]* partitions from' "$log" 2>/dev/null; do
        kill -0 "$daemon" 2>/dev/null || { tail "$log" >&2; return 1; }
        sleep 0.02
    done
    t0=$(date +%s.%N)
    wait_caught_up "$conf" "$daemon" 1200 || { tail -20 "$log" >&2; return 1; }
    t1=$(date +%s.%N)
    c1=$(cpu)
    kill -TERM "$daemon" 2>/dev/null || true
    wait "$daemon" 2>/dev/null || true
    m1=$(info_field memory used_memory)
    local folded
    folded=$(sed -n 's/.* \([0-9]*\) events folded.*/\1/p' "$log" | tail -1)
    folded=${folded:-$n}
    read -r per migrants enc vlen klen <<<"$(state_usage "$b")"
    local agg
    agg=$(agg_usage)
    # the read, on the idle Redis: best wall time, Redis CPU per read
    local best='' d r0 r1 ta tb same
    r0=$(cpu)
    for _ in $(seq "$READS"); do
        ta=$(date +%s.%N)
        "$dbin/circmonctl" indicators --config "$conf" --as-of 2026-12-01 >"$work/read.json"
        tb=$(date +%s.%N)
        d=$(echo "$tb - $ta" | bc -l)
        if [ -z "$best" ] || [ "$(echo "$d < $best" | bc -l)" = 1 ]; then best=$d; fi
    done
    r1=$(cpu)
    if [ ! -e "$work/read-first.json" ]; then
        cp "$work/read.json" "$work/read-first.json"
        same=first
    elif cmp -s "$work/read.json" "$work/read-first.json"; then
        same=yes
    else
        same=NO
    fi
    printf '| %s | %.0f | %.0f | %.1f | %.1f / %.1f | %s | %.2f | %.0f | %.0f ms | %.1f ms | %s |\n' \
        "$build build: $([ "$b" = 0 ] && echo "string key per migrant" || echo "$b buckets per partition"), listpack-value $lv" \
        "$(echo "($m1 - $m0) / $migrants" | bc -l)" "$(echo "$agg / $migrants" | bc -l)" \
        "$per" "$vlen" "$klen" "$enc" "$(echo "($c1 - $c0) * 1000000 / $n" | bc -l)" \
        "$(echo "$n / ($t1 - $t0)" | bc -l)" "$(echo "$best * 1000" | bc -l)" \
        "$(echo "($r1 - $r0) * 1000 / $READS" | bc -l)" "$same" >>"$work/layout.md"
}

: >"$work/layout.md"
for r in $(seq "$LAYOUT_RUNS"); do
    for b in $LAYOUTS; do
        run_one "$b" "$r"
    done
done
echo
echo "| layout | used_memory / migrant (B) | of which aggregates (B) | MEMORY USAGE of states / migrant (B) | mean packed state / key or field (B) | encodings (keys) | Redis CPU / event (us) | events/s (assigned to caught up) | read: circmonctl indicators, best of $READS | read: Redis CPU per read | document equal to the first run's |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
cat "$work/layout.md"
echo "($migrants migrants, $n events, $PARTITIONS partitions; redis-server $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p'), listpack-value: its hash-max-listpack-value)"
