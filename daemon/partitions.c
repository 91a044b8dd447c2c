/* partitions.c - circmond's partitions: assignment from Redis's positions, resync, rebalance, Redis up/down. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "daemon.h"
#include "http.h"
#include "notify.h"

struct part *cmd_part_get(struct daemon *d, int32_t id)
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

void cmd_drop_all(struct daemon *d)
{
    d->gen++;
    cmd_batch_free_done(d);
    for (size_t i = 0; i < d->n_parts; i++) {
        struct part *p = &d->parts[i];
        if (p->b)
            cmd_batch_abandon(p->b);
        cmd_intake_drop_queue(d, p);
        p->active = 0;
    }
    if (d->capped && d->kev) {
        d->capped = 0;
        event_active(d->kev, EV_READ, 0);
    }
}

void cmd_mirror_position(struct daemon *d, const struct part *p)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    if (!l)
        return;
    rd_kafka_topic_partition_list_add(l, d->cfg->topic, p->id)->offset = p->pos;
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(d->rk, l);
    if (e)
        cm_log_debug("partition %" PRId32 ": offset %" PRId64 " not stored for commit: %s",
                     p->id, p->pos, rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
}

struct pos_req {
    struct daemon *d;
    uint64_t gen;
    int32_t *ids;
    size_t n;
};

static void pos_req_free(struct pos_req *pr)
{
    free(pr->ids);
    free(pr);
}

/* The dead letters are read back: assign the partitions from their
 * positions. */
static void on_read_back(struct daemon *d, int err, void *ud)
{
    struct pos_req *pr = ud;
    if (pr->gen != d->gen || d->phase != PH_SYNCING || d->stopping || !d->want) {
        pos_req_free(pr); /* overtaken while reading */
        return;
    }
    if (err < 0) {
        pos_req_free(pr);
        cmd_resync(d, "reading back the dead-letter topic failed");
        return;
    }
    size_t n = pr->n;
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
        cm_log_err("assigning %d partitions: %s", l->cnt, rd_kafka_err2str(e));
    /* paused during an outage; a partition that stays paused would never
     * deliver again */
    rd_kafka_resp_err_t er = e ? e : rd_kafka_resume_partitions(d->rk, l);
    for (int i = 0; !er && i < l->cnt; i++)
        er = l->elems[i].err;
    if (!e && er)
        cm_log_err("resuming %d partitions: %s", l->cnt, rd_kafka_err2str(er));
    rd_kafka_topic_partition_list_destroy(l);
    pos_req_free(pr);
    if (e || er) {
        cmd_resync(d, e ? "assign failed" : "resume failed");
        return;
    }
    d->phase = PH_RUNNING;
    cm_log_info("assigned %zu partitions from the positions in Redis", n);
    cmd_notify_ready(d, "ready: consuming the assigned partitions");
    event_active(d->kev, EV_READ, 0);
}

static void on_positions(int err, const struct cm_store_pos *pos, size_t n, void *ud)
{
    struct pos_req *pr = ud;
    struct daemon *d = pr->d;
    /* only the reply to the latest read counts, and only while syncing: an
     * older one would assign the partitions a second time */
    if (pr->gen != d->gen || d->phase != PH_SYNCING || d->stopping || !d->want) {
        pos_req_free(pr);
        return;
    }
    if (err == -ESTALE) { /* the stored layout: no retry mends it */
        cm_log_err("%s; stopping", cm_store_errstr(d->st));
        pos_req_free(pr);
        cmd_fatal_stop(d);
        return;
    }
    if (err < 0) {
        cm_log_warn("reading positions from Redis: %s", strerror(-err));
        pos_req_free(pr);
        if (err != -ECONNRESET && err != -ETIMEDOUT)
            cmd_resync(d, "reading positions failed");
        return; /* else the reconnection resyncs */
    }
    for (size_t i = 0; i < n; i++) {
        struct part *p = cmd_part_get(d, pr->ids[i]);
        p->pos = pos[i].pos;
        p->next = pos[i].pos;
        cmd_dlq_assigning(d, p, &pos[i]);
    }
    cmd_dlq_read_back(d, pr->ids, n, on_read_back, pr);
}

/* Reads the stored positions of the wanted partitions, then assigns. */
static void read_positions(struct daemon *d)
{
    if (!d->want || d->stopping || !cm_store_ready(d->st))
        return;
    if (cmd_dlq_busy(d)) {
        /* dead letters of abandoned batches still in flight: reading back
         * the topic before they land would send them again */
        cmd_timer_in(d->resync_timer, 20);
        return;
    }
    if (d->want->cnt == 0) {
        /* More daemons than partitions: idle, but up (systemd waits for READY). */
        rd_kafka_resp_err_t e = rd_kafka_assign(d->rk, d->want);
        if (e) {
            cm_log_err("assigning 0 partitions: %s", rd_kafka_err2str(e));
            cmd_resync(d, "assign failed");
            return;
        }
        d->phase = PH_RUNNING;
        cm_log_info("assigned 0 partitions: standing by");
        cmd_notify_ready(d, "ready: no partitions assigned, standing by");
        return;
    }
    struct pos_req *pr = calloc(1, sizeof(*pr));
    if (pr)
        pr->ids = calloc((size_t)d->want->cnt, sizeof(*pr->ids));
    if (!pr || !pr->ids) {
        if (pr)
            free(pr);
        cm_log_err("out of memory reading the positions of %d partitions", d->want->cnt);
        cmd_resync(d, "out of memory");
        return;
    }
    pr->d = d;
    pr->gen = ++d->gen; /* replies to earlier reads are now stale */
    pr->n = (size_t)d->want->cnt;
    for (int i = 0; i < d->want->cnt; i++) {
        pr->ids[i] = d->want->elems[i].partition;
        if (!cmd_part_get(d, pr->ids[i])) {
            pos_req_free(pr);
            cm_log_err("out of memory for the table of partitions");
            cmd_resync(d, "out of memory");
            return;
        }
    }
    int r = cm_store_take_positions(d->st, pr->ids, pr->n, on_positions, pr);
    if (r < 0) {
        pos_req_free(pr);
        if (r != -ENOTCONN)
            cmd_resync(d, "reading positions failed");
    }
}

void cmd_on_resync_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    read_positions(arg);
}

void cmd_resync(struct daemon *d, const char *why)
{
    cmd_drop_all(d);
    evtimer_del(d->resync_timer); /* at most one read of the positions pending */
    if (d->stopping) {
        cmd_maybe_finish_stop(d); /* nothing left in flight: close now */
        return;
    }
    if (!d->want)
        return;
    d->phase = PH_SYNCING;
    cm_counter_add(d->c_resyncs, 1);
    cmd_notify_status(d, "resynchronising from the positions in Redis");
    cm_log_info("resynchronising from the positions in Redis (%s)", why);
    int ms = d->resync_backoff_ms;
    d->resync_backoff_ms = ms ? (ms * 2 > RESYNC_BACKOFF_MAX_MS ? RESYNC_BACKOFF_MAX_MS : ms * 2)
                              : 100;
    if (ms == 0) {
        read_positions(d);
        return;
    }
    cmd_timer_in(d->resync_timer, ms);
}

void cmd_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct daemon *d = opaque;
    cmd_http_rebalance(d);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        char sn[16];
        snprintf(sn, sizeof(sn), "%d", parts->cnt);
        const struct cm_log_field f[] = {{"CIRCMON_PARTITIONS", sn}, {"CIRCMON_REBALANCE", "assign"}};
        cm_log_ev(CM_LOG_INFO, CM_LOGID_REBALANCE, f, NELEM(f), "group assigned %d partitions",
                  parts->cnt);
        cmd_drop_all(d);
        if (d->want)
            rd_kafka_topic_partition_list_destroy(d->want);
        d->want = rd_kafka_topic_partition_list_copy(parts);
        if (d->stopping) {
            /* messages are dropped; close revokes */
            rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts);
            if (e)
                cm_log_warn("assigning %d partitions while stopping: %s", parts->cnt,
                            rd_kafka_err2str(e));
            return;
        }
        d->phase = PH_SYNCING;
        d->resync_backoff_ms = 0;
        evtimer_del(d->resync_timer);
        read_positions(d); /* assigns when the positions arrive */
        return;
    }
    char sn[16];
    snprintf(sn, sizeof(sn), "%d", parts->cnt);
    const struct cm_log_field f[] = {
        {"CIRCMON_PARTITIONS", sn},
        {"CIRCMON_REBALANCE", err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS ? "revoke" : "error"}};
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
        cm_log_ev(CM_LOG_INFO, CM_LOGID_REBALANCE, f, NELEM(f), "group revoked %d partitions",
                  parts->cnt);
    else
        cm_log_ev(CM_LOG_WARNING, CM_LOGID_REBALANCE, f, NELEM(f), "rebalance error: %s",
                  rd_kafka_err2str(err));
    /* In-flight applies are abandoned: the next owner's CAS settles them.
     * Dead letters in flight land before the next owner reads them back. */
    cmd_drop_all(d);
    if (d->want)
        d->want = (rd_kafka_topic_partition_list_destroy(d->want), NULL);
    d->phase = PH_IDLE;
    evtimer_del(d->resync_timer);
    cmd_dlq_revoke(d); /* rd_kafka_assign(NULL) now or from the loop; never blocks */
}

/* The largest value a listpack bucket holds at Redis's default is 64 B;
 * packed states are ~190 B (README, State layout). */
#define LISTPACK_VALUE_WANTED 1024

static void on_listpack_limits(int err, long long value, long long entries, void *ud)
{
    struct daemon *d = ud;
    if (err) {
        cm_log_info("%s: cannot tell whether state buckets stay compact (README, State layout)",
                    cm_store_errstr(d->st));
        return;
    }
    if (value < LISTPACK_VALUE_WANTED)
        cm_log_warn("redis hash-max-listpack-value is %lld: a state bucket holding a state "
                    "longer than that becomes a hash table (correct, but about the memory of "
                    "one key per migrant); set hash-max-listpack-value %d in redis.conf "
                    "(README, State layout)",
                    value, LISTPACK_VALUE_WANTED);
    if (entries < 64)
        cm_log_warn("redis hash-max-listpack-entries is %lld: state buckets of more fields become "
                    "hash tables; raise it to 128 or give [redis] state_buckets more buckets",
                    entries);
}

void cmd_on_store(struct cm_store *s, int up, void *ud)
{
    struct daemon *d = ud;
    cmd_http_redis(d, up);
    if (up && d->cfg->state_buckets > 0 && !d->listpack_checked &&
        cm_store_get_listpack_limits(s, on_listpack_limits, d) == 0)
        d->listpack_checked = 1; /* once per process: a warning, not a state */
    if (!d->started) {
        if (!up)
            cm_log_warn("%s; retrying", cm_store_errstr(s));
        else
            event_base_loopbreak(d->base); /* back to cmd_run: start the consumer */
        return;
    }
    if (!up) {
        cm_log_ev(CM_LOG_WARNING, CM_LOGID_REDIS_DOWN, NULL, 0,
                  "%s; partitions paused until Redis is back", cm_store_errstr(s));
        cmd_notify_redis(d, 0);
        cmd_drop_all(d);
        /* paused also when the outage starts during a resync: the partitions
         * may still be assigned from before it (principle 5) */
        if (d->want) {
            rd_kafka_resp_err_t e = rd_kafka_pause_partitions(d->rk, d->want);
            if (e)
                cm_log_warn("pausing %d partitions: %s (their messages are dropped until"
                            " Redis is back)",
                            d->want->cnt, rd_kafka_err2str(e));
            d->phase = PH_SYNCING;
        }
        if (d->stopping)
            cmd_maybe_finish_stop(d);
        return;
    }
    cm_log_ev(CM_LOG_INFO, CM_LOGID_REDIS_UP, NULL, 0, "redis connection ready");
    cmd_notify_redis(d, 1);
    if (d->want && !d->stopping) {
        d->resync_backoff_ms = 0;
        cmd_resync(d, "redis reconnected");
    }
}
