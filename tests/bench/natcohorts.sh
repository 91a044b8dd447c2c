#!/usr/bin/env bash
# natcohorts.sh - what [circmon] nationality_cohorts costs, no against yes in
# one run (make bench, part 5; alone: bash tests/bench/natcohorts.sh).
# Figures, never assertions.
#
# For each value in NAT_VALUES, in the same run, on the same topic: an empty
# Redis, a fresh consumer group, circmond from the assignment to caught up
# ([http] port = 0, the default 256 state buckets), and then
#   - bytes per migrant: INFO memory used_memory after minus before, divided
#     by the migrants (aggregates, positions and marks included), and the
#     part the aggregate hashes hold (MEMORY USAGE of every :agg, :agg:<n> key);
#   - the aggregate's fields, and how many are c: (cohorts per nationality);
#   - Redis CPU per event (INFO cpu after minus before, over the events);
#   - events/s from the assignment to caught up.
# NAT_RUNS (default 2) runs of each, interleaved (no, yes, no, yes...).
#
# Environment: MIGRANTS (125000), PARTITIONS (64), SEED (1), NAT_VALUES
# ("no yes"), NAT_RUNS (2).
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
MIGRANTS=${MIGRANTS:-125000}
PARTITIONS=${PARTITIONS:-64}
SEED=${SEED:-1}
NAT_VALUES=${NAT_VALUES:-no yes}
NAT_RUNS=${NAT_RUNS:-2}
. tools/services.sh

bin/circmon-gen --seed "$SEED" --migrants "$MIGRANTS" --out "$work/events.bin"
echo "== nationality_cohorts ($MIGRANTS migrants, $PARTITIONS partitions)"
start_redis --hash-max-listpack-value 1024
start_broker "$PARTITIONS"
conf=$work/nat.conf
write_config "$conf"
bin/circmonctl publish --config "$conf" "$work/events.bin" 2>"$work/publish.log"
n=$(sed -n "s/.*: \([0-9]*\) delivered.*/\1/p" "$work/publish.log" | tail -1)
echo "published: ${n:-?} messages"

info_field() { rcli info "$1" | tr -d '\r' | sed -n "s/^$2:\([0-9.]*\).*/\1/p"; }
cpu() { echo "$(info_field cpu used_cpu_sys) + $(info_field cpu used_cpu_user)" | bc -l; }

# "migrants agg_bytes agg_fields c_fields", one script call
counts() {
    rcli eval "
local cur, m, b, f, c = '0', 0, 0, 0, 0
repeat
  local r = redis.call('SCAN', cur, 'COUNT', 1000)
  cur = r[1]
  for _, k in ipairs(r[2]) do
    if string.find(k, ':s:', 1, true) then
      m = m + redis.call('HLEN', k)
    elseif string.sub(k, -4) == ':agg' or string.find(k, ':agg:%d+$') then
      b = b + redis.call('MEMORY', 'USAGE', k, 'SAMPLES', '0')
      local ks = redis.call('HKEYS', k)
      f = f + #ks
      for _, x in ipairs(ks) do
        if string.sub(x, 1, 2) == 'c:' then c = c + 1 end
      end
    end
  end
until cur == '0'
return {tostring(m), tostring(b), tostring(f), tostring(c)}" 0 | tr '\n' ' '
}

run_one() { # run_one yes|no RUN
    local log=$work/circmond-$1-$2.log
    rcli flushall >/dev/null
    rcli memory purge >/dev/null 2>&1 || true
    write_config "$conf" # a fresh group id
    printf '\n[circmon]\nnationality_cohorts = %s\n[http]\nport = 0\n' "$1" >>"$conf"
    local m0 c0 t0 t1 m1 c1
    m0=$(info_field memory used_memory)
    c0=$(cpu)
    bin/circmond --config "$conf" --foreground 2>"$log" &
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
    local migrants agg fields cf
    read -r migrants agg fields cf <<<"$(counts)"
    migrants_seen=$migrants
    printf '| %s | %.0f | %.0f | %d | %d | %.2f | %.0f |\n' "$1" \
        "$(echo "($m1 - $m0) / $migrants" | bc -l)" "$(echo "$agg / $migrants" | bc -l)" \
        "$fields" "$cf" "$(echo "($c1 - $c0) * 1000000 / $n" | bc -l)" \
        "$(echo "$n / ($t1 - $t0)" | bc -l)" >>"$work/nat.md"
}

: >"$work/nat.md"
for r in $(seq "$NAT_RUNS"); do
    for v in $NAT_VALUES; do
        run_one "$v" "$r"
    done
done
echo
echo "| nationality_cohorts | used_memory / migrant (B) | of which aggregates (B) | aggregate fields | of which c: | Redis CPU / event (us) | events/s (assigned to caught up) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
cat "$work/nat.md"
echo "($MIGRANTS migrants generated, $migrants_seen with a state, $n events, $PARTITIONS partitions; redis-server $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p'))"
