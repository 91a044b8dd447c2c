/* deadletter.c - circmond's dead letters: produced with the owner epoch, delivered, marked, read back off the loop. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "circmon/clock.h"
#include "circmon/dlq.h"
#include "circmon/kafka.h"
#include "daemon.h"
#include "deadletter.h"

#define DLQ_SCAN_TIMEOUT_MS 10000 /* one step of a read-back (watermarks, next message) */
#define REVOKE_TICK_MS 10         /* how often a pending revoke checks the dead letters */
#define LB_SESSION_MS 45000       /* librdkafka 2.0.2's defaults, when rd_kafka_conf_get fails */
#define LB_HEARTBEAT_MS 3000

struct cmd_dlq {
    rd_kafka_t *prod; /* dead-letter producer */
    struct cm_dlq_reader *reader; /* reads the dead-letter topic back, in its thread */
    struct event *rev;            /* its results */
    int32_t n_parts;
    int64_t *next; /* per dead-letter partition: past the last delivery known, -1 */
    rd_kafka_queue_t *pq;
    int ppipe[2];
    struct event *pev;
    uint64_t crash_after; /* CIRCMOND_TEST_CRASH_AFTER_DLQ, 0 = off */
    uint64_t n_batches;   /* batches whose dead letters were all delivered */
    uint64_t stop_after;  /* CIRCMOND_TEST_STOP_AFTER_DLQ, 0 = off */
    int stop_delivered;   /* ... ":delivered": stop once they are delivered */
    uint64_t n_stop;      /* batches with dead letters produced (or delivered) */

    /* the read-back in flight: done(d, err, ud) is owed exactly once */
    cmd_dlq_done_fn done;
    void *done_ud;
    uint64_t tag;
    int32_t *ids;
    size_t n_ids;

    /* a revoke waiting for the dead letters in flight */
    struct event *revoke_timer;
    int revoking;
    int64_t revoke_since;
    int revoke_max_ms; /* message.timeout.ms plus a second: every report is in by then */
};

/* session.timeout.ms and heartbeat.interval.ms of the consumer cfg makes. */
static int group_timing(const struct cm_config *cfg, long *session, long *hb, char *err,
                        size_t errlen)
{
    rd_kafka_conf_t *c = cm_kafka_conf_new(cfg, err, errlen);
    if (!c)
        return -EINVAL;
    const char *names[] = {"session.timeout.ms", "heartbeat.interval.ms"};
    long *out[] = {session, hb}, dflt[] = {LB_SESSION_MS, LB_HEARTBEAT_MS};
    for (int i = 0; i < 2; i++) {
        char v[32];
        size_t vl = sizeof(v);
        char *e;
        *out[i] = dflt[i];
        if (rd_kafka_conf_get(c, names[i], v, &vl) == RD_KAFKA_CONF_OK) {
            long x = strtol(v, &e, 10);
            if (!*e && x > 0)
                *out[i] = x;
        }
    }
    rd_kafka_conf_destroy(c);
    return 0;
}

/* The operator's rdkafka.<name>, or NULL. */
static const struct cm_kv *passed(const struct cm_config *cfg, const char *name)
{
    for (size_t k = 0; k < cfg->n_rdkafka; k++)
        if (!strcmp(cfg->rdkafka[k].key, name))
            return &cfg->rdkafka[k];
    return NULL;
}

/* The delivery timeout of a dead letter stays below the consumer's
 * session.timeout.ms - heartbeat.interval.ms: an owner frozen long enough to
 * lose its partitions finds its queued dead letters timed out when it wakes
 * (librdkafka scans for timeouts before it sends, rd_kafka_broker_producer_serve),
 * so they do not land after its successor's read-back. */
rd_kafka_conf_t *cmd_producer_conf(const struct cm_config *cfg, char *err, size_t errlen)
{
    static const char *const defaults[][2] = {
        {"client.id", "circmond-dlq"},
        {"enable.idempotence", "true"}, /* a retry never writes a dead letter twice */
        {"linger.ms", "5"},
    };
    /* Delivery must be checked: acks from all in-sync replicas. */
    static const char *const forced[][2] = {{"acks", "all"}};
    long session, hb;
    if (group_timing(cfg, &session, &hb, err, errlen) < 0)
        return NULL;
    long budget = session - hb;
    if (budget < 2) {
        snprintf(err, errlen,
                 "[kafka] rdkafka.heartbeat.interval.ms (%ld) must be below "
                 "rdkafka.session.timeout.ms (%ld)",
                 hb, session);
        return NULL;
    }
    const char *tnames[] = {"message.timeout.ms", "delivery.timeout.ms"};
    const struct cm_kv *kv = NULL;
    for (int i = 0; i < 2 && !kv; i++)
        kv = passed(cfg, tnames[i]);
    if (kv) {
        char *e;
        long t = strtol(kv->value, &e, 10);
        if (*e || t <= 0 || t >= budget) {
            char where[300] = "";
            if (cfg->path && kv->line > 0)
                snprintf(where, sizeof(where), "%s:%d: ", cfg->path, kv->line);
            snprintf(err, errlen,
                     "%s[kafka] rdkafka.%s = %s: must be a number of ms below "
                     "session.timeout.ms - heartbeat.interval.ms = %ld, so that a deposed "
                     "owner's dead letters time out (README, Dead letters)",
                     where, kv->key, kv->value, budget);
            return NULL;
        }
    }
    rd_kafka_conf_t *conf =
        cmd_conf_build(cfg, defaults, NELEM(defaults), forced, NELEM(forced), 1, err, errlen);
    if (conf && !kv) {
        char v[32];
        snprintf(v, sizeof(v), "%ld", budget > 2000 ? budget - 1000 : budget / 2);
        if (rd_kafka_conf_set(conf, "message.timeout.ms", v, err, errlen) != RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    return conf;
}

rd_kafka_conf_t *cmd_scanner_conf(const struct cm_config *cfg, char *err, size_t errlen)
{
    /* It never joins a group nor commits: a group id is only required by
     * librdkafka's consumer API. */
    char group[512];
    snprintf(group, sizeof(group), "%s.dlq-read-back", cfg->group_id);
    const char *const forced[][2] = {
        {"client.id", "circmond-dlq-read-back"},
        {"group.id", group},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"enable.partition.eof", "true"},
    };
    /* A read-back ends at each partition's end: a fetch there waits
     * fetch.wait.max.ms (librdkafka's default 500 ms) before the EOF, once
     * per dead-letter partition and one partition after the other, which
     * made an assignment of 256 partitions wait over 2 minutes (make
     * bench-scale). */
    const char *const defaults[][2] = {{"fetch.wait.max.ms", "10"}};
    /* not strict: it shares the operator's consumer settings (enable.auto.commit
     * for the mirror, say) but needs its own */
    return cmd_conf_build(cfg, defaults, NELEM(defaults), forced, NELEM(forced), 0, err, errlen);
}

/* The dead-letter partition of source partition part: fixed once a mark
 * names it (even if the topic gains partitions), so that the dead letters of
 * one source partition can be read back in order. */
static int32_t dlq_part(const struct daemon *d, int32_t part)
{
    return d->parts[part].dl.dp;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Whether a dead letter for offset off of p is on the topic already. */
static int dlq_seen(const struct part *p, int64_t off)
{
    return p->dl.n_seen &&
           bsearch(&off, p->dl.seen, p->dl.n_seen, sizeof(off), cmp_i64) != NULL;
}

/* Delivery report of a dead letter. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct daemon *d = opaque;
    struct cmd_dlq *q = d->dlq;
    struct batch *b = m->_private;
    if (!m->err && m->partition >= 0 && m->partition < q->n_parts &&
        m->offset >= q->next[m->partition])
        q->next[m->partition] = m->offset + 1;
    if (!b)
        return;
    if (m->err) {
        char sp[16];
        snprintf(sp, sizeof(sp), "%" PRId32, b->part_id);
        const struct cm_log_field f[] = {{"CIRCMON_PARTITION", sp},
                                         {"CIRCMON_TOPIC", rd_kafka_topic_name(m->rkt)}};
        cm_log_ev(CM_LOG_ERROR, CM_LOGID_DEAD_LETTER, f, NELEM(f),
                  "dead letter to %s not delivered: %s", rd_kafka_topic_name(m->rkt),
                  rd_kafka_err2str(m->err));
        b->dl.failed++;
    }
    if (--b->dl.pending)
        return;
    /* Test hook: die like SIGKILL between the dead letters and the apply. */
    if (b->p && !b->dl.failed && q->crash_after && ++q->n_batches >= q->crash_after)
        raise(SIGKILL);
    /* Test hook: freeze (SIGSTOP) between the dead letters and the apply. */
    if (b->p && !b->dl.failed && q->stop_after && q->stop_delivered &&
        ++q->n_stop == q->stop_after) {
        cm_log_warn("test hook: stopping myself: partition %" PRId32 " batch at %" PRId64
                    " epoch %" PRId64 ", %" PRIu64 " events folded so far: dead letters"
                    " delivered, apply not sent",
                    b->part_id, b->expected, b->p->dl.epoch, cm_counter_get(b->d->c_folded));
        raise(SIGSTOP);
        /* libevent's time is the loop iteration's, from before the freeze:
         * deadlines set from it now would be past at once */
        event_base_update_cache_time(b->d->base);
    }
    cmd_batch_dlq_done(b, b->dl.failed != 0);
}

static void on_producer(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    (void)what;
    cmd_drain_pipe(fd);
    while (rd_kafka_poll(d->dlq->prod, 0) > 0)
        ;
}

static void on_reader(evutil_socket_t fd, short what, void *arg);
static void on_revoke_timer(evutil_socket_t fd, short what, void *arg);

int cmd_dlq_setup(struct daemon *d)
{
    char err[512];
    struct cmd_dlq *q = calloc(1, sizeof(*q));
    if (!q) {
        cm_log_err("out of memory setting up the dead-letter producer");
        return -ENOMEM;
    }
    q->ppipe[0] = q->ppipe[1] = -1;
    d->dlq = q;
    const char *crash = getenv("CIRCMOND_TEST_CRASH_AFTER_DLQ");
    if (crash && *crash) {
        q->crash_after = strtoull(crash, NULL, 10);
        cm_log_warn("test hook: killing myself when the dead letters of %" PRIu64
                    " batches are delivered, before their applies",
                    q->crash_after);
    }
    const char *stop = getenv("CIRCMOND_TEST_STOP_AFTER_DLQ");
    if (stop && *stop) {
        char *e;
        q->stop_after = strtoull(stop, &e, 10);
        q->stop_delivered = !strcmp(e, ":delivered");
        cm_log_warn("test hook: stopping myself (SIGSTOP) when the dead letters of batch %" PRIu64
                    " are %s",
                    q->stop_after, q->stop_delivered ? "delivered" : "produced");
    }
    rd_kafka_conf_t *conf = cmd_producer_conf(d->cfg, err, sizeof(err));
    if (!conf) {
        cm_log_err("kafka producer configuration: %s", err);
        return -EINVAL;
    }
    char v[32];
    size_t vl = sizeof(v);
    q->revoke_max_ms = 31000;
    if (rd_kafka_conf_get(conf, "message.timeout.ms", v, &vl) == RD_KAFKA_CONF_OK)
        q->revoke_max_ms = atoi(v) + 1000;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, d);
    if (!(q->prod = cmd_client_new(RD_KAFKA_PRODUCER, conf, "producer")))
        return -EINVAL;
    q->pq = rd_kafka_queue_get_main(q->prod);
    int r = q->pq ? cmd_wake_on(d, q->pq, q->ppipe, &q->pev, on_producer, "p",
                                      LOOP_PRIO_DEFAULT) : -ENOMEM;
    if (r < 0) {
        cm_log_err("waking the loop for the dead-letter producer: %s", strerror(-r));
        return r;
    }
    if (!(conf = cmd_scanner_conf(d->cfg, err, sizeof(err)))) {
        cm_log_err("kafka dead-letter reader configuration: %s", err);
        return -EINVAL;
    }
    if (!(q->reader = cm_dlq_reader_new(conf, d->cfg->dlq_topic, d->cfg->topic,
                                        DLQ_SCAN_TIMEOUT_MS, err, sizeof(err)))) {
        cm_log_err("kafka %s", err);
        return -EINVAL;
    }
    q->rev = event_new(d->base, cm_dlq_reader_fd(q->reader), EV_READ | EV_PERSIST, on_reader, d);
    q->revoke_timer = evtimer_new(d->base, on_revoke_timer, d);
    if (!q->rev || !q->revoke_timer || event_add(q->rev, NULL) < 0) {
        cm_log_err("waking the loop for the dead-letter reader: out of memory");
        return -ENOMEM;
    }
    return 0;
}

int cmd_dlq_start(struct daemon *d, int32_t n)
{
    struct cmd_dlq *q = d->dlq;
    int64_t *next = malloc((size_t)n * sizeof(*next));
    if (!next)
        return -ENOMEM;
    for (int32_t i = 0; i < n; i++)
        next[i] = -1;
    free(q->next);
    q->next = next;
    q->n_parts = n;
    return 0;
}

/* Calls the read-back's done, if one is owed, with err. */
static void read_back_end(struct daemon *d, int err)
{
    struct cmd_dlq *q = d->dlq;
    cmd_dlq_done_fn done = q->done;
    void *ud = q->done_ud;
    if (!done)
        return;
    for (size_t i = 0; i < q->n_ids; i++)
        if ((size_t)q->ids[i] < d->n_parts)
            d->parts[q->ids[i]].dl.assigning = 0;
    free(q->ids);
    q->ids = NULL;
    q->n_ids = 0;
    q->done = NULL;
    q->done_ud = NULL;
    done(d, err, ud);
}

void cmd_dlq_drain(struct daemon *d)
{
    struct cmd_dlq *q = d->dlq;
    if (!q)
        return;
    if (q->reader)
        cm_dlq_reader_cancel(q->reader);
    read_back_end(d, -ECANCELED);
    if (!q->prod)
        return;
    rd_kafka_flush(q->prod, 5000); /* serves outstanding delivery reports */
    rd_kafka_purge(q->prod, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(q->prod, 0);
}

void cmd_dlq_free(struct daemon *d)
{
    struct cmd_dlq *q = d->dlq;
    if (!q)
        return;
    read_back_end(d, -ECANCELED);
    if (q->rev)
        event_free(q->rev);
    if (q->revoke_timer)
        event_free(q->revoke_timer);
    q->reader = cm_dlq_reader_free(q->reader);
    if (q->pq)
        rd_kafka_queue_destroy(q->pq);
    if (q->prod)
        rd_kafka_destroy(q->prod);
    if (q->pev)
        event_free(q->pev);
    for (int i = 0; i < 2; i++)
        if (q->ppipe[i] >= 0)
            close(q->ppipe[i]);
    free(q->next);
    free(q);
    d->dlq = NULL;
}

void cmd_dlq_part_free(struct cmd_dlq_part *dl)
{
    free(dl->seen);
    dl->seen = NULL;
    dl->n_seen = dl->cap_seen = 0;
}

int cmd_dlq_busy(const struct daemon *d)
{
    return d->dlq && d->dlq->prod && rd_kafka_outq_len(d->dlq->prod) > 0;
}

void cmd_dlq_assigning(struct daemon *d, struct part *p, const struct cm_store_pos *pos)
{
    int32_t n = d->dlq->n_parts;
    p->dl.mark_part = pos->dlq_part;
    p->dl.mark_from = pos->dlq_from;
    p->dl.dp = p->dl.mark_part >= 0 && p->dl.mark_part < n ? p->dl.mark_part : p->id % n;
    p->dl.n_seen = 0;
    p->dl.assigning = 1;
    p->dl.epoch = pos->epoch;
}

/* Keeps one dead letter read back for p (at or past its position). */
static int keep_seen(struct part *p, int64_t off)
{
    if (p->dl.n_seen == p->dl.cap_seen) {
        size_t nc = p->dl.cap_seen ? p->dl.cap_seen * 2 : 16;
        int64_t *ns = realloc(p->dl.seen, nc * sizeof(*ns));
        if (!ns)
            return -ENOMEM;
        p->dl.seen = ns;
        p->dl.cap_seen = nc;
    }
    p->dl.seen[p->dl.n_seen++] = off;
    return 0;
}

/* A read-back's result, on the loop: the partitions being assigned learn
 * which of their offsets are on the topic already (deduplicated: a source
 * offset may be there more than once, from a deposed owner). */
static int read_back_apply(struct daemon *d, const struct cm_dlq_result *res)
{
    struct cmd_dlq *q = d->dlq;
    if (res->err < 0) {
        cm_log_warn("dead-letter topic: %s", res->errstr);
        return res->err;
    }
    for (size_t i = 0; i < res->n_seen; i++) {
        const struct cm_dlq_seen *x = &res->seen[i];
        if (x->partition < 0 || (size_t)x->partition >= d->n_parts)
            continue;
        struct part *p = &d->parts[x->partition];
        if (!p->dl.assigning || x->offset < p->pos)
            continue;
        if (keep_seen(p, x->offset) < 0) {
            cm_log_warn("dead-letter topic: out of memory keeping the dead letters read back");
            return -ENOMEM;
        }
    }
    for (size_t i = 0; i < res->n_dps; i++) {
        int32_t dp = res->dps[i];
        if (dp >= 0 && dp < q->n_parts && res->ends[i] > q->next[dp])
            q->next[dp] = res->ends[i];
    }
    for (size_t i = 0; i < q->n_ids; i++) {
        struct part *p = &d->parts[q->ids[i]];
        if (!p->dl.n_seen)
            continue;
        size_t read = p->dl.n_seen;
        qsort(p->dl.seen, p->dl.n_seen, sizeof(*p->dl.seen), cmp_i64);
        size_t k = 1;
        for (size_t j = 1; j < p->dl.n_seen; j++)
            if (p->dl.seen[j] != p->dl.seen[k - 1])
                p->dl.seen[k++] = p->dl.seen[j];
        p->dl.n_seen = k;
        cm_log_info("partition %" PRId32 ": %zu dead letters past offset %" PRId64
                    " already on %s [%" PRId32 "] (%zu records read): not sent again",
                    p->id, k, p->pos, d->cfg->dlq_topic, p->dl.dp, read);
    }
    return 0;
}

static void on_reader(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct daemon *d = arg;
    struct cmd_dlq *q = d->dlq;
    struct cm_dlq_result *res;
    while ((res = cm_dlq_reader_take(q->reader))) {
        if (q->done && res->tag == q->tag)
            read_back_end(d, read_back_apply(d, res));
        cm_dlq_result_free(res); /* else a superseded read-back's */
    }
}

void cmd_dlq_read_back(struct daemon *d, const int32_t *ids, size_t n, cmd_dlq_done_fn done,
                       void *ud)
{
    struct cmd_dlq *q = d->dlq;
    read_back_end(d, -ECANCELED); /* a newer read-back supersedes the one in flight */
    if (d->cfg->rebuild_run) { /* sends none, so has none to look for (rebuild.h) */
        for (size_t i = 0; i < n; i++)
            d->parts[ids[i]].dl.assigning = 0;
        done(d, 0, ud);
        return;
    }
    for (size_t i = 0; i < n; i++)
        d->parts[ids[i]].dl.assigning = 1; /* the old one's end cleared those it shared */
    int32_t *dps = malloc((size_t)q->n_parts * sizeof(*dps));
    int64_t *froms = malloc((size_t)q->n_parts * sizeof(*froms));
    struct cm_dlq_want *want = malloc((n ? n : 1) * sizeof(*want));
    int32_t *own = malloc((n ? n : 1) * sizeof(*own));
    size_t nd = 0;
    int r = dps && froms && want && own ? 0 : -ENOMEM;
    /* per dead-letter partition: from the lowest mark of the partitions it holds */
    for (int32_t dp = 0; !r && dp < q->n_parts; dp++) {
        int64_t from = -1;
        for (size_t i = 0; i < n; i++) {
            const struct part *p = &d->parts[ids[i]];
            if (p->dl.dp != dp)
                continue;
            int64_t f = p->dl.mark_part == dp ? p->dl.mark_from : 0;
            if (from < 0 || f < from)
                from = f;
        }
        if (from >= 0) {
            dps[nd] = dp;
            froms[nd++] = from;
        }
    }
    for (size_t i = 0; !r && i < n; i++) {
        want[i].partition = ids[i];
        want[i].pos = d->parts[ids[i]].pos;
        own[i] = ids[i];
    }
    if (!r && nd == 0) {
        free(dps);
        free(froms);
        free(want);
        free(own);
        for (size_t i = 0; i < n; i++)
            d->parts[ids[i]].dl.assigning = 0;
        done(d, 0, ud);
        return;
    }
    if (!r)
        r = cm_dlq_reader_submit(q->reader, ++q->tag, dps, froms, nd, want, n);
    free(dps);
    free(froms);
    free(want);
    if (r < 0) {
        free(own);
        cm_log_warn("dead-letter topic: read-back not started: %s",
                    r == -EBUSY ? "too many read-backs waiting" : strerror(-r));
        for (size_t i = 0; i < n; i++)
            d->parts[ids[i]].dl.assigning = 0;
        done(d, r, ud);
        return;
    }
    q->ids = own;
    q->n_ids = n;
    q->done = done;
    q->done_ud = ud;
}

int cmd_dlq_send(struct batch *b)
{
    struct daemon *d = b->d;
    const char *src = d->cfg->topic;
    if (d->cfg->rebuild_run)
        return 0; /* a rebuild run writes no dead letters (rebuild.h) */
    for (size_t i = 0; i < b->n; i++) {
        const char *why = cm_batch_verdict(b->cb, i);
        rd_kafka_message_t *m = b->msgs[i];
        if (!why)
            continue;
        if (dlq_seen(b->p, m->offset))
            continue; /* on the topic already, sent by a predecessor */
        b->dl.sent++;
        int e = cm_dlq_produce(d->dlq->prod, d->cfg->dlq_topic, dlq_part(d, b->part_id), m->key,
                               m->key_len, m->payload, m->len, why, src, m->partition,
                               m->offset, b->p->dl.epoch, b);
        if (e < 0) {
            char sp[16], so[24];
            snprintf(sp, sizeof(sp), "%" PRId32, b->part_id);
            snprintf(so, sizeof(so), "%" PRId64, m->offset);
            const struct cm_log_field f[] = {{"CIRCMON_PARTITION", sp}, {"CIRCMON_OFFSET", so}};
            cm_log_ev(CM_LOG_ERROR, CM_LOGID_DEAD_LETTER, f, NELEM(f),
                      "partition %" PRId32 ": dead letter for offset %" PRId64 " not queued: %s",
                      b->part_id, m->offset, strerror(-e));
            b->dl.failed++;
            break;
        }
        b->dl.pending++;
    }
    if (b->dl.failed && !b->dl.pending)
        return -EIO;
    struct cmd_dlq *q = d->dlq;
    /* Test hook: freeze (SIGSTOP) with the dead letters queued, not delivered. */
    if (b->dl.pending && q->stop_after && !q->stop_delivered && ++q->n_stop == q->stop_after) {
        cm_log_warn("test hook: stopping myself: partition %" PRId32 " batch at %" PRId64
                    " epoch %" PRId64 ": %zu dead letters produced, not delivered",
                    b->part_id, b->expected, b->p->dl.epoch, b->dl.pending);
        raise(SIGSTOP);
        event_base_update_cache_time(d->base); /* as above */
    }
    return b->dl.pending > 0;
}

int cmd_dlq_mark(struct batch *b, struct cm_store_apply *ap)
{
    struct daemon *d = b->d;
    struct cmd_dlq *q = d->dlq;
    /* Dead letters for offsets from new_pos on can only come later than the
     * ones delivered so far: a reader after a crash starts there. */
    int32_t dp = dlq_part(d, b->part_id);
    struct part *p = b->p;
    b->dl.mark_from = -1;
    if (p->dl.epoch > 0 && cm_store_apply_epoch(ap, p->dl.epoch) < 0)
        return -ENOMEM;
    if (q->next[dp] >= 0 && (p->dl.mark_part != dp || p->dl.mark_from != q->next[dp])) {
        if (cm_store_apply_dlq_mark(ap, dp, q->next[dp]) < 0)
            return -ENOMEM;
        b->dl.mark_from = q->next[dp];
    }
    return 0;
}

void cmd_dlq_applied(struct batch *b)
{
    struct part *p = b->p;
    if (b->dl.mark_from >= 0) {
        p->dl.mark_part = dlq_part(b->d, p->id);
        p->dl.mark_from = b->dl.mark_from;
    }
}

/* Acknowledges the revoke to the group. */
static void revoke_done(struct daemon *d)
{
    struct cmd_dlq *q = d->dlq;
    q->revoking = 0;
    evtimer_del(q->revoke_timer);
    rd_kafka_resp_err_t e = rd_kafka_assign(d->rk, NULL);
    if (e)
        cm_log_err("giving the partitions back to the group: %s", rd_kafka_err2str(e));
    if (d->stopping)
        cmd_maybe_finish_stop(d);
}

static void on_revoke_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct daemon *d = arg;
    struct cmd_dlq *q = d->dlq;
    if (!q->revoking)
        return;
    if (rd_kafka_outq_len(q->prod) > 0) {
        if (cm_clock_ms() - q->revoke_since < q->revoke_max_ms) {
            cmd_timer_in(q->revoke_timer, REVOKE_TICK_MS);
            return;
        }
        /* cannot happen while message.timeout.ms holds; never wait longer */
        cm_log_warn("dead letters still in flight %d ms after the revoke: purged, the next "
                    "owner sends them again if they do not land",
                    q->revoke_max_ms);
        rd_kafka_purge(q->prod, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
                                    RD_KAFKA_PURGE_F_NON_BLOCKING);
    }
    revoke_done(d);
}

void cmd_dlq_revoke(struct daemon *d)
{
    struct cmd_dlq *q = d->dlq;
    if (q->reader)
        cm_dlq_reader_cancel(q->reader);
    if (rd_kafka_outq_len(q->prod) == 0) {
        revoke_done(d);
        return;
    }
    /* The group waits, heartbeating, until rd_kafka_assign(NULL) (librdkafka
     * 2.0.2: WAIT_UNASSIGN_CALL, tests/check_dlq.c): the dead letters in
     * flight get their reports from the loop meanwhile, so they land before
     * the next owner reads the topic back, within message.timeout.ms. */
    if (!q->revoking) {
        q->revoking = 1;
        q->revoke_since = cm_clock_ms();
        cm_log_info("revoke acknowledged once %d dead letters in flight are settled",
                    rd_kafka_outq_len(q->prod));
    }
    cmd_timer_in(q->revoke_timer, REVOKE_TICK_MS);
}
