/* schedule.c - circmond's batches: when one starts, its states, its fold, its apply. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "http.h"

static void batch_apply(struct batch *b);

void cmd_batch_free(struct batch *b)
{
    struct daemon *d = b->d;
    if (b->prev)
        b->prev->next = b->next;
    else
        d->batches = b->next;
    if (b->next)
        b->next->prev = b->prev;
    for (size_t i = b->destroyed; i < b->n; i++)
        rd_kafka_message_destroy(b->msgs[i]);
    free(b->msgs);
    if (b->work_ev)
        event_free(b->work_ev); /* a pending slice never runs */
    cm_batch_free(b->cb);
    cm_store_apply_free(b->ap);
    free(b);
}

/* Detaches b from its partition: its outcome no longer matters (a later
 * resync reads the stored position). Freed once no callback refers to it. */
void cmd_batch_abandon(struct batch *b)
{
    cmd_batch_abandon_keep(b);
    if (!b->store_pending && !b->dl.pending)
        cmd_batch_free(b);
}

void cmd_batch_abandon_keep(struct batch *b)
{
    struct daemon *d = b->d;
    if (b->p) {
        b->p->b = NULL;
        b->p = NULL;
        d->in_flight--;
        d->buffered -= b->n;
        d->buffered_bytes -= b->bytes;
    }
}

static void work_later(struct batch *b);

/* The batch's partition is done with it (applied): detached now, so that the
 * partition's next batch can start; its messages and its fold are freed
 * from a slice, not in the apply's reply. */
static void batch_done(struct batch *b)
{
    cmd_batch_abandon_keep(b);
    b->stage = B_DONE;
    work_later(b);
}

/* Destroys b's messages for up to FOLD_SLICE_US at a time, then frees b. */
static void free_slice(struct batch *b)
{
    int64_t t0 = cm_clock_us();
    while (b->destroyed < b->n) {
        rd_kafka_message_destroy(b->msgs[b->destroyed++]);
        if (b->destroyed % DECODE_SLICE_MSGS == 0 && b->destroyed < b->n &&
            cm_clock_us() - t0 >= FOLD_SLICE_US) {
            work_later(b);
            return;
        }
    }
    cmd_batch_free(b);
}

void cmd_batch_free_done(struct daemon *d)
{
    for (struct batch *b = d->batches, *nx; b; b = nx) {
        nx = b->next;
        if (b->stage == B_DONE)
            cmd_batch_free(b);
    }
}

static void on_states(int err, const struct cm_store_val *vals, size_t n, void *ud);
static void on_work(evutil_socket_t fd, short what, void *arg);

/* Runs b's next slice of work from the loop, behind whatever is ready at
 * LOOP_PRIO_DEFAULT. */
static void work_later(struct batch *b)
{
    event_active(b->work_ev, 0, 0);
}

/* Starts a batch of up to batch_size queued messages of p: takes them, and
 * leaves the decode to the batch's work event. */
static void batch_start(struct daemon *d, struct part *p)
{
    size_t n = p->n < (size_t)d->cfg->batch_size ? p->n : (size_t)d->cfg->batch_size;
    struct batch *b = calloc(1, sizeof(*b));
    if (!b || !(b->msgs = calloc(n, sizeof(*b->msgs))) ||
        !(b->cb = cm_batch_new(d->fc, d->dec, n)) ||
        !(b->work_ev = event_new(d->base, -1, 0, on_work, b)) ||
        event_priority_set(b->work_ev, LOOP_PRIO_WORK) < 0) {
        if (b) {
            if (b->work_ev)
                event_free(b->work_ev);
            cm_batch_free(b->cb);
            free(b->msgs);
        }
        free(b);
        cm_log_err("out of memory starting a batch of %zu messages of partition %" PRId32, n,
                   p->id);
        return; /* retried at the next scheduling */
    }
    b->d = d;
    b->p = p;
    b->part_id = p->id;
    b->n = n;
    b->expected = p->pos;
    b->dl.mark_from = -1;
    b->next = d->batches;
    if (d->batches)
        d->batches->prev = b;
    d->batches = b;
    p->b = b;
    d->in_flight++;
    for (size_t i = 0; i < n; i++) {
        b->msgs[i] = p->q[i];
        b->bytes += p->q[i]->len + p->q[i]->key_len;
    }
    memmove(p->q, p->q + n, (p->n - n) * sizeof(*p->q));
    p->n -= n;
    p->since_ms = cm_clock_ms(); /* the rest lingers afresh: a conservative bound */
    b->new_pos = b->msgs[n - 1]->offset + 1;
    b->stage = B_DECODE;
    work_later(b);
}

/* Decodes and validates b's messages for up to FOLD_SLICE_US at a time. */
static void decode_slice(struct batch *b)
{
    struct daemon *d = b->d;
    int64_t t0 = cm_clock_us();
    while (b->decoded < b->n) {
        rd_kafka_message_t *m = b->msgs[b->decoded];
        if (cm_batch_add(b->cb, m->key, m->key_len, m->payload, m->len) < 0) {
            cm_log_err("partition %" PRId32 ": out of memory adding offset %" PRId64
                       " to a batch",
                       b->part_id, m->offset);
            cmd_batch_abandon(b);
            cmd_resync(d, "out of memory");
            return;
        }
        b->decoded++;
        if (b->decoded % DECODE_SLICE_MSGS == 0 && b->decoded < b->n &&
            cm_clock_us() - t0 >= FOLD_SLICE_US) {
            work_later(b);
            return;
        }
    }
    b->stage = B_READ;
    work_later(b);
}

/* Asks Redis for the states of b's migrants. */
static void read_states(struct batch *b)
{
    struct daemon *d = b->d;
    b->stage = B_MGET;
    size_t nm = cm_batch_migrants(b->cb);
    if (nm == 0) {
        on_states(0, NULL, 0, b); /* nothing to read: only dead letters */
        return;
    }
    const char **ids = malloc(nm * sizeof(*ids));
    size_t *lens = malloc(nm * sizeof(*lens));
    int r = -ENOMEM;
    if (ids && lens) {
        for (size_t i = 0; i < nm; i++)
            ids[i] = cm_batch_migrant(b->cb, i, &lens[i]);
        r = cm_store_get_states(d->st, b->part_id, ids, lens, nm, on_states, b);
    }
    free(ids);
    free(lens);
    if (r < 0) {
        /* Not connected: the store's down notice pauses and resyncs. */
        cm_log_debug("partition %" PRId32 ": reading states: %s", b->part_id, strerror(-r));
        cmd_batch_abandon(b);
        return;
    }
    b->store_pending = 1;
}

/* b cannot go on (why: a static text): logged, abandoned, and the daemon
 * resynchronises from Redis. */
static void batch_fail(struct batch *b, const char *why)
{
    struct daemon *d = b->d;
    cm_log_err("partition %" PRId32 ": batch at offset %" PRId64 ": %s; retrying", b->part_id,
               b->expected, why);
    cmd_batch_abandon(b);
    cmd_resync(d, why);
}

static int add_state(const char *id, size_t id_len, const uint8_t *st, size_t len, void *ud)
{
    return cm_store_apply_state(ud, id, id_len, st, len);
}

/* States read: fold the batch, build the apply, send the dead letters. */
static void on_states(int err, const struct cm_store_val *vals, size_t nv, void *ud)
{
    struct batch *b = ud;
    struct daemon *d = b->d;
    b->store_pending = 0;
    if (!b->p) {
        cmd_batch_free(b);
        return;
    }
    if (err < 0) {
        cm_log_debug("partition %" PRId32 ": reading states: %s", b->part_id, strerror(-err));
        cmd_batch_abandon(b);
        if (err != -ECONNRESET && err != -ETIMEDOUT)
            cmd_resync(d, "reading states failed");
        return;
    }
    const char *fail =
        nv == cm_batch_migrants(b->cb) ? NULL : "redis answered a wrong number of states";
    /* copied now (the reply is valid only during this call), unpacked by
     * the fold */
    for (size_t i = 0; i < nv && !fail; i++)
        if (cm_batch_set_state(b->cb, i, vals[i].data, vals[i].len) < 0)
            fail = "out of memory copying the states";
    if (fail) {
        batch_fail(b, fail);
        return;
    }
    b->stage = B_FOLD;
    work_later(b); /* the fold is work: not in a Redis reply's callback */
}

/* Reports the migrants of b whose stored state did not unpack. */
static void report_unreadable(struct batch *b)
{
    struct daemon *d = b->d;
    for (size_t i = 0; cm_batch_unreadable(b->cb) && i < cm_batch_migrants(b->cb); i++) {
        size_t ml, len;
        if (!cm_batch_migrant_unreadable(b->cb, i, &len))
            continue;
        const char *mid = cm_batch_migrant(b->cb, i, &ml);
        cm_counter_add(d->c_unreadable, 1);
        cm_log_err("partition %" PRId32 ": the state of migrant '%.*s' in Redis (%zu bytes)"
                   " does not unpack: its events go to the dead-letter topic as %s;"
                   " rebuild the partition from Kafka (README, Operations)",
                   b->part_id, (int)(ml > 200 ? 200 : ml), mid, len,
                   CM_BATCH_REASON_STATE_UNREADABLE);
    }
}

/* Works on the batch (unpack and fold, then pack) for up to FOLD_SLICE_US,
 * then yields to the loop (the rest follows from work_ev) so that one heavy
 * batch never holds the other partitions, the timers and the Redis
 * replies; once done, sends the apply's dead letters. */
static void fold_slice(struct batch *b)
{
    struct daemon *d = b->d;
    const char *fail = NULL;
    int64_t t0 = cm_clock_us();
    int r = 1;
    while (!b->folded && r == 1 && !fail) {
        r = cm_batch_fold(b->cb, FOLD_SLICE_EVENTS);
        if (r < 0)
            fail = r == -ENOMEM ? "out of memory in the fold" : "decoder is not deterministic";
        else if (r == 0) {
            b->folded = 1;
            report_unreadable(b);
            if (!(b->ap = cm_store_apply_new(d->cfg->key_prefix, b->part_id, b->expected,
                                             b->new_pos)))
                fail = "out of memory for the apply";
            r = 1;
        } else if (cm_clock_us() - t0 >= FOLD_SLICE_US)
            break;
    }
    while (b->folded && r == 1 && !fail) {
        /* the changed states, packed */
        r = cm_batch_each_changed(b->cb, FOLD_SLICE_EVENTS, add_state, b->ap);
        if (r < 0)
            fail = "out of memory packing the states";
        else if (r == 1 && cm_clock_us() - t0 >= FOLD_SLICE_US)
            break;
    }
    if (r == 1 && !fail) {
        work_later(b);
        return;
    }
    if (fail) {
        batch_fail(b, fail);
        return;
    }
    b->stage = B_FINISH;
    work_later(b);
}

/* The fold is packed: the aggregate delta, then the dead letters. */
static void batch_finish(struct batch *b)
{
    struct daemon *d = b->d;
    /* the aggregate delta (the position is in the apply already) */
    if (cm_store_apply_agg(b->ap, cm_batch_agg(b->cb), d->nm) < 0) {
        batch_fail(b, "cannot format the aggregate");
        return;
    }
    /* Dead letters first: the apply moves the position past them, so they
     * must be delivered before it (a crash in between re-sends them). */
    b->stage = B_DLQ;
    int r = cmd_dlq_send(b);
    if (r < 0) {
        cmd_batch_abandon(b);
        cmd_resync(d, "dead-letter producer failed");
        return;
    }
    if (r == 0) {
        b->stage = B_PREPARE;
        work_later(b);
    }
}

/* Lays the apply out for the state layout (the send follows in a slice of
 * its own). */
static void batch_prepare(struct batch *b)
{
    if (cm_store_apply_prepare(b->d->st, b->ap) < 0) {
        batch_fail(b, "out of memory laying out the apply");
        return;
    }
    b->stage = B_SEND;
    work_later(b);
}

void cmd_batch_dlq_done(struct batch *b, int failed)
{
    if (!b->p) {
        if (!b->store_pending)
            cmd_batch_free(b);
        return;
    }
    if (failed) {
        struct daemon *d = b->d;
        cmd_batch_abandon(b);
        cmd_resync(d, "dead letters not delivered");
        return;
    }
    b->stage = B_PREPARE;
    work_later(b); /* the apply is made from a slice, not in a delivery report */
}

static void on_work(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct batch *b = arg;
    if (b->stage == B_DONE) {
        free_slice(b);
        return;
    }
    if (!b->p) {
        cmd_batch_free(b); /* abandoned meanwhile; nothing else refers to it */
        return;
    }
    switch (b->stage) {
    case B_DECODE:
        decode_slice(b);
        break;
    case B_READ:
        read_states(b);
        break;
    case B_FOLD:
        fold_slice(b);
        break;
    case B_FINISH:
        batch_finish(b);
        break;
    case B_PREPARE:
        batch_prepare(b);
        break;
    case B_SEND:
        batch_apply(b);
        break;
    case B_DONE: /* above */
    case B_MGET:
    case B_DLQ:
    case B_APPLY:
        break; /* awaiting Redis or Kafka: never activated then */
    }
}

static void on_applied(int err, int applied, int64_t stored, void *ud);

static void batch_apply(struct batch *b)
{
    struct daemon *d = b->d;
    b->stage = B_APPLY;
    struct cm_store_apply *ap = b->ap;
    b->ap = NULL;
    if (cmd_dlq_mark(b, ap) < 0) {
        cm_store_apply_free(ap);
        cm_log_err("partition %" PRId32 ": out of memory writing the dead-letter mark",
                   b->part_id);
        cmd_batch_abandon(b);
        cmd_resync(d, "out of memory");
        return;
    }
    int r = cm_store_apply_send(d->st, ap, on_applied, b);
    if (r < 0) {
        cm_log_debug("partition %" PRId32 ": apply not sent: %s", b->part_id, strerror(-r));
        cmd_batch_abandon(b);
        if (r != -ENOTCONN)
            cmd_resync(d, "apply not sent");
        return;
    }
    cmd_http_apply_sent(d, b);
    b->store_pending = 1;
}

/* Counts, for each event b folded, the wall-clock time from its Kafka
 * CreateTime (the producer's clock) to now (the apply's reply). Dead
 * letters are not folded and not counted; neither are messages without a
 * CreateTime. A CreateTime in the future (clocks apart) counts as 0. */
static void observe_latency(struct daemon *d, const struct batch *b)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
        return;
    int64_t now_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    for (size_t i = 0; i < b->n; i++) {
        rd_kafka_timestamp_type_t tt;
        int64_t ms = rd_kafka_message_timestamp(b->msgs[i], &tt);
        if (tt != RD_KAFKA_TIMESTAMP_CREATE_TIME || ms < 0 || cm_batch_verdict(b->cb, i))
            continue;
        uint64_t lat = now_us > ms * 1000 ? (uint64_t)(now_us - ms * 1000) : 0;
        cm_hist_observe(d->h_event_lat, lat);
        cm_hist_observe(&d->h_event_lat_line, lat);
    }
}

static void on_applied(int err, int applied, int64_t stored, void *ud)
{
    struct batch *b = ud;
    struct daemon *d = b->d;
    b->store_pending = 0;
    if (!b->p) {
        if (!err && applied < 0)
            cm_log_warn("partition %" PRId32 ": apply refused: owner epoch %" PRId64
                        " in Redis is newer than ours: another daemon owns it",
                        b->part_id, stored);
        if (!b->dl.pending)
            cmd_batch_free(b);
        return;
    }
    if (err < 0) {
        cmd_http_redis_error(d);
        cm_log_warn("partition %" PRId32 ": apply at %" PRId64 " failed: %s", b->part_id,
                    b->expected, err == -EPROTO ? cm_store_errstr(d->st) : strerror(-err));
        cmd_batch_abandon(b);
        if (err != -ECONNRESET && err != -ETIMEDOUT)
            cmd_resync(d, "apply failed");
        return;
    }
    if (applied < 0) {
        /* deposed: the group revokes soon, let it before taking again */
        cm_counter_add(d->c_refused, 1);
        cm_log_warn("partition %" PRId32 ": apply refused: owner epoch %" PRId64
                    " in Redis is newer than ours (%" PRId64 "): another daemon owns it",
                    b->part_id, stored, b->p->dl.epoch);
        cmd_batch_abandon(b);
        d->resync_backoff_ms = RESYNC_BACKOFF_MAX_MS;
        cmd_resync(d, "apply refused: deposed");
        return;
    }
    if (!applied) {
        cm_counter_add(d->c_refused, 1);
        cm_log_warn("partition %" PRId32 ": apply refused: Redis holds position %" PRId64
                    ", this batch starts at %" PRId64 " (another writer?); resuming from Redis",
                    b->part_id, stored, b->expected);
        cmd_batch_abandon(b);
        cmd_resync(d, "apply refused");
        return;
    }
    /* Test hook: die like SIGKILL right after the Nth apply landed. */
    if (d->crash_after && cm_counter_get(d->c_applies) + 1 >= d->crash_after)
        raise(SIGKILL);
    struct part *p = b->p;
    p->pos = b->new_pos;
    cmd_mirror_position(d, p);
    cmd_dlq_applied(b);
    observe_latency(d, b);
    cm_counter_add(d->c_folded, cm_batch_folded(b->cb));
    cm_counter_add(d->c_dlq, b->dl.sent);
    cm_counter_add(d->c_applies, 1);
    cmd_http_applied(d, b);
    d->resync_backoff_ms = 0;
    batch_done(b);
    cmd_intake_uncap(d);
    if (d->stopping) {
        cmd_maybe_finish_stop(d);
        return;
    }
    cmd_schedule(d, d->capped);
}

/* Starts batches while fewer than max_in_flight run: of full partitions,
 * of partitions whose oldest message waited batch_linger_ms, or of every
 * partition with messages when flush is set (the buffer is full). Small
 * batches cost Redis far more per event (one HINCRBY per aggregate field
 * per batch), so partial ones wait for the linger rather than go out at
 * every poll. */
void cmd_schedule(struct daemon *d, int flush)
{
    if (d->phase != PH_RUNNING || d->stopping || !cm_store_ready(d->st))
        return;
    size_t np = d->n_parts;
    int64_t old = cm_clock_ms() - d->cfg->batch_linger_ms, t0 = cm_clock_us();
    for (size_t k = 0; k < np && d->in_flight < (size_t)d->cfg->max_in_flight; k++) {
        struct part *p = &d->parts[(d->rr + k) % np];
        if (!p->active || p->b || !p->n)
            continue;
        if (!flush && p->n < (size_t)d->cfg->batch_size && p->since_ms > old)
            continue;
        if (cm_clock_us() - t0 >= FOLD_SLICE_US) {
            /* starting a big batch decodes it: the next ones after a turn
             * of the loop */
            d->sched_flush |= flush;
            event_active(d->sched_ev, 0, 0);
            break;
        }
        batch_start(d, p);
        if (d->phase != PH_RUNNING)
            return; /* batch_start resynced */
    }
    d->rr = np ? (d->rr + 1) % np : 0;
}

void cmd_on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cmd_schedule(arg, 0);
}

void cmd_on_sched(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct daemon *d = arg;
    int flush = d->sched_flush;
    d->sched_flush = 0;
    cmd_schedule(d, flush);
}
