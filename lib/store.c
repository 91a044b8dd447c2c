/* store.c - the Redis store: keys, and batch applies for circmond (over
 * redis_conn.c); the synchronous reads for circmonctl are in store_read.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
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

/* ------------------------------------------------------------------ keys */

static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

char *cm_store_key_pos(const char *prefix, int32_t part)
{
    return xasprintf("%s:{%" PRId32 "}:pos", prefix, part);
}

char *cm_store_key_agg(const char *prefix, int32_t part)
{
    return xasprintf("%s:{%" PRId32 "}:agg", prefix, part);
}

char *cm_store_key_dlq(const char *prefix, int32_t part)
{
    return xasprintf("%s:{%" PRId32 "}:dlq", prefix, part);
}

char *cm_store_key_epoch(const char *prefix, int32_t part)
{
    return xasprintf("%s:{%" PRId32 "}:epoch", prefix, part);
}

char *cm_store_key_state(const char *prefix, int32_t part, const char *mid, size_t len)
{
    return cm_layout_key_string(prefix, part, mid, len, NULL);
}

/* The position in a reply to GET of a pos key: absent is 0; anything but a
 * decimal >= 0 is refused (-EINVAL). The one reader of stored positions. */
int cm_store_pos_parse(const struct redisReply *e, int64_t *pos)
{
    if (e->type == REDIS_REPLY_NIL) {
        *pos = 0;
        return 0;
    }
    if (e->type != REDIS_REPLY_STRING || cm_decimal_i64(e->str, e->len, pos) || *pos < 0)
        return -EINVAL;
    return 0;
}

/* ---------------------------------------------------------------- apply */

/* A growable list of owned byte strings. */
struct strv {
    char **s;
    size_t *len;
    size_t n, cap;
};

static int strv_push(struct strv *v, const void *p, size_t len)
{
    if (v->n == v->cap) {
        /* two arrays of one capacity: the second grows to the first's */
        size_t cs = v->cap, cl = v->cap;
        if (cm_grow(&v->s, &cs, v->n + 1, sizeof(*v->s), 16) < 0 ||
            cm_grow(&v->len, &cl, cs, sizeof(*v->len), 16) < 0)
            return -ENOMEM; /* the grown array is kept: v stays consistent with cap */
        v->cap = cs;
    }
    char *c = malloc(len + 1);
    if (!c)
        return -ENOMEM;
    if (len)
        memcpy(c, p, len);
    c[len] = '\0';
    v->s[v->n] = c;
    v->len[v->n++] = len;
    return 0;
}

static int strv_pushf(struct strv *v, const char *fmt, ...)
{
    char buf[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return -EINVAL;
    return strv_push(v, buf, (size_t)n);
}

static void strv_free(struct strv *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->s[i]);
    free(v->s);
    free(v->len);
    memset(v, 0, sizeof(*v));
}

struct cm_store_apply {
    char *prefix;
    int32_t part;
    int64_t new_pos;
    struct strv keys; /* pos, agg, dlq mark, epoch, layout */
    struct strv args; /* expected, new, mark ('' = unchanged), epoch ('' = unchecked),
                         then the layout once prepared */
    struct strv mids, vals; /* the states, in call order */
    struct strv aggs;       /* aggregate field/increment pairs */
    int agg_done;
    /* made by apply_prepare for the layout of the store sending it */
    int prepared;
    struct strv st_keys;  /* state keys: one per migrant, or one per bucket */
    struct strv st_nums;  /* per bucket: the numbers of fields set and deleted */
    const char **sa;      /* the state part of ARGV: into mids, vals, st_nums */
    size_t *sal, nsa;
};

struct cm_store_apply *cm_store_apply_new(const char *prefix, int32_t part, int64_t expected,
                                          int64_t new_pos)
{
    struct cm_store_apply *ap = calloc(1, sizeof(*ap));
    if (!ap)
        return NULL;
    ap->prefix = strdup(prefix);
    ap->part = part;
    ap->new_pos = new_pos;
    char *kp = cm_store_key_pos(prefix, part), *ka = cm_store_key_agg(prefix, part),
         *kd = cm_store_key_dlq(prefix, part), *ke = cm_store_key_epoch(prefix, part),
         *kl = cm_layout_key(prefix, part);
    int bad = !ap->prefix || !kp || !ka || !kd || !ke || !kl ||
              strv_push(&ap->keys, kp, strlen(kp)) || strv_push(&ap->keys, ka, strlen(ka)) ||
              strv_push(&ap->keys, kd, strlen(kd)) || strv_push(&ap->keys, ke, strlen(ke)) ||
              strv_push(&ap->keys, kl, strlen(kl)) ||
              strv_pushf(&ap->args, "%" PRId64, expected) ||
              strv_pushf(&ap->args, "%" PRId64, new_pos) || strv_push(&ap->args, "", 0) ||
              strv_push(&ap->args, "", 0);
    free(kp);
    free(ka);
    free(kd);
    free(ke);
    free(kl);
    if (bad)
        return cm_store_apply_free(ap);
    return ap;
}

int cm_store_apply_state(struct cm_store_apply *ap, const char *mid, size_t len,
                         const uint8_t *val, size_t vlen)
{
    if (ap->prepared)
        return -EINVAL;
    int r = strv_push(&ap->mids, mid, len);
    if (r)
        return r;
    if ((r = strv_push(&ap->vals, val, vlen))) {
        free(ap->mids.s[--ap->mids.n]); /* mids and vals stay pairs */
        return r;
    }
    return 0;
}

/* One state of an apply, by bucket (then call order). */
struct by_bucket {
    uint32_t b, i;
};

static int cmp_bucket(const void *x, const void *y)
{
    const struct by_bucket *a = x, *b = y;
    return a->b != b->b ? (a->b > b->b) - (a->b < b->b) : (a->i > b->i) - (a->i < b->i);
}

static void sa_add(struct cm_store_apply *ap, const char *p, size_t len)
{
    ap->sa[ap->nsa] = p;
    ap->sal[ap->nsa++] = len;
}

/* The state part of the apply for layout buckets (0: string keys): keys and
 * ARGV as cm_store_lua_apply reads them. Once per apply (a resend after
 * NOSCRIPT reuses it). Returns 0, -EINVAL or -ENOMEM. */
static int apply_prepare(struct cm_store_apply *ap, int32_t buckets)
{
    if (ap->prepared)
        return 0;
    char lay[32];
    int ll = cm_layout_format(buckets, lay, sizeof(lay));
    if (ll < 0)
        return ll;
    size_t n = ap->mids.n;
    struct by_bucket *o = NULL;
    int r = strv_push(&ap->args, lay, (size_t)ll);
    /* at most 2 entries per state plus 2 per bucket (a bucket holds one) */
    if (!r && (!(ap->sa = malloc((4 * n + 1) * sizeof(*ap->sa))) ||
               !(ap->sal = malloc((4 * n + 1) * sizeof(*ap->sal))) ||
               !(o = malloc((n + 1) * sizeof(*o)))))
        r = -ENOMEM;
    for (size_t i = 0; !r && buckets == 0 && i < n; i++) {
        size_t kl;
        char *k = cm_layout_key_string(ap->prefix, ap->part, ap->mids.s[i], ap->mids.len[i], &kl);
        r = k ? strv_push(&ap->st_keys, k, kl) : -ENOMEM;
        free(k);
        if (!r)
            sa_add(ap, ap->vals.s[i], ap->vals.len[i]);
    }
    if (!r && buckets > 0) {
        for (size_t i = 0; i < n; i++)
            o[i] = (struct by_bucket){cm_layout_bucket(ap->mids.s[i], ap->mids.len[i],
                                                       (uint32_t)buckets), (uint32_t)i};
        qsort(o, n, sizeof(*o), cmp_bucket);
        for (size_t g = 0; !r && g < n;) {
            size_t e = g, nset = 0;
            while (e < n && o[e].b == o[g].b)
                nset += ap->vals.len[o[e++].i] > 0;
            size_t kl;
            char *k = cm_layout_key_bucket(ap->prefix, ap->part, o[g].b, &kl);
            r = !k || strv_push(&ap->st_keys, k, kl) ||
                        strv_pushf(&ap->st_nums, "%zu", nset) ||
                        strv_pushf(&ap->st_nums, "%zu", e - g - nset)
                    ? -ENOMEM
                    : 0;
            free(k);
            if (r)
                break;
            sa_add(ap, ap->st_nums.s[ap->st_nums.n - 2], ap->st_nums.len[ap->st_nums.n - 2]);
            sa_add(ap, ap->st_nums.s[ap->st_nums.n - 1], ap->st_nums.len[ap->st_nums.n - 1]);
            for (size_t x = g; x < e; x++) {
                uint32_t i = o[x].i;
                if (ap->vals.len[i]) {
                    sa_add(ap, ap->mids.s[i], ap->mids.len[i]);
                    sa_add(ap, ap->vals.s[i], ap->vals.len[i]);
                }
            }
            for (size_t x = g; x < e; x++) {
                uint32_t i = o[x].i;
                if (!ap->vals.len[i])
                    sa_add(ap, ap->mids.s[i], ap->mids.len[i]);
            }
            g = e;
        }
    }
    free(o);
    if (!r)
        ap->prepared = 1;
    return r;
}

int cm_store_apply_dlq_mark(struct cm_store_apply *ap, int32_t dlq_part, int64_t dlq_from)
{
    char *v = xasprintf("%" PRId32 " %" PRId64, dlq_part, dlq_from);
    if (!v)
        return -ENOMEM;
    free(ap->args.s[2]);
    ap->args.s[2] = v;
    ap->args.len[2] = strlen(v);
    return 0;
}

int cm_store_apply_epoch(struct cm_store_apply *ap, int64_t epoch)
{
    char *v = xasprintf("%" PRId64, epoch);
    if (!v)
        return -ENOMEM;
    free(ap->args.s[3]);
    ap->args.s[3] = v;
    ap->args.len[3] = strlen(v);
    return 0;
}

struct agg_fmt {
    struct cm_store_apply *ap;
    const struct cm_names *nm;
    char buf[2048];
};

static int agg_fmt_one(const struct cm_agg_key *k, int64_t v, void *ud)
{
    struct agg_fmt *af = ud;
    int n = cm_agg_key_format(k, af->nm, af->buf, sizeof(af->buf));
    if (n < 0)
        return n;
    if ((size_t)n >= sizeof(af->buf))
        return -EINVAL;
    int r = strv_push(&af->ap->aggs, af->buf, (size_t)n);
    return r ? r : strv_pushf(&af->ap->aggs, "%" PRId64, v);
}

int cm_store_apply_agg(struct cm_store_apply *ap, const struct cm_agg *ag,
                       const struct cm_names *nm)
{
    if (ap->agg_done)
        return -EINVAL;
    ap->agg_done = 1;
    struct agg_fmt *af = malloc(sizeof(*af));
    if (!af)
        return -ENOMEM;
    af->ap = ap;
    af->nm = nm;
    int r = cm_agg_foreach(ag, agg_fmt_one, af);
    free(af);
    return r;
}

struct cm_store_apply *cm_store_apply_free(struct cm_store_apply *ap)
{
    if (ap) {
        strv_free(&ap->keys);
        strv_free(&ap->args);
        strv_free(&ap->mids);
        strv_free(&ap->vals);
        strv_free(&ap->aggs);
        strv_free(&ap->st_keys);
        strv_free(&ap->st_nums);
        free(ap->sa);
        free(ap->sal);
        free(ap->prefix);
        free(ap);
    }
    return NULL;
}

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
    strv_free(&q->cmd);
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
    int r = apply_prepare(ap, s->cfg->state_buckets);
    if (r)
        return r;
    size_t nk = ap->keys.n + ap->st_keys.n;
    size_t argc = 3 + nk + ap->args.n + ap->nsa + ap->aggs.n;
    const char **argv = malloc(argc * sizeof(*argv));
    size_t *lens = malloc(argc * sizeof(*lens));
    char nks[32];
    r = -ENOMEM;
    if (!argv || !lens)
        goto out;
    lens[2] = (size_t)snprintf(nks, sizeof(nks), "%zu", nk);
    argv[2] = nks;
    size_t j = 3;
    const struct strv *parts[] = {&ap->keys, &ap->st_keys, &ap->args};
    for (size_t p = 0; p < 3; p++)
        for (size_t i = 0; i < parts[p]->n; i++, j++) {
            argv[j] = parts[p]->s[i];
            lens[j] = parts[p]->len[i];
        }
    for (size_t i = 0; i < ap->nsa; i++, j++) {
        argv[j] = ap->sa[i];
        lens[j] = ap->sal[i];
    }
    for (size_t i = 0; i < ap->aggs.n; i++, j++) {
        argv[j] = ap->aggs.s[i];
        lens[j] = ap->aggs.len[i];
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
    strv_free(keys);
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
        int r = !q || !kp || !kd || !kl || strv_push(&keys, kp, strlen(kp)) ||
                        strv_push(&keys, kd, strlen(kd)) || strv_push(&keys, kl, strlen(kl))
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
            strv_free(&keys);
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
        qsort(o, n, sizeof(*o), cmp_bucket);
    for (size_t g = 0; !r && g < n;) {
        size_t e = g;
        while (e < n && o[e].b == o[g].b)
            e++;
        size_t kl;
        char *k = cm_layout_key_bucket(s->cfg->key_prefix, part, o[g].b, &kl);
        r = !k || strv_push(&keys, k, kl) || strv_pushf(&args, "%zu", e - g) ? -ENOMEM : 0;
        free(k);
        for (size_t x = g; !r && x < e; x++) {
            q->perm[o[x].i] = x;
            r = strv_push(&args, mids[o[x].i], lens[o[x].i]);
        }
        g = e;
    }
    r = r ? r : strv_pushf(&q->cmd, "%zu", keys.n);
    for (size_t i = 0; !r && i < keys.n; i++)
        r = strv_push(&q->cmd, keys.s[i], keys.len[i]);
    for (size_t i = 0; !r && i < args.n; i++)
        r = strv_push(&q->cmd, args.s[i], args.len[i]);
    strv_free(&keys);
    strv_free(&args);
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
        r = k ? strv_push(&keys, k, kl) : -ENOMEM;
        free(k);
        if (r) {
            strv_free(&keys);
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
    return apply_prepare(ap, s->cfg->state_buckets);
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
