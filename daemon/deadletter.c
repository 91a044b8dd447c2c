/* deadletter.c - circmond's dead letters: produced, delivered, marked, read back, waited for. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "circmon/kafka.h"
#include "daemon.h"
#include "deadletter.h"

#define DLQ_SCAN_TIMEOUT_MS 10000 /* reading back a dead-letter partition at assignment */
#define DLQ_FLUSH_MS 10000        /* dead letters in flight delivered before a revoke completes */

struct cmd_dlq {
    rd_kafka_t *prod; /* dead-letter producer */
    rd_kafka_t *scan; /* reads the dead-letter topic back at assignment */
    int32_t n_parts;
    int64_t *next; /* per dead-letter partition: past the last delivery known, -1 */
    rd_kafka_queue_t *pq;
    int ppipe[2];
    struct event *pev;
    uint64_t crash_after; /* CIRCMOND_TEST_CRASH_AFTER_DLQ, 0 = off */
    uint64_t n_batches;   /* batches whose dead letters were all delivered */
};

rd_kafka_conf_t *cmd_producer_conf(const struct cm_config *cfg, char *err, size_t errlen)
{
    static const char *const defaults[][2] = {
        {"client.id", "circmond-dlq"},
        {"enable.idempotence", "true"}, /* a retry never writes a dead letter twice */
        {"linger.ms", "5"},
        {"message.timeout.ms", "30000"},
    };
    /* Delivery must be checked: acks from all in-sync replicas. */
    static const char *const forced[][2] = {{"acks", "all"}};
    return cmd_conf_build(cfg, defaults, NELEM(defaults), forced, NELEM(forced), 1, err, errlen);
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
    /* not strict: it shares the operator's consumer settings (enable.auto.commit
     * for the mirror, say) but needs its own */
    return cmd_conf_build(cfg, NULL, 0, forced, NELEM(forced), 0, err, errlen);
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
    rd_kafka_conf_t *conf = cmd_producer_conf(d->cfg, err, sizeof(err));
    if (!conf) {
        cm_log_err("kafka producer configuration: %s", err);
        return -EINVAL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, d);
    if (!(q->prod = cmd_client_new(RD_KAFKA_PRODUCER, conf, "producer")))
        return -EINVAL;
    q->pq = rd_kafka_queue_get_main(q->prod);
    int r = q->pq ? cmd_wake_on(d, q->pq, q->ppipe, &q->pev, on_producer, "p") : -ENOMEM;
    if (r < 0) {
        cm_log_err("waking the loop for the dead-letter producer: %s", strerror(-r));
        return r;
    }
    if (!(conf = cmd_scanner_conf(d->cfg, err, sizeof(err)))) {
        cm_log_err("kafka dead-letter reader configuration: %s", err);
        return -EINVAL;
    }
    if (!(q->scan = cmd_client_new(RD_KAFKA_CONSUMER, conf, "dead-letter reader")))
        return -EINVAL;
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

void cmd_dlq_drain(struct daemon *d)
{
    struct cmd_dlq *q = d->dlq;
    if (!q || !q->prod)
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
    if (q->scan)
        rd_kafka_destroy_flags(q->scan, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
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
}

/* A dead letter read back: kept when it is for a partition being assigned,
 * at or past its position. */
static int on_seen(int32_t part, int64_t off, void *ud)
{
    struct daemon *d = ud;
    if ((size_t)part >= d->n_parts)
        return 0;
    struct part *p = &d->parts[part];
    if (!p->dl.assigning || off < p->pos)
        return 0;
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

/* The read-back itself; blocks (a watermark query per dead-letter
 * partition; reading only after a crash). */
static int read_back(struct daemon *d, const int32_t *ids, size_t n)
{
    struct cmd_dlq *q = d->dlq;
    for (int32_t dp = 0; dp < q->n_parts; dp++) {
        int64_t from = -1;
        for (size_t i = 0; i < n; i++) {
            const struct part *p = &d->parts[ids[i]];
            if (p->dl.dp != dp)
                continue;
            int64_t f = p->dl.mark_part == dp ? p->dl.mark_from : 0;
            if (from < 0 || f < from)
                from = f;
        }
        if (from < 0)
            continue;
        char err[512];
        int64_t end = 0;
        int r = cm_dlq_scan(q->scan, d->cfg->dlq_topic, dp, from, d->cfg->topic,
                            DLQ_SCAN_TIMEOUT_MS, on_seen, d, &end, err, sizeof(err));
        if (r < 0) {
            cm_log_warn("dead-letter topic: %s",
                        r == -ENOMEM ? "out of memory keeping the dead letters read back" : err);
            return r;
        }
        if (end > q->next[dp])
            q->next[dp] = end;
    }
    for (size_t i = 0; i < n; i++) {
        struct part *p = &d->parts[ids[i]];
        if (!p->dl.n_seen)
            continue;
        qsort(p->dl.seen, p->dl.n_seen, sizeof(*p->dl.seen), cmp_i64);
        size_t k = 1;
        for (size_t j = 1; j < p->dl.n_seen; j++)
            if (p->dl.seen[j] != p->dl.seen[k - 1])
                p->dl.seen[k++] = p->dl.seen[j];
        p->dl.n_seen = k;
        cm_log_info("partition %" PRId32 ": %zu dead letters past offset %" PRId64
                    " already on %s [%" PRId32 "]: not sent again",
                    p->id, k, p->pos, d->cfg->dlq_topic, p->dl.dp);
    }
    return 0;
}

void cmd_dlq_read_back(struct daemon *d, const int32_t *ids, size_t n, cmd_dlq_done_fn done,
                       void *ud)
{
    int r = read_back(d, ids, n);
    for (size_t i = 0; i < n; i++)
        d->parts[ids[i]].dl.assigning = 0;
    done(d, r, ud);
}

int cmd_dlq_send(struct batch *b)
{
    struct daemon *d = b->d;
    const char *src = d->cfg->topic;
    for (size_t i = 0; i < b->n; i++) {
        const char *why = cm_batch_verdict(b->cb, i);
        rd_kafka_message_t *m = b->msgs[i];
        if (!why)
            continue;
        if (dlq_seen(b->p, m->offset))
            continue; /* on the topic already, sent by a predecessor */
        b->dl.sent++;
        int e = cm_dlq_send_opaque(d->dlq->prod, d->cfg->dlq_topic, m->key, m->key_len,
                                   m->payload, m->len, why, src, m->partition, m->offset,
                                   dlq_part(d, b->part_id), b);
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

void cmd_dlq_revoke(struct daemon *d)
{
    if (rd_kafka_flush(d->dlq->prod, DLQ_FLUSH_MS))
        cm_log_warn("dead letters still in flight after %d s: the next owner may send them again",
                    DLQ_FLUSH_MS / 1000);
}
