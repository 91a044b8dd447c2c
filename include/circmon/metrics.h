/* metrics.h - a registry of counters and histograms: what the stats line and, later, /metrics read.
 *
 * Counters are monotonic uint64 values; histograms count uint64 values
 * (circmond's are microseconds) in log-linear buckets: exact below 16, then
 * 8 buckets per power of two (a quantile is off by at most 1/8 of its
 * value, upwards), and keep the exact count, sum and maximum. A registry
 * holds at most CM_METRICS_MAX metrics, named in Prometheus style
 * ("circmon_events_folded_total"); names and help texts are borrowed
 * (literals). Updates are plain stores: one thread (the loop) updates and
 * reads a registry. */
#ifndef CIRCMON_METRICS_H
#define CIRCMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define CM_METRICS_MAX 64
#define CM_HIST_BUCKETS (16 + 60 * 8) /* every uint64 value has one */

struct cm_counter {
    const char *name, *help;
    uint64_t v;
};

struct cm_hist {
    const char *name, *help;
    uint64_t count, sum, max;
    uint64_t b[CM_HIST_BUCKETS];
};

struct cm_metrics;

/* A new, empty registry, or NULL when out of memory. */
struct cm_metrics *cm_metrics_new(void);

/* Frees m and its metrics. Accepts NULL; returns NULL. */
struct cm_metrics *cm_metrics_free(struct cm_metrics *m);

/* A new counter (0) or histogram (empty) in m, owned by m. Returns NULL
 * when m is NULL, holds CM_METRICS_MAX metrics already, already has name,
 * or memory runs out. */
struct cm_counter *cm_metrics_counter(struct cm_metrics *m, const char *name, const char *help);
struct cm_hist *cm_metrics_hist(struct cm_metrics *m, const char *name, const char *help);

/* Adds v to c; a NULL c is ignored. */
static inline void cm_counter_add(struct cm_counter *c, uint64_t v)
{
    if (c)
        c->v += v;
}

/* c's value; 0 for NULL. */
static inline uint64_t cm_counter_get(const struct cm_counter *c)
{
    return c ? c->v : 0;
}

/* An empty histogram outside any registry (name and help may be NULL). */
void cm_hist_init(struct cm_hist *h, const char *name, const char *help);

/* Empties h (keeps its name). */
void cm_hist_reset(struct cm_hist *h);

/* Counts v in h; a NULL h is ignored. */
void cm_hist_observe(struct cm_hist *h, uint64_t v);

/* The q-quantile (0 <= q <= 1) of what h counted: the upper bound of the
 * bucket holding it, never more than the maximum; 0 when h is empty. */
uint64_t cm_hist_quantile(const struct cm_hist *h, double q);

/* The bucket of v, and the largest value of bucket i (for exporters). */
size_t cm_hist_bucket(uint64_t v);
uint64_t cm_hist_bucket_upper(size_t i);

/* Visits every metric of m in creation order: exactly one of c and h is
 * set. A nonzero return of cb stops the walk and is returned. */
typedef int (*cm_metrics_fn)(const struct cm_counter *c, const struct cm_hist *h, void *ud);
int cm_metrics_each(const struct cm_metrics *m, cm_metrics_fn cb, void *ud);

#endif
