/* prom_interim.c - a stand-in for lib/prom.c (helper "prom") until it lands: the text helpers of
 * prom.h and an indicator part that holds only circmon_indicators_as_of_seconds. It compiles
 * to nothing once lib/prom.c exists, and is deleted when h-prom is merged. */
#if !__has_include("prom.c")
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/prom.h"

static int reserve(struct cm_strbuf *b, size_t more)
{
    if (b->len + more + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s)
        return -ENOMEM;
    b->s = s;
    b->cap = cap;
    return 0;
}

int cm_strbuf_append(struct cm_strbuf *b, const char *s, size_t len)
{
    if (reserve(b, len) < 0)
        return -ENOMEM;
    memcpy(b->s + b->len, s, len);
    b->len += len;
    b->s[b->len] = '\0';
    return 0;
}

int cm_strbuf_printf(struct cm_strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(b, (size_t)n) < 0)
        return -ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void cm_strbuf_free(struct cm_strbuf *b)
{
    free(b->s);
    *b = (struct cm_strbuf){0};
}

int cm_prom_family(struct cm_strbuf *b, const char *name, const char *type, const char *help)
{
    return cm_strbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int cm_prom_sample(struct cm_strbuf *b, const char *name, const char *labels, double v)
{
    char num[64];
    if (isnan(v))
        snprintf(num, sizeof(num), "NaN");
    else if (isinf(v))
        snprintf(num, sizeof(num), v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 9e15)
        snprintf(num, sizeof(num), "%.0f", v);
    else
        snprintf(num, sizeof(num), "%.17g", v);
    if (labels && *labels)
        return cm_strbuf_printf(b, "%s{%s} %s\n", name, labels, num);
    return cm_strbuf_printf(b, "%s %s\n", name, num);
}

int cm_prom_label(struct cm_strbuf *b, const char *name, const char *value)
{
    if (b->len && cm_strbuf_append(b, ",", 1) < 0)
        return -ENOMEM;
    if (cm_strbuf_printf(b, "%s=\"", name) < 0)
        return -ENOMEM;
    for (const char *p = value; *p; p++) {
        const char *e = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        if (e ? cm_strbuf_append(b, e, 2) : cm_strbuf_append(b, p, 1))
            return -ENOMEM;
    }
    return cm_strbuf_append(b, "\"", 1);
}

int cm_prom_hist_seconds(struct cm_strbuf *b, const char *name, const char *help,
                         const struct cm_hist *h)
{
    static const double bounds[] = {0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                    0.05,   0.1,    0.25,  0.5,    1,     2.5,   5, 10};
    if (cm_prom_family(b, name, "histogram", help) < 0)
        return -ENOMEM;
    uint64_t cum = 0;
    size_t bi = 0;
    for (size_t k = 0; k < sizeof(bounds) / sizeof(bounds[0]); k++) {
        uint64_t lim = (uint64_t)(bounds[k] * 1e6);
        while (bi < CM_HIST_BUCKETS && cm_hist_bucket_upper(bi) <= lim)
            cum += h->b[bi++];
        if (cm_strbuf_printf(b, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, bounds[k], cum) < 0)
            return -ENOMEM;
    }
    if (cm_strbuf_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.6f\n%s_count %" PRIu64
                            "\n",
                         name, h->count, name, (double)h->sum / 1e6, name, h->count) < 0)
        return -ENOMEM;
    return 0;
}

int cm_prom_indicators(struct cm_strbuf *b, const json_t *doc, int64_t as_of, int cohort_months)
{
    (void)cohort_months;
    if (!json_is_object(doc))
        return -EINVAL;
    if (cm_prom_family(b, "circmon_indicators_as_of_seconds", "gauge",
                       "the instant the indicator gauges are evaluated as of (unix seconds)") < 0 ||
        cm_prom_sample(b, "circmon_indicators_as_of_seconds", NULL, (double)as_of) < 0)
        return -ENOMEM;
    return 0;
}
#else
typedef int cm_prom_interim_unused; /* ISO C wants a translation unit to declare something */
#endif
