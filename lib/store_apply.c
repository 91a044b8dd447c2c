/* store_apply.c - what circmond writes to Redis, before it is sent: the key
 * names, and a batch apply's contents (states, aggregates, marks) laid out
 * as the apply script reads them. No I/O; store.c sends them. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "circmon/decimal.h"
#include "circmon/grow.h"
#include "circmon/store.h"
#include "circmon/store_layout.h"
#include "store_int.h"

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

int cm_strv_push(struct strv *v, const void *p, size_t len)
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

int cm_strv_pushf(struct strv *v, const char *fmt, ...)
{
    char buf[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return -EINVAL;
    return cm_strv_push(v, buf, (size_t)n);
}

void cm_strv_free(struct strv *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->s[i]);
    free(v->s);
    free(v->len);
    memset(v, 0, sizeof(*v));
}

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
              cm_strv_push(&ap->keys, kp, strlen(kp)) || cm_strv_push(&ap->keys, ka, strlen(ka)) ||
              cm_strv_push(&ap->keys, kd, strlen(kd)) || cm_strv_push(&ap->keys, ke, strlen(ke)) ||
              cm_strv_push(&ap->keys, kl, strlen(kl)) ||
              cm_strv_pushf(&ap->args, "%" PRId64, expected) ||
              cm_strv_pushf(&ap->args, "%" PRId64, new_pos) || cm_strv_push(&ap->args, "", 0) ||
              cm_strv_push(&ap->args, "", 0);
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
    int r = cm_strv_push(&ap->mids, mid, len);
    if (r)
        return r;
    if ((r = cm_strv_push(&ap->vals, val, vlen))) {
        free(ap->mids.s[--ap->mids.n]); /* mids and vals stay pairs */
        return r;
    }
    return 0;
}

int cm_store_cmp_bucket(const void *x, const void *y)
{
    const struct by_bucket *a = x, *b = y;
    return a->b != b->b ? (a->b > b->b) - (a->b < b->b) : (a->i > b->i) - (a->i < b->i);
}

static void sa_add(struct cm_store_apply *ap, const char *p, size_t len)
{
    ap->sa[ap->nsa] = p;
    ap->sal[ap->nsa++] = len;
}

/* The aggregate part: the field/increment pairs grouped by bucket, the
 * bucket keys, and their number as ARGV[6]. */
static int agg_layout(struct cm_store_apply *ap)
{
    size_t n = ap->aggs.n / 2;
    struct by_bucket *o = malloc((n + 1) * sizeof(*o));
    int r = !o || !(ap->aa = malloc((2 * n + CM_AGG_BUCKETS + 1) * sizeof(*ap->aa))) ||
                    !(ap->aal = malloc((2 * n + CM_AGG_BUCKETS + 1) * sizeof(*ap->aal)))
                ? -ENOMEM
                : 0;
    for (size_t i = 0; !r && i < n; i++)
        o[i] = (struct by_bucket){cm_layout_bucket(ap->aggs.s[2 * i], ap->aggs.len[2 * i],
                                                   CM_AGG_BUCKETS), (uint32_t)i};
    if (!r)
        qsort(o, n, sizeof(*o), cm_store_cmp_bucket);
    for (size_t g = 0; !r && g < n;) {
        size_t e = g, kl;
        while (e < n && o[e].b == o[g].b)
            e++;
        char *k = cm_layout_key_agg_bucket(ap->prefix, ap->part, o[g].b, &kl);
        r = !k || cm_strv_push(&ap->ag_keys, k, kl) || cm_strv_pushf(&ap->ag_nums, "%zu", e - g)
                ? -ENOMEM
                : 0;
        free(k);
        if (r)
            break;
        ap->aa[ap->naa] = ap->ag_nums.s[ap->ag_nums.n - 1];
        ap->aal[ap->naa++] = ap->ag_nums.len[ap->ag_nums.n - 1];
        for (size_t x = g; x < e; x++)
            for (size_t h = 0; h < 2; h++) {
                ap->aa[ap->naa] = ap->aggs.s[2 * o[x].i + h];
                ap->aal[ap->naa++] = ap->aggs.len[2 * o[x].i + h];
            }
        g = e;
    }
    free(o);
    return r ? r : cm_strv_pushf(&ap->args, "%zu", ap->ag_keys.n);
}

int cm_store_apply_layout(struct cm_store_apply *ap, int32_t buckets)
{
    if (ap->prepared)
        return 0;
    char lay[32];
    int ll = cm_layout_format(buckets, lay, sizeof(lay));
    if (ll < 0)
        return ll;
    size_t n = ap->mids.n;
    struct by_bucket *o = NULL;
    int r = cm_strv_push(&ap->args, lay, (size_t)ll);
    /* at most 2 entries per state plus 2 per bucket (a bucket holds one) */
    if (!r && (!(ap->sa = malloc((4 * n + 1) * sizeof(*ap->sa))) ||
               !(ap->sal = malloc((4 * n + 1) * sizeof(*ap->sal))) ||
               !(o = malloc((n + 1) * sizeof(*o)))))
        r = -ENOMEM;
    for (size_t i = 0; !r && buckets == 0 && i < n; i++) {
        size_t kl;
        char *k = cm_layout_key_string(ap->prefix, ap->part, ap->mids.s[i], ap->mids.len[i], &kl);
        r = k ? cm_strv_push(&ap->st_keys, k, kl) : -ENOMEM;
        free(k);
        if (!r)
            sa_add(ap, ap->vals.s[i], ap->vals.len[i]);
    }
    if (!r && buckets > 0) {
        for (size_t i = 0; i < n; i++)
            o[i] = (struct by_bucket){cm_layout_bucket(ap->mids.s[i], ap->mids.len[i],
                                                       (uint32_t)buckets), (uint32_t)i};
        qsort(o, n, sizeof(*o), cm_store_cmp_bucket);
        for (size_t g = 0; !r && g < n;) {
            size_t e = g, nset = 0;
            while (e < n && o[e].b == o[g].b)
                nset += ap->vals.len[o[e++].i] > 0;
            size_t kl;
            char *k = cm_layout_key_bucket(ap->prefix, ap->part, o[g].b, &kl);
            r = !k || cm_strv_push(&ap->st_keys, k, kl) ||
                        cm_strv_pushf(&ap->st_nums, "%zu", nset) ||
                        cm_strv_pushf(&ap->st_nums, "%zu", e - g - nset)
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
        r = agg_layout(ap);
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
    int r = cm_strv_push(&af->ap->aggs, af->buf, (size_t)n);
    return r ? r : cm_strv_pushf(&af->ap->aggs, "%" PRId64, v);
}

int cm_store_apply_agg(struct cm_store_apply *ap, const struct cm_agg *ag,
                       const struct cm_names *nm)
{
    if (ap->agg_done || ap->prepared)
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
        cm_strv_free(&ap->keys);
        cm_strv_free(&ap->args);
        cm_strv_free(&ap->mids);
        cm_strv_free(&ap->vals);
        cm_strv_free(&ap->aggs);
        cm_strv_free(&ap->st_keys);
        cm_strv_free(&ap->st_nums);
        cm_strv_free(&ap->ag_keys);
        cm_strv_free(&ap->ag_nums);
        free(ap->sa);
        free(ap->sal);
        free(ap->aa);
        free(ap->aal);
        free(ap->prefix);
        free(ap);
    }
    return NULL;
}
