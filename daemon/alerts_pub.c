/* alerts_pub.c - delivery of the alert outboxes to alert_topic, exactly once: lease, read-back from the mark, produce, remove.
 *
 * One job at a time, for one instance: (1) take the instance's lease in Redis
 * and read its outbox and mark; (2) on a thread, read the alert partition
 * back from the mark to its high watermark and note the idempotency keys of
 * the outbox found there (a predecessor delivered them and died before
 * removing them); (3) with no mark yet, store the watermark as the mark
 * before producing anything; (4) produce the others, keyed by the instance,
 * to its partition, and wait for every delivery report; (5) remove what was
 * delivered or found from the outbox, move the mark past it, release the
 * lease (one Lua script, only while the lease is still ours). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "alerts_int.h"
#include "circmon/clock.h"
#include "circmon/log.h"
#include "circmon/redis_conn.h"
#include "circmon/v1/alerts.pb-c.h"

static const char LEASE_LUA[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "elseif not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end\n"
    "local r = {1, redis.call('GET', KEYS[3]) or ''}\n"
    "for _, e in ipairs(redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[3]) - 1)) do\n"
    "  r[#r + 1] = e end\n"
    "return r\n";
static const char MARK_LUA[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "redis.call('SET', KEYS[2], ARGV[2])\n"
    "return 1\n";
static const char COMMIT_LUA[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end\n"
    "redis.call('LTRIM', KEYS[2], tonumber(ARGV[2]), -1)\n"
    "redis.call('SET', KEYS[3], ARGV[3])\n"
    "redis.call('DEL', KEYS[1])\n"
    "return redis.call('LLEN', KEYS[2])\n";
static const char RELEASE_LUA[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end\n"
    "return 1\n";

enum stage { J_LEASE, J_READ, J_MARK, J_SEND, J_COMMIT };

struct al_job {
    struct cmd_alerts *a;
    uint64_t seq;     /* this job's number: stale delivery reports are ignored */
    uint64_t inst_id;
    uint64_t gen;
    uint64_t hash;
    char hex[17], name[CM_ALERT_NAME_MAX + 1];
    char scheme[2 * CM_ALERT_SCHEME_MAX + 2]; /* for messages: scheme, or scheme/nationality */
    char key[CM_ALERT_NAME_MAX + 2 * CM_ALERT_SCHEME_MAX + 3];
    size_t key_len;
    enum stage stage;
    size_t n;       /* outbox events taken */
    char **items;
    size_t *lens;
    char **idem;    /* their idempotency keys */
    int *found;     /* read back from the topic */
    int has_mark;
    int32_t mark_part;
    int64_t mark_off;
    /* the read-back thread: reads the fields above, writes those below */
    pthread_t th;
    int th_running;
    int fds[2];
    struct event *ev;
    rd_kafka_conf_t *conf;
    char *topic; /* the alert topic, the thread's own copy */
    int32_t n_parts, p;
    int64_t hi;
    int rerr;
    char errstr[640];
    /* produce */
    size_t sent, delivered, failed;
    int64_t max_off;
    int dead; /* dropped: freed when its thread is done */
};

static uint64_t job_seq;

static void job_free(struct al_job *j)
{
    if (!j)
        return;
    if (j->th_running) {
        pthread_join(j->th, NULL);
        j->th_running = 0;
    }
    if (j->ev)
        event_free(j->ev);
    for (int i = 0; i < 2; i++)
        if (j->fds[i] >= 0)
            close(j->fds[i]);
    if (j->conf)
        rd_kafka_conf_destroy(j->conf);
    for (size_t i = 0; i < j->n; i++) {
        free(j->items[i]);
        free(j->idem[i]);
    }
    free(j->items);
    free(j->lens);
    free(j->idem);
    free(j->found);
    free(j->topic);
    free(j);
}

static struct al_inst *inst_of(struct cmd_alerts *a, const struct al_job *j)
{
    if (j->gen != a->gen)
        return NULL;
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].id == j->inst_id)
            return &a->v[i];
    return NULL;
}

/* Ends the current job: releases the lease when asked, and looks for more. */
static void job_end(struct cmd_alerts *a, int release)
{
    struct al_job *j = a->job;
    if (!j)
        return;
    a->job = NULL;
    if (release && cm_rconn_ready(a->rc)) {
        char k[600];
        snprintf(k, sizeof k, "%s:{alert:%s}:lease", a->cfg->key_prefix, j->hex);
        const char *argv[] = {"EVAL", RELEASE_LUA, "1", k, a->token};
        (void)cm_rconn_send(a->rc, 5, argv, NULL, al_ignore_reply, NULL);
    }
    if (j->th_running) {
        j->dead = 1; /* freed by on_thread_done */
        job_free(a->dead_job); /* an older one: joined (bounded) */
        a->dead_job = j;
    } else
        job_free(j);
}

static void redis_fail(struct cmd_alerts *a, const char *what, struct redisReply *rep, int err)
{
    a->redis_errors++;
    cm_log_err("alerts: publisher: %s failed: %s", what,
               err ? strerror(-err)
                   : rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
}

/* --- (5) commit */
static void on_commit(struct cm_rconn *c, struct redisReply *rep, int err, void *ud)
{
    struct cmd_alerts *a = ud;
    struct al_job *j = a->job;
    (void)c;
    if (!j || j->stage != J_COMMIT)
        return;
    if (err || !rep || rep->type != REDIS_REPLY_INTEGER) {
        redis_fail(a, "removing the delivered events", rep, err);
        job_end(a, 0); /* the read-back of the next job finds what was delivered */
        return;
    }
    if (rep->integer < 0) {
        cm_log_warn("alerts: the lease of %s/%s expired before its events were removed: the "
                    "next publisher reads them back", j->name, j->scheme);
        job_end(a, 0);
        return;
    }
    struct al_inst *in = inst_of(a, j);
    if (in)
        in->outbox = rep->integer;
    job_end(a, 0);
    if (in && in->outbox > 0)
        al_pub_kick(a);
}

static void commit(struct cmd_alerts *a, struct al_job *j)
{
    char kl[600], ko[600], km[600], n[32], mark[64];
    int64_t next = j->max_off >= 0 && j->max_off + 1 > j->hi ? j->max_off + 1 : j->hi;
    snprintf(kl, sizeof kl, "%s:{alert:%s}:lease", a->cfg->key_prefix, j->hex);
    snprintf(ko, sizeof ko, "%s:{alert:%s}:outbox", a->cfg->key_prefix, j->hex);
    snprintf(km, sizeof km, "%s:{alert:%s}:mark", a->cfg->key_prefix, j->hex);
    snprintf(n, sizeof n, "%zu", j->n);
    snprintf(mark, sizeof mark, "%" PRId32 ":%" PRId64, j->p, next);
    const char *argv[] = {"EVAL", COMMIT_LUA, "3", kl, ko, km, a->token, n, mark};
    j->stage = J_COMMIT;
    if (cm_rconn_send(a->rc, 9, argv, NULL, on_commit, a) < 0)
        job_end(a, 1);
}

/* --- (4) produce */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct cmd_alerts *a = opaque;
    struct al_job *j = a->job;
    (void)rk;
    if (!j || j->stage != J_SEND || (uint64_t)(uintptr_t)m->_private != j->seq)
        return; /* a job dropped meanwhile: its events stay in the outbox */
    if (m->err) {
        j->failed++;
        cm_log_err("alerts: delivery of an event of %s/%s to %s failed: %s", j->name, j->scheme,
                   a->cfg->alert_topic, rd_kafka_err2str(m->err));
    } else {
        j->delivered++;
        if (m->offset > j->max_off)
            j->max_off = m->offset;
    }
    if (j->delivered + j->failed < j->sent)
        return;
    if (j->failed) {
        job_end(a, 1); /* tried again from the outbox: the read-back skips what landed */
        return;
    }
    a->published += j->delivered;
    if (a->crash_after_delivery)
        raise(SIGKILL); /* test hook: delivered, not removed */
    commit(a, j);
}

static void produce(struct cmd_alerts *a, struct al_job *j)
{
    j->stage = J_SEND;
    j->max_off = -1;
    for (size_t i = 0; i < j->n; i++) {
        if (j->found[i]) {
            a->skipped++;
            cm_log_warn("alerts: event %s of %s/%s is already on %s (read back): not sent again",
                        j->idem[i], j->name, j->scheme, a->cfg->alert_topic);
            continue;
        }
        rd_kafka_resp_err_t e = rd_kafka_producev(
            a->pk, RD_KAFKA_V_TOPIC(a->cfg->alert_topic), RD_KAFKA_V_PARTITION(j->p),
            RD_KAFKA_V_KEY(j->key, j->key_len), RD_KAFKA_V_VALUE(j->items[i], j->lens[i]),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_OPAQUE((void *)(uintptr_t)j->seq), RD_KAFKA_V_END);
        if (e) {
            cm_log_err("alerts: cannot queue an event of %s/%s: %s", j->name, j->scheme,
                       rd_kafka_err2str(e));
            if (!j->sent) {
                job_end(a, 1);
                return;
            }
            j->failed++;
            continue;
        }
        j->sent++;
    }
    if (!j->sent && !j->failed)
        commit(a, j); /* every one was read back */
    else if (j->sent)
        cmd_timer_in(a->pk_timer, 5);
}

/* --- (3) the first mark */
static void on_mark(struct cm_rconn *c, struct redisReply *rep, int err, void *ud)
{
    struct cmd_alerts *a = ud;
    struct al_job *j = a->job;
    (void)c;
    if (!j || j->stage != J_MARK)
        return;
    if (err || !rep || rep->type != REDIS_REPLY_INTEGER || rep->integer != 1) {
        redis_fail(a, "storing the first mark", rep, err);
        job_end(a, 1);
        return;
    }
    produce(a, j);
}

/* --- (2) read-back */
static void *readback(void *arg)
{
    struct al_job *j = arg;
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, j->conf, err, sizeof err);
    const char *topic = j->topic;
    if (!rk) {
        snprintf(j->errstr, sizeof j->errstr, "read-back consumer: %s", err);
        j->rerr = -EINVAL;
        goto done;
    }
    j->conf = NULL; /* rk owns it */
    if (j->n_parts <= 0) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e = rkt ? rd_kafka_metadata(rk, 0, rkt, &md, 5000)
                                    : RD_KAFKA_RESP_ERR__INVALID_ARG;
        if (!e && md && md->topic_cnt == 1 && !md->topics[0].err)
            j->n_parts = md->topics[0].partition_cnt;
        else
            snprintf(j->errstr, sizeof j->errstr, "metadata of %s: %s", topic,
                     rd_kafka_err2str(e ? e : md && md->topic_cnt ? md->topics[0].err
                                                                : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
        if (md)
            rd_kafka_metadata_destroy(md);
        if (rkt)
            rd_kafka_topic_destroy(rkt);
        if (j->n_parts <= 0) {
            j->rerr = -ENOENT;
            goto close;
        }
    }
    j->p = j->has_mark ? j->mark_part : (int32_t)(j->hash % (uint64_t)j->n_parts);
    int64_t lo = 0;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, j->p, &lo, &j->hi, 5000);
    if (e) {
        snprintf(j->errstr, sizeof j->errstr, "watermarks of %s [%d]: %s", topic, j->p,
                 rd_kafka_err2str(e));
        j->rerr = -EIO;
        goto close;
    }
    if (j->has_mark && j->mark_off < j->hi) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, topic, j->p)->offset =
            j->mark_off > lo ? j->mark_off : lo;
        e = rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        int64_t deadline = cm_clock_ms() + AL_READBACK_MS, last = -1;
        while (!e && last < j->hi - 1) {
            if (cm_clock_ms() > deadline) {
                snprintf(j->errstr, sizeof j->errstr, "read-back of %s [%d] to %" PRId64
                         " timed out at %" PRId64, topic, j->p, j->hi, last);
                j->rerr = -ETIMEDOUT;
                break;
            }
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
            if (!m)
                continue;
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                last = m->offset - 1 > last ? m->offset - 1 : last;
                if (m->offset >= j->hi)
                    last = j->hi - 1;
            } else if (m->err) {
                snprintf(j->errstr, sizeof j->errstr, "read-back of %s [%d]: %s", topic, j->p,
                         rd_kafka_message_errstr(m));
                j->rerr = -EIO;
                rd_kafka_message_destroy(m);
                break;
            } else {
                last = m->offset;
                if (m->key_len == j->key_len && !memcmp(m->key, j->key, j->key_len)) {
                    Circmon__V1__Alert *ev =
                        circmon__v1__alert__unpack(NULL, m->len, m->payload);
                    for (size_t i = 0; ev && ev->idempotency_key && i < j->n; i++)
                        if (j->idem[i] && !strcmp(ev->idempotency_key, j->idem[i]))
                            j->found[i] = 1;
                    if (ev)
                        circmon__v1__alert__free_unpacked(ev, NULL);
                }
            }
            rd_kafka_message_destroy(m);
        }
        if (e && !j->rerr) {
            snprintf(j->errstr, sizeof j->errstr, "assigning %s [%d]: %s", topic, j->p,
                     rd_kafka_err2str(e));
            j->rerr = -EIO;
        }
    }
close:
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
done:
    if (write(j->fds[1], "x", 1) != 1) {
        /* the loop then never hears of it: the job stays until free (joined) */
    }
    return NULL;
}

static void on_thread_done(evutil_socket_t fd, short what, void *arg)
{
    struct al_job *j = arg;
    struct cmd_alerts *a = j->a;
    char c;
    (void)what;
    if (read(fd, &c, 1) != 1)
        return;
    pthread_join(j->th, NULL);
    j->th_running = 0;
    if (j->dead || a->job != j) {
        if (a->dead_job == j)
            a->dead_job = NULL;
        job_free(j);
        return;
    }
    if (j->rerr) {
        cm_log_err("alerts: publisher of %s/%s: %s", j->name, j->scheme, j->errstr);
        job_end(a, 1);
        return;
    }
    if (a->n_parts <= 0)
        a->n_parts = j->n_parts;
    if (j->has_mark) {
        produce(a, j);
        return;
    }
    char kl[600], km[600], mark[64];
    snprintf(kl, sizeof kl, "%s:{alert:%s}:lease", a->cfg->key_prefix, j->hex);
    snprintf(km, sizeof km, "%s:{alert:%s}:mark", a->cfg->key_prefix, j->hex);
    snprintf(mark, sizeof mark, "%" PRId32 ":%" PRId64, j->p, j->hi);
    const char *argv[] = {"EVAL", MARK_LUA, "2", kl, km, a->token, mark};
    j->stage = J_MARK;
    if (cm_rconn_send(a->rc, 7, argv, NULL, on_mark, a) < 0)
        job_end(a, 1);
}

static rd_kafka_conf_t *reader_conf(const struct cm_config *cfg, char *err, size_t errlen)
{
    char group[600];
    snprintf(group, sizeof group, "%s.alerts-read-back", cfg->group_id);
    const char *const forced[][2] = {
        {"client.id", "circmond-alerts-read-back"},
        {"group.id", group},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"enable.partition.eof", "true"},
    };
    return cmd_conf_build(cfg, NULL, 0, forced, NELEM(forced), 0, err, errlen);
}

/* --- (1) lease */
static void on_lease(struct cm_rconn *c, struct redisReply *rep, int err, void *ud)
{
    struct cmd_alerts *a = ud;
    struct al_job *j = a->job;
    (void)c;
    if (!j || j->stage != J_LEASE)
        return;
    if (err || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
        redis_fail(a, "taking a lease", rep, err);
        job_end(a, 0);
        return;
    }
    if (rep->element[0]->type != REDIS_REPLY_INTEGER || rep->element[0]->integer != 1 ||
        rep->elements < 2) {
        job_end(a, 0); /* another publisher holds it */
        return;
    }
    const redisReply *mk = rep->element[1];
    if (mk->type == REDIS_REPLY_STRING && mk->len > 0) {
        char buf[64];
        snprintf(buf, sizeof buf, "%.*s", (int)mk->len, mk->str);
        long long p, off;
        if (sscanf(buf, "%lld:%lld", &p, &off) == 2 && p >= 0 && p <= INT32_MAX && off >= 0) {
            j->has_mark = 1;
            j->mark_part = (int32_t)p;
            j->mark_off = off;
        } else {
            cm_log_err("alerts: the mark of %s/%s is malformed (\"%s\"): read back from the "
                       "start of its partition", j->name, j->scheme, buf);
            j->has_mark = 1;
            j->mark_part = (int32_t)(a->n_parts > 0 ? j->hash % (uint64_t)a->n_parts : 0);
            j->mark_off = 0;
        }
    }
    size_t n = rep->elements - 2;
    if (!n) {
        job_end(a, 1);
        return;
    }
    j->items = calloc(n, sizeof *j->items);
    j->lens = calloc(n, sizeof *j->lens);
    j->idem = calloc(n, sizeof *j->idem);
    j->found = calloc(n, sizeof *j->found);
    if (!j->items || !j->lens || !j->idem || !j->found) {
        cm_log_err("alerts: out of memory for an outbox");
        job_end(a, 1);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = rep->element[2 + i];
        if (e->type != REDIS_REPLY_STRING)
            continue;
        j->items[i] = malloc(e->len ? e->len : 1);
        if (!j->items[i])
            break;
        memcpy(j->items[i], e->str, e->len);
        j->lens[i] = e->len;
        j->n = i + 1;
        Circmon__V1__Alert *ev = circmon__v1__alert__unpack(NULL, e->len, (const uint8_t *)e->str);
        if (ev && ev->idempotency_key)
            j->idem[i] = strdup(ev->idempotency_key);
        if (ev)
            circmon__v1__alert__free_unpacked(ev, NULL);
    }
    if (j->n != n) {
        cm_log_err("alerts: out of memory for an outbox");
        job_end(a, 1);
        return;
    }
    char err_s[512];
    j->n_parts = a->n_parts;
    j->topic = strdup(a->cfg->alert_topic);
    j->conf = reader_conf(a->cfg, err_s, sizeof err_s);
    if (!j->conf || !j->topic) {
        cm_log_err("alerts: read-back configuration: %s", err_s);
        job_end(a, 1);
        return;
    }
    if (pipe(j->fds) < 0 || !(j->ev = event_new(a->d->base, j->fds[0], EV_READ, on_thread_done, j)) ||
        event_add(j->ev, NULL) < 0) {
        cm_log_err("alerts: cannot wake the loop for the read-back: %s", strerror(errno));
        job_end(a, 1);
        return;
    }
    j->stage = J_READ;
    if (pthread_create(&j->th, NULL, readback, j) != 0) {
        cm_log_err("alerts: cannot start the read-back thread");
        job_end(a, 1);
        return;
    }
    j->th_running = 1;
}

void al_pub_kick(struct cmd_alerts *a)
{
    if (a->job || !a->pk || !cm_rconn_ready(a->rc) || !a->n)
        return;
    for (size_t k = 0; k < a->n; k++) {
        struct al_inst *in = &a->v[(a->rr + k) % a->n];
        if (in->outbox <= 0)
            continue;
        a->rr = (a->rr + k + 1) % a->n;
        struct al_job *j = calloc(1, sizeof *j);
        if (!j) {
            cm_log_err("alerts: out of memory for a publisher job");
            return;
        }
        j->a = a;
        j->seq = ++job_seq;
        j->inst_id = in->id;
        j->gen = a->gen;
        j->fds[0] = j->fds[1] = -1;
        j->max_off = -1;
        memcpy(j->hex, in->hex, sizeof j->hex);
        j->hash = strtoull(in->hex, NULL, 16);
        snprintf(j->name, sizeof j->name, "%s", in->name);
        snprintf(j->scheme, sizeof j->scheme, "%s%s%s", in->scheme, in->nationality[0] ? "/" : "",
                 in->nationality);
        size_t a1 = strlen(in->name), b1 = strlen(in->scheme), c1 = strlen(in->nationality);
        memcpy(j->key, in->name, a1);
        j->key[a1] = '\0';
        memcpy(j->key + a1 + 1, in->scheme, b1);
        j->key[a1 + 1 + b1] = '\0';
        memcpy(j->key + a1 + 2 + b1, in->nationality, c1);
        j->key_len = a1 + b1 + c1 + 2; /* rule NUL scheme NUL nationality ("" for none) */
        a->job = j;
        char kl[600], ko[600], km[600], ttl[32], max[32];
        snprintf(kl, sizeof kl, "%s:{alert:%s}:lease", a->cfg->key_prefix, j->hex);
        snprintf(ko, sizeof ko, "%s:{alert:%s}:outbox", a->cfg->key_prefix, j->hex);
        snprintf(km, sizeof km, "%s:{alert:%s}:mark", a->cfg->key_prefix, j->hex);
        snprintf(ttl, sizeof ttl, "%d", a->lease_ms);
        snprintf(max, sizeof max, "%d", AL_PUB_MAX);
        const char *argv[] = {"EVAL", LEASE_LUA, "3", kl, ko, km, a->token, ttl, max};
        j->stage = J_LEASE;
        if (cm_rconn_send(a->rc, 9, argv, NULL, on_lease, a) < 0)
            job_end(a, 0);
        return;
    }
}

static void on_pk_timer(evutil_socket_t fd, short what, void *arg)
{
    struct cmd_alerts *a = arg;
    (void)fd, (void)what;
    rd_kafka_poll(a->pk, 0); /* delivery reports, never waiting */
    cmd_timer_in(a->pk_timer, a->job && a->job->stage == J_SEND ? 5 : 200);
}

int al_pub_setup(struct cmd_alerts *a)
{
    static const char *const defaults[][2] = {
        {"client.id", "circmond-alerts"},
        {"enable.idempotence", "true"},
        {"linger.ms", "0"},
        {"message.timeout.ms", "5000"}, /* AL_DELIVERY_MS: well inside the lease */
    };
    static const char *const forced[][2] = {{"acks", "all"}};
    char err[512], host[64] = "";
    rd_kafka_conf_t *conf =
        cmd_conf_build(a->cfg, defaults, NELEM(defaults), forced, NELEM(forced), 0, err, sizeof err);
    if (!conf) {
        cm_log_err("alerts: producer configuration: %s", err);
        return -EINVAL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, a);
    if (!(a->pk = cmd_client_new(RD_KAFKA_PRODUCER, conf, "alert producer")))
        return -EINVAL;
    a->pk_timer = evtimer_new(a->d->base, on_pk_timer, a);
    if (!a->pk_timer)
        return -ENOMEM;
    const char *l = getenv("CIRCMOND_TEST_ALERT_LEASE_MS");
    a->lease_ms = l && atoi(l) > 0 ? atoi(l) : AL_LEASE_MS;
    const char *c = getenv("CIRCMOND_TEST_CRASH_AFTER_ALERT_DELIVERY");
    a->crash_after_delivery = c && atoi(c) > 0;
    gethostname(host, sizeof host - 1);
    snprintf(a->token, sizeof a->token, "%s-%ld-%lld", host, (long)getpid(),
             (long long)cm_clock_us());
    cmd_timer_in(a->pk_timer, 200);
    return 0;
}

void al_pub_reset(struct cmd_alerts *a)
{
    job_end(a, 1);
}

void al_pub_free(struct cmd_alerts *a)
{
    struct al_job *j = a->job;
    a->job = NULL;
    job_free(a->dead_job);
    a->dead_job = NULL;
    job_free(j); /* joins a running read-back (bounded by AL_READBACK_MS and 10 s of queries) */
    if (a->pk) {
        rd_kafka_flush(a->pk, 2000);
        rd_kafka_destroy(a->pk);
        a->pk = NULL;
    }
    if (a->pk_timer)
        event_free(a->pk_timer);
    a->pk_timer = NULL;
}
