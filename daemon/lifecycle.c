/* lifecycle.c - circmond's start (budgets), signals, stop, teardown and stats line. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "circmon/fold.h"
#include "circmon/names.h"
#include "daemon.h"

/* ------------------------------------------------------------ stats */

static void on_stats(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    (void)fd;
    (void)what;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double dt = (double)(now.tv_sec - d->last_stats.tv_sec) +
                (double)(now.tv_nsec - d->last_stats.tv_nsec) / 1e9;
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
    if (d->n_folded != d->last_folded || lag)
        cm_log_info("%.0f events/s, %" PRIu64 " folded, %" PRIu64 " dead letters, %" PRIu64
                    " refused applies, %d partitions, lag %" PRId64,
                    dt > 0 ? (double)(d->n_folded - d->last_folded) / dt : 0.0, d->n_folded,
                    d->n_dlq, d->n_refused, nparts, lag);
    d->last_folded = d->n_folded;
    d->last_stats = now;
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
    sd_notify(0, "STOPPING=1");
    d->stopping = 1;
    if (!d->started) {
        d->exit_code = 0;
        event_base_loopbreak(d->base);
        return;
    }
    /* Stop taking messages; let batches in flight finish within a bound. */
    for (size_t i = 0; i < d->n_parts; i++)
        cmd_intake_drop_queue(d, &d->parts[i]);
    cmd_timer_in(d->stop_timer, d->cfg->command_timeout_ms + 1000);
    cmd_maybe_finish_stop(d);
}

/* ------------------------------------------------------------ start */

/* Waits (blocking) until the brokers answer and both topics exist, within
 * the start-up budget. */
static int kafka_wait(struct daemon *d)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        const char *topic = d->cfg->topic;
        int n = cmd_topic_partitions(d->rk, topic);
        if (n > 0) {
            topic = d->cfg->dlq_topic;
            n = cmd_topic_partitions(d->rk, topic);
        }
        if (n > 0) {
            if (cmd_dlq_start(d, n) < 0) {
                cm_log_err("out of memory for %d dead-letter partitions", n);
                return -ENOMEM;
            }
            return 0;
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 > STARTUP_BUDGET_MS || d->stopping) {
            cm_log_err("kafka at %s, topic %s: %s; giving up after %d s", d->cfg->brokers,
                       topic, cmd_topic_errstr(n), STARTUP_BUDGET_MS / 1000);
            return -ETIMEDOUT;
        }
        cm_log_warn("kafka at %s, topic %s: %s; retrying", d->cfg->brokers, topic,
                    cmd_topic_errstr(n));
        /* a second between tries, in the loop: SIGTERM is served meanwhile */
        struct timeval sec = {1, 0};
        event_base_loopexit(d->base, &sec);
        event_base_dispatch(d->base);
        if (d->stopping)
            return -ECANCELED;
    }
}

static void on_startup_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct daemon *d = arg;
    cm_log_err("redis unreachable for %d s: %s", STARTUP_BUDGET_MS / 1000,
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
    if (d->rk)
        rd_kafka_destroy_flags(d->rk, rd_kafka_consumer_closed(d->rk)
                                          ? 0
                                          : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    cmd_dlq_free(d);
    struct event *evs[] = {d->kev,        d->sig_term,    d->sig_int,      d->flush_timer,
                           d->stats_timer, d->poll_timer, d->startup_timer, d->resync_timer,
                           d->stop_timer, d->close_timer};
    for (size_t i = 0; i < NELEM(evs); i++)
        if (evs[i])
            event_free(evs[i]);
    for (int i = 0; i < 2; i++)
        if (d->kpipe[i] >= 0)
            close(d->kpipe[i]);
    cm_fold_ctx_free(d->fc);
    cm_names_free(d->nm);
    cm_decoder_free(d->dec);
    if (d->base)
        event_base_free(d->base);
}

int cmd_run(const struct cm_config *cfg)
{
    struct daemon dd = {0}, *d = &dd;
    d->cfg = cfg;
    d->kpipe[0] = d->kpipe[1] = -1;
    size_t cap = (size_t)cfg->batch_size * (size_t)cfg->max_in_flight * 4;
    d->max_buffered = cap < 20000 ? 20000 : cap;
    signal(SIGPIPE, SIG_IGN);
    const char *crash = getenv("CIRCMOND_TEST_CRASH_AFTER_APPLIES");
    if (crash && *crash) {
        d->crash_after = strtoull(crash, NULL, 10);
        cm_log_warn("test hook: killing myself after %" PRIu64 " applies", d->crash_after);
    }

    if (!(d->base = event_base_new()) || !(d->dec = cm_decoder_new()) ||
        !(d->nm = cm_names_new()) || !(d->fc = cm_fold_ctx_new(cfg, d->nm))) {
        cm_log_err("out of memory setting up the loop, the decoder and the fold");
        teardown(d);
        return 1;
    }
    d->sig_term = evsignal_new(d->base, SIGTERM, on_signal, d);
    d->sig_int = evsignal_new(d->base, SIGINT, on_signal, d);
    d->flush_timer = event_new(d->base, -1, EV_PERSIST, cmd_on_flush, d);
    d->stats_timer = event_new(d->base, -1, EV_PERSIST, on_stats, d);
    d->poll_timer = event_new(d->base, -1, EV_PERSIST, cmd_on_poll_timer, d);
    d->startup_timer = evtimer_new(d->base, on_startup_timeout, d);
    d->resync_timer = evtimer_new(d->base, cmd_on_resync_timer, d);
    d->stop_timer = evtimer_new(d->base, on_stop_timer, d);
    d->close_timer = evtimer_new(d->base, on_close_timer, d);
    if (!d->sig_term || !d->sig_int || !d->flush_timer || !d->stats_timer || !d->poll_timer ||
        !d->startup_timer || !d->resync_timer || !d->stop_timer || !d->close_timer) {
        cm_log_err("out of memory creating the loop's events");
        teardown(d);
        return 1;
    }
    event_add(d->sig_term, NULL);
    event_add(d->sig_int, NULL);

    /* Redis first, within the start-up budget. */
    const char *where = cfg->redis_unix_socket && *cfg->redis_unix_socket
                            ? cfg->redis_unix_socket
                            : cfg->redis_host;
    cm_log_info("connecting to redis at %s", where);
    if (!(d->st = cm_store_new(d->base, cfg, cmd_on_store, d))) {
        cm_log_err("out of memory creating the redis store");
        teardown(d);
        return 1;
    }
    cmd_timer_in(d->startup_timer, STARTUP_BUDGET_MS);
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
        int rc = kw == -ECANCELED ? d->exit_code : 1; /* stopped by a signal: 0 */
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
    cm_log_info("consuming %s as group %s (batch_size %d, max_in_flight %d)", cfg->topic,
                cfg->group_id, cfg->batch_size, cfg->max_in_flight);
    cmd_timer_in(d->flush_timer, FLUSH_TICK_MS);
    cmd_timer_in(d->stats_timer, STATS_S * 1000);
    cmd_timer_in(d->poll_timer, POLL_TICK_MS);
    clock_gettime(CLOCK_MONOTONIC, &d->last_stats);
    event_active(d->kev, EV_READ, 0);
    event_base_dispatch(d->base);
    cm_log_info("stopped: %" PRIu64 " events folded, %" PRIu64 " dead letters", d->n_folded,
                d->n_dlq);
    teardown(d);
    return 0;
}
