/* lifecycle.c - circmond's start (budgets), signals, stop, teardown and stats line. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "circmon/fold.h"
#include "circmon/kafka.h"
#include "circmon/names.h"
#include "circmon/redis_conn.h"
#include "alerts.h"
#include "daemon.h"
#include "http.h"
#include "notify.h"
#include "reload.h"

/* ------------------------------------------------------------ stats */

static void on_stats(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    (void)fd;
    (void)what;
    int64_t now = cm_clock_us();
    double dt = (double)(now - d->last_stats_us) / 1e6;
    int64_t lag = 0;
    int nparts = 0;
    for (size_t i = 0; d->want && i < (size_t)d->want->cnt; i++) {
        int32_t id = d->want->elems[i].partition;
        int64_t lo, hi;
        if ((size_t)id < d->n_parts &&
            rd_kafka_get_watermark_offsets(d->rk, d->cfg->topic, id, &lo, &hi) == 0 && hi >= 0)
            lag += hi > d->parts[id].pos ? hi - d->parts[id].pos : 0;
        nparts++;
    }
    uint64_t folded = cm_counter_get(d->c_folded);
    const struct cm_hist *h = &d->h_loop_line, *el = &d->h_event_lat_line;
    if (folded != d->last_folded || lag)
        cm_log_info("%.0f events/s, %" PRIu64 " folded, %" PRIu64 " dead letters, %" PRIu64
                    " refused applies, %" PRIu64 " unreadable states, %d partitions, lag %" PRId64
                    ", loop latency p50/p99/max %.1f/%.1f/%.1f ms"
                    ", event-to-apply latency p50/p99/max %.1f/%.1f/%.1f ms",
                    dt > 0 ? (double)(folded - d->last_folded) / dt : 0.0, folded,
                    cm_counter_get(d->c_dlq), cm_counter_get(d->c_refused),
                    cm_counter_get(d->c_unreadable), nparts, lag,
                    (double)cm_hist_quantile(h, 0.5) / 1000, (double)cm_hist_quantile(h, 0.99) / 1000,
                    (double)h->max / 1000, (double)cm_hist_quantile(el, 0.5) / 1000,
                    (double)cm_hist_quantile(el, 0.99) / 1000, (double)el->max / 1000);
    double eps = dt > 0 ? (double)(folded - d->last_folded) / dt : 0.0;
    if (cmd_notify_redis_down(d))
        ; /* STATUS says paused until Redis is back */
    else if (lag > d->cfg->batch_size)
        cmd_notify_status(d, "catching up: lag %" PRId64 " events on %d partitions, %.0f events/s",
                          lag, nparts, eps);
    else
        cmd_notify_status(d, "ready: %.0f events/s, %d partitions, lag %" PRId64, eps, nparts,
                          lag);
    cm_hist_reset(&d->h_loop_line);
    cm_hist_reset(&d->h_event_lat_line);
    d->last_folded = folded;
    d->last_stats_us = now;
}

/* The loop-latency probe: a timer that should fire every LOOP_TICK_MS; how
 * late it fires is how long the loop was held by something else. */
static void on_loop_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct daemon *d = arg;
    int64_t now = cm_clock_us();
    uint64_t late = now > d->loop_due_us ? (uint64_t)(now - d->loop_due_us) : 0;
    cm_hist_observe(d->h_loop, late);
    cm_hist_observe(&d->h_loop_line, late);
    d->loop_due_us = now + LOOP_TICK_MS * 1000;
    d->loop_ticks++;
    if (!d->loop_stalled)
        cmd_timer_in(d->loop_timer, LOOP_TICK_MS);
}

/* The consumer's poll timer, counted for the watchdog. */
static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    d->polls++;
    d->last_poll_us = cm_clock_us();
    cmd_on_poll_timer(fd, what, arg);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    struct daemon *d = arg;
    if (!d->stopping)
        cmd_reload(d); /* logged */
}

/* The daemon's metrics; 0 or -ENOMEM. */
static int metrics_setup(struct daemon *d)
{
    if (!(d->m = cm_metrics_new()))
        return -ENOMEM;
    d->c_folded = cm_metrics_counter(d->m, "circmon_events_folded_total",
                                     "events folded (accepted or dropped as duplicates)");
    d->c_dlq = cm_metrics_counter(d->m, "circmon_dead_letters_total",
                                  "dead letters produced and delivered before their apply");
    d->c_applies = cm_metrics_counter(d->m, "circmon_applies_total", "batches applied to Redis");
    d->c_refused = cm_metrics_counter(d->m, "circmon_applies_refused_total",
                                      "applies refused: Redis held another position");
    d->c_unreadable = cm_metrics_counter(d->m, "circmon_states_unreadable_total",
                                         "stored migrant states that did not unpack");
    d->c_resyncs = cm_metrics_counter(d->m, "circmon_resyncs_total",
                                      "resynchronisations from the positions in Redis");
    d->h_loop = cm_metrics_hist(d->m, "circmon_loop_latency_us",
                                "how late the loop's 10 ms probe timer fired, in microseconds");
    cm_hist_init(&d->h_loop_line, NULL, NULL);
    d->h_event_lat = cm_metrics_hist(d->m, "circmon_event_apply_latency_us",
                                     "wall-clock time from an event's Kafka CreateTime to the "
                                     "reply of the apply that folded it, in microseconds");
    cm_hist_init(&d->h_event_lat_line, NULL, NULL);
    if (!d->c_folded || !d->c_dlq || !d->c_applies || !d->c_refused || !d->c_unreadable ||
        !d->c_resyncs || !d->h_loop || !d->h_event_lat)
        return -ENOMEM;
    return 0;
}

/* ------------------------------------------------------------ stop */

static void on_close_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct daemon *d = arg;
    cmd_on_kafka(d->kpipe[0], EV_READ, d);
    if (d->closing) {
        if (!rd_kafka_consumer_closed(d->rk))
            cmd_timer_in(d->close_timer, 100);
    }
}

static void begin_close(struct daemon *d)
{
    if (d->closing)
        return;
    cmd_drop_all(d); /* abandons what did not finish in time */
    d->closing = 1;
    if (!d->rk) {
        event_base_loopbreak(d->base);
        return;
    }
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(d->rk, d->rkq);
    if (e) {
        cm_log_warn("closing the consumer: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        rd_kafka_consumer_close(d->rk);
    }
    cmd_timer_in(d->close_timer, 10);
    cmd_timer_in(d->stop_timer, 10000); /* the close's own deadline */
}

void cmd_maybe_finish_stop(struct daemon *d)
{
    if (!d->stopping)
        return;
    if (!d->closing) {
        if (d->in_flight == 0)
            begin_close(d);
        return;
    }
    if (!d->rk || rd_kafka_consumer_closed(d->rk))
        event_base_loopbreak(d->base);
}

static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct daemon *d = arg;
    if (!d->closing) {
        cm_log_warn("abandoning %zu unfinished batches (their positions stay in Redis)",
                    d->in_flight);
        begin_close(d);
        return;
    }
    cm_log_warn("the consumer did not close in time");
    event_base_loopbreak(d->base);
}

/* Stop taking messages; let batches in flight finish within a bound. */
static void begin_stop(struct daemon *d)
{
    for (size_t i = 0; i < d->n_parts; i++)
        cmd_intake_drop_queue(d, &d->parts[i]);
    cmd_timer_in(d->stop_timer, d->cfg->command_timeout_ms + 1000);
    cmd_maybe_finish_stop(d);
}

void cmd_fatal_stop(struct daemon *d)
{
    d->exit_code = 1;
    if (d->stopping)
        return;
    cmd_notify_stopping(d);
    d->stopping = 1;
    if (!d->started) {
        event_base_loopbreak(d->base);
        return;
    }
    begin_stop(d);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    (void)what;
    if (d->stopping) {
        cm_log_warn("second signal: stopping now");
        event_base_loopbreak(d->base);
        return;
    }
    cm_log_info("signal %d: stopping", (int)sig);
    cmd_notify_stopping(d);
    d->stopping = 1;
    if (!d->started) {
        d->exit_code = 0;
        event_base_loopbreak(d->base);
        return;
    }
    begin_stop(d);
}

/* ------------------------------------------------------------ start */

/* Kafka at start-up: the metadata of both topics, asked off the loop (a
 * query blocks up to 5 s), retried every second within the budget. */
static void meta_ask(struct daemon *d)
{
    /* a few tries fit in the budget: each waits at most a quarter of it */
    int left = (int)(d->kafka_t0 + d->budget_ms - cm_clock_ms());
    int wait = d->budget_ms / 4 < 5000 ? d->budget_ms / 4 : 5000;
    if (wait > left)
        wait = left;
    int r = cmd_meta_query(d->meta, wait < 100 ? 100 : wait);
    if (r < 0) {
        cm_log_err("cannot start the kafka metadata thread: %s", strerror(-r));
        d->exit_code = 1;
        event_base_loopbreak(d->base);
    }
}

static void on_meta_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    meta_ask(arg);
}

static void on_meta(struct daemon *d, const struct cmd_meta_result *res)
{
    if (d->stopping) {
        event_base_loopbreak(d->base);
        return;
    }
    if (res->n > 0) {
        if (cmd_dlq_start(d, res->n) < 0) {
            cm_log_err("out of memory for %d dead-letter partitions", res->n);
            d->exit_code = 1;
        } else {
            d->kafka_ok = 1;
            d->topic_parts = res->n_topic;
            cmd_http_topic_known(d, res->n_topic);
            cm_log_info("kafka at %s: %s has %d partitions, %s %d", d->cfg->brokers,
                        d->cfg->topic, res->n_topic, d->cfg->dlq_topic, res->n);
        }
        event_base_loopbreak(d->base);
        return;
    }
    if (cm_clock_ms() - d->kafka_t0 >= d->budget_ms) {
        cm_log_err("kafka at %s, topic %s: %s; giving up after %.1f s", d->cfg->brokers,
                   res->topic, rd_kafka_err2str(res->err), d->budget_ms / 1000.0);
        d->exit_code = 1;
        event_base_loopbreak(d->base);
        return;
    }
    cm_log_warn("kafka at %s, topic %s: %s; retrying", d->cfg->brokers, res->topic,
                rd_kafka_err2str(res->err));
    cmd_timer_in(d->meta_retry, 1000); /* SIGTERM is served meanwhile */
}

/* Runs the loop until both topics are known (0), the budget is spent or
 * set-up failed (-ETIMEDOUT, logged), or a signal stops it (-ECANCELED). */
static int kafka_wait(struct daemon *d)
{
    if (!(d->meta = cmd_meta_new(d, d->cfg->topic, d->cfg->dlq_topic, on_meta)) ||
        !(d->meta_retry = evtimer_new(d->base, on_meta_retry, d))) {
        cm_log_err("out of memory asking kafka for the topics");
        return -ENOMEM;
    }
    d->kafka_t0 = cm_clock_ms();
    meta_ask(d);
    event_base_dispatch(d->base);
    evtimer_del(d->meta_retry);
    if (d->kafka_ok)
        return 0;
    return d->stopping && !d->exit_code ? -ECANCELED : -ETIMEDOUT;
}

static void on_startup_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct daemon *d = arg;
    cm_log_err("redis unreachable for %.1f s: %s", d->budget_ms / 1000.0,
               cm_store_errstr(d->st));
    d->exit_code = 1;
    d->stopping = 1;
    event_base_loopbreak(d->base);
}

static void teardown(struct daemon *d)
{
    d->stopping = 1;
    cmd_drop_all(d); /* batches are abandoned: late callbacks only free them */
    cmd_dlq_drain(d);
    cmd_drop_all(d);
    cmd_alerts_free(d); /* before the read side it evaluates */
    cmd_http_stop(d);
    cmd_notify_free(d);
    d->st = cm_store_free(d->st); /* fails pending requests: their batches go */
    while (d->batches)
        cmd_batch_free(d->batches);
    for (size_t i = 0; i < d->n_parts; i++) {
        free(d->parts[i].q);
        cmd_dlq_part_free(&d->parts[i].dl);
    }
    free(d->parts);
    if (d->want)
        rd_kafka_topic_partition_list_destroy(d->want);
    if (d->rkq)
        rd_kafka_queue_destroy(d->rkq);
    /* A consumer whose close did not finish (Kafka gone) would block
     * rd_kafka_destroy in another close without end: leave the group to the
     * session timeout instead. */
    d->meta = cmd_meta_free(d->meta); /* before the consumer it queries */
    if (d->rk &&
        cm_kafka_destroy_within(d->rk, rd_kafka_consumer_closed(d->rk)
                                           ? 0
                                           : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE,
                                CM_KAFKA_DESTROY_MS) == -ETIMEDOUT)
        cm_log_warn("the Kafka consumer did not shut down within %d ms (Kafka gone?): "
                    "left to the exit; the group sees this member leave at its session timeout",
                    CM_KAFKA_DESTROY_MS);
    d->rk = NULL;
    cmd_dlq_free(d);
    struct event *evs[] = {d->kev,        d->sig_term,    d->sig_int,      d->flush_timer,
                           d->stats_timer, d->poll_timer, d->startup_timer, d->resync_timer,
                           d->stop_timer, d->close_timer, d->meta_retry, d->loop_timer, d->sched_ev,
                           d->sig_hup};
    for (size_t i = 0; i < NELEM(evs); i++)
        if (evs[i])
            event_free(evs[i]);
    for (int i = 0; i < 2; i++)
        if (d->kpipe[i] >= 0)
            close(d->kpipe[i]);
    cm_fold_ctx_free(d->fc);
    cm_names_free(d->nm);
    cm_decoder_free(d->dec);
    cm_metrics_free(d->m);
    if (d->base)
        event_base_free(d->base);
}

/* The loop. Callbacks that activate others (a fold that yields, the
 * consumer pass that re-arms itself) would otherwise run back to back in one
 * iteration of the loop, holding its timers and sockets: after LOOP_BUDGET_MS
 * of callbacks, libevent polls again. What polling then finds ready would
 * still wait behind every callback activated before it (eight batches'
 * slices of 2 ms: 16 ms and more), so that work has a priority of its own,
 * below the rest (LOOP_PRIO_WORK). NULL when out of memory. */
static struct event_base *loop_new(void)
{
    struct event_config *ec = event_config_new();
    if (!ec)
        return NULL;
    struct timeval budget;
    cm_clock_tv(LOOP_BUDGET_MS, &budget);
    struct event_base *base = NULL;
    if (event_config_set_max_dispatch_interval(ec, &budget, -1, 0) == 0)
        base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (base && event_base_priority_init(base, LOOP_PRIORITIES) < 0) {
        event_base_free(base);
        base = NULL;
    }
    return base;
}

int cmd_run(struct cm_config *cfg)
{
    struct daemon dd = {0}, *d = &dd;
    d->cfg = cfg;
    d->cfg_rw = cfg;
    d->kpipe[0] = d->kpipe[1] = -1;
    size_t cap = (size_t)cfg->batch_size * (size_t)cfg->max_in_flight * 4;
    d->max_buffered = cap < 20000 ? 20000 : cap;
    signal(SIGPIPE, SIG_IGN);
    const char *crash = getenv("CIRCMOND_TEST_CRASH_AFTER_APPLIES");
    if (crash && *crash) {
        d->crash_after = strtoull(crash, NULL, 10);
        cm_log_warn("test hook: killing myself after %" PRIu64 " applies", d->crash_after);
    }
    d->budget_ms = STARTUP_BUDGET_MS;
    const char *budget = getenv("CIRCMOND_TEST_STARTUP_BUDGET_MS");
    if (budget && *budget) {
        d->budget_ms = atoi(budget) > 0 ? atoi(budget) : STARTUP_BUDGET_MS;
        cm_log_warn("test hook: start-up budget %d ms", d->budget_ms);
    }

    if (!(d->base = loop_new()) || !(d->dec = cm_decoder_new()) ||
        !(d->nm = cm_names_new()) || !(d->fc = cm_fold_ctx_new(cfg, d->nm))) {
        cm_log_err("out of memory setting up the loop, the decoder and the fold");
        teardown(d);
        return 1;
    }
    d->sig_term = evsignal_new(d->base, SIGTERM, on_signal, d);
    d->sig_int = evsignal_new(d->base, SIGINT, on_signal, d);
    d->sig_hup = evsignal_new(d->base, SIGHUP, on_hup, d);
    d->flush_timer = event_new(d->base, -1, EV_PERSIST, cmd_on_flush, d);
    d->stats_timer = event_new(d->base, -1, EV_PERSIST, on_stats, d);
    d->poll_timer = event_new(d->base, -1, EV_PERSIST, on_poll, d);
    d->startup_timer = evtimer_new(d->base, on_startup_timeout, d);
    d->resync_timer = evtimer_new(d->base, cmd_on_resync_timer, d);
    d->stop_timer = evtimer_new(d->base, on_stop_timer, d);
    d->close_timer = evtimer_new(d->base, on_close_timer, d);
    d->loop_timer = evtimer_new(d->base, on_loop_timer, d);
    d->sched_ev = event_new(d->base, -1, 0, cmd_on_sched, d);
    if (d->sched_ev && event_priority_set(d->sched_ev, LOOP_PRIO_WORK) < 0) {
        event_free(d->sched_ev);
        d->sched_ev = NULL;
    }
    if (!d->loop_timer || !d->sched_ev || metrics_setup(d) < 0 || !d->sig_term || !d->sig_int || !d->flush_timer || !d->stats_timer || !d->poll_timer ||
        !d->startup_timer || !d->resync_timer || !d->stop_timer || !d->close_timer) {
        cm_log_err("out of memory creating the loop's events");
        teardown(d);
        return 1;
    }
    if (!d->sig_hup || event_add(d->sig_term, NULL) < 0 || event_add(d->sig_int, NULL) < 0 ||
        event_add(d->sig_hup, NULL) < 0) {
        cm_log_err("cannot catch SIGTERM, SIGINT and SIGHUP");
        teardown(d);
        return 1;
    }
    if (cmd_notify_start(d) < 0 || cmd_http_start(d) < 0) { /* logged */
        teardown(d);
        return 1;
    }

    /* Redis first, within the start-up budget. */
    const char *where = cfg->redis_cluster ? cfg->redis_nodes_spec
                        : cfg->redis_unix_socket && *cfg->redis_unix_socket
                            ? cfg->redis_unix_socket
                            : cfg->redis_host;
    cm_log_info("connecting to redis %sat %s", cfg->redis_cluster ? "cluster " : "", where);
    if (!(d->st = cm_store_new(d->base, cfg, cmd_on_store, d))) {
        cm_log_err("out of memory creating the redis store");
        teardown(d);
        return 1;
    }
    cmd_timer_in(d->startup_timer, d->budget_ms);
    event_base_dispatch(d->base);
    evtimer_del(d->startup_timer);
    if (d->stopping) {
        int rc = d->exit_code;
        teardown(d);
        return rc;
    }
    cm_log_info("redis ready; connecting to kafka at %s", cfg->brokers);

    if (cmd_consumer_setup(d) < 0 || cmd_dlq_setup(d) < 0) {
        teardown(d);
        return 1;
    }
    int kw = kafka_wait(d);
    if (kw < 0) {
        int rc = kw == -ECANCELED ? 0 : 1; /* stopped by a signal: 0 */
        teardown(d);
        return rc;
    }
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, cfg->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(d->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e) {
        cm_log_err("subscribing to %s: %s", cfg->topic, rd_kafka_err2str(e));
        teardown(d);
        return 1;
    }
    d->started = 1;
    if (cmd_alerts_start(d) < 0) { /* logged */
        teardown(d);
        return 1;
    }
    cm_log_info("consuming %s as group %s (batch_size %d, max_in_flight %d)", cfg->topic,
                cfg->group_id, cfg->batch_size, cfg->max_in_flight);
    cmd_timer_in(d->flush_timer, FLUSH_TICK_MS);
    cmd_timer_in(d->stats_timer, STATS_S * 1000);
    cmd_timer_in(d->poll_timer, POLL_TICK_MS);
    d->last_stats_us = cm_clock_us();
    d->last_poll_us = d->last_stats_us; /* the watchdog counts from here */
    d->loop_due_us = cm_clock_us() + LOOP_TICK_MS * 1000;
    cmd_timer_in(d->loop_timer, LOOP_TICK_MS);
    event_active(d->kev, EV_READ, 0);
    event_base_dispatch(d->base);
    cm_log_info("stopped: %" PRIu64 " events folded, %" PRIu64
                " dead letters; loop latency since the start p50/p99/max %.1f/%.1f/%.1f ms"
                " (%" PRIu64 " probes); event-to-apply latency since the start"
                " p50/p99/max %.1f/%.1f/%.1f ms (%" PRIu64 " events)",
                cm_counter_get(d->c_folded), cm_counter_get(d->c_dlq),
                (double)cm_hist_quantile(d->h_loop, 0.5) / 1000,
                (double)cm_hist_quantile(d->h_loop, 0.99) / 1000, (double)d->h_loop->max / 1000,
                d->h_loop->count, (double)cm_hist_quantile(d->h_event_lat, 0.5) / 1000,
                (double)cm_hist_quantile(d->h_event_lat, 0.99) / 1000,
                (double)d->h_event_lat->max / 1000, d->h_event_lat->count);
    struct cm_rcluster_stats cs;
    if (cm_store_cluster_stats(d->st, &cs) == 0)
        cm_log_info("redis cluster: followed %" PRIu64 " MOVED, %" PRIu64 " ASK, %" PRIu64
                    " TRYAGAIN/CLUSTERDOWN; %" PRIu64 " slot maps read",
                    cs.moved, cs.ask, cs.tryagain, cs.map_reads);
    teardown(d);
    return d->exit_code;
}
