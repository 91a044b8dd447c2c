/* dlq.c - dead letters with the owner epoch: produced, scanned, deduplicated, read back off the loop. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/types.h>

#include "circmon/clock.h"
#include "circmon/decimal.h"
#include "circmon/dlq.h"
#include "circmon/kafka.h"
#include "circmon/log.h"

/* ------------------------------------------------------------- produce */

int cm_dlq_produce(rd_kafka_t *rk, const char *topic, int32_t dlq_partition, const void *key,
                   size_t keylen, const void *value, size_t len, const char *reason,
                   const char *src_topic, int32_t partition, int64_t offset, int64_t epoch,
                   void *msg_opaque)
{
    char pbuf[16], obuf[24], ebuf[24];
    if (!rk || !topic || !reason || !src_topic)
        return -EINVAL;
    snprintf(pbuf, sizeof(pbuf), "%" PRId32, partition);
    snprintf(obuf, sizeof(obuf), "%" PRId64, offset);
    snprintf(ebuf, sizeof(ebuf), "%" PRId64, epoch);
    rd_kafka_headers_t *h = rd_kafka_headers_new(5);
    if (!h)
        return -ENOBUFS;
    if (rd_kafka_header_add(h, CM_DLQ_HDR_REASON, -1, reason, -1) ||
        rd_kafka_header_add(h, CM_DLQ_HDR_SRC_TOPIC, -1, src_topic, -1) ||
        rd_kafka_header_add(h, CM_DLQ_HDR_SRC_PARTITION, -1, pbuf, -1) ||
        rd_kafka_header_add(h, CM_DLQ_HDR_SRC_OFFSET, -1, obuf, -1) ||
        (epoch > 0 && rd_kafka_header_add(h, CM_DLQ_HDR_OWNER_EPOCH, -1, ebuf, -1))) {
        rd_kafka_headers_destroy(h);
        return -EINVAL;
    }
    /* RD_KAFKA_V_HEADERS: the headers belong to the message once queued */
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(dlq_partition),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, keylen),
        RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_HEADERS(h),
        RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
    if (e)
        rd_kafka_headers_destroy(h);
    switch (e) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return 0;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return -ENOBUFS;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        return -EMSGSIZE;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
        return -ENOENT;
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return -EINVAL;
    default:
        return -EIO;
    }
}

/* ---------------------------------------------------------------- scan */

/* A decimal header value as an int64; -1 when absent or not a number >= 0. */
static int64_t header_i64(rd_kafka_headers_t *h, const char *name)
{
    const void *v;
    size_t len;
    uint64_t x;
    if (rd_kafka_header_get_last(h, name, &v, &len) || !v ||
        cm_decimal_u64(v, len, INT64_MAX, &x))
        return -1;
    return (int64_t)x;
}

/* The record of m when it is a dead letter of src_topic (stl bytes). */
static int rec_of(rd_kafka_message_t *m, const char *src_topic, size_t stl,
                  struct cm_dlq_rec *r)
{
    rd_kafka_headers_t *h = NULL;
    const void *t, *why;
    size_t tl, wl;
    if (rd_kafka_message_headers(m, &h) ||
        rd_kafka_header_get_last(h, CM_DLQ_HDR_SRC_TOPIC, &t, &tl) || tl != stl ||
        (stl && memcmp(t, src_topic, stl)))
        return 0;
    int64_t p = header_i64(h, CM_DLQ_HDR_SRC_PARTITION);
    int64_t o = header_i64(h, CM_DLQ_HDR_SRC_OFFSET);
    if (p < 0 || p > INT32_MAX || o < 0)
        return 0;
    if (rd_kafka_header_get_last(h, CM_DLQ_HDR_REASON, &why, &wl) || !why) {
        why = "";
        wl = 0;
    }
    int64_t ep = header_i64(h, CM_DLQ_HDR_OWNER_EPOCH);
    r->partition = (int32_t)p;
    r->offset = o;
    r->epoch = ep > 0 ? ep : -1;
    r->dlq_partition = m->partition;
    r->dlq_offset = m->offset;
    r->reason = why;
    r->reason_len = wl;
    return 1;
}

int cm_dlq_scan_recs(rd_kafka_t *rk, const char *dlq_topic, int32_t dlq_partition,
                     int64_t from, const char *src_topic, int timeout_ms,
                     const atomic_int *cancel, cm_dlq_rec_cb cb, void *ud, int64_t *end,
                     char *err, size_t errlen)
{
    int64_t lo, hi, deadline = cm_clock_ms() + timeout_ms;
    rd_kafka_resp_err_t e =
        rd_kafka_query_watermark_offsets(rk, dlq_topic, dlq_partition, &lo, &hi, timeout_ms);
    if (e) {
        snprintf(err, errlen, "%s [%" PRId32 "]: watermarks: %s", dlq_topic, dlq_partition,
                 rd_kafka_err2str(e));
        return e == RD_KAFKA_RESP_ERR__TIMED_OUT ? -ETIMEDOUT : -EIO;
    }
    *end = hi;
    if (from < lo)
        from = lo;
    if (from >= hi)
        return 0;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    if (!l) {
        snprintf(err, errlen, "out of memory for a partition list");
        return -ENOMEM;
    }
    rd_kafka_topic_partition_list_add(l, dlq_topic, dlq_partition)->offset = from;
    e = rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        snprintf(err, errlen, "%s [%" PRId32 "]: assign: %s", dlq_topic, dlq_partition,
                 rd_kafka_err2str(e));
        return -EIO;
    }
    size_t stl = strlen(src_topic);
    int r = 0;
    int64_t next = from;
    while (!r && next < hi) {
        if (cancel && atomic_load(cancel)) {
            snprintf(err, errlen, "%s [%" PRId32 "]: read-back cancelled", dlq_topic,
                     dlq_partition);
            r = -ECANCELED;
            break;
        }
        int64_t left = deadline - cm_clock_ms();
        if (left <= 0) {
            snprintf(err, errlen,
                     "%s [%" PRId32 "]: stuck at offset %" PRId64 " of %" PRId64 " for %d ms",
                     dlq_topic, dlq_partition, next, hi, timeout_ms);
            r = -ETIMEDOUT;
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, (int)(left < 100 ? left : 100));
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* the end, past any gap (compaction, control records) */
            if (m->partition == dlq_partition && m->offset >= hi)
                next = hi;
        } else if (m->err) {
            snprintf(err, errlen, "%s [%" PRId32 "]: %s", dlq_topic, dlq_partition,
                     rd_kafka_message_errstr(m));
            r = -EIO;
        } else if (m->partition == dlq_partition && m->offset >= next) {
            next = m->offset + 1;
            deadline = cm_clock_ms() + timeout_ms; /* progress: a long range is no failure */
            struct cm_dlq_rec rec;
            if (rec_of(m, src_topic, stl, &rec))
                r = cb(&rec, ud);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_resp_err_t ue = rd_kafka_assign(rk, NULL);
    if (ue && !r) {
        snprintf(err, errlen, "%s [%" PRId32 "]: unassign: %s", dlq_topic, dlq_partition,
                 rd_kafka_err2str(ue));
        r = -EIO;
    }
    return r;
}

/* --------------------------------------------------------------- dedupe */

int cm_dlq_set_add(struct cm_dlq_set *s, const struct cm_dlq_rec *r)
{
    if (s->n == s->cap) {
        size_t c = s->cap ? s->cap * 2 : 64;
        struct cm_dlq_entry *e = realloc(s->e, c * sizeof(*e));
        if (!e)
            return -ENOMEM;
        s->e = e;
        s->cap = c;
    }
    char *why = malloc(r->reason_len + 1);
    if (!why)
        return -ENOMEM;
    if (r->reason_len)
        memcpy(why, r->reason, r->reason_len);
    why[r->reason_len] = '\0';
    s->e[s->n++] = (struct cm_dlq_entry){.partition = r->partition,
                                         .offset = r->offset,
                                         .epoch = r->epoch,
                                         .dlq_partition = r->dlq_partition,
                                         .dlq_offset = r->dlq_offset,
                                         .reason = why,
                                         .copies = 1};
    s->records++;
    return 0;
}

/* By source, then by epoch downwards, then as read (dead-letter partition
 * and offset): the first of each source is the one kept. */
static int cmp_entry(const void *a, const void *b)
{
    const struct cm_dlq_entry *x = a, *y = b;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    if (x->epoch != y->epoch)
        return x->epoch > y->epoch ? -1 : 1;
    if (x->dlq_partition != y->dlq_partition)
        return x->dlq_partition < y->dlq_partition ? -1 : 1;
    return (x->dlq_offset > y->dlq_offset) - (x->dlq_offset < y->dlq_offset);
}

void cm_dlq_set_finish(struct cm_dlq_set *s)
{
    if (!s->n)
        return;
    qsort(s->e, s->n, sizeof(*s->e), cmp_entry);
    size_t k = 0;
    for (size_t i = 1; i < s->n; i++) {
        struct cm_dlq_entry *keep = &s->e[k], *x = &s->e[i];
        if (x->partition == keep->partition && x->offset == keep->offset) {
            keep->copies++;
            if (x->epoch >= 0 && x->epoch < keep->epoch)
                s->lower++;
            else
                s->not_lower++;
            free(x->reason);
            continue;
        }
        s->e[++k] = *x;
    }
    s->n = k + 1;
}

void cm_dlq_set_free(struct cm_dlq_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->e[i].reason);
    free(s->e);
    memset(s, 0, sizeof(*s));
}

/* --------------------------------------------------------------- reader */

struct job {
    uint64_t tag;
    int32_t *dps;
    int64_t *froms;
    size_t n;
    struct cm_dlq_want *want; /* sorted by partition */
    size_t nw;
    atomic_int cancel;
    struct cm_dlq_result *res;
    struct job *next; /* in the done list */
};

struct cm_dlq_reader {
    rd_kafka_t *rk; /* used by the thread only */
    char *dlq_topic, *src_topic;
    int timeout_ms;
    int pipe[2];
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    int stop;
    struct job *queued, *running;
    struct job *done, *done_tail;
    size_t n_done;
};

static void job_free(struct job *j)
{
    if (!j)
        return;
    free(j->dps);
    free(j->froms);
    free(j->want);
    cm_dlq_result_free(j->res);
    free(j);
}

struct cm_dlq_result *cm_dlq_result_free(struct cm_dlq_result *res)
{
    if (res) {
        free(res->seen);
        free(res->dps);
        free(res->ends);
        free(res);
    }
    return NULL;
}

static int cmp_want(const void *a, const void *b)
{
    const struct cm_dlq_want *x = a, *y = b;
    return (x->partition > y->partition) - (x->partition < y->partition);
}

/* Keeps r when the job wants it. */
static int on_rec(const struct cm_dlq_rec *r, void *ud)
{
    struct job *j = ud;
    struct cm_dlq_want key = {.partition = r->partition};
    const struct cm_dlq_want *w = bsearch(&key, j->want, j->nw, sizeof(key), cmp_want);
    if (!w || r->offset < w->pos)
        return 0;
    struct cm_dlq_result *res = j->res;
    if (res->n_seen >= CM_DLQ_READ_MAX_RECS)
        return -E2BIG;
    /* grows by doubling up to the bound: n_seen is its own capacity marker */
    if ((res->n_seen & (res->n_seen - 1)) == 0) {
        size_t c = res->n_seen ? res->n_seen * 2 : 1;
        struct cm_dlq_seen *s = realloc(res->seen, c * sizeof(*s));
        if (!s)
            return -ENOMEM;
        res->seen = s;
    }
    res->seen[res->n_seen++] =
        (struct cm_dlq_seen){.partition = r->partition, .offset = r->offset, .epoch = r->epoch};
    return 0;
}

static void run_job(struct cm_dlq_reader *r, struct job *j)
{
    struct cm_dlq_result *res = j->res;
    for (size_t i = 0; i < j->n && !res->err; i++) {
        int64_t end = 0;
        int e = cm_dlq_scan_recs(r->rk, r->dlq_topic, j->dps[i], j->froms[i], r->src_topic,
                                 r->timeout_ms, &j->cancel, on_rec, j, &end, res->errstr,
                                 sizeof(res->errstr));
        if (e == -E2BIG)
            snprintf(res->errstr, sizeof(res->errstr),
                     "%s [%" PRId32 "]: more than %zu dead letters past the marks", r->dlq_topic,
                     j->dps[i], CM_DLQ_READ_MAX_RECS);
        else if (e == -ENOMEM)
            snprintf(res->errstr, sizeof(res->errstr),
                     "%s [%" PRId32 "]: out of memory keeping %zu dead letters read back",
                     r->dlq_topic, j->dps[i], res->n_seen);
        res->err = e < 0 ? e : 0;
        res->ends[i] = end;
    }
}

/* Moves j to the done list and wakes the loop. Under mu. */
static void job_done(struct cm_dlq_reader *r, struct job *j)
{
    j->next = NULL;
    if (r->done_tail)
        r->done_tail->next = j;
    else
        r->done = j;
    r->done_tail = j;
    r->n_done++;
    ssize_t w = write(r->pipe[1], "r", 1);
    (void)w; /* a full pipe is awake already */
}

static void *reader_main(void *arg)
{
    struct cm_dlq_reader *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->stop && !r->queued)
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->stop)
            break;
        struct job *j = r->queued;
        r->queued = NULL;
        r->running = j;
        pthread_mutex_unlock(&r->mu);
        if (atomic_load(&j->cancel)) {
            j->res->err = -ECANCELED;
            snprintf(j->res->errstr, sizeof(j->res->errstr), "read-back cancelled");
        } else {
            run_job(r, j);
        }
        pthread_mutex_lock(&r->mu);
        r->running = NULL;
        job_done(r, j);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

struct cm_dlq_reader *cm_dlq_reader_new(rd_kafka_conf_t *conf, const char *dlq_topic,
                                        const char *src_topic, int timeout_ms, char *err,
                                        size_t errlen)
{
    struct cm_dlq_reader *r = calloc(1, sizeof(*r));
    if (!r) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "out of memory for the dead-letter reader");
        return NULL;
    }
    r->pipe[0] = r->pipe[1] = -1;
    r->timeout_ms = timeout_ms;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    char why[512];
    if (!(r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why)))) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "dead-letter reader: %s", why);
        return cm_dlq_reader_free(r);
    }
    if (!(r->dlq_topic = strdup(dlq_topic)) || !(r->src_topic = strdup(src_topic))) {
        snprintf(err, errlen, "out of memory for the dead-letter reader");
        return cm_dlq_reader_free(r);
    }
    if (pipe(r->pipe) < 0) {
        snprintf(err, errlen, "dead-letter reader: pipe: %s", strerror(errno));
        return cm_dlq_reader_free(r);
    }
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(r->pipe[i], F_GETFL);
        if (fl < 0 || fcntl(r->pipe[i], F_SETFL, fl | O_NONBLOCK) < 0 ||
            fcntl(r->pipe[i], F_SETFD, FD_CLOEXEC) < 0) {
            snprintf(err, errlen, "dead-letter reader: pipe flags: %s", strerror(errno));
            return cm_dlq_reader_free(r);
        }
    }
    int e = pthread_create(&r->thread, NULL, reader_main, r);
    if (e) {
        snprintf(err, errlen, "dead-letter reader: thread: %s", strerror(e));
        return cm_dlq_reader_free(r);
    }
    r->started = 1;
    return r;
}

struct cm_dlq_reader *cm_dlq_reader_free(struct cm_dlq_reader *r)
{
    if (!r)
        return NULL;
    if (r->started) {
        pthread_mutex_lock(&r->mu);
        r->stop = 1;
        if (r->running)
            atomic_store(&r->running->cancel, 1);
        pthread_cond_signal(&r->cv);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->thread, NULL);
    }
    job_free(r->queued);
    while (r->done) {
        struct job *j = r->done;
        r->done = j->next;
        job_free(j);
    }
    /* it never joined a group: no close to wait for */
    if (r->rk && cm_kafka_destroy_within(r->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE,
                                         CM_KAFKA_DESTROY_MS) == -ETIMEDOUT)
        cm_log_warn("the dead-letter reader's Kafka client did not shut down within %d ms "
                    "(Kafka gone?): left to the exit", CM_KAFKA_DESTROY_MS);
    for (int i = 0; i < 2; i++)
        if (r->pipe[i] >= 0)
            close(r->pipe[i]);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r->dlq_topic);
    free(r->src_topic);
    free(r);
    return NULL;
}

int cm_dlq_reader_fd(const struct cm_dlq_reader *r)
{
    return r->pipe[0];
}

int cm_dlq_reader_submit(struct cm_dlq_reader *r, uint64_t tag, const int32_t *dps,
                         const int64_t *froms, size_t n, const struct cm_dlq_want *want,
                         size_t nw)
{
    if (n == 0)
        return -EINVAL;
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->tag = tag;
    j->n = n;
    j->nw = nw;
    atomic_init(&j->cancel, 0);
    j->dps = malloc(n * sizeof(*j->dps));
    j->froms = malloc(n * sizeof(*j->froms));
    j->want = malloc((nw ? nw : 1) * sizeof(*j->want));
    j->res = calloc(1, sizeof(*j->res));
    if (j->res) {
        j->res->tag = tag;
        j->res->dps = malloc(n * sizeof(*j->res->dps));
        j->res->ends = calloc(n, sizeof(*j->res->ends));
        j->res->n_dps = n;
    }
    if (!j->dps || !j->froms || !j->want || !j->res || !j->res->dps || !j->res->ends) {
        job_free(j);
        return -ENOMEM;
    }
    memcpy(j->dps, dps, n * sizeof(*dps));
    memcpy(j->res->dps, dps, n * sizeof(*dps));
    memcpy(j->froms, froms, n * sizeof(*froms));
    if (nw)
        memcpy(j->want, want, nw * sizeof(*want));
    qsort(j->want, nw, sizeof(*j->want), cmp_want);

    pthread_mutex_lock(&r->mu);
    /* a replaced queued job becomes a result of its own */
    size_t will = r->n_done + (r->queued != NULL) + (r->running != NULL);
    if (will >= CM_DLQ_READER_MAX_DONE) {
        pthread_mutex_unlock(&r->mu);
        job_free(j);
        return -EBUSY;
    }
    if (r->running)
        atomic_store(&r->running->cancel, 1);
    if (r->queued) {
        struct job *old = r->queued;
        old->res->err = -ECANCELED;
        snprintf(old->res->errstr, sizeof(old->res->errstr), "read-back superseded");
        job_done(r, old);
    }
    r->queued = j;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return 0;
}

void cm_dlq_reader_cancel(struct cm_dlq_reader *r)
{
    pthread_mutex_lock(&r->mu);
    if (r->running)
        atomic_store(&r->running->cancel, 1);
    if (r->queued)
        atomic_store(&r->queued->cancel, 1);
    pthread_mutex_unlock(&r->mu);
}

struct cm_dlq_result *cm_dlq_reader_take(struct cm_dlq_reader *r)
{
    char buf[64];
    while (read(r->pipe[0], buf, sizeof(buf)) > 0)
        ;
    pthread_mutex_lock(&r->mu);
    struct job *j = r->done;
    if (j) {
        r->done = j->next;
        if (!r->done)
            r->done_tail = NULL;
        r->n_done--;
    }
    pthread_mutex_unlock(&r->mu);
    if (!j)
        return NULL;
    struct cm_dlq_result *res = j->res;
    j->res = NULL;
    job_free(j);
    return res;
}

int cm_dlq_reader_busy(const struct cm_dlq_reader *r)
{
    struct cm_dlq_reader *w = (struct cm_dlq_reader *)r; /* the mutex only */
    pthread_mutex_lock(&w->mu);
    int busy = w->queued || w->running;
    pthread_mutex_unlock(&w->mu);
    return busy;
}
