/* intake.c - circmond's consumer polling and backpressure: messages taken, held and bounded. */
#include <inttypes.h>
#include <stdlib.h>

#include "circmon/grow.h"
#include "daemon.h"

static size_t msg_bytes(const rd_kafka_message_t *m)
{
    return m->len + m->key_len;
}

void cmd_intake_drop_queue(struct daemon *d, struct part *p)
{
    for (size_t j = 0; j < p->n; j++) {
        d->buffered_bytes -= msg_bytes(p->q[j]);
        rd_kafka_message_destroy(p->q[j]);
    }
    d->buffered -= p->n;
    p->n = 0;
}

void cmd_intake_uncap(struct daemon *d)
{
    if (d->capped && d->buffered < d->max_buffered / 2 &&
        d->buffered_bytes < MAX_BUFFERED_BYTES / 2) {
        d->capped = 0;
        event_active(d->kev, EV_READ, 0); /* resume polling */
    }
}

static void take_message(struct daemon *d, rd_kafka_message_t *m)
{
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            cm_log_warn("consumer: %s%s%s", m->rkt ? rd_kafka_topic_name(m->rkt) : "",
                        m->rkt ? ": " : "", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        return;
    }
    struct part *p = d->phase == PH_RUNNING && !d->stopping && m->partition >= 0 &&
                             (size_t)m->partition < d->n_parts
                         ? &d->parts[m->partition]
                         : NULL;
    if (p && p->active && p->fresh && m->offset < p->next) {
        /* Kafka restarted the partition below the stored position: the
         * position was past the topic's end (auto.offset.reset). */
        cm_log_err("partition %" PRId32 ": Redis holds position %" PRId64
                   " but the topic restarts at offset %" PRId64
                   ": was the topic recreated or truncated? Messages below %" PRId64
                   " are taken as folded already; if the topic is new, rebuild Redis",
                   p->id, p->next, m->offset, p->next);
        p->fresh = 0;
    }
    if (!p || !p->active || m->offset < p->next) {
        rd_kafka_message_destroy(m); /* from before a resync, or a redelivery */
        return;
    }
    /* The first message after an assignment starts where Redis says, unless
     * the topic lost what lies between (retention). Later gaps are normal
     * with transactional producers (commit markers) and are not reported. */
    if (p->fresh && m->offset > p->next)
        cm_log_warn("partition %" PRId32 ": offsets %" PRId64 "..%" PRId64
                    " are no longer in the topic (retention?) and were never folded",
                    m->partition, p->next, m->offset - 1);
    p->fresh = 0;
    if (cm_grow(&p->q, &p->cap, p->n + 1, sizeof(*p->q), 256) < 0) {
        rd_kafka_message_destroy(m);
        cm_log_err("partition %" PRId32 ": out of memory queueing %zu messages", p->id,
                   p->n + 1);
        cmd_resync(d, "out of memory");
        return;
    }
    if (p->n == 0)
        p->since_ms = cm_clock_ms();
    p->q[p->n++] = m;
    p->next = m->offset + 1;
    d->buffered++;
    d->buffered_bytes += msg_bytes(m);
    if (p->n >= (size_t)d->cfg->batch_size && !p->b)
        cmd_schedule(d, 0);
}

void cmd_on_kafka(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    (void)what;
    cmd_drain_pipe(fd);
    if (d->closing) {
        rd_kafka_message_t *m;
        while ((m = rd_kafka_consumer_poll(d->rk, 0)))
            rd_kafka_message_destroy(m);
        cmd_maybe_finish_stop(d);
        return;
    }
    if (d->stopping)
        return;
    int drained = 0;
    /* A bounded pass (in messages and in time), so that Redis replies,
     * folds and timers get their turn. */
    int64_t t0 = cm_clock_us();
    for (int i = 0; i < 20000; i++) {
        if ((i & 255) == 255 && cm_clock_us() - t0 >= POLL_SLICE_US)
            break;
        if (d->buffered >= d->max_buffered || d->buffered_bytes >= MAX_BUFFERED_BYTES) {
            d->capped = 1; /* polling resumes when batches complete */
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(d->rk, 0);
        if (!m) {
            drained = 1;
            break;
        }
        take_message(d, m);
    }
    /* The pipe is written only on empty-to-non-empty: re-arm ourselves when
     * leaving messages in the queue. */
    d->drained = drained;
    if (!drained && !d->capped)
        event_active(d->kev, EV_READ, 0);
    cmd_schedule(d, d->capped);
}

/* The queue's wake-up comes only with messages: an idle consumer must still
 * poll within max.poll.interval.ms or librdkafka leaves the group. Not while
 * capped: that lasts while Redis is slow, and polling would take messages
 * past the bound. */
void cmd_on_poll_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct daemon *d = arg;
    if (!d->capped && !d->stopping)
        event_active(d->kev, EV_READ, 0);
}
