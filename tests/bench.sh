#!/usr/bin/env bash
# bench.sh - circmon's benchmarks (make bench). Figures, never assertions.
#
# 1. replay: decode and fold throughput on one core: the parts
#    (build/bench/bench_fold), then circmonctl replay as a whole.
# 2. end to end: circmond draining a topic of the mock broker into a local
#    redis-server, against kcat draining the same topic with its defaults, in
#    the same run; Redis memory per migrant and circmond's peak RSS.
#
# Redis runs with hash-max-listpack-value 1024, as the README asks.
#
# 3. the HTTP endpoint (bench_http): GET /metrics latency p50/p99 under wrk
#    (4 connections, 10 s) with circmond idle and while it catches up, and the
#    catch-up rate without the read side ([http] port = 0), with it, and with
#    a 1 s scrape of /metrics, in the same run.
#
# Environment: MIGRANTS (default 125000, about 1.05 million events),
# PARTITIONS (64), SEED (1), REPLAY_RUNS (5), HTTP_RUNS (1: catch-ups per
# variant); BENCH_ONLY: the parts to run, a list of replay, e2e, http, layout,
# natcohorts and rebalance (default all of them, in that order; e.g.
# BENCH_ONLY=rebalance make bench); SKIP_E2E=1 is BENCH_ONLY=replay,
# ONLY_HTTP=1 BENCH_ONLY=http.
#
# 4. the Redis state layouts compared in one run (tests/bench/layout.sh, its
#    own services and environment: LAYOUTS, LAYOUT_RUNS).
#
# 5. [circmon] nationality_cohorts = no against yes in one run
#    (tests/bench/natcohorts.sh, its own services and environment: NAT_RUNS).
#
# 6. loop latency during a catch-up with a second daemon joining and leaving
#    the group, against the same catch-up alone (tests/bench/rebalance.sh,
#    its own services and environment: REBAL_MIGRANTS, REBAL_RUNS...).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
MIGRANTS=${MIGRANTS:-125000}
PARTITIONS=${PARTITIONS:-64}
SEED=${SEED:-1}
parts=${BENCH_ONLY:-replay e2e http layout natcohorts rebalance}
[ "${SKIP_E2E:-0}" = 1 ] && parts=replay
[ "${ONLY_HTTP:-0}" = 1 ] && parts=http
parts=" ${parts//,/ } "
for p in $parts; do
    case $p in
    replay | e2e | http | layout | natcohorts | rebalance) ;;
    *) echo "bench.sh: BENCH_ONLY: no part '$p' (replay e2e http layout natcohorts rebalance)" >&2; exit 2 ;;
    esac
done
want() { [[ $parts == *" $1 "* ]]; }
tools/install-deps.sh >&2 # kcat, bc and time among them
. tools/services.sh

# bench_http: the endpoint's figures (section 3 above); events in $work/events.bin.
bench_http() {
    echo
    echo "== HTTP endpoint ($PARTITIONS partitions)"
    start_redis --hash-max-listpack-value 1024
    start_broker "$PARTITIONS"
    local conf=$work/http.conf port n
    port=$(pick_http_port)
    write_config "$conf"
    bin/circmonctl publish --config "$conf" "$work/events.bin" 2>"$work/publish-http.log"
    n=$(sed -n "s/.*: \([0-9]*\) delivered.*/\1/p" "$work/publish-http.log" | tail -1)
    echo "published: ${n:-?} messages"
    # one catch-up from an empty Redis: catch_up VARIANT PORT; writes the rate
    # from the assignment to caught up (events/s) and its seconds into
    # $work/rate-VARIANT.txt, leaves the daemon running in $daemon
    catch_up() {
        rcli flushall >/dev/null
        write_config "$conf" # a fresh group id: no wait for the previous member
        printf '\n[http]\nport = %s\nrefresh_ms = 1000\n' "$2" >>"$conf"
        : >"$work/circmond-$1.log"
        bin/circmond --config "$conf" --foreground 2>"$work/circmond-$1.log" &
        track $!
        daemon=$!
        while ! grep -q 'assigned [0-9]* partitions from' "$work/circmond-$1.log" 2>/dev/null; do
            kill -0 "$daemon" 2>/dev/null || { tail "$work/circmond-$1.log" >&2; return 1; }
            sleep 0.02
        done
        local t0 t1
        t0=$(date +%s.%N)
        wait_caught_up "$conf" "$daemon" 1200 || { tail -20 "$work/circmond-$1.log" >&2; return 1; }
        t1=$(date +%s.%N)
        echo "$(echo "$n / ($t1 - $t0)" | bc -l) $(echo "$t1 - $t0" | bc -l)" >"$work/rate-$1.txt"
    }
    rate() { awk '{print $1}' "$work/rate-$1.txt"; }
    stop_daemon() {
        kill -TERM "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true
    }
    wrk_quantiles() { # wrk --latency output: "p50 p99" in ms
        awk '/^ +50%/ {p50 = $2} /^ +99%/ {p99 = $2}
             function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0;
                              if (v ~ /s$/) return v * 1000; return v }
             END {printf "%.2f %.2f", ms(p50), ms(p99)}' "$1"
    }
    local runs=${HTTP_RUNS:-1} r rate_off rate_on rate_scrape
    # a first catch-up sends the stream's dead letters; every later one finds
    # them on the dead-letter topic and skips them: warm up, so that every
    # measured run does the same work
    catch_up warm 0
    stop_daemon
    for r in $(seq "$runs"); do
        catch_up off 0
        stop_daemon
        catch_up on "$port"
        # circmond idle (caught up): /metrics under wrk
        sleep 1.5 # a refresh after the catch-up: the series of the whole stream
        curl -s "http://127.0.0.1:$port/metrics" >"$work/metrics.txt"
        wrk -t2 -c4 -d10s --latency "http://127.0.0.1:$port/metrics" >"$work/wrk-idle.txt"
        stop_daemon
        # a 1 s scrape during the catch-up
        (while :; do curl -s -o /dev/null "http://127.0.0.1:$port/metrics"; sleep 1; done) &
        local scraper=$!
        track $scraper
        catch_up scrape "$port"
        kill "$scraper" 2>/dev/null || true
        stop_daemon
        # wrk from the assignment on, during a catch-up of its own (wrk takes
        # CPU from the fold: this run's rate is not compared)
        rm -f "$work/circmond-wrk.log"
        (while ! grep -q 'assigned [0-9]* partitions from' "$work/circmond-wrk.log" 2>/dev/null; do
            sleep 0.02
        done
        wrk -t2 -c4 -d10s --latency "http://127.0.0.1:$port/metrics" >"$work/wrk-busy.txt") &
        local loader=$!
        track $loader
        catch_up wrk "$port"
        wait "$loader" || true
        stop_daemon
        rate_off=$(rate off)
        rate_on=$(rate on)
        rate_scrape=$(rate scrape)
        printf 'metrics: %d series, %d bytes\n' "$(grep -vc '^#' "$work/metrics.txt")" \
            "$(stat -c %s "$work/metrics.txt")"
        printf 'GET /metrics, wrk 4 connections 10 s, circmond idle: p50/p99 %s ms, %s requests/s\n' \
            "$(wrk_quantiles "$work/wrk-idle.txt" | tr ' ' /)" \
            "$(awk '/Requests\/sec/ {print $2}' "$work/wrk-idle.txt")"
        printf 'GET /metrics, wrk 4 connections 10 s from the assignment, circmond catching up for %.1f s of them: p50/p99 %s ms, %s requests/s (catch-up %.0f events/s with wrk running)\n' \
            "$(awk '{print $2}' "$work/rate-wrk.txt")" "$(wrk_quantiles "$work/wrk-busy.txt" | tr ' ' /)" \
            "$(awk '/Requests\/sec/ {print $2}' "$work/wrk-busy.txt")" "$(rate wrk)"
        printf 'catch-up (assigned to caught up): no read side %.0f events/s; read side every 1 s %.0f (%.2f); and a 1 s scrape %.0f (%.2f)\n' \
            "$rate_off" "$rate_on" "$(echo "$rate_on / $rate_off" | bc -l)" \
            "$rate_scrape" "$(echo "$rate_scrape / $rate_off" | bc -l)"
        for v in off on scrape wrk; do
            printf 'loop latency, %s: %s\n' "$v" \
                "$(sed -n 's/.*loop latency since the start \(.*\)/\1/p' "$work/circmond-$v.log")"
        done
    done
}

# bench_replay: decode and fold throughput (section 1 above).
bench_replay() {
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
}

# bench_e2e: circmond against kcat, Redis memory (section 2 above).
bench_e2e() {
    echo
    echo "== end to end ($PARTITIONS partitions)"
    start_redis --hash-max-listpack-value 1024
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
    # the migrants: the fields of every state bucket (the layout of state_buckets)
    read -r migrants susage <<<"$(rcli eval "
    local cur, m, b = '0', 0, 0
    repeat
      local r = redis.call('SCAN', cur, 'MATCH', '*:s:*', 'COUNT', 1000)
      cur = r[1]
      for _, k in ipairs(r[2]) do
        m = m + redis.call('HLEN', k)
        b = b + redis.call('MEMORY', 'USAGE', k, 'SAMPLES', '0')
      end
    until cur == '0'
    return {m, b}" 0 | tr '\n' ' ')"
    printf 'redis used_memory: %d bytes for %d migrant states: %.0f bytes per migrant (aggregates included)\n' \
        "$used" "$migrants" "$(echo "$used / $migrants" | bc -l)"
    printf 'MEMORY USAGE of the state buckets per migrant: %.0f bytes\n' "$(echo "$susage / $migrants" | bc -l)"
}

if want replay || want e2e || want http; then
    bin/circmon-gen --seed "$SEED" --migrants "$MIGRANTS" --out "$work/events.bin"
fi
want replay && bench_replay
want e2e && bench_e2e
want http && bench_http
if want layout; then
    echo
    bash tests/bench/layout.sh
fi
if want natcohorts; then
    echo
    bash tests/bench/natcohorts.sh
fi
if want rebalance; then
    echo
    bash tests/bench/rebalance.sh
fi
