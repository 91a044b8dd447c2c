/* cm_dash.h - reading config/grafana/circmon.json in the test suites: its panels' expressions,
 * Grafana's variables filled in, and the metric names circmon exports (header only: shared by
 * check_grafana.c and check_prometheus.c). */
#ifndef CM_DASH_H
#define CM_DASH_H

#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __GNUC__
#define CMD_UNUSED __attribute__((unused))
#else
#define CMD_UNUSED
#endif

/* The repository's top ($CM_TOP, else "."). */
static inline const char *dash_top(void)
{
    const char *t = getenv("CM_TOP");
    return t && *t ? t : ".";
}


static inline json_t *dashboard(void)
{
    char p[600];
    snprintf(p, sizeof(p), "%s/config/grafana/circmon.json", dash_top());
    json_error_t e;
    json_t *d = json_load_file(p, JSON_REJECT_DUPLICATES, &e);
    ck_assert_msg(d != NULL, "%s:%d: %s", p, e.line, e.text);
    return d;
}

/* expr with Grafana's variables filled in: $scheme (and ${scheme}) by
 * scheme, $job by job, $__rate_interval, $__interval and $__range by
 * durations a 1 s scrape fills. Returns a malloc'd string. */
static inline char *fill(const char *expr, const char *scheme, const char *job)
{
    static const char *const vars[][2] = {{"${scheme}", NULL}, {"$scheme", NULL},
                                          {"${job}", NULL},    {"$job", NULL},
                                          {"$__rate_interval", "10s"}, {"$__interval", "2s"},
                                          {"$__range", "5m"}};
    size_t cap = strlen(expr) * 4 + 256, n = 0;
    char *out = malloc(cap);
    ck_assert_ptr_nonnull(out);
    while (*expr) {
        size_t k, nv = sizeof(vars) / sizeof(vars[0]);
        for (k = 0; k < nv; k++)
            if (!strncmp(expr, vars[k][0], strlen(vars[k][0])))
                break;
        if (k == nv) {
            out[n++] = *expr++;
            continue;
        }
        const char *v = vars[k][1] ? vars[k][1] : k < 2 ? scheme : job;
        ck_assert_uint_lt(n + strlen(v), cap - 1);
        memcpy(out + n, v, strlen(v));
        n += strlen(v);
        expr += strlen(vars[k][0]);
    }
    out[n] = 0;
    ck_assert_msg(!strchr(out, '$'), "a variable the test does not know in %s", out);
    return out;
}

/* Every PromQL expression of the dashboard's panels (rows' panels
 * included), in order: fn(expr, panel title, ud). */
static inline void each_expr(const json_t *panels, void (*fn)(const char *, const char *, void *), void *ud)
{
    size_t i;
    json_t *p;
    json_array_foreach(panels, i, p) {
        const char *title = json_string_value(json_object_get(p, "title"));
        size_t j;
        json_t *t;
        json_array_foreach(json_object_get(p, "targets"), j, t)
            fn(json_string_value(json_object_get(t, "expr")), title, ud);
        if (json_object_get(p, "panels"))
            each_expr(json_object_get(p, "panels"), fn, ud);
    }
}

/* The metric names circmon exports (README "Metrics reference"), as a
 * query names them (a histogram by its _bucket, _sum, _count series): the
 * indicator gauges first, then the pipeline's. The dashboard uses no other. */
static const char *const known_metrics[] CMD_UNUSED = {
    "circmon_indicators_as_of_seconds", "circmon_permit_outcomes", "circmon_reentries",
    "circmon_overstay_days", "circmon_stay_limit_breaches", "circmon_stay_limit_breach_days",
    "circmon_present", "circmon_rate", "circmon_cohort_permit_outcomes", "circmon_window_rate",
    "circmon_window_expected_departures", "circmon_data_quality",
    /* pipeline */
    "circmon_events_total", "circmon_dead_letters_total", "circmon_partition_lag",
    "circmon_partition_position", "circmon_assigned_partitions", "circmon_batch_apply_seconds_bucket",
    "circmon_batch_apply_seconds_sum", "circmon_batch_apply_seconds_count",
    "circmon_batch_events_bucket", "circmon_batch_events_sum", "circmon_batch_events_count",
    "circmon_redis_errors_total", "circmon_redis_reconnects_total", "circmon_rebalances_total",
    "circmon_indicators_refresh_seconds_bucket", "circmon_indicators_refresh_seconds_sum",
    "circmon_indicators_refresh_seconds_count", "circmon_build_info", "circmon_ready",
    "process_resident_memory_bytes", "process_cpu_seconds_total", "process_start_time_seconds",
    "process_open_fds"};
#define N_INDICATOR_METRICS 12
#define N_KNOWN (sizeof(known_metrics) / sizeof(known_metrics[0]))

/* Calls fn for every metric name in expr (words starting circmon_ or
 * process_); returns how many. */
static inline int each_metric(const char *expr, void (*fn)(const char *name, void *ud), void *ud)
{
    int n = 0;
    for (const char *p = expr; *p;) {
        const char *q = strstr(p, "circmon_"), *r = strstr(p, "process_");
        if (!q || (r && r < q))
            q = r;
        if (!q)
            break;
        char name[96];
        size_t k = 0;
        while (k < sizeof(name) - 1 &&
               (q[k] == '_' || (q[k] >= 'a' && q[k] <= 'z') || (q[k] >= '0' && q[k] <= '9'))) {
            name[k] = q[k];
            k++;
        }
        name[k] = 0;
        fn(name, ud);
        n++;
        p = q + k;
    }
    return n;
}

/* The index of name in known_metrics, or -1. */
static inline int known(const char *name)
{
    for (size_t i = 0; i < N_KNOWN; i++)
        if (!strcmp(name, known_metrics[i]))
            return (int)i;
    return -1;
}

static inline void note_pipeline(const char *name, void *ud)
{
    int k = known(name);
    if (k < 0 || k >= N_INDICATOR_METRICS)
        *(int *)ud = 1;
}

/* Whether expr reads only indicator gauges. */
static inline int indicator_only(const char *expr)
{
    int pipeline = 0;
    each_metric(expr, note_pipeline, &pipeline);
    return !pipeline;
}

/* The templating variable called name. */
static inline json_t *variable(const json_t *d, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(json_object_get(d, "templating"), "list"), i, v) {
        if (!strcmp(json_string_value(json_object_get(v, "name")) ?: "", name))
            return v;
    }
    return NULL;
}

/* The query of a query variable (a string, or an object with "query"). */
static const char *var_query(const json_t *v)
{
    const json_t *q = json_object_get(v, "query");
    return json_is_string(q) ? json_string_value(q) : json_string_value(json_object_get(q, "query"));
}

#endif
