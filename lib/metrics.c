/* metrics.c - a registry of counters and log-linear histograms. */
#include <stdlib.h>
#include <string.h>

#include "circmon/metrics.h"

struct metric {
    struct cm_counter *c;
    struct cm_hist *h;
};

struct cm_metrics {
    struct metric m[CM_METRICS_MAX];
    size_t n;
};

struct cm_metrics *cm_metrics_new(void)
{
    return calloc(1, sizeof(struct cm_metrics));
}

struct cm_metrics *cm_metrics_free(struct cm_metrics *m)
{
    if (!m)
        return NULL;
    for (size_t i = 0; i < m->n; i++) {
        free(m->m[i].c);
        free(m->m[i].h);
    }
    free(m);
    return NULL;
}

/* Whether m can take one more metric called name. */
static int room_for(const struct cm_metrics *m, const char *name)
{
    if (!m || !name || m->n == CM_METRICS_MAX)
        return 0;
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->m[i].c ? m->m[i].c->name : m->m[i].h->name, name))
            return 0;
    return 1;
}

struct cm_counter *cm_metrics_counter(struct cm_metrics *m, const char *name, const char *help)
{
    if (!room_for(m, name))
        return NULL;
    struct cm_counter *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->name = name;
    c->help = help;
    m->m[m->n++].c = c;
    return c;
}

struct cm_hist *cm_metrics_hist(struct cm_metrics *m, const char *name, const char *help)
{
    if (!room_for(m, name))
        return NULL;
    struct cm_hist *h = malloc(sizeof(*h));
    if (!h)
        return NULL;
    cm_hist_init(h, name, help);
    m->m[m->n++].h = h;
    return h;
}

void cm_hist_init(struct cm_hist *h, const char *name, const char *help)
{
    memset(h, 0, sizeof(*h));
    h->name = name;
    h->help = help;
}

void cm_hist_reset(struct cm_hist *h)
{
    cm_hist_init(h, h->name, h->help);
}

size_t cm_hist_bucket(uint64_t v)
{
    if (v < 16)
        return (size_t)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* 4..63 */
    return 16 + (size_t)(e - 4) * 8 + (size_t)((v >> (e - 3)) & 7);
}

uint64_t cm_hist_bucket_upper(size_t i)
{
    if (i < 16)
        return i;
    if (i >= CM_HIST_BUCKETS - 1)
        return UINT64_MAX;
    size_t e = (i - 16) / 8 + 4, sub = (i - 16) % 8;
    /* bucket (e, sub) holds [(8 + sub) << (e - 3), (9 + sub) << (e - 3)) */
    return ((uint64_t)(9 + sub) << (e - 3)) - 1;
}

void cm_hist_observe(struct cm_hist *h, uint64_t v)
{
    if (!h)
        return;
    h->b[cm_hist_bucket(v)]++;
    h->count++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

uint64_t cm_hist_quantile(const struct cm_hist *h, double q)
{
    if (!h->count)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    /* the rank of the quantile, 1-based: ceil(q * count), at least 1 */
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if ((double)rank < q * (double)h->count)
        rank++;
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < CM_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t u = cm_hist_bucket_upper(i);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}

int cm_metrics_each(const struct cm_metrics *m, cm_metrics_fn cb, void *ud)
{
    for (size_t i = 0; m && i < m->n; i++) {
        int r = cb(m->m[i].c, m->m[i].h, ud);
        if (r)
            return r;
    }
    return 0;
}
