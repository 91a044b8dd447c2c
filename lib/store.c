/* store.c - the Redis store of circmond (over redis_conn.c): positions,
 * epochs, state reads and batch applies, asynchronous; the keys and the
 * apply's contents are in store_apply.c, the synchronous reads for
 * circmonctl in store_read.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "circmon/clock.h"
#include "circmon/decimal.h"
#include "circmon/errbuf.h"
#include "circmon/grow.h"
#include "circmon/redis_conn.h"
#include "circmon/store.h"
#include "circmon/store_layout.h"
#include "store_int.h"

/* ---------------------------------------------------------------- async */

enum req_kind { RQ_POS, RQ_EPOCH, RQ_MGET, RQ_APPLY, RQ_CONFIG };

/* A read of positions: one MGET per partition (its keys share one hash
 * slot, as Redis Cluster wants), answered together. */
struct pos_group {
    cm_store_pos_cb cb;
    void *ud;
    size_t n, left;
    int err;
    struct cm_store_pos *pos;
    int32_t *parts; /* the partitions asked, for messages */
};

/* One request of the store's user (one Redis command; an apply resent as
 * EVAL after NOSCRIPT stays the same request). */
struct req {
    struct cm_store *s;
    enum req_kind kind;
    union {
        struct pos_group *pos;
        cm_store_mget_cb mget;
        cm_store_apply_cb apply;
        cm_store_listpack_cb config;
    } cb;
    void *ud;
    size_t n;                  /* values expected (MGET); index into the group (POS) */
    struct cm_store_apply *ap; /* kept for the NOSCRIPT resend */
    struct strv cmd;           /* a read of states in buckets: numkeys, keys, ARGV */
    size_t *perm;              /* ... and where the value of mids[i] is in its reply */
    int resent;
};

struct cm_store {
    const struct cm_config *cfg;
    cm_store_conn_cb conn_cb;
    void *ud;
    struct cm_rconn *c;
    char sha[48], sha_read[48];
};

static void req_free(struct req *q)
{
    cm_store_apply_free(q->ap);
    cm_strv_free(&q->cmd);
    free(q->perm);
    free(q);
}

static void on_reply(struct cm_rconn *c, redisReply *rep, int err, void *ud);

/* Sends argv[0..argc-1] (lens[]) as EVALSHA sha (or EVAL script when eval
 * is set): argv[0] and argv[1] are filled in here. */
static int send_script(struct cm_store *s, struct req *q, int eval, const char *script,
                       const char *sha, const char **argv, size_t *lens, size_t argc)
{
    argv[0] = eval ? "EVAL" : "EVALSHA";
    argv[1] = eval ? script : sha;
    lens[0] = strlen(argv[0]);
    lens[1] = strlen(argv[1]);
    return cm_rconn_send(s->c, (int)argc, argv, lens, on_reply, q);
}

/* Sends ap as EVALSHA (or EVAL when eval is set). */
static int send_apply(struct cm_store *s, struct req *q, int eval)
{
    struct cm_store_apply *ap = q->ap;
    int r = cm_store_apply_layout(ap, s->cfg->state_buckets);
    if (r)
        return r;
    size_t nk = ap->keys.n + ap->st_keys.n + ap->ag_keys.n;
    size_t argc = 3 + nk + ap->args.n + ap->nsa + ap->naa;
    const char **argv = malloc(argc * sizeof(*argv));
    size_t *lens = malloc(argc * sizeof(*lens));
    char nks[32];
    r = -ENOMEM;
    if (!argv || !lens)
        goto out;
    lens[2] = (size_t)snprintf(nks, sizeof(nks), "%zu", nk);
    argv[2] = nks;
    size_t j = 3;
    const struct strv *parts[] = {&ap->keys, &ap->st_keys, &ap->ag_keys, &ap->args};
    for (size_t p = 0; p < 4; p++)
        for (size_t i = 0; i < parts[p]->n; i++, j++) {
            argv[j] = parts[p]->s[i];
            lens[j] = parts[p]->len[i];
        }
    for (size_t i = 0; i < ap->nsa; i++, j++) {
        argv[j] = ap->sa[i];
        lens[j] = ap->sal[i];
    }
    for (size_t i = 0; i < ap->naa; i++, j++) {
        argv[j] = ap->aa[i];
        lens[j] = ap->aal[i];
    }
    r = send_script(s, q, eval, cm_store_lua_apply, s->sha, argv, lens, argc);
out:
    free(argv);
    free(lens);
    return r;
}

/* Sends the read of states in buckets kept in q->cmd. */
static int send_read(struct cm_store *s, struct req *q, int eval)
{
    size_t argc = q->cmd.n + 2;
    const char **argv = malloc(argc * sizeof(*argv));
    size_t *lens = malloc(argc * sizeof(*lens));
    int r = -ENOMEM;
    if (argv && lens) {
        for (size_t i = 0; i < q->cmd.n; i++) {
            argv[i + 2] = q->cmd.s[i];
            lens[i + 2] = q->cmd.len[i];
        }
        r = send_script(s, q, eval, cm_store_lua_read, s->sha_read, argv, lens, argc);
    }
    free(argv);
    free(lens);
    return r;
}

/* A dead-letter mark as cm_store_apply_dlq_mark writes it: "PART FROM". */
static int parse_mark(const redisReply *m, struct cm_store_pos *p)
{
    if (m->type != REDIS_REPLY_STRING)
        return -EINVAL;
    const char *sp = memchr(m->str, ' ', m->len);
    int64_t part, from;
    if (!sp || cm_decimal_i64(m->str, (size_t)(sp - m->str), &part) ||
        cm_decimal_i64(sp + 1, m->len - (size_t)(sp + 1 - m->str), &from) || part < 0 ||
        part > INT32_MAX || from < 0)
        return -EINVAL;
    p->dlq_part = (int32_t)part;
    p->dlq_from = from;
    return 0;
}

/* One reply of a read of positions: the group's callback after the last. */
static void pos_group_reply(struct cm_store *s, struct pos_group *g, int err, redisReply *rep)
{
    if (err && !g->err) {
        g->err = err;
        if (err != -ESTALE) /* the layout's message is set already */
            cm_rconn_set_err(s->c, "redis: reading positions failed (%s)",
                             rep && rep->type == REDIS_REPLY_ERROR ? rep->str : strerror(-err));
    }
    if (--g->left == 0) {
        g->cb(g->err, g->err ? NULL : g->pos, g->err ? 0 : g->n, g->ud);
        free(g->parts);
        free(g->pos);
        free(g);
    }
}

/* Interprets a reply to q (rep NULL: err) and calls the user's callback. */
static void deliver(struct req *q, redisReply *rep, int err)
{
    struct cm_store *s = q->s;
    if (!err && rep->type == REDIS_REPLY_ERROR)
        err = -EPROTO;
    switch (q->kind) {
    case RQ_POS: {
        struct pos_group *g = q->cb.pos;
        struct cm_store_pos *p = &g->pos[q->n];
        if (!err && (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3))
            err = -EPROTO;
        if (!err) {
            redisReply *e = rep->element[0], *m = rep->element[1], *l = rep->element[2];
            p->dlq_part = -1;
            if (cm_store_pos_parse(e, &p->pos) < 0)
                err = -EPROTO;
            if (!err && m->type != REDIS_REPLY_NIL && parse_mark(m, p) < 0)
                err = -EPROTO;
            int32_t lay = -1;
            char msg[600];
            if (!err && l->type != REDIS_REPLY_NIL &&
                (l->type != REDIS_REPLY_STRING || cm_layout_parse(l->str, l->len, &lay) < 0)) {
                int mv = l->type == REDIS_REPLY_STRING && l->len >= 9 &&
                         !memcmp(l->str, "moving to", 9);
                cm_rconn_set_err(s->c, "partition %" PRId32 ": the stored layout is %s",
                                 g->parts[q->n],
                                 mv ? "that of a circmonctl migrate-layout that did not finish: "
                                      "run it again"
                                    : "not one circmon writes: rebuild the partition");
                err = -ESTALE;
            } else if (!err && cm_layout_check(g->parts[q->n], lay, e->type != REDIS_REPLY_NIL,
                                               s->cfg->state_buckets, msg, sizeof(msg)) < 0) {
                cm_rconn_set_err(s->c, "%s", msg);
                err = -ESTALE;
            }
        }
        pos_group_reply(s, g, err, rep);
        break;
    }
    case RQ_EPOCH: {
        struct pos_group *g = q->cb.pos;
        if (!err && (rep->type != REDIS_REPLY_INTEGER || rep->integer < 1))
            err = -EPROTO;
        if (!err)
            g->pos[q->n].epoch = rep->integer;
        pos_group_reply(s, g, err, rep);
        break;
    }
    case RQ_MGET: {
        struct cm_store_val *vals = NULL;
        if (!err && (rep->type != REDIS_REPLY_ARRAY || rep->elements != q->n))
            err = -EPROTO;
        if (!err && !(vals = calloc(q->n ? q->n : 1, sizeof(*vals))))
            err = -ENOMEM;
        for (size_t i = 0; !err && i < q->n; i++) {
            redisReply *e = rep->element[q->perm ? q->perm[i] : i];
            if (e->type == REDIS_REPLY_STRING) {
                vals[i].data = (const uint8_t *)e->str;
                vals[i].len = e->len;
            } else if (e->type != REDIS_REPLY_NIL) {
                err = -EPROTO;
            }
        }
        q->cb.mget(err, err ? NULL : vals, err ? 0 : q->n, q->ud);
        free(vals);
        break;
    }
    case RQ_CONFIG: {
        long long lim[2] = {-1, -1}; /* value, entries */
        if (!err && rep->type != REDIS_REPLY_ARRAY)
            err = -EPROTO;
        for (size_t i = 0; !err && i + 1 < rep->elements; i += 2) {
            redisReply *k = rep->element[i], *v = rep->element[i + 1];
            uint64_t x;
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
                cm_decimal_u64(v->str, v->len, INT64_MAX, &x))
                continue;
            if (!strcmp(k->str, "hash-max-listpack-value"))
                lim[0] = (long long)x;
            else if (!strcmp(k->str, "hash-max-listpack-entries"))
                lim[1] = (long long)x;
        }
        if (!err && (lim[0] < 0 || lim[1] < 0))
            err = -EPROTO;
        if (err)
            cm_rconn_set_err(s->c, "redis: CONFIG GET hash-max-listpack-*: %s",
                             rep && rep->type == REDIS_REPLY_ERROR ? rep->str
                             : err == -EPROTO                      ? "not answered"
                                                                   : strerror(-err));
        q->cb.config(err, err ? 0 : lim[0], err ? 0 : lim[1], q->ud);
        break;
    }
    case RQ_APPLY: {
        int64_t stored = 0, applied = 0;
        if (!err && (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
                     rep->element[0]->type != REDIS_REPLY_INTEGER ||
                     rep->element[1]->type != REDIS_REPLY_STRING ||
                     cm_decimal_i64(rep->element[1]->str, rep->element[1]->len, &stored)))
            err = -EPROTO;
        if (!err)
            applied = rep->element[0]->integer;
        if (rep && rep->type == REDIS_REPLY_ERROR)
            cm_rconn_set_err(s->c, "redis: apply failed: %s", rep->str);
        q->cb.apply(err, err ? 0 : (int)applied, err ? 0 : stored, q->ud);
        break;
    }
    }
}

static void on_reply(struct cm_rconn *c, redisReply *rep, int err, void *ud)
{
    struct req *q = ud;
    (void)c;
    /* After a restart or SCRIPT FLUSH: send the script itself, once. EVAL
     * caches it again for the next EVALSHA. */
    if ((q->kind == RQ_APPLY || (q->kind == RQ_MGET && q->cmd.n)) && rep &&
        rep->type == REDIS_REPLY_ERROR && !q->resent && !strncmp(rep->str, "NOSCRIPT", 8)) {
        q->resent = 1;
        if ((q->kind == RQ_APPLY ? send_apply(q->s, q, 1) : send_read(q->s, q, 1)) == 0)
            return;
    }
    deliver(q, rep, err);
    req_free(q);
}

/* SCRIPT LOAD answers the script's sha. */
static void on_script(struct cm_rconn *c, redisReply *rep, int err, void *ud)
{
    char *sha = ud;
    (void)c;
    if (!err && rep->type == REDIS_REPLY_STRING && rep->len == 40)
        memcpy(sha, rep->str, 41);
}

static int on_prepare(struct cm_rconn *c, void *ud)
{
    struct cm_store *s = ud;
    const char *a[] = {"SCRIPT", "LOAD", cm_store_lua_apply};
    const char *b[] = {"SCRIPT", "LOAD", cm_store_lua_read};
    int r = cm_rconn_handshake(c, 3, a, NULL, on_script, s->sha);
    return r ? r : cm_rconn_handshake(c, 3, b, NULL, on_script, s->sha_read);
}

static void on_conn(struct cm_rconn *c, int up, void *ud)
{
    struct cm_store *s = ud;
    (void)c;
    if (s->conn_cb)
        s->conn_cb(s, up, s->ud);
}

struct cm_store *cm_store_new(struct event_base *base, const struct cm_config *cfg,
                              cm_store_conn_cb conn_cb, void *ud)
{
    struct cm_store *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->cfg = cfg;
    s->conn_cb = conn_cb;
    s->ud = ud;
    if (!(s->c = cm_rconn_new(base, cfg, on_prepare, on_conn, s))) {
        free(s);
        return NULL;
    }
    return s;
}

struct cm_store *cm_store_free(struct cm_store *s)
{
    if (!s)
        return NULL;
    s->conn_cb = NULL;
    s->c = cm_rconn_free(s->c); /* fails every pending request */
    free(s);
    return NULL;
}

int cm_store_ready(const struct cm_store *s)
{
    return cm_rconn_ready(s->c);
}

size_t cm_store_pending(const struct cm_store *s)
{
    return cm_rconn_pending(s->c);
}

const char *cm_store_errstr(const struct cm_store *s)
{
    return cm_rconn_errstr(s->c);
}

int cm_store_cluster_stats(const struct cm_store *s, struct cm_rcluster_stats *st)
{
    return cm_rconn_cluster_stats(s->c, st);
}

void cm_store_drop(struct cm_store *s)
{
    cm_rconn_drop(s->c, "connection dropped on request");
}

static struct req *req_new(struct cm_store *s, enum req_kind kind, void *ud)
{
    struct req *q = calloc(1, sizeof(*q));
    if (q) {
        q->s = s;
        q->kind = kind;
        q->ud = ud;
    }
    return q;
}

/* Sends MGET of keys; frees keys in every case. */
static int send_mget(struct cm_store *s, struct req *q, struct strv *keys)
{
    size_t argc = keys->n + 1;
    const char **argv = malloc(argc * sizeof(*argv));
    size_t *lens = malloc(argc * sizeof(*lens));
    int r = -ENOMEM;
    if (argv && lens) {
        argv[0] = "MGET";
        lens[0] = 4;
        for (size_t i = 0; i < keys->n; i++) {
            argv[i + 1] = keys->s[i];
            lens[i + 1] = keys->len[i];
        }
        r = cm_rconn_send(s->c, (int)argc, argv, lens, on_reply, q);
    }
    free(argv);
    free(lens);
    cm_strv_free(keys);
    return r;
}

/* Sends INCR of partition part's owner epoch as reply i of group g. */
static int send_epoch_incr(struct cm_store *s, struct pos_group *g, size_t i, int32_t part)
{
    struct req *q = req_new(s, RQ_EPOCH, NULL);
    char *ke = cm_store_key_epoch(s->cfg->key_prefix, part);
    int r = -ENOMEM;
    if (q && ke) {
        const char *argv[] = {"INCR", ke};
        const size_t lens[] = {4, strlen(ke)};
        q->cb.pos = g;
        q->n = i;
        g->left++;
        r = cm_rconn_send(s->c, 2, argv, lens, on_reply, q);
        if (r)
            g->left--;
    }
    free(ke);
    if (r && q)
        req_free(q);
    return r;
}

static int get_positions(struct cm_store *s, const int32_t *parts, size_t n, int take,
                         cm_store_pos_cb cb, void *ud);

int cm_store_get_positions(struct cm_store *s, const int32_t *parts, size_t n,
                           cm_store_pos_cb cb, void *ud)
{
    return get_positions(s, parts, n, 0, cb, ud);
}

int cm_store_take_positions(struct cm_store *s, const int32_t *parts, size_t n,
                            cm_store_pos_cb cb, void *ud)
{
    return get_positions(s, parts, n, 1, cb, ud);
}

static int get_positions(struct cm_store *s, const int32_t *parts, size_t n, int take,
                         cm_store_pos_cb cb, void *ud)
{
    if (!cm_store_ready(s))
        return -ENOTCONN;
    if (n == 0)
        return -EINVAL;
    struct pos_group *g = calloc(1, sizeof(*g));
    if (!g || !(g->pos = calloc(n, sizeof(*g->pos))) || !(g->parts = malloc(n * sizeof(*g->parts)))) {
        if (g)
            free(g->pos);
        free(g);
        return -ENOMEM;
    }
    memcpy(g->parts, parts, n * sizeof(*parts));
    g->cb = cb;
    g->ud = ud;
    g->n = n;
    for (size_t i = 0; i < n; i++) {
        /* the INCR goes first on the connection: Redis runs it before the
         * read, and before any later apply of a deposed owner */
        int r0 = take ? send_epoch_incr(s, g, i, parts[i]) : 0;
        if (r0) {
            if (!g->left) {
                free(g->parts);
                free(g->pos);
                free(g);
                return r0;
            }
            g->err = r0;
            return 0;
        }
        struct req *q = req_new(s, RQ_POS, NULL);
        struct strv keys = {0};
        char *kp = cm_store_key_pos(s->cfg->key_prefix, parts[i]);
        char *kd = cm_store_key_dlq(s->cfg->key_prefix, parts[i]);
        char *kl = cm_layout_key(s->cfg->key_prefix, parts[i]);
        int r = !q || !kp || !kd || !kl || cm_strv_push(&keys, kp, strlen(kp)) ||
                        cm_strv_push(&keys, kd, strlen(kd)) || cm_strv_push(&keys, kl, strlen(kl))
                    ? -ENOMEM
                    : 0;
        free(kp);
        free(kd);
        free(kl);
        if (!r) {
            q->cb.pos = g;
            q->n = i;
            g->left++;
            r = send_mget(s, q, &keys); /* frees keys */
            if (r)
                g->left--;
        } else {
            cm_strv_free(&keys);
        }
        if (r) {
            if (q)
                req_free(q);
            if (!g->left) { /* nothing sent: no callback */
                free(g->parts);
                free(g->pos);
                free(g);
                return r;
            }
            g->err = r; /* the replies of those sent carry the failure to cb */
            return 0;
        }
    }
    return 0;
}

/* The read of states in buckets into q->cmd and q->perm: the migrants
 * grouped by bucket, one HMGET each in cm_store_lua_read. */
static int read_prepare(struct cm_store *s, struct req *q, int32_t part,
                        const char *const *mids, const size_t *lens, size_t n)
{
    uint32_t nb = (uint32_t)s->cfg->state_buckets;
    struct by_bucket *o = malloc(n * sizeof(*o));
    struct strv keys = {0}, args = {0};
    int r = o && (q->perm = malloc(n * sizeof(*q->perm))) ? 0 : -ENOMEM;
    for (size_t i = 0; !r && i < n; i++)
        o[i] = (struct by_bucket){cm_layout_bucket(mids[i], lens[i], nb), (uint32_t)i};
    if (!r)
        qsort(o, n, sizeof(*o), cm_store_cmp_bucket);
    for (size_t g = 0; !r && g < n;) {
        size_t e = g;
        while (e < n && o[e].b == o[g].b)
            e++;
        size_t kl;
        char *k = cm_layout_key_bucket(s->cfg->key_prefix, part, o[g].b, &kl);
        r = !k || cm_strv_push(&keys, k, kl) || cm_strv_pushf(&args, "%zu", e - g) ? -ENOMEM : 0;
        free(k);
        for (size_t x = g; !r && x < e; x++) {
            q->perm[o[x].i] = x;
            r = cm_strv_push(&args, mids[o[x].i], lens[o[x].i]);
        }
        g = e;
    }
    r = r ? r : cm_strv_pushf(&q->cmd, "%zu", keys.n);
    for (size_t i = 0; !r && i < keys.n; i++)
        r = cm_strv_push(&q->cmd, keys.s[i], keys.len[i]);
    for (size_t i = 0; !r && i < args.n; i++)
        r = cm_strv_push(&q->cmd, args.s[i], args.len[i]);
    cm_strv_free(&keys);
    cm_strv_free(&args);
    free(o);
    return r;
}

int cm_store_get_states(struct cm_store *s, int32_t part, const char *const *mids,
                        const size_t *lens, size_t n, cm_store_mget_cb cb, void *ud)
{
    if (!cm_store_ready(s))
        return -ENOTCONN;
    if (n == 0)
        return -EINVAL;
    struct req *q = req_new(s, RQ_MGET, ud);
    if (!q)
        return -ENOMEM;
    q->cb.mget = cb;
    q->n = n;
    int r;
    if (s->cfg->state_buckets > 0) {
        r = read_prepare(s, q, part, mids, lens, n);
        if (!r)
            r = send_read(s, q, 0);
        if (r)
            req_free(q);
        return r;
    }
    struct strv keys = {0};
    for (size_t i = 0; i < n; i++) {
        size_t kl;
        char *k = cm_layout_key_string(s->cfg->key_prefix, part, mids[i], lens[i], &kl);
        r = k ? cm_strv_push(&keys, k, kl) : -ENOMEM;
        free(k);
        if (r) {
            cm_strv_free(&keys);
            req_free(q);
            return r;
        }
    }
    r = send_mget(s, q, &keys);
    if (r)
        req_free(q);
    return r;
}

int cm_store_get_listpack_limits(struct cm_store *s, cm_store_listpack_cb cb, void *ud)
{
    if (!cm_store_ready(s))
        return -ENOTCONN;
    struct req *q = req_new(s, RQ_CONFIG, ud);
    if (!q)
        return -ENOMEM;
    q->cb.config = cb;
    const char *argv[] = {"CONFIG", "GET", "hash-max-listpack-*"};
    int r = cm_rconn_send(s->c, 3, argv, NULL, on_reply, q);
    if (r)
        req_free(q);
    return r;
}

int cm_store_apply_prepare(const struct cm_store *s, struct cm_store_apply *ap)
{
    return cm_store_apply_layout(ap, s->cfg->state_buckets);
}

int cm_store_apply_send(struct cm_store *s, struct cm_store_apply *ap, cm_store_apply_cb cb,
                        void *ud)
{
    if (!cm_store_ready(s)) {
        cm_store_apply_free(ap);
        return -ENOTCONN;
    }
    struct req *q = req_new(s, RQ_APPLY, ud);
    if (!q) {
        cm_store_apply_free(ap);
        return -ENOMEM;
    }
    q->cb.apply = cb;
    q->ap = ap;
    int r = send_apply(s, q, 0);
    if (r)
        req_free(q);
    return r;
}
