/* pipeline.c - circmond's loop: Kafka partitions folded into Redis in CAS-checked batches. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <librdkafka/rdkafka.h>
#include <systemd/sd-daemon.h>

#include "circmon/agg.h"
#include "circmon/event.h"
#include "circmon/fold.h"
#include "circmon/kafka.h"
#include "circmon/names.h"
#include "circmon/store.h"
#include "daemon.h"
#include "log.h"

#define STARTUP_BUDGET_MS 30000 /* Redis and Kafka must answer within this at start */
#define FLUSH_TICK_MS 5         /* how often partial batches are checked for linger */
#define STATS_S 10              /* operator log line period */
#define POLL_TICK_MS 1000       /* polls even when idle: librdkafka's max.poll.interval.ms */
#define RESYNC_BACKOFF_MAX_MS 5000
#define DLQ_SCAN_TIMEOUT_MS 10000 /* reading back a dead-letter partition at assignment */
#define DLQ_FLUSH_MS 10000        /* dead letters in flight delivered before a revoke completes */
/* Messages held (queued and in batches) stop the polling past this many
 * bytes of keys and payloads, whatever their number. */
#define MAX_BUFFERED_BYTES ((size_t)256 << 20)

struct daemon;

/* One migrant of a batch. */
struct mig {
    char *id; /* owned copy, NUL-terminated */
    size_t len;
    uint32_t hash;
    struct cm_mstate *st;
    uint8_t *orig; /* the stored bytes, to skip unchanged states */
    size_t olen;
};

/* One message of a batch and its verdict. */
struct mrec {
    rd_kafka_message_t *m;
    enum cm_reject rej; /* CM_OK, or why it goes to the dead-letter topic */
    int mig;            /* index into batch->migs, or -1 */
};

enum batch_stage { B_MGET, B_DLQ, B_APPLY };

struct batch {
    struct daemon *d;
    struct batch *prev, *next; /* in d->batches: every live batch */
    struct part *p;            /* NULL once abandoned */
    int32_t part_id;
    enum batch_stage stage;
    struct mrec *msgs;
    size_t n;
    struct mig *migs;
    size_t n_migs;
    int *slots; /* open-addressing map of migrant id -> index, cap_slots entries */
    size_t cap_slots;
    int64_t expected, new_pos;
    struct cm_store_apply *ap;
    int store_pending;  /* a store request awaits its callback */
    size_t dlq_pending; /* dead letters awaiting their delivery report */
    size_t dlq_failed;
    size_t n_dlq, n_folded;
    size_t bytes;      /* keys and payloads of its messages */
    int64_t mark_from; /* the dead-letter mark its apply writes, -1 = none */
};

struct part {
    int32_t id;
    int active;   /* assigned and synced: messages are taken */
    int64_t pos;  /* stored position: the next apply's expected value */
    int64_t next; /* next offset expected from Kafka: older ones are dropped */
    int fresh;    /* no message taken since the assignment */
    rd_kafka_message_t **q;
    size_t n, cap;
    int64_t since_ms; /* when the oldest queued message was taken (monotonic) */
    struct batch *b; /* the batch in flight, if any */
    /* Dead letters already on the topic for offsets at or past pos, read back
     * at assignment (a predecessor died after sending them, before its
     * apply): sorted, not sent again. */
    int64_t *dlq_seen;
    size_t n_seen, cap_seen;
    int32_t mark_part; /* the dead-letter mark Redis holds (-1: none) */
    int64_t mark_from;
    int32_t dp;    /* its dead-letter partition: the marked one, else id % count */
    int assigning; /* positions read, dead letters being read back */
};

enum phase { PH_IDLE, PH_SYNCING, PH_RUNNING };

struct daemon {
    const struct cm_config *cfg;
    struct event_base *base;
    struct cm_store *st;
    struct cm_decoder *dec;
    struct cm_names *nm;
    struct cm_fold_ctx *fc;

    rd_kafka_t *rk; /* consumer */
    rd_kafka_queue_t *rkq;
    int kpipe[2];
    struct event *kev;
    rd_kafka_t *prod; /* dead-letter producer */
    rd_kafka_t *scan; /* reads the dead-letter topic back at assignment */
    int32_t n_dlq_parts;
    int64_t *dlq_next; /* per dead-letter partition: past the last delivery known, -1 */
    rd_kafka_queue_t *pq;
    int ppipe[2];
    struct event *pev;

    rd_kafka_topic_partition_list_t *want; /* assignment given by the group */
    enum phase phase;
    uint64_t gen; /* bumped by every resync and every read of the positions: late replies are ignored */
    struct part *parts;
    size_t n_parts; /* parts[] is indexed by partition id */
    size_t rr;      /* round-robin start of the scheduler */
    struct batch *batches;
    size_t in_flight; /* batches attached to a partition */
    size_t buffered;  /* messages held, queued or in batches */
    size_t max_buffered;
    size_t buffered_bytes; /* their keys and payloads */
    int capped;  /* stopped polling because max_buffered was reached */
    int drained; /* the last poll pass emptied the consumer queue */

    int started;  /* store came up once and the consumer exists */
    int stopping; /* SIGTERM/SIGINT received */
    int closing;  /* rd_kafka_consumer_close_queue called */
    int exit_code;
    int resync_backoff_ms;
    uint64_t crash_after;     /* CIRCMOND_TEST_CRASH_AFTER_APPLIES, 0 = off */
    uint64_t crash_after_dlq; /* CIRCMOND_TEST_CRASH_AFTER_DLQ, 0 = off */
    uint64_t n_dlq_batches;   /* batches whose dead letters were all delivered */

    struct event *sig_term, *sig_int, *flush_timer, *stats_timer, *poll_timer, *startup_timer,
        *resync_timer, *stop_timer, *close_timer;

    /* counters for the operator line */
    uint64_t n_folded, n_dlq, n_applies, n_refused, last_folded;
    struct timespec last_stats;
};

static void schedule(struct daemon *d, int flush);
static void resync(struct daemon *d, const char *why);
static void batch_apply(struct batch *b);
static void maybe_finish_stop(struct daemon *d);

/* ------------------------------------------------------------ helpers */

static size_t msg_bytes(const rd_kafka_message_t *m)
{
    return m->len + m->key_len;
}

static void ms_tv(int ms, struct timeval *tv)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

static void timer_in(struct event *ev, int ms)
{
    struct timeval tv;
    ms_tv(ms, &tv);
    evtimer_add(ev, &tv);
}

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int make_pipe(int fds[2])
{
    if (pipe(fds) < 0)
        return -errno;
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(fds[i], F_GETFL);
        if (fl < 0 || fcntl(fds[i], F_SETFL, fl | O_NONBLOCK) < 0 ||
            fcntl(fds[i], F_SETFD, FD_CLOEXEC) < 0)
            return -errno;
    }
    return 0;
}

static void drain_pipe(int fd)
{
    char buf[256];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

/* The partition entry for id, growing the table. NULL when out of memory. */
static struct part *part_get(struct daemon *d, int32_t id)
{
    if (id < 0)
        return NULL;
    if ((size_t)id >= d->n_parts) {
        size_t n = (size_t)id + 1;
        struct part *p = realloc(d->parts, n * sizeof(*p));
        if (!p)
            return NULL;
        memset(p + d->n_parts, 0, (n - d->n_parts) * sizeof(*p));
        for (size_t i = d->n_parts; i < n; i++)
            p[i].id = (int32_t)i;
        d->parts = p;
        d->n_parts = n;
    }
    return &d->parts[id];
}

/* The dead-letter partition of source partition part: fixed once a mark
 * names it (even if the topic gains partitions), so that the dead letters of
 * one source partition can be read back in order. */
static int32_t dlq_part(const struct daemon *d, int32_t part)
{
    return d->parts[part].dp;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Whether a dead letter for offset off of p is on the topic already. */
static int dlq_seen(const struct part *p, int64_t off)
{
    return p->n_seen && bsearch(&off, p->dlq_seen, p->n_seen, sizeof(off), cmp_i64);
}

/* ------------------------------------------------------------ batches */

static void batch_free(struct batch *b)
{
    struct daemon *d = b->d;
    if (b->prev)
        b->prev->next = b->next;
    else
        d->batches = b->next;
    if (b->next)
        b->next->prev = b->prev;
    for (size_t i = 0; i < b->n; i++)
        rd_kafka_message_destroy(b->msgs[i].m);
    for (size_t i = 0; i < b->n_migs; i++) {
        free(b->migs[i].id);
        cm_mstate_free(d->fc, b->migs[i].st);
        free(b->migs[i].orig);
    }
    free(b->msgs);
    free(b->migs);
    free(b->slots);
    cm_store_apply_free(b->ap);
    free(b);
}

/* Detaches b from its partition: its outcome no longer matters (a later
 * resync reads the stored position). Freed once no callback refers to it. */
static void batch_abandon(struct batch *b)
{
    struct daemon *d = b->d;
    if (b->p) {
        b->p->b = NULL;
        b->p = NULL;
        d->in_flight--;
        d->buffered -= b->n;
        d->buffered_bytes -= b->bytes;
    }
    if (!b->store_pending && !b->dlq_pending)
        batch_free(b);
}

/* The batch's partition is done with it (applied). */
static void batch_done(struct batch *b)
{
    batch_abandon(b);
}

/* Index of migrant id in b, adding it. -1 when out of memory. */
static int batch_mig(struct batch *b, const char *id, size_t len)
{
    uint32_t h = hash_bytes(id, len);
    size_t mask = b->cap_slots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        int s = b->slots[i];
        if (s < 0) {
            struct mig *m = &b->migs[b->n_migs];
            if (!(m->id = malloc(len + 1)))
                return -1;
            memcpy(m->id, id, len);
            m->id[len] = '\0';
            m->len = len;
            m->hash = h;
            b->slots[i] = (int)b->n_migs;
            return (int)b->n_migs++;
        }
        if (b->migs[s].hash == h && b->migs[s].len == len && !memcmp(b->migs[s].id, id, len))
            return s;
    }
}

static void on_states(int err, const struct cm_store_val *vals, size_t n, void *ud);

/* Starts a batch of up to batch_size queued messages of p. */
static void batch_start(struct daemon *d, struct part *p)
{
    size_t n = p->n < (size_t)d->cfg->batch_size ? p->n : (size_t)d->cfg->batch_size;
    struct batch *b = calloc(1, sizeof(*b));
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    if (!b || !(b->msgs = calloc(n, sizeof(*b->msgs))) ||
        !(b->migs = calloc(n, sizeof(*b->migs))) || !(b->slots = malloc(cap * sizeof(int)))) {
        if (b) {
            free(b->msgs);
            free(b->migs);
            free(b);
        }
        cmd_err("out of memory starting a batch of partition %" PRId32, p->id);
        return; /* retried at the next scheduling */
    }
    for (size_t i = 0; i < cap; i++)
        b->slots[i] = -1;
    b->cap_slots = cap;
    b->d = d;
    b->p = p;
    b->part_id = p->id;
    b->n = n;
    b->expected = p->pos;
    b->next = d->batches;
    if (d->batches)
        d->batches->prev = b;
    d->batches = b;
    p->b = b;
    d->in_flight++;
    for (size_t i = 0; i < n; i++) {
        b->msgs[i].m = p->q[i];
        b->bytes += msg_bytes(p->q[i]);
    }
    memmove(p->q, p->q + n, (p->n - n) * sizeof(*p->q));
    p->n -= n;
    p->since_ms = now_ms(); /* the rest lingers afresh: a conservative bound */
    b->new_pos = b->msgs[n - 1].m->offset + 1;

    /* Decode and validate; collect the migrants to read. */
    for (size_t i = 0; i < n; i++) {
        struct mrec *r = &b->msgs[i];
        struct cm_event ev;
        r->mig = -1;
        r->rej = cm_decode(d->dec, r->m->payload, r->m->len, &ev);
        if (r->rej != CM_OK)
            continue;
        size_t ml = strlen(ev.migrant_id);
        if (!r->m->key || r->m->key_len != ml || memcmp(r->m->key, ev.migrant_id, ml)) {
            r->rej = CM_REJ_KEY_MISMATCH;
            continue;
        }
        if ((r->mig = batch_mig(b, ev.migrant_id, ml)) < 0) {
            cmd_err("out of memory in a batch of partition %" PRId32, p->id);
            batch_abandon(b);
            resync(d, "out of memory");
            return;
        }
    }
    b->stage = B_MGET;
    if (b->n_migs == 0) {
        on_states(0, NULL, 0, b); /* nothing to read: only dead letters */
        return;
    }
    const char **ids = malloc(b->n_migs * sizeof(*ids));
    size_t *lens = malloc(b->n_migs * sizeof(*lens));
    int r = -ENOMEM;
    if (ids && lens) {
        for (size_t i = 0; i < b->n_migs; i++) {
            ids[i] = b->migs[i].id;
            lens[i] = b->migs[i].len;
        }
        r = cm_store_get_states(d->st, p->id, ids, lens, b->n_migs, on_states, b);
    }
    free(ids);
    free(lens);
    if (r < 0) {
        /* Not connected: the store's down notice pauses and resyncs. */
        cmd_debug("partition %" PRId32 ": reading states: %s", p->id, strerror(-r));
        batch_abandon(b);
        return;
    }
    b->store_pending = 1;
}

static void item_push(struct cm_item **items, size_t *n, size_t *cap, const struct cm_item *it)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        struct cm_item *x = realloc(*items, c * sizeof(*x));
        if (!x)
            return; /* caught by the caller through the unchanged count */
        *items = x;
        *cap = c;
    }
    (*items)[(*n)++] = *it;
}

/* States read: fold the batch, build the apply, send the dead letters. */
static void on_states(int err, const struct cm_store_val *vals, size_t nv, void *ud)
{
    struct batch *b = ud;
    struct daemon *d = b->d;
    struct cm_item *items = NULL;
    size_t n_items = 0, cap_items = 0;
    struct cm_agg *ag = NULL;
    b->store_pending = 0;
    if (!b->p) {
        batch_free(b);
        return;
    }
    if (err < 0) {
        cmd_debug("partition %" PRId32 ": reading states: %s", b->part_id, strerror(-err));
        batch_abandon(b);
        if (err != -ECONNRESET && err != -ETIMEDOUT)
            resync(d, "reading states failed");
        return;
    }
    (void)nv;
    const char *fail = NULL;
    for (size_t i = 0; i < b->n_migs && !fail; i++) {
        struct mig *m = &b->migs[i];
        if (vals[i].data) {
            if (!(m->orig = malloc(vals[i].len ? vals[i].len : 1))) {
                fail = "out of memory";
                break;
            }
            memcpy(m->orig, vals[i].data, vals[i].len);
            m->olen = vals[i].len;
            if (cm_mstate_unpack(d->fc, vals[i].data, vals[i].len, &m->st) < 0)
                fail = "a stored migrant state does not unpack";
        } else if (!(m->st = cm_mstate_new(d->fc))) {
            fail = "out of memory";
        }
    }
    if (!fail && !(ag = cm_agg_new()))
        fail = "out of memory";

    /* Fold in offset order. Decoding again is cheaper than copying events. */
    for (size_t i = 0; i < b->n && !fail; i++) {
        struct mrec *r = &b->msgs[i];
        struct cm_event ev;
        n_items = 0;
        if (r->rej != CM_OK) {
            struct cm_item it = {.kind = CM_IT_DQ, .ctr = CM_DQ_INVALID, .v = 1};
            item_push(&items, &n_items, &cap_items, &it);
            if (n_items != 1)
                fail = "out of memory";
        } else if (cm_decode(d->dec, r->m->payload, r->m->len, &ev) != CM_OK) {
            fail = "decoder is not deterministic"; /* cannot happen */
        } else {
            int fr = cm_fold_event(d->fc, b->migs[r->mig].st, &ev, &items, &n_items, &cap_items);
            if (fr < 0)
                fail = "out of memory in the fold";
            else if (fr == CM_FOLD_TOO_LATE)
                r->rej = CM_REJ_TOO_LATE;
            else
                b->n_folded++;
        }
        if (!fail && n_items && cm_agg_add_items(ag, items, n_items) < 0)
            fail = "out of memory";
    }
    free(items);

    /* The apply: changed states, the aggregate delta, the position. */
    if (!fail && !(b->ap = cm_store_apply_new(d->cfg->key_prefix, b->part_id, b->expected,
                                             b->new_pos)))
        fail = "out of memory";
    for (size_t i = 0; i < b->n_migs && !fail; i++) {
        struct mig *m = &b->migs[i];
        uint8_t *buf = NULL;
        long len = cm_mstate_pack(d->fc, m->st, &buf);
        if (len < 0) {
            fail = "out of memory packing a state";
        } else if ((size_t)len != m->olen || (len && memcmp(buf, m->orig, (size_t)len))) {
            if (cm_store_apply_state(b->ap, m->id, m->len, buf, (size_t)len) < 0)
                fail = "out of memory";
        }
        free(buf);
    }
    if (!fail && cm_store_apply_agg(b->ap, ag, d->nm) < 0)
        fail = "cannot format the aggregate";
    cm_agg_free(ag);
    if (fail) {
        cmd_err("partition %" PRId32 ": batch at offset %" PRId64 ": %s; retrying", b->part_id,
                b->expected, fail);
        batch_abandon(b);
        resync(d, fail);
        return;
    }

    /* Dead letters first: the apply moves the position past them, so they
     * must be delivered before it (a crash in between re-sends them). */
    b->stage = B_DLQ;
    const char *src = d->cfg->topic;
    for (size_t i = 0; i < b->n; i++) {
        struct mrec *r = &b->msgs[i];
        if (r->rej == CM_OK)
            continue;
        if (dlq_seen(b->p, r->m->offset))
            continue; /* on the topic already, sent by a predecessor */
        b->n_dlq++;
        int e = cm_dlq_send_opaque(d->prod, d->cfg->dlq_topic, r->m->key, r->m->key_len,
                                   r->m->payload, r->m->len, cm_reject_name(r->rej), src,
                                   r->m->partition, r->m->offset, dlq_part(d, b->part_id), b);
        if (e < 0) {
            cmd_err("partition %" PRId32 ": dead letter for offset %" PRId64 " not queued: %s",
                    b->part_id, r->m->offset, strerror(-e));
            b->dlq_failed++;
            break;
        }
        b->dlq_pending++;
    }
    if (b->dlq_failed && !b->dlq_pending) {
        batch_abandon(b);
        resync(d, "dead-letter producer failed");
        return;
    }
    if (!b->dlq_pending)
        batch_apply(b);
}

/* Delivery report of a dead letter. */
static void on_dlq_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct daemon *d = opaque;
    struct batch *b = m->_private;
    if (!m->err && m->partition >= 0 && m->partition < d->n_dlq_parts &&
        m->offset >= d->dlq_next[m->partition])
        d->dlq_next[m->partition] = m->offset + 1;
    if (!b)
        return;
    if (m->err) {
        cmd_err("dead letter to %s not delivered: %s", rd_kafka_topic_name(m->rkt),
                rd_kafka_err2str(m->err));
        b->dlq_failed++;
    }
    if (--b->dlq_pending)
        return;
    if (!b->p) {
        if (!b->store_pending)
            batch_free(b);
        return;
    }
    if (b->dlq_failed) {
        batch_abandon(b);
        resync(b->d, "dead letters not delivered");
        return;
    }
    /* Test hook: die like SIGKILL between the dead letters and the apply. */
    if (d->crash_after_dlq && ++d->n_dlq_batches >= d->crash_after_dlq)
        raise(SIGKILL);
    batch_apply(b);
}

static void on_applied(int err, int applied, int64_t stored, void *ud);

/* Hands p's applied position to librdkafka, which commits it to the group
 * (enable.auto.commit) for lag tools. Redis stays the source of truth. */
static void mirror_position(struct daemon *d, const struct part *p)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    if (!l)
        return;
    rd_kafka_topic_partition_list_add(l, d->cfg->topic, p->id)->offset = p->pos;
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(d->rk, l);
    if (e)
        cmd_debug("partition %" PRId32 ": offset %" PRId64 " not stored for commit: %s", p->id,
                  p->pos, rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
}

static void batch_apply(struct batch *b)
{
    struct daemon *d = b->d;
    b->stage = B_APPLY;
    struct cm_store_apply *ap = b->ap;
    b->ap = NULL;
    /* Dead letters for offsets from new_pos on can only come later than the
     * ones delivered so far: a reader after a crash starts there. */
    int32_t dp = dlq_part(d, b->part_id);
    struct part *p = b->p;
    if (d->dlq_next[dp] >= 0 && (p->mark_part != dp || p->mark_from != d->dlq_next[dp])) {
        if (cm_store_apply_dlq_mark(ap, dp, d->dlq_next[dp]) < 0) {
            cm_store_apply_free(ap);
            batch_abandon(b);
            resync(d, "out of memory");
            return;
        }
        b->mark_from = d->dlq_next[dp];
    } else {
        b->mark_from = -1;
    }
    int r = cm_store_apply_send(d->st, ap, on_applied, b);
    if (r < 0) {
        cmd_debug("partition %" PRId32 ": apply not sent: %s", b->part_id, strerror(-r));
        batch_abandon(b);
        if (r != -ENOTCONN)
            resync(d, "apply not sent");
        return;
    }
    b->store_pending = 1;
}

static void on_applied(int err, int applied, int64_t stored, void *ud)
{
    struct batch *b = ud;
    struct daemon *d = b->d;
    b->store_pending = 0;
    if (!b->p) {
        if (!b->dlq_pending)
            batch_free(b);
        return;
    }
    if (err < 0) {
        cmd_warn("partition %" PRId32 ": apply at %" PRId64 " failed: %s", b->part_id,
                 b->expected, err == -EPROTO ? cm_store_errstr(d->st) : strerror(-err));
        batch_abandon(b);
        if (err != -ECONNRESET && err != -ETIMEDOUT)
            resync(d, "apply failed");
        return;
    }
    if (!applied) {
        d->n_refused++;
        cmd_warn("partition %" PRId32 ": apply refused: Redis holds position %" PRId64
                 ", this batch starts at %" PRId64 " (another writer?); resuming from Redis",
                 b->part_id, stored, b->expected);
        batch_abandon(b);
        resync(d, "apply refused");
        return;
    }
    /* Test hook: die like SIGKILL right after the Nth apply landed. */
    if (d->crash_after && d->n_applies + 1 >= d->crash_after)
        raise(SIGKILL);
    struct part *p = b->p;
    p->pos = b->new_pos;
    mirror_position(d, p);
    if (b->mark_from >= 0) {
        p->mark_part = dlq_part(d, p->id);
        p->mark_from = b->mark_from;
    }
    d->n_folded += b->n_folded;
    d->n_dlq += b->n_dlq;
    d->n_applies++;
    d->resync_backoff_ms = 0;
    batch_done(b);
    if (d->capped && d->buffered < d->max_buffered / 2 &&
        d->buffered_bytes < MAX_BUFFERED_BYTES / 2) {
        d->capped = 0;
        event_active(d->kev, EV_READ, 0); /* resume polling */
    }
    if (d->stopping) {
        maybe_finish_stop(d);
        return;
    }
    schedule(d, d->capped);
}

/* Starts batches while fewer than max_in_flight run: of full partitions,
 * of partitions whose oldest message waited batch_linger_ms, or of every
 * partition with messages when flush is set (the buffer is full). Small
 * batches cost Redis far more per event (one HINCRBY per aggregate field
 * per batch), so partial ones wait for the linger rather than go out at
 * every poll. */
static void schedule(struct daemon *d, int flush)
{
    if (d->phase != PH_RUNNING || d->stopping || !cm_store_ready(d->st))
        return;
    size_t np = d->n_parts;
    int64_t old = now_ms() - d->cfg->batch_linger_ms;
    for (size_t k = 0; k < np && d->in_flight < (size_t)d->cfg->max_in_flight; k++) {
        struct part *p = &d->parts[(d->rr + k) % np];
        if (!p->active || p->b || !p->n)
            continue;
        if (!flush && p->n < (size_t)d->cfg->batch_size && p->since_ms > old)
            continue;
        batch_start(d, p);
        if (d->phase != PH_RUNNING)
            return; /* batch_start resynced */
    }
    d->rr = np ? (d->rr + 1) % np : 0;
}

/* ------------------------------------------------------------ partitions */

/* Drops every held message and batch; partitions stop taking messages. */
static void drop_all(struct daemon *d)
{
    d->gen++;
    for (size_t i = 0; i < d->n_parts; i++) {
        struct part *p = &d->parts[i];
        if (p->b)
            batch_abandon(p->b);
        for (size_t j = 0; j < p->n; j++) {
            d->buffered_bytes -= msg_bytes(p->q[j]);
            rd_kafka_message_destroy(p->q[j]);
        }
        d->buffered -= p->n;
        p->n = 0;
        p->active = 0;
    }
    if (d->capped && d->kev) {
        d->capped = 0;
        event_active(d->kev, EV_READ, 0);
    }
}

struct pos_req {
    struct daemon *d;
    uint64_t gen;
    int32_t *ids;
    size_t n;
};

/* A dead letter read back: kept when it is for a partition being assigned,
 * at or past its position. */
static int on_dlq_seen(int32_t part, int64_t off, void *ud)
{
    struct daemon *d = ud;
    if ((size_t)part >= d->n_parts)
        return 0;
    struct part *p = &d->parts[part];
    if (!p->assigning || off < p->pos)
        return 0;
    if (p->n_seen == p->cap_seen) {
        size_t nc = p->cap_seen ? p->cap_seen * 2 : 16;
        int64_t *ns = realloc(p->dlq_seen, nc * sizeof(*ns));
        if (!ns)
            return -ENOMEM;
        p->dlq_seen = ns;
        p->cap_seen = nc;
    }
    p->dlq_seen[p->n_seen++] = off;
    return 0;
}

/* Reads back, from each dead-letter partition of the n partitions ids being
 * assigned, the dead letters sent past their marks: those of a predecessor
 * that died before its apply. They are not sent again. Blocks (a watermark
 * query per dead-letter partition; reading only after a crash). */
static int dlq_read_back(struct daemon *d, const int32_t *ids, size_t n)
{
    for (int32_t dp = 0; dp < d->n_dlq_parts; dp++) {
        int64_t from = -1;
        for (size_t i = 0; i < n; i++) {
            const struct part *p = &d->parts[ids[i]];
            if (p->dp != dp)
                continue;
            int64_t f = p->mark_part == dp ? p->mark_from : 0;
            if (from < 0 || f < from)
                from = f;
        }
        if (from < 0)
            continue;
        char err[512];
        int64_t end = 0;
        int r = cm_dlq_scan(d->scan, d->cfg->dlq_topic, dp, from, d->cfg->topic,
                            DLQ_SCAN_TIMEOUT_MS, on_dlq_seen, d, &end, err, sizeof(err));
        if (r < 0) {
            cmd_warn("dead-letter topic: %s", r == -ENOMEM ? strerror(ENOMEM) : err);
            return r;
        }
        if (end > d->dlq_next[dp])
            d->dlq_next[dp] = end;
    }
    for (size_t i = 0; i < n; i++) {
        struct part *p = &d->parts[ids[i]];
        if (!p->n_seen)
            continue;
        qsort(p->dlq_seen, p->n_seen, sizeof(*p->dlq_seen), cmp_i64);
        size_t k = 1;
        for (size_t j = 1; j < p->n_seen; j++)
            if (p->dlq_seen[j] != p->dlq_seen[k - 1])
                p->dlq_seen[k++] = p->dlq_seen[j];
        p->n_seen = k;
        cmd_info("partition %" PRId32 ": %zu dead letters past offset %" PRId64
                 " already on %s [%" PRId32 "]: not sent again",
                 p->id, k, p->pos, d->cfg->dlq_topic, p->dp);
    }
    return 0;
}

static void on_positions(int err, const struct cm_store_pos *pos, size_t n, void *ud)
{
    struct pos_req *pr = ud;
    struct daemon *d = pr->d;
    /* only the reply to the latest read counts, and only while syncing: an
     * older one would assign the partitions a second time */
    if (pr->gen != d->gen || d->phase != PH_SYNCING || d->stopping || !d->want) {
        free(pr->ids);
        free(pr);
        return;
    }
    if (err < 0) {
        cmd_warn("reading positions from Redis: %s", strerror(-err));
        free(pr->ids);
        free(pr);
        if (err != -ECONNRESET && err != -ETIMEDOUT)
            resync(d, "reading positions failed");
        return; /* else the reconnection resyncs */
    }
    for (size_t i = 0; i < n; i++) {
        struct part *p = part_get(d, pr->ids[i]);
        p->pos = pos[i].pos;
        p->next = pos[i].pos;
        p->mark_part = pos[i].dlq_part;
        p->mark_from = pos[i].dlq_from;
        p->dp = p->mark_part >= 0 && p->mark_part < d->n_dlq_parts ? p->mark_part
                                                                     : p->id % d->n_dlq_parts;
        p->n_seen = 0;
        p->assigning = 1;
    }
    int rb = dlq_read_back(d, pr->ids, n);
    for (size_t i = 0; i < n; i++)
        d->parts[pr->ids[i]].assigning = 0;
    if (rb < 0) {
        free(pr->ids);
        free(pr);
        resync(d, "reading back the dead-letter topic failed");
        return;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(d->want);
    for (size_t i = 0; i < n; i++) {
        struct part *p = &d->parts[pr->ids[i]];
        rd_kafka_topic_partition_t *tp = &l->elems[i];
        p->active = 1;
        p->fresh = 1;
        /* An absent position is 0: from the beginning (the log start may
         * have moved past 0). */
        tp->offset = p->pos > 0 ? p->pos : RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(d->rk, l);
    if (e)
        cmd_err("assigning %d partitions: %s", l->cnt, rd_kafka_err2str(e));
    rd_kafka_resume_partitions(d->rk, l); /* paused during an outage */
    rd_kafka_topic_partition_list_destroy(l);
    free(pr->ids);
    free(pr);
    if (e) {
        resync(d, "assign failed");
        return;
    }
    d->phase = PH_RUNNING;
    cmd_info("assigned %zu partitions from the positions in Redis", n);
    sd_notify(0, "READY=1\nSTATUS=running");
    event_active(d->kev, EV_READ, 0);
}

/* Reads the stored positions of the wanted partitions, then assigns. */
static void read_positions(struct daemon *d)
{
    if (!d->want || d->stopping || !cm_store_ready(d->st))
        return;
    if (d->prod && rd_kafka_outq_len(d->prod) > 0) {
        /* dead letters of abandoned batches still in flight: reading back
         * the topic before they land would send them again */
        timer_in(d->resync_timer, 20);
        return;
    }
    if (d->want->cnt == 0) {
        /* More daemons than partitions: idle, but up (systemd waits for READY). */
        rd_kafka_assign(d->rk, d->want);
        d->phase = PH_RUNNING;
        cmd_info("assigned 0 partitions: standing by");
        sd_notify(0, "READY=1\nSTATUS=running, no partitions assigned");
        return;
    }
    struct pos_req *pr = calloc(1, sizeof(*pr));
    if (pr)
        pr->ids = calloc((size_t)d->want->cnt, sizeof(*pr->ids));
    if (!pr || !pr->ids) {
        if (pr)
            free(pr);
        resync(d, "out of memory");
        return;
    }
    pr->d = d;
    pr->gen = ++d->gen; /* replies to earlier reads are now stale */
    pr->n = (size_t)d->want->cnt;
    for (int i = 0; i < d->want->cnt; i++) {
        pr->ids[i] = d->want->elems[i].partition;
        if (!part_get(d, pr->ids[i])) {
            free(pr->ids);
            free(pr);
            resync(d, "out of memory");
            return;
        }
    }
    int r = cm_store_get_positions(d->st, pr->ids, pr->n, on_positions, pr);
    if (r < 0) {
        free(pr->ids);
        free(pr);
        if (r != -ENOTCONN)
            resync(d, "reading positions failed");
    }
}

static void on_resync_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    read_positions(arg);
}

/* Drops everything held and starts over from Redis's positions, after a
 * backoff when resyncs follow each other without progress. */
static void resync(struct daemon *d, const char *why)
{
    drop_all(d);
    evtimer_del(d->resync_timer); /* at most one read of the positions pending */
    if (d->stopping) {
        maybe_finish_stop(d); /* nothing left in flight: close now */
        return;
    }
    if (!d->want)
        return;
    d->phase = PH_SYNCING;
    sd_notify(0, "STATUS=resynchronising from Redis");
    cmd_info("resynchronising from the positions in Redis (%s)", why);
    int ms = d->resync_backoff_ms;
    d->resync_backoff_ms = ms ? (ms * 2 > RESYNC_BACKOFF_MAX_MS ? RESYNC_BACKOFF_MAX_MS : ms * 2)
                              : 100;
    if (ms == 0) {
        read_positions(d);
        return;
    }
    timer_in(d->resync_timer, ms);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct daemon *d = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        cmd_info("group assigned %d partitions", parts->cnt);
        drop_all(d);
        if (d->want)
            rd_kafka_topic_partition_list_destroy(d->want);
        d->want = rd_kafka_topic_partition_list_copy(parts);
        if (d->stopping) {
            rd_kafka_assign(rk, parts); /* messages are dropped; close revokes */
            return;
        }
        d->phase = PH_SYNCING;
        d->resync_backoff_ms = 0;
        evtimer_del(d->resync_timer);
        read_positions(d); /* assigns when the positions arrive */
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
        cmd_info("group revoked %d partitions", parts->cnt);
    else
        cmd_warn("rebalance error: %s", rd_kafka_err2str(err));
    /* In-flight applies are abandoned: the next owner's CAS settles them.
     * Dead letters in flight land before the next owner reads them back. */
    drop_all(d);
    if (rd_kafka_flush(d->prod, DLQ_FLUSH_MS))
        cmd_warn("dead letters still in flight after %d s: the next owner may send them again",
                 DLQ_FLUSH_MS / 1000);
    if (d->want)
        d->want = (rd_kafka_topic_partition_list_destroy(d->want), NULL);
    d->phase = PH_IDLE;
    evtimer_del(d->resync_timer);
    rd_kafka_assign(rk, NULL);
    if (d->stopping)
        maybe_finish_stop(d);
}

/* ------------------------------------------------------------ consumer */

static void take_message(struct daemon *d, rd_kafka_message_t *m)
{
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            cmd_warn("consumer: %s%s%s", m->rkt ? rd_kafka_topic_name(m->rkt) : "",
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
        cmd_err("partition %" PRId32 ": Redis holds position %" PRId64
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
        cmd_warn("partition %" PRId32 ": offsets %" PRId64 "..%" PRId64
                 " are no longer in the topic (retention?) and were never folded",
                 m->partition, p->next, m->offset - 1);
    p->fresh = 0;
    if (p->n == p->cap) {
        size_t c = p->cap ? p->cap * 2 : 256;
        rd_kafka_message_t **q = realloc(p->q, c * sizeof(*q));
        if (!q) {
            rd_kafka_message_destroy(m);
            resync(d, "out of memory");
            return;
        }
        p->q = q;
        p->cap = c;
    }
    if (p->n == 0)
        p->since_ms = now_ms();
    p->q[p->n++] = m;
    p->next = m->offset + 1;
    d->buffered++;
    d->buffered_bytes += msg_bytes(m);
    if (p->n >= (size_t)d->cfg->batch_size && !p->b)
        schedule(d, 0);
}

static void on_kafka(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    (void)what;
    drain_pipe(fd);
    if (d->closing) {
        rd_kafka_message_t *m;
        while ((m = rd_kafka_consumer_poll(d->rk, 0)))
            rd_kafka_message_destroy(m);
        maybe_finish_stop(d);
        return;
    }
    if (d->stopping)
        return;
    int drained = 0;
    /* A bounded pass, so that Redis replies and timers get their turn. */
    for (int i = 0; i < 20000; i++) {
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
    schedule(d, d->capped);
}

/* The queue's wake-up comes only with messages: an idle consumer must still
 * poll within max.poll.interval.ms or librdkafka leaves the group. Not while
 * capped: that lasts while Redis is slow, and polling would take messages
 * past the bound. */
static void on_poll_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct daemon *d = arg;
    if (!d->capped && !d->stopping)
        event_active(d->kev, EV_READ, 0);
}

static void on_producer(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    (void)what;
    drain_pipe(fd);
    while (rd_kafka_poll(d->prod, 0) > 0)
        ;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    schedule(arg, 0);
}

/* ------------------------------------------------------------ store */

static void on_store(struct cm_store *s, int up, void *ud)
{
    struct daemon *d = ud;
    (void)s;
    if (!d->started) {
        if (!up)
            cmd_warn("%s; retrying", cm_store_errstr(s));
        else
            event_base_loopbreak(d->base); /* back to cmd_run: start the consumer */
        return;
    }
    if (!up) {
        cmd_warn("%s; partitions paused until Redis is back", cm_store_errstr(s));
        sd_notify(0, "STATUS=redis unavailable, partitions paused");
        drop_all(d);
        /* paused also when the outage starts during a resync: the partitions
         * may still be assigned from before it (principle 5) */
        if (d->want)
            rd_kafka_pause_partitions(d->rk, d->want);
        if (d->want)
            d->phase = PH_SYNCING;
        if (d->stopping)
            maybe_finish_stop(d);
        return;
    }
    cmd_info("redis connection ready");
    if (d->want && !d->stopping) {
        d->resync_backoff_ms = 0;
        resync(d, "redis reconnected");
    }
}

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
        cmd_info("%.0f events/s, %" PRIu64 " folded, %" PRIu64 " dead letters, %" PRIu64
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
    on_kafka(d->kpipe[0], EV_READ, d);
    if (d->closing) {
        if (!rd_kafka_consumer_closed(d->rk))
            timer_in(d->close_timer, 100);
    }
}

static void begin_close(struct daemon *d)
{
    if (d->closing)
        return;
    drop_all(d); /* abandons what did not finish in time */
    d->closing = 1;
    if (!d->rk) {
        event_base_loopbreak(d->base);
        return;
    }
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(d->rk, d->rkq);
    if (e) {
        cmd_warn("closing the consumer: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        rd_kafka_consumer_close(d->rk);
    }
    timer_in(d->close_timer, 10);
    timer_in(d->stop_timer, 10000); /* the close's own deadline */
}

/* Ends the loop once in-flight batches are done and the consumer is closed. */
static void maybe_finish_stop(struct daemon *d)
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
        cmd_warn("abandoning %zu unfinished batches (their positions stay in Redis)",
                 d->in_flight);
        begin_close(d);
        return;
    }
    cmd_warn("the consumer did not close in time");
    event_base_loopbreak(d->base);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    (void)what;
    if (d->stopping) {
        cmd_warn("second signal: stopping now");
        event_base_loopbreak(d->base);
        return;
    }
    cmd_info("signal %d: stopping", (int)sig);
    sd_notify(0, "STOPPING=1");
    d->stopping = 1;
    if (!d->started) {
        d->exit_code = 0;
        event_base_loopbreak(d->base);
        return;
    }
    /* Stop taking messages; let batches in flight finish within a bound. */
    for (size_t i = 0; i < d->n_parts; i++) {
        struct part *p = &d->parts[i];
        for (size_t j = 0; j < p->n; j++) {
            d->buffered_bytes -= msg_bytes(p->q[j]);
            rd_kafka_message_destroy(p->q[j]);
        }
        d->buffered -= p->n;
        p->n = 0;
    }
    timer_in(d->stop_timer, d->cfg->command_timeout_ms + 1000);
    maybe_finish_stop(d);
}

/* ------------------------------------------------------------ set-up */

/* A configuration from cfg: its properties, then nd defaults (each unless
 * cfg passes it through as rdkafka.<name>), then nf forced settings. When
 * strict, an rdkafka.<name> for a forced setting is an error (it would be
 * overridden without a word). */
static rd_kafka_conf_t *conf_build(const struct cm_config *cfg, const char *const (*defaults)[2],
                                   size_t nd, const char *const (*forced)[2], size_t nf,
                                   int strict, char *err, size_t errlen)
{
    for (size_t i = 0; strict && i < nf; i++)
        for (size_t k = 0; k < cfg->n_rdkafka; k++)
            if (!strcmp(cfg->rdkafka[k].key, forced[i][0])) {
                char where[300] = "";
                if (cfg->path && cfg->rdkafka[k].line > 0)
                    snprintf(where, sizeof(where), "%s:%d: ", cfg->path, cfg->rdkafka[k].line);
                snprintf(err, errlen, "%s[kafka] rdkafka.%s: circmond sets it itself%s", where,
                         forced[i][0],
                         !strcmp(forced[i][0], "group.id") ? " (use group_id)" : "");
                return NULL;
            }
    rd_kafka_conf_t *conf = cm_kafka_conf_new(cfg, err, errlen);
    if (!conf)
        return NULL;
    for (size_t i = 0; i < nd; i++)
        if (cm_kafka_conf_default(conf, cfg, defaults[i][0], defaults[i][1], err, errlen) < 0)
            goto fail;
    for (size_t i = 0; i < nf; i++)
        if (rd_kafka_conf_set(conf, forced[i][0], forced[i][1], err, errlen) !=
            RD_KAFKA_CONF_OK)
            goto fail;
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

rd_kafka_conf_t *cmd_consumer_conf(const struct cm_config *cfg, char *err, size_t errlen)
{
    static const char *const defaults[][2] = {
        {"client.id", "circmond"},
        {"partition.assignment.strategy", "range,roundrobin"},
        {"queued.min.messages", "200000"}, /* 1000000: no faster here, +80 MB RSS */
        {"fetch.wait.max.ms", "100"},
        /* mirrors the applied positions to the group's committed offsets,
         * for lag tools; never read back */
        {"enable.auto.commit", "true"},
    };
    /* Forced: Redis holds the positions; a reset must never skip events.
     * Only applied positions are stored for the commits. */
    const char *const forced[][2] = {
        {"group.id", cfg->group_id},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"},
        {"enable.partition.eof", "false"},
    };
    return conf_build(cfg, defaults, NELEM(defaults), forced, NELEM(forced), 1, err, errlen);
}

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
    return conf_build(cfg, defaults, NELEM(defaults), forced, NELEM(forced), 1, err, errlen);
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
    return conf_build(cfg, NULL, 0, forced, NELEM(forced), 0, err, errlen);
}

/* A client of kind from conf (taken in every case), or NULL, logged as what. */
static rd_kafka_t *client_new(rd_kafka_type_t kind, rd_kafka_conf_t *conf, const char *what)
{
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(kind, conf, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        cmd_err("kafka %s: %s", what, err);
    }
    return rk;
}

/* Wakes the loop through a non-blocking pipe whenever queue q goes from
 * empty to non-empty: cb then serves it. */
static int wake_on(struct daemon *d, rd_kafka_queue_t *q, int fds[2], struct event **ev,
                   event_callback_fn cb, const char *byte)
{
    if (make_pipe(fds) < 0 || !(*ev = event_new(d->base, fds[0], EV_READ | EV_PERSIST, cb, d)))
        return -ENOMEM;
    rd_kafka_queue_io_event_enable(q, fds[1], byte, 1);
    event_add(*ev, NULL);
    return 0;
}

/* The consumer, the dead-letter producer and reader; the first two wired
 * to the loop. */
static int kafka_setup(struct daemon *d)
{
    char err[512];
    rd_kafka_conf_t *conf = cmd_consumer_conf(d->cfg, err, sizeof(err));
    if (!conf) {
        cmd_err("kafka consumer configuration: %s", err);
        return -EINVAL;
    }
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_opaque(conf, d);
    if (!(d->rk = client_new(RD_KAFKA_CONSUMER, conf, "consumer")))
        return -EINVAL;
    rd_kafka_poll_set_consumer(d->rk);
    d->rkq = rd_kafka_queue_get_consumer(d->rk);
    if (wake_on(d, d->rkq, d->kpipe, &d->kev, on_kafka, "k") < 0)
        return -ENOMEM;

    if (!(conf = cmd_producer_conf(d->cfg, err, sizeof(err)))) {
        cmd_err("kafka producer configuration: %s", err);
        return -EINVAL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_dlq_delivery);
    rd_kafka_conf_set_opaque(conf, d);
    if (!(d->prod = client_new(RD_KAFKA_PRODUCER, conf, "producer")))
        return -EINVAL;
    d->pq = rd_kafka_queue_get_main(d->prod);
    if (wake_on(d, d->pq, d->ppipe, &d->pev, on_producer, "p") < 0)
        return -ENOMEM;

    if (!(conf = cmd_scanner_conf(d->cfg, err, sizeof(err)))) {
        cmd_err("kafka dead-letter reader configuration: %s", err);
        return -EINVAL;
    }
    if (!(d->scan = client_new(RD_KAFKA_CONSUMER, conf, "dead-letter reader")))
        return -EINVAL;
    return 0;
}

/* Waits (blocking) until the brokers answer and the topic exists, within
 * the start-up budget. */
/* The partition count of topic, or a negative Kafka error code. */
static int topic_partitions(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt)
        return -RD_KAFKA_RESP_ERR__FAIL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 5000);
    if (!e && md->topic_cnt == 1 && md->topics[0].err)
        e = md->topics[0].err;
    if (!e && (md->topic_cnt != 1 || md->topics[0].partition_cnt < 1))
        e = RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
    int n = e ? -(int)e : md->topics[0].partition_cnt;
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return n;
}

static int kafka_wait(struct daemon *d)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        const char *topic = d->cfg->topic;
        int n = topic_partitions(d->rk, topic);
        if (n > 0) {
            topic = d->cfg->dlq_topic;
            n = topic_partitions(d->rk, topic);
        }
        if (n > 0) {
            d->n_dlq_parts = n;
            if (!(d->dlq_next = malloc((size_t)n * sizeof(*d->dlq_next))))
                return -ENOMEM;
            for (int i = 0; i < n; i++)
                d->dlq_next[i] = -1;
            return 0;
        }
        rd_kafka_resp_err_t e = (rd_kafka_resp_err_t)-n;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 > STARTUP_BUDGET_MS || d->stopping) {
            cmd_err("kafka at %s, topic %s: %s; giving up after %d s", d->cfg->brokers, topic,
                    rd_kafka_err2str(e), STARTUP_BUDGET_MS / 1000);
            return -ETIMEDOUT;
        }
        cmd_warn("kafka at %s, topic %s: %s; retrying", d->cfg->brokers, topic,
                 rd_kafka_err2str(e));
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
    cmd_err("redis unreachable for %d s: %s", STARTUP_BUDGET_MS / 1000,
            cm_store_errstr(d->st));
    d->exit_code = 1;
    d->stopping = 1;
    event_base_loopbreak(d->base);
}

static void teardown(struct daemon *d)
{
    d->stopping = 1;
    drop_all(d); /* batches are abandoned: late callbacks only free them */
    if (d->prod) {
        rd_kafka_flush(d->prod, 5000); /* serves outstanding delivery reports */
        rd_kafka_purge(d->prod, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(d->prod, 0);
    }
    drop_all(d);
    d->st = cm_store_free(d->st); /* fails pending requests: their batches go */
    while (d->batches)
        batch_free(d->batches);
    for (size_t i = 0; i < d->n_parts; i++) {
        free(d->parts[i].q);
        free(d->parts[i].dlq_seen);
    }
    free(d->parts);
    free(d->dlq_next);
    if (d->want)
        rd_kafka_topic_partition_list_destroy(d->want);
    if (d->rkq)
        rd_kafka_queue_destroy(d->rkq);
    /* A consumer whose close did not finish (Kafka gone) would block
     * rd_kafka_destroy in another close without end: leave the group to the
     * session timeout instead. The reader never joined a group. */
    if (d->rk)
        rd_kafka_destroy_flags(d->rk, rd_kafka_consumer_closed(d->rk)
                                          ? 0
                                          : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    if (d->scan)
        rd_kafka_destroy_flags(d->scan, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    if (d->pq)
        rd_kafka_queue_destroy(d->pq);
    if (d->prod)
        rd_kafka_destroy(d->prod);
    struct event *evs[] = {d->kev, d->pev, d->sig_term, d->sig_int, d->flush_timer,
                           d->stats_timer, d->poll_timer, d->startup_timer, d->resync_timer, d->stop_timer,
                           d->close_timer};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        if (evs[i])
            event_free(evs[i]);
    for (int i = 0; i < 2; i++) {
        if (d->kpipe[i] >= 0)
            close(d->kpipe[i]);
        if (d->ppipe[i] >= 0)
            close(d->ppipe[i]);
    }
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
    d->kpipe[0] = d->kpipe[1] = d->ppipe[0] = d->ppipe[1] = -1;
    size_t cap = (size_t)cfg->batch_size * (size_t)cfg->max_in_flight * 4;
    d->max_buffered = cap < 20000 ? 20000 : cap;
    signal(SIGPIPE, SIG_IGN);
    const char *crash = getenv("CIRCMOND_TEST_CRASH_AFTER_APPLIES");
    if (crash && *crash) {
        d->crash_after = strtoull(crash, NULL, 10);
        cmd_warn("test hook: killing myself after %" PRIu64 " applies", d->crash_after);
    }
    crash = getenv("CIRCMOND_TEST_CRASH_AFTER_DLQ");
    if (crash && *crash) {
        d->crash_after_dlq = strtoull(crash, NULL, 10);
        cmd_warn("test hook: killing myself when the dead letters of %" PRIu64
                 " batches are delivered, before their applies",
                 d->crash_after_dlq);
    }

    if (!(d->base = event_base_new()) || !(d->dec = cm_decoder_new()) ||
        !(d->nm = cm_names_new()) || !(d->fc = cm_fold_ctx_new(cfg, d->nm))) {
        cmd_err("out of memory");
        teardown(d);
        return 1;
    }
    d->sig_term = evsignal_new(d->base, SIGTERM, on_signal, d);
    d->sig_int = evsignal_new(d->base, SIGINT, on_signal, d);
    d->flush_timer = event_new(d->base, -1, EV_PERSIST, on_flush, d);
    d->stats_timer = event_new(d->base, -1, EV_PERSIST, on_stats, d);
    d->poll_timer = event_new(d->base, -1, EV_PERSIST, on_poll_timer, d);
    d->startup_timer = evtimer_new(d->base, on_startup_timeout, d);
    d->resync_timer = evtimer_new(d->base, on_resync_timer, d);
    d->stop_timer = evtimer_new(d->base, on_stop_timer, d);
    d->close_timer = evtimer_new(d->base, on_close_timer, d);
    if (!d->sig_term || !d->sig_int || !d->flush_timer || !d->stats_timer || !d->poll_timer ||
        !d->startup_timer || !d->resync_timer || !d->stop_timer || !d->close_timer) {
        cmd_err("out of memory");
        teardown(d);
        return 1;
    }
    event_add(d->sig_term, NULL);
    event_add(d->sig_int, NULL);

    /* Redis first, within the start-up budget. */
    const char *where = cfg->redis_unix_socket && *cfg->redis_unix_socket
                            ? cfg->redis_unix_socket
                            : cfg->redis_host;
    cmd_info("connecting to redis at %s", where);
    if (!(d->st = cm_store_new(d->base, cfg, on_store, d))) {
        cmd_err("out of memory");
        teardown(d);
        return 1;
    }
    timer_in(d->startup_timer, STARTUP_BUDGET_MS);
    event_base_dispatch(d->base);
    evtimer_del(d->startup_timer);
    if (d->stopping) {
        int rc = d->exit_code;
        teardown(d);
        return rc;
    }
    cmd_info("redis ready; connecting to kafka at %s", cfg->brokers);

    if (kafka_setup(d) < 0) {
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
        cmd_err("subscribing to %s: %s", cfg->topic, rd_kafka_err2str(e));
        teardown(d);
        return 1;
    }
    d->started = 1;
    cmd_info("consuming %s as group %s (batch_size %d, max_in_flight %d)", cfg->topic,
             cfg->group_id, cfg->batch_size, cfg->max_in_flight);
    timer_in(d->flush_timer, FLUSH_TICK_MS);
    timer_in(d->stats_timer, STATS_S * 1000);
    timer_in(d->poll_timer, POLL_TICK_MS);
    clock_gettime(CLOCK_MONOTONIC, &d->last_stats);
    event_active(d->kev, EV_READ, 0);
    event_base_dispatch(d->base);
    cmd_info("stopped: %" PRIu64 " events folded, %" PRIu64 " dead letters", d->n_folded,
             d->n_dlq);
    teardown(d);
    return 0;
}
