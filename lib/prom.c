/* prom.c - Prometheus text exposition (format 0.0.4) of circmon's figures. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/agg.h"
#include "circmon/indicators.h"
#include "circmon/prom.h"
#include "circmon/timeutil.h"
#include "circmon/window.h"

/* ---- the buffer ---- */

/* Room for need more bytes and a NUL; 0 or -ENOMEM (b unchanged). */
static int reserve(struct cm_strbuf *b, size_t need)
{
    if (need > SIZE_MAX - b->len - 1)
        return -ENOMEM;
    size_t want = b->len + need + 1;
    if (want <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < want)
        cap = cap > SIZE_MAX / 2 ? want : cap * 2;
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
    b->s[b->len] = 0;
    return 0;
}

int cm_strbuf_printf(struct cm_strbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -ENOMEM; /* an encoding error: nothing appended */
    if ((size_t)n < sizeof(tmp))
        return cm_strbuf_append(b, tmp, (size_t)n);
    if (reserve(b, (size_t)n) < 0)
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
    memset(b, 0, sizeof(*b));
}

/* Cuts b back to len bytes (len <= b->len). */
static void truncate_to(struct cm_strbuf *b, size_t len)
{
    b->len = len;
    if (b->s)
        b->s[len] = 0;
}

/* ---- lines ---- */

/* Appends s with \ and newline escaped, and " too when quote (label values). */
static int escaped(struct cm_strbuf *b, const char *s, int quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *rep = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : quote && *s == '"' ? "\\\"" : NULL;
        if (!rep)
            continue;
        if (cm_strbuf_append(b, run, (size_t)(s - run)) < 0 || cm_strbuf_append(b, rep, 2) < 0)
            return -ENOMEM;
        run = s + 1;
    }
    return cm_strbuf_append(b, run, (size_t)(s - run));
}

int cm_prom_family(struct cm_strbuf *b, const char *name, const char *type, const char *help)
{
    size_t len0 = b->len;
    if (cm_strbuf_printf(b, "# HELP %s ", name) < 0 || escaped(b, help ? help : "", 0) < 0 ||
        cm_strbuf_printf(b, "\n# TYPE %s %s\n", name, type) < 0) {
        truncate_to(b, len0);
        return -ENOMEM;
    }
    return 0;
}

/* The shortest of %.15g, %.16g, %.17g that reads back as v; integers
 * without exponent or point. */
static void format_value(double v, char *buf, size_t cap)
{
    if (isnan(v)) {
        snprintf(buf, cap, "NaN");
    } else if (isinf(v)) {
        snprintf(buf, cap, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 1e18) {
        snprintf(buf, cap, "%.0f", v == 0 ? 0.0 : v); /* no "-0" */
    } else {
        for (int p = 15; p <= 17; p++) {
            snprintf(buf, cap, "%.*g", p, v);
            if (strtod(buf, NULL) == v)
                break;
        }
    }
}

int cm_prom_sample(struct cm_strbuf *b, const char *name, const char *labels, double v)
{
    char num[40];
    format_value(v, num, sizeof(num));
    if (labels && *labels)
        return cm_strbuf_printf(b, "%s{%s} %s\n", name, labels, num);
    return cm_strbuf_printf(b, "%s %s\n", name, num);
}

int cm_prom_label(struct cm_strbuf *b, const char *name, const char *value)
{
    size_t len0 = b->len;
    if ((len0 && cm_strbuf_append(b, ",", 1) < 0) || cm_strbuf_printf(b, "%s=\"", name) < 0 ||
        escaped(b, value, 1) < 0 || cm_strbuf_append(b, "\"", 1) < 0) {
        truncate_to(b, len0);
        return -ENOMEM;
    }
    return 0;
}

/* ---- histograms ---- */

static const double sec_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                    0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
static const double count_bounds[] = {1,    10,   50,    100,   250,   500,   1000,
                                      2500, 5000, 10000, 25000, 50000, 100000};

int cm_prom_hist(struct cm_strbuf *b, const char *name, const char *help, const struct cm_hist *h,
                 const double *le, size_t n, double unit)
{
    size_t len0 = b->len, i = 0;
    uint64_t cum = 0, count = h ? h->count : 0;
    char lv[40];
    if (cm_prom_family(b, name, "histogram", help) < 0)
        goto fail;
    for (size_t k = 0; k < n; k++) {
        /* the buckets wholly at or below le[k] */
        for (; h && i < CM_HIST_BUCKETS && (double)cm_hist_bucket_upper(i) * unit <= le[k]; i++)
            cum += h->b[i];
        format_value(le[k], lv, sizeof(lv));
        if (cm_strbuf_printf(b, "%s_bucket{le=\"%s\"} %llu\n", name, lv, (unsigned long long)cum) < 0)
            goto fail;
    }
    format_value(h ? (double)h->sum * unit : 0, lv, sizeof(lv));
    if (cm_strbuf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %s\n%s_count %llu\n", name,
                         (unsigned long long)count, name, lv, name, (unsigned long long)count) < 0)
        goto fail;
    return 0;
fail:
    truncate_to(b, len0);
    return -ENOMEM;
}

int cm_prom_hist_seconds(struct cm_strbuf *b, const char *name, const char *help,
                         const struct cm_hist *h)
{
    return cm_prom_hist(b, name, help, h, sec_bounds, sizeof(sec_bounds) / sizeof(sec_bounds[0]),
                        1e-6);
}

int cm_prom_hist_count(struct cm_strbuf *b, const char *name, const char *help,
                       const struct cm_hist *h)
{
    return cm_prom_hist(b, name, help, h, count_bounds,
                        sizeof(count_bounds) / sizeof(count_bounds[0]), 1);
}

/* ---- the indicator gauges ---- */

/* The outcomes of circmon_permit_outcomes: label value, document counter. */
static const struct {
    const char *label;
    enum cm_ctr ctr;
} outcomes[] = {
    {"in_time_departure", CM_C_INTIME}, {"late_departure", CM_C_LATE},
    {"in_country_overstay", CM_C_ICO},  {"status_change", CM_C_STATUS},
    {"no_show", CM_C_NOSHOW},
};
#define N_OUTCOMES (sizeof(outcomes) / sizeof(outcomes[0]))

/* The gauges per scheme and nationality besides the outcomes. */
static const struct {
    const char *name, *help;
    enum cm_ctr ctr;
} nat_gauges[] = {
    {"circmon_reentries", "In-time departures followed by an entry on another permit of the scheme within 365 days, per scheme and nationality.", CM_C_REENTRY},
    {"circmon_overstay_days", "Days of overstay of late departures and suspected in-country overstays, per scheme and nationality.", CM_C_OVERSTAY_DAYS},
    {"circmon_stay_limit_breaches", "Stay-limit breaches (runs of present days holding a breach day), per scheme and nationality.", CM_C_BREACHES},
    {"circmon_stay_limit_breach_days", "Stay-limit breach days, per scheme and nationality.", CM_C_BREACH_DAYS},
};

static const char *const windows[] = {"3m", "12m"};
static const int window_months[] = {3, 12};

struct ctx {
    struct cm_strbuf *b;
    struct cm_strbuf lb; /* labels of the sample being written */
    const char **keys;   /* scheme ids, sorted */
    size_t nkeys;
    const json_t *schemes;
    int64_t as_of;
    int cohort_months;
};

static int key_cmp(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* The keys of obj, sorted (for output that does not depend on the
 * document's order): *keys is NULL or a new array of *n borrowed keys. */
static int sorted_keys(const json_t *obj, const char ***keys, size_t *n)
{
    *keys = NULL;
    *n = 0;
    size_t sz = json_object_size(obj);
    if (!sz)
        return 0;
    const char **k = malloc(sz * sizeof(*k));
    if (!k)
        return -ENOMEM;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v) k[(*n)++] = key;
    qsort(k, *n, sizeof(*k), key_cmp);
    *keys = k;
    return 0;
}

/* Counter ctr of group g: 0 when missing; -EINVAL when not an integer. */
static int counter(const json_t *g, enum cm_ctr ctr, double *v)
{
    const json_t *j = json_object_get(g, cm_ctr_name(ctr));
    if (!j) {
        *v = 0;
        return 0;
    }
    if (!json_is_integer(j))
        return -EINVAL;
    *v = (double)json_integer_value(j);
    return 0;
}

/* Resets the labels to the scheme's and, when name2 is set, name2=value2. */
static int labels(struct ctx *c, const char *scheme, const char *name2, const char *value2)
{
    truncate_to(&c->lb, 0);
    if (cm_prom_label(&c->lb, "scheme", scheme) < 0 ||
        (name2 && cm_prom_label(&c->lb, name2, value2) < 0))
        return -ENOMEM;
    return 0;
}

/* The by_nationality (or by_cohort) object of a scheme: NULL when absent;
 * -EINVAL when it or a group in it is not an object. */
static int groups(const json_t *s, const char *member, const json_t **out)
{
    const json_t *o = json_object_get(s, member);
    *out = o;
    if (!o)
        return 0;
    if (!json_is_object(o))
        return -EINVAL;
    const char *k;
    const json_t *g;
    json_object_foreach((json_t *)o, k, g) {
        if (!json_is_object(g))
            return -EINVAL;
    }
    return 0;
}

/* Every (scheme, nationality) group: fn(c, scheme id, nationality, group). */
typedef int (*group_fn)(struct ctx *c, const char *sid, const char *key, const json_t *g, void *ud);

static int each_group(struct ctx *c, const char *member, group_fn fn, void *ud)
{
    for (size_t i = 0; i < c->nkeys; i++) {
        const json_t *s = json_object_get(c->schemes, c->keys[i]), *o;
        const char **gk;
        size_t ng;
        int r = groups(s, member, &o);
        if (r < 0)
            return r;
        if (!o)
            continue;
        if (sorted_keys(o, &gk, &ng) < 0)
            return -ENOMEM;
        for (size_t j = 0; j < ng && !r; j++)
            r = fn(c, c->keys[i], gk[j], json_object_get(o, gk[j]), ud);
        free(gk);
        if (r < 0)
            return r;
    }
    return 0;
}

/* circmon_permit_outcomes or circmon_cohort_permit_outcomes: the five
 * outcomes of one group, under label glabel (nationality or cohort). */
static int outcome_samples(struct ctx *c, const char *name, const char *sid, const char *glabel,
                           const char *key, const json_t *g)
{
    for (size_t o = 0; o < N_OUTCOMES; o++) {
        double v;
        if (counter(g, outcomes[o].ctr, &v) < 0)
            return -EINVAL;
        if (labels(c, sid, glabel, key) < 0 || cm_prom_label(&c->lb, "outcome", outcomes[o].label) < 0 ||
            cm_prom_sample(c->b, name, c->lb.s, v) < 0)
            return -ENOMEM;
    }
    return 0;
}

static int nat_outcomes(struct ctx *c, const char *sid, const char *key, const json_t *g, void *ud)
{
    (void)ud;
    return outcome_samples(c, "circmon_permit_outcomes", sid, "nationality", key, g);
}

static int nat_gauge(struct ctx *c, const char *sid, const char *key, const json_t *g, void *ud)
{
    size_t k = *(const size_t *)ud;
    double v;
    if (counter(g, nat_gauges[k].ctr, &v) < 0)
        return -EINVAL;
    if (labels(c, sid, "nationality", key) < 0 || cm_prom_sample(c->b, nat_gauges[k].name, c->lb.s, v) < 0)
        return -ENOMEM;
    return 0;
}

static int cohort_outcomes(struct ctx *c, const char *sid, const char *key, const json_t *g, void *ud)
{
    (void)ud;
    int32_t m;
    if (cm_month_parse(key, &m) < 0)
        return -EINVAL;
    int32_t last = cm_month_of_day(cm_day(c->as_of));
    if (m > last || (int64_t)m <= (int64_t)last - c->cohort_months)
        return 0;
    return outcome_samples(c, "circmon_cohort_permit_outcomes", sid, "cohort", key, g);
}

static int scheme_gauges(struct ctx *c)
{
    if (cm_prom_family(c->b, "circmon_present", "gauge",
                       "Migrants present on a permit of the scheme (overstayers included, exempt and permit-less migrants not).") < 0)
        return -ENOMEM;
    for (size_t i = 0; i < c->nkeys; i++) {
        const json_t *p = json_object_get(json_object_get(c->schemes, c->keys[i]), "present");
        if (p && !json_is_integer(p))
            return -EINVAL;
        if (labels(c, c->keys[i], NULL, NULL) < 0 ||
            cm_prom_sample(c->b, "circmon_present", c->lb.s, p ? (double)json_integer_value(p) : 0) < 0)
            return -ENOMEM;
    }
    if (cm_prom_family(c->b, "circmon_rate", "gauge",
                       "The rates of INDICATORS.md section 4 per scheme, all cohorts; a null rate (denominator 0) has no sample.") < 0)
        return -ENOMEM;
    for (size_t i = 0; i < c->nkeys; i++) {
        const json_t *s = json_object_get(c->schemes, c->keys[i]);
        for (int r = 0; r < CM_R__COUNT; r++) {
            const json_t *v = json_object_get(s, cm_rate_name(r));
            if (!v || json_is_null(v))
                continue;
            if (!json_is_number(v))
                return -EINVAL;
            if (labels(c, c->keys[i], "rate", cm_rate_name(r)) < 0 ||
                cm_prom_sample(c->b, "circmon_rate", c->lb.s, json_number_value(v)) < 0)
                return -ENOMEM;
        }
    }
    return 0;
}

static int window_gauges(struct ctx *c)
{
    struct cm_window w;
    if (cm_prom_family(c->b, "circmon_window_expected_departures", "gauge",
                       "Expected departures of the scheme's cohorts of the last 3 or 12 calendar months, the current one included (INDICATORS.md section 5).") < 0)
        return -ENOMEM;
    for (size_t i = 0; i < c->nkeys; i++)
        for (size_t k = 0; k < 2; k++) {
            int r = cm_window_of_scheme(json_object_get(c->schemes, c->keys[i]), c->as_of,
                                        window_months[k], &w);
            if (r < 0)
                return r;
            if (labels(c, c->keys[i], "window", windows[k]) < 0 ||
                cm_prom_sample(c->b, "circmon_window_expected_departures", c->lb.s,
                               (double)w.c[CM_C_EXPECTED]) < 0)
                return -ENOMEM;
        }
    if (cm_prom_family(c->b, "circmon_window_rate", "gauge",
                       "The rates of INDICATORS.md section 4 over the scheme's cohorts of the last 3 or 12 calendar months (section 5); a null rate has no sample.") < 0)
        return -ENOMEM;
    for (size_t i = 0; i < c->nkeys; i++)
        for (size_t k = 0; k < 2; k++) {
            int r = cm_window_of_scheme(json_object_get(c->schemes, c->keys[i]), c->as_of,
                                        window_months[k], &w);
            if (r < 0)
                return r;
            for (int q = 0; q < CM_R__COUNT; q++) {
                double v;
                if (!cm_window_rate(&w, q, &v))
                    continue;
                if (labels(c, c->keys[i], "rate", cm_rate_name(q)) < 0 ||
                    cm_prom_label(&c->lb, "window", windows[k]) < 0 ||
                    cm_prom_sample(c->b, "circmon_window_rate", c->lb.s, v) < 0)
                    return -ENOMEM;
            }
        }
    return 0;
}

static int dq_gauges(struct ctx *c, const json_t *dq)
{
    const char **k;
    size_t n;
    if (cm_prom_family(c->b, "circmon_data_quality", "gauge",
                       "Data-quality counters over all schemes (INDICATORS.md section 4): invalid, duplicates, too_late, out_of_order, exits_without_entry, entries_while_present, entries_without_permit, unknown_permit, late_admin_events; over_limit when not 0.") < 0 ||
        sorted_keys(dq, &k, &n) < 0)
        return -ENOMEM;
    int r = 0;
    for (size_t i = 0; i < n && !r; i++) {
        const json_t *v = json_object_get(dq, k[i]);
        if (!json_is_integer(v)) {
            r = -EINVAL;
            break;
        }
        truncate_to(&c->lb, 0);
        if (cm_prom_label(&c->lb, "check", k[i]) < 0 ||
            cm_prom_sample(c->b, "circmon_data_quality", c->lb.s, (double)json_integer_value(v)) < 0)
            r = -ENOMEM;
    }
    free(k);
    return r;
}

static int indicators(struct ctx *c, const json_t *doc)
{
    const json_t *dq = json_object_get(doc, "data_quality");
    if (!json_is_object(c->schemes) || !json_is_object(dq))
        return -EINVAL;
    for (size_t i = 0; i < c->nkeys; i++)
        if (!json_is_object(json_object_get(c->schemes, c->keys[i])))
            return -EINVAL;
    int r;
    if (cm_prom_family(c->b, "circmon_indicators_as_of_seconds", "gauge",
                       "The instant (unix seconds) the indicator gauges are evaluated as of.") < 0 ||
        cm_prom_sample(c->b, "circmon_indicators_as_of_seconds", NULL, (double)c->as_of) < 0 ||
        cm_prom_family(c->b, "circmon_permit_outcomes", "gauge",
                       "Due permits by outcome, per scheme and nationality, all cohorts; a scheme's expected departures are the sum over every outcome but no_show.") < 0)
        return -ENOMEM;
    if ((r = each_group(c, "by_nationality", nat_outcomes, NULL)) < 0)
        return r;
    for (size_t k = 0; k < sizeof(nat_gauges) / sizeof(nat_gauges[0]); k++) {
        if (cm_prom_family(c->b, nat_gauges[k].name, "gauge", nat_gauges[k].help) < 0)
            return -ENOMEM;
        if ((r = each_group(c, "by_nationality", nat_gauge, &k)) < 0)
            return r;
    }
    if ((r = scheme_gauges(c)) < 0)
        return r;
    if (cm_prom_family(c->b, "circmon_cohort_permit_outcomes", "gauge",
                       "Due permits by outcome, per scheme and cohort month (the month of the permit's end), for the last cohort months up to the current one.") < 0)
        return -ENOMEM;
    if ((r = each_group(c, "by_cohort", cohort_outcomes, NULL)) < 0 || (r = window_gauges(c)) < 0)
        return r;
    return dq_gauges(c, dq);
}

int cm_prom_indicators(struct cm_strbuf *b, const json_t *doc, int64_t as_of, int cohort_months)
{
    if (!json_is_object(doc) || cm_indicators_as_of_check(as_of, NULL, 0) < 0 || cohort_months < 0 ||
        cohort_months > CM_WINDOW_MAX_MONTHS)
        return -EINVAL;
    struct ctx c = {.b = b, .schemes = json_object_get(doc, "schemes"), .as_of = as_of,
                    .cohort_months = cohort_months};
    size_t len0 = b->len;
    int r = json_is_object(c.schemes) ? sorted_keys(c.schemes, &c.keys, &c.nkeys) : -EINVAL;
    if (!r)
        r = indicators(&c, doc);
    if (r < 0)
        truncate_to(b, len0);
    free(c.keys);
    cm_strbuf_free(&c.lb);
    return r < 0 ? r : 0;
}
