#!/usr/bin/env bash
# bench-scale.sh - sustained load and scale figures (make bench-scale). Figures, never assertions.
#
# A producer (circmonctl publish --rate) publishes a season at a steady rate
# while circmond consumes, on the mock broker (circmon-broker) and a local
# redis-server (unix socket), all on this machine:
#
# 1. ramp: short runs (RAMP_SECONDS each) at the rates of RAMP, with 1 and
#    with 2 circmond instances (RAMP_INSTANCES);
#    a rate is sustainable when, over the second half of the run, circmond
#    folds at least 95% of what is produced meanwhile (the lag does not grow)
#    and its lag when the producer stops is under LAG_BUDGET_S seconds of
#    production. The ramp stops at the first rate that is not.
# 2. for each count of INSTANCES (circmond processes in one consumer group):
#    the whole season at RATE, the lag sampled every second (CSV), the
#    event-to-apply latency (p50/p99 from circmond's histogram, through the
#    Kafka CreateTime), circmond's RSS and Redis' memory at the end; then the
#    rebuild: Redis emptied, a fresh group folds the whole topic from the
#    beginning. Once: kcat draining the same topic, the Kafka ceiling.
#
# The mock broker keeps about 5 MiB per partition (librdkafka's mock: 5 MiB
# and 100,000 message sets) and drops older data silently: the producer
# compresses (COMPRESSION, zstd) and lingers (PRODUCER_LINGER_MS) so that its
# message sets are few and small, and PARTITIONS must hold the whole season,
# or the rebuild would not be of the whole topic. The script checks it (every
# low watermark still 0) and says so when not.
#
# Environment: EVENTS (10000000: the season is generated for
# EVENTS*10/83+1 migrants, about EVENTS events; MIGRANTS overrides), SEED (1),
# RATE (auto: 80% of the highest sustainable rate of the ramp, rounded down to
# 1000 events/s), PARTITIONS (256), INSTANCES ("1 2"; "" for the ramp only),
# RAMP ("40000 60000 80000 100000 120000"; "" skips the ramp, RATE
# is then required), RAMP_INSTANCES (the instance counts ramped, "1 2"; RATE=auto
# takes the first), RAMP_SECONDS (20), LAG_BUDGET_S (1), LINGER_MS (circmond's batch_linger_ms,
# 1000), COMPRESSION (zstd), PRODUCER_LINGER_MS (100), OUT (build/bench).
# Output: a markdown table on stdout and in $OUT/scale.md, the lag samples in
# $OUT/scale-lag-*.csv (t_s,produced,folded,lag).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
EVENTS=${EVENTS:-10000000}
MIGRANTS=${MIGRANTS:-$((EVENTS * 10 / 83 + 1))}
SEED=${SEED:-1}
RATE=${RATE:-auto}
PARTITIONS=${PARTITIONS:-256}
INSTANCES=${INSTANCES-1 2}
RAMP=${RAMP-40000 60000 80000 100000 120000}
RAMP_SECONDS=${RAMP_SECONDS:-20}
RAMP_INSTANCES=${RAMP_INSTANCES-1 2}
LAG_BUDGET_S=${LAG_BUDGET_S:-1}
LINGER_MS=${LINGER_MS:-1000}
COMPRESSION=${COMPRESSION:-zstd}
PRODUCER_LINGER_MS=${PRODUCER_LINGER_MS:-100}
OUT=${OUT:-build/bench}
for v in EVENTS MIGRANTS SEED PARTITIONS RAMP_SECONDS LAG_BUDGET_S LINGER_MS PRODUCER_LINGER_MS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "bench-scale: $v='${!v}' is not a whole number" >&2; exit 2; }
done
[[ $RATE = auto || $RATE =~ ^[1-9][0-9]*$ ]] || { echo "bench-scale: RATE='$RATE': auto or a positive integer" >&2; exit 2; }
[[ $RATE != auto || -n $RAMP ]] || { echo "bench-scale: RATE=auto needs a RAMP" >&2; exit 2; }
for k in $INSTANCES $RAMP_INSTANCES $RAMP; do
    [[ $k =~ ^[1-9][0-9]*$ ]] || { echo "bench-scale: '$k' in INSTANCES or RAMP is not a positive integer" >&2; exit 2; }
done
mkdir -p "$OUT"
tools/install-deps.sh >&2 # kcat, bc, curl among them
. tools/services.sh

now() { date +%s.%N; }
notes=()
phase=start
# circmond first, with a bound, then the services (services.sh's cleanup)
trap 'rc=$?; [ ${#dpids[@]} -eq 0 ] || stop_daemons >/dev/null 2>&1; (exit $rc); cleanup' EXIT
fmt() { printf "%.${2:-0}f" "$1"; } # fmt NUMBER [DECIMALS]
calc() { echo "$1" | bc -l; }

# --- services ------------------------------------------------------------------

broker_pid=
# new_broker: a fresh mock cluster (empty topics) with PARTITIONS partitions.
new_broker() {
    if [ -n "$broker_pid" ]; then
        kill -TERM "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    rm -f "$work/broker.addr"
    start_broker "$PARTITIONS"
    broker_pid=${pids[-1]}
}

# daemon_conf FILE: circmond's configuration, a fresh group id.
daemon_conf() {
    write_config "$1"
    printf '\n[circmon]\nbatch_linger_ms = %s\n' "$LINGER_MS" >>"$1"
}

# The publisher's: compressed, lingering message sets (see the top).
pub_conf() {
    write_config "$1"
    printf '\n[kafka]\nrdkafka.compression.codec = %s\nrdkafka.linger.ms = %s\n' \
        "$COMPRESSION" "$PRODUCER_LINGER_MS" >>"$1"
}

# status CONF: "produced folded lag low" over every partition (the sums of the
# high watermarks, the stored positions, the lags and the low watermarks).
status() {
    bin/circmonctl status --config "$1" --format json 2>/dev/null |
        awk -F'[:,]' '/"low"/ {low += $2} /"total"/ {tot = 1}
             tot && /"position"/ {pos = $2 + 0} tot && /"high"/ {high = $2 + 0}
             tot && /"lag"/ {lag = $2 + 0; done = 1}
             END {if (done) printf "%d %d %d %d\n", high, pos, lag, low}'
}

# sampler CONF CSV: every second "t_s,produced,folded,lag" into CSV until
# $work/stop-sampler exists; t_s from the start of the sampler.
sampler() {
    local t0 s
    t0=$(now)
    echo "t_s,produced,folded,lag" >"$2"
    while [ ! -e "$work/stop-sampler" ]; do
        s=$(status "$1")
        [ -n "$s" ] && echo "$(fmt "$(calc "$(now) - $t0")" 1),${s% *}" | tr ' ' , >>"$2"
        sleep 1
    done
}
sampler_pid=
start_sampler() {
    rm -f "$work/stop-sampler"
    sampler "$1" "$2" &
    sampler_pid=$!
    track "$sampler_pid"
}
stop_sampler() {
    touch "$work/stop-sampler"
    wait "$sampler_pid" 2>/dev/null || true
}

# start_daemons CONF K: K circmond processes in CONF's group, each with an
# HTTP endpoint (ports[i]); their pids in dpids, logs $work/d<i>.log.
dpids=()
ports=()
start_daemons() {
    dpids=()
    ports=()
    local i c
    for ((i = 0; i < $2; i++)); do
        c=$work/d$i.conf
        cp "$1" "$c"
        ports[i]=$(pick_http_port)
        printf '\n[http]\nport = %s\n' "${ports[i]}" >>"$c"
        bin/circmond --config "$c" --foreground 2>"$work/d$i.log" &
        track $!
        dpids[i]=$!
    done
}

# assigned: the partitions the group gave to the daemons of start_daemons.
assigned() {
    local i sum=0 a
    for ((i = 0; i < ${#dpids[@]}; i++)); do
        a=$(curl -s -m 2 "http://127.0.0.1:${ports[i]}/metrics" 2>/dev/null |
            sed -n 's/^circmon_assigned_partitions \([0-9]*\).*/\1/p')
        sum=$((sum + ${a:-0}))
    done
    echo "$sum"
}

# wait_assigned DEADLINE_S: until every partition is assigned (the group
# settled; with several members the first may take all, then share).
wait_assigned() {
    local end=$(($(date +%s) + $1)) i
    while [ "$(assigned)" != "$PARTITIONS" ] || ! all_split; do
        for i in "${dpids[@]}"; do
            kill -0 "$i" 2>/dev/null || { say "circmond stopped"; tail "$work"/d*.log >&2; return 1; }
        done
        (($(date +%s) < end)) || { say "partitions not assigned within $1 s"; return 1; }
        sleep 0.2
    done
}
# all_split: every daemon holds some partitions (the group has every member).
all_split() {
    local i a
    for ((i = 0; i < ${#dpids[@]}; i++)); do
        a=$(curl -s -m 2 "http://127.0.0.1:${ports[i]}/metrics" 2>/dev/null |
            sed -n 's/^circmon_assigned_partitions \([0-9]*\).*/\1/p')
        [ "${a:-0}" -gt 0 ] || return 1
    done
}

# rss: "VmHWM VmRSS" in MiB of every daemon, "a+b" when several.
rss() {
    local i hwm=() cur=()
    for i in "${dpids[@]}"; do
        hwm+=("$(awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$i/status")")
        cur+=("$(awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$i/status")")
    done
    echo "$(IFS=+; echo "${hwm[*]}") $(IFS=+; echo "${cur[*]}")"
}

# stop_daemons: SIGTERM, wait; then latency "p50 p99 max" (ms) of each from
# its stop line, "a/b" when several.
stop_daemons() {
    local i end=$(($(date +%s) + 60))
    for i in "${dpids[@]}"; do kill -TERM "$i" 2>/dev/null || true; done
    for i in "${dpids[@]}"; do
        while kill -0 "$i" 2>/dev/null && (($(date +%s) < end)); do sleep 0.1; done
        if kill -0 "$i" 2>/dev/null; then
            say "circmond $i did not stop within 60 s of SIGTERM: killed"
            notes+=("$phase: a circmond did not stop within 60 s of SIGTERM and was killed.")
            kill -KILL "$i" 2>/dev/null || true
        fi
        wait "$i" 2>/dev/null || true
    done
    for ((i = 0; i < ${#dpids[@]}; i++)); do cp "$work/d$i.log" "$OUT/scale-$phase-d$i.log"; done
}
latency() { # latency FIELD (1 p50, 2 p99, 3 max): per daemon, joined by /
    local i out=()
    for ((i = 0; i < ${#dpids[@]}; i++)); do
        out+=("$(sed -n 's/.*event-to-apply latency since the start p50\/p99\/max \([0-9.]*\)\/\([0-9.]*\)\/\([0-9.]*\) ms.*/\1 \2 \3/p' \
            "$work/d$i.log" | tail -1 | awk -v f="$1" '{print $f}')")
    done
    (IFS=/; echo "${out[*]}")
}

# wait_lag0 CONF DEADLINE_S: until every produced event is folded.
wait_lag0() {
    local end=$(($(date +%s) + $2)) s
    while :; do
        s=$(status "$1")
        [ -n "$s" ] && [ "$(echo "$s" | awk '{print $3}')" = 0 ] && return 0
        for i in "${dpids[@]}"; do
            kill -0 "$i" 2>/dev/null || { say "circmond stopped"; tail "$work"/d*.log >&2; return 1; }
        done
        (($(date +%s) < end)) || { say "not caught up within $2 s ($s)"; return 1; }
        sleep 0.2
    done
}

# csv_max CSV COLUMN: the largest value of a column (4 = lag).
csv_max() { awk -F, -v c="$2" 'NR > 1 && $c > m {m = $c} END {print m + 0}' "$1"; }
# csv_lag_series CSV: the lag at ten evenly spaced samples, "t:lag ...".
csv_lag_series() {
    awk -F, 'NR > 1 {t[n] = $1; l[n++] = $4} END {
        if (!n) exit; step = (n - 1) / 9.0; if (step < 1) step = 1
        for (i = 0; i < n; i += step) printf "%s%ds:%d", (i ? " " : ""), t[int(i)], l[int(i)]
        if (int(i - step) != n - 1) printf " %ds:%d", t[n - 1], l[n - 1]
        print "" }' "$1"
}

# --- the season ------------------------------------------------------------------

ev=$work/season.bin
say "generating $MIGRANTS migrants (seed $SEED)"
bin/circmon-gen --seed "$SEED" --migrants "$MIGRANTS" --out "$ev" 2>"$work/gen.log"
records=$(sed -n 's/^circmon-gen: seed [0-9]*: \([0-9]*\) events.*/\1/p' "$work/gen.log")
bytes=$(stat -c %s "$ev")
start_redis
report=$OUT/scale.md
{
    echo "# circmon bench-scale, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
    echo
    printf 'Season: %d events for %d migrants (seed %d), %d bytes framed (%.1f bytes per event);' \
        "$records" "$MIGRANTS" "$SEED" "$bytes" "$(calc "$bytes / $records")"
    printf ' %d partitions, producer %s with linger.ms %s, circmond batch_linger_ms %s.\n' \
        "$PARTITIONS" "$COMPRESSION" "$PRODUCER_LINGER_MS" "$LINGER_MS"
} >"$report"

# --- 1. the ramp -----------------------------------------------------------------

best=0 # of the first count of RAMP_INSTANCES: the season's RATE=auto
for ki in $RAMP_INSTANCES; do
    [ -n "$RAMP" ] || break
    {
        echo
        echo "## Ramp: $ki circmond instance(s), ${RAMP_SECONDS} s at each offered rate"
        echo
        echo "| offered (events/s) | produced (events/s) | folded meanwhile (events/s) | folded / produced, second half | lag at the producer's stop | max lag | event-to-apply p50 / p99 (ms) | sustainable |"
        echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |"
    } >>"$report"
    kbest=0
    for r in $RAMP; do
        say "ramp: $ki instance(s), $r events/s for $RAMP_SECONDS s"
        phase=ramp-$ki-$r
        rcli flushall >/dev/null
        new_broker
        daemon_conf "$work/d.conf"
        pub_conf "$work/pub.conf"
        start_daemons "$work/d.conf" "$ki"
        wait_assigned 900
        csv=$OUT/scale-lag-ramp-$ki-$r.csv
        start_sampler "$work/d.conf" "$csv"
        t0=$(now)
        bin/circmonctl publish --config "$work/pub.conf" --rate "$r" "$ev" 2>"$work/pub-ramp.log" &
        pub=$!
        track $pub
        mid=$(calc "$t0 + $RAMP_SECONDS / 2")
        end=$(calc "$t0 + $RAMP_SECONDS")
        while (($(echo "$(now) < $mid" | bc))) && kill -0 "$pub" 2>/dev/null; do sleep 0.2; done
        read -r produced_m folded_m _ _ <<<"$(status "$work/d.conf")"
        while (($(echo "$(now) < $end" | bc))) && kill -0 "$pub" 2>/dev/null; do sleep 0.2; done
        kill -TERM "$pub" 2>/dev/null || true
        wait "$pub" 2>/dev/null || true
        t1=$(now)
        read -r produced folded lag _ <<<"$(status "$work/d.conf")"
        stop_sampler
        stop_daemons
        dt=$(calc "$t1 - $t0")
        prate=$(calc "$produced / $dt")
        frate=$(calc "$folded / $dt")
        ok=no
        keep=$(calc "($folded - $folded_m) / ($produced - $produced_m + ($produced == $produced_m))")
        if (($(echo "$keep >= 0.95 && $lag <= $r * $LAG_BUDGET_S" | bc))); then
            ok=yes
            kbest=$r
        fi
        printf '| %d | %.0f | %.0f | %.2f | %d | %d | %s / %s | %s |\n' "$r" "$prate" "$frate" "$keep" \
            "$lag" "$(csv_max "$csv" 4)" "$(latency 1)" "$(latency 2)" "$ok" >>"$report"
        [ $ok = yes ] || break # higher rates fail too
    done
    {
        echo
        if [ "$kbest" -gt 0 ]; then
            echo "Highest sustainable rate with $ki instance(s): **$kbest events/s** (at least 95% of the production folded over the second half, lag under ${LAG_BUDGET_S} s of production when the producer stopped)."
        else
            echo "No rate of the ramp was sustainable with $ki instance(s)."
        fi
    } >>"$report"
    [ -n "${best_set:-}" ] || { best=$kbest; best_set=1; }
done
if [ "$RATE" = auto ]; then
    base=${best:-0}
    [ "$base" -gt 0 ] || base=${RAMP%% *}
    RATE=$((base * 8 / 10 / 1000 * 1000))
    [ "$RATE" -gt 0 ] || RATE=1000
fi

# --- 2. the season and the rebuild, per number of instances ----------------------

if [ -z "$INSTANCES" ]; then
    cat "$report"
    exit 0
fi

{
    echo
    echo "## The season at $RATE events/s, then the rebuild from the beginning"
    echo
    echo "| circmond instances | produced at (events/s) | caught up after the producer (s) | max lag | lag over time (t:lag) | event-to-apply p50 / p99 / max (ms) | circmond peak / end RSS (MiB) | Redis used_memory (MiB) | per migrant (bytes) | rebuild (s) | of which start to assigned (s) | rebuild after the assignment (events/s) | rebuild RSS peak (MiB) | rebuild / kcat |"
    echo "| ---: | ---: | ---: | ---: | :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >>"$report"
kcat_rate=
for k in $INSTANCES; do
    say "season: $k instance(s), $records events at $RATE events/s"
    phase=season-$k
    rcli flushall >/dev/null
    new_broker
    daemon_conf "$work/d.conf"
    pub_conf "$work/pub.conf"
    start_daemons "$work/d.conf" "$k"
    wait_assigned 900
    csv=$OUT/scale-lag-season-$k.csv
    start_sampler "$work/d.conf" "$csv"
    t0=$(now)
    bin/circmonctl publish --config "$work/pub.conf" --rate "$RATE" "$ev" 2>"$work/pub.log"
    t1=$(now)
    wait_lag0 "$work/d.conf" 3600
    t2=$(now)
    stop_sampler
    read -r produced _ _ low <<<"$(status "$work/d.conf")"
    read -r hwm cur <<<"$(rss)"
    used=$(rcli info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p')
    migrants=$(rcli --scan --pattern '*:m:*' | wc -l)
    # what the states and the aggregates take: MEMORY USAGE of every
    # aggregate hash and of a sample of 1000 state keys
    agg=$(rcli --scan --pattern '*:agg*' | sed 's/^/MEMORY USAGE /' | rcli | awk '{s += $1} END {print s + 0}')
    st_mean=$(set +o pipefail; rcli --scan --pattern '*:m:*' | head -1000 | sed 's/^/MEMORY USAGE /' | rcli |
        awk '{s += $1; n++} END {printf "%.0f", n ? s / n : 0}')
    stop_daemons
    p50=$(latency 1) p99=$(latency 2) pmax=$(latency 3)
    [ "$low" = 0 ] || notes+=("$k instance(s): the broker dropped $low events of the season (retention): raise PARTITIONS; the rebuild is not of the whole season.")
    [ "$produced" = "$records" ] || notes+=("$k instance(s): $produced of $records events produced.")

    # kcat, the Kafka ceiling, on the same topic (once)
    if [ -z "$kcat_rate" ]; then
        say "kcat draining the topic"
        ka=$(now)
        got=$(kcat -C -b "$brokers" -t circmon.events -e -o beginning -q -f '%o\n' | wc -l)
        kb=$(now)
        kcat_rate=$(calc "$got / ($kb - $ka)")
        kcat_line="kcat -C -e -o beginning (defaults) drained the season's topic: $got messages in $(fmt "$(calc "$kb - $ka")" 1) s = $(fmt "$kcat_rate") msg/s."
    fi

    say "rebuild: $k instance(s)"
    phase=rebuild-$k
    rcli flushall >/dev/null
    daemon_conf "$work/d.conf" # a fresh group: from the beginning (Redis is empty)
    ra=$(now)
    start_daemons "$work/d.conf" "$k"
    wait_assigned 900
    rj=$(now)
    wait_lag0 "$work/d.conf" 3600
    rb=$(now)
    read -r rhwm _ <<<"$(rss)"
    stop_daemons
    printf '| %d | %.0f | %.1f | %d | %s | %s / %s / %s | %s / %s | %.0f | %.0f | %.1f | %.1f | %.0f | %s | %.2f |\n' \
        "$k" "$(calc "$produced / ($t1 - $t0)")" "$(calc "$t2 - $t1")" "$(csv_max "$csv" 4)" \
        "$(csv_lag_series "$csv")" "$p50" "$p99" "$pmax" "$hwm" "$cur" "$(calc "$used / 1048576")" \
        "$(calc "$used / ($migrants + ($migrants == 0))")" "$(calc "$rb - $ra")" "$(calc "$rj - $ra")" \
        "$(calc "$produced / ($rb - $rj)")" "$rhwm" "$(calc "$produced / ($rb - $rj) / $kcat_rate")" >>"$report"
    echo "$k $used $migrants $(calc "$rb - $ra") $(calc "$produced / ($rb - $rj)") $agg $st_mean" >>"$work/season.txt"
done
{
    echo
    echo "$kcat_line"
    awk -v p="$PARTITIONS" 'NR == 1 {printf "Redis at the end of the season (1 instance): %d migrant states, MEMORY USAGE %d bytes each (mean of a sample of 1000), %.1f MiB in the %d aggregate hashes; used_memory %.1f MiB.\n", $3, $7, $6 / 1048576, p, $2 / 1048576}' "$work/season.txt"
    echo "Lag CSVs in $OUT/scale-lag-*.csv; circmond logs in $OUT/scale-*-d*.log."
    for n in "${notes[@]}"; do echo "**$n**"; done
} >>"$report"
cat "$report"
