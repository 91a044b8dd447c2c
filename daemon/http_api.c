/* http_api.c - the bodies of circmond's HTTP endpoint: readiness, /v1/status, /v1/schemes, the pipeline part of /metrics. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "circmon/clock.h"
#include "circmon/redis_conn.h"
#include "circmon/store.h"
#include "daemon.h"
#include "http.h"
#include "readside.h"

#ifndef CIRCMON_VERSION
#define CIRCMON_VERSION "0.1.0"
#endif

static const char *phase_name(enum phase p)
{
    return p == PH_RUNNING ? "running" : p == PH_SYNCING ? "syncing" : "idle";
}

int cmd_http_ready(struct daemon *d, json_t *reasons)
{
    int ok = 1;
    const struct cmd_http *h = d->http;
    if (!d->st || !cm_store_ready(d->st)) {
        ok = 0;
        json_array_append_new(reasons, json_string("redis is not connected"));
    }
    if (!d->started || d->phase != PH_RUNNING) {
        ok = 0;
        json_array_append_new(reasons,
                              json_string(!d->started ? "starting: kafka not subscribed yet"
                                                      : "the group has not assigned this "
                                                        "instance's partitions (or they are "
                                                        "being synchronised from Redis)"));
    }
    if (!h || !cmd_readside_figures(h->rs)) {
        ok = 0;
        json_array_append_new(reasons, json_string("the figures have not been read from Redis yet"));
    }
    if (d->stopping) {
        ok = 0;
        json_array_append_new(reasons, json_string("stopping"));
    }
    return ok;
}

static int assigned(const struct daemon *d, int32_t id)
{
    for (int i = 0; d->want && i < d->want->cnt; i++)
        if (d->want->elems[i].partition == id)
            return 1;
    return 0;
}

/* Kafka's high watermark as the consumer last saw it (cached: no query). */
static int hwm(const struct daemon *d, int32_t id, int64_t *hi)
{
    int64_t lo;
    return d->rk && rd_kafka_get_watermark_offsets(d->rk, d->cfg->topic, id, &lo, hi) == 0 &&
                   *hi >= 0
               ? 0
               : -1;
}

json_t *cmd_http_status_json(struct daemon *d)
{
    const struct cmd_http *h = d->http;
    const struct cmd_figures *f = cmd_readside_figures(h->rs);
    int64_t err_at = 0;
    const char *rerr = cmd_readside_error(h->rs, &err_at);
    int n = d->topic_parts > 0 ? d->topic_parts : 0;
    json_t *parts = json_array(), *mine = json_array();
    int64_t total_lag = 0;
    int n_mine = 0, n_unknown = 0; /* assigned here, lag not known yet */
    for (int32_t id = 0; parts && mine && id < n; id++) {
        int is_mine = assigned(d, id);
        int64_t hi = 0;
        int have_hi = is_mine && hwm(d, id, &hi) == 0;
        json_t *pos = NULL, *stored = NULL;
        if (is_mine && (size_t)id < d->n_parts && d->phase == PH_RUNNING)
            pos = json_integer(d->parts[id].pos);
        if (f && id < f->n_parts)
            stored = json_integer(f->pos[id]);
        int64_t p = pos ? json_integer_value(pos) : stored ? json_integer_value(stored) : 0;
        int64_t lag = have_hi && (pos || stored) ? (hi > p ? hi - p : 0) : -1;
        json_t *o = json_pack("{s:i, s:b, s:o, s:o, s:o, s:o}", "partition", (json_int_t)id,
                              "assigned", is_mine, "position", pos ? pos : json_null(),
                              "stored_position", stored ? stored : json_null(),
                              "high_watermark", have_hi ? json_integer(hi) : json_null(), "lag",
                              lag >= 0 ? json_integer(lag) : json_null());
        if (!o || json_array_append_new(parts, o) < 0)
            goto oom;
        if (is_mine) {
            n_mine++;
            json_array_append_new(mine, json_integer(id));
            if (lag > 0)
                total_lag += lag;
            n_unknown += lag < 0;
        }
    }
    json_t *figs = json_pack(
        "{s:s?, s:s?, s:o, s:o, s:o, s:o, s:o, s:s?, s:o}", "prefix", f ? f->al.prefix : NULL,
        "alias", d->cfg->redis_alias, "read", json_boolean(f != NULL), "as_of",
        f ? json_integer(f->as_of) : json_null(), "read_at_ms",
        f ? json_integer(f->read_at_ms) : json_null(), "read_started_at_ms",
        f ? json_integer(f->read_at_ms - f->took_us / 1000 - 1) : json_null(), "refresh_ms",
        json_integer(d->cfg->http_refresh_ms), "last_error", rerr && *rerr ? rerr : NULL,
        "last_error_at_ms", rerr && *rerr ? json_integer(err_at) : json_null());
    json_t *j = json_pack(
        "{s:{s:i, s:s, s:I}, s:s, s:b, s:{s:b, s:b, s:s?}, s:{s:s, s:s, s:s, s:b, s:i}, "
        "s:o, s:o, s:i, s:I, s:i, s:o}",
        "instance", "pid", (int)getpid(), "version", CIRCMON_VERSION, "started_at",
        (json_int_t)h->started_at, "phase", phase_name(d->phase), "ready",
        0, "redis", "connected", d->st && cm_store_ready(d->st), "read_side_connected",
        cmd_readside_connected(h->rs), "error",
        d->st && !cm_store_ready(d->st) ? cm_store_errstr(d->st) : NULL, "kafka", "brokers",
        d->cfg->brokers, "topic", d->cfg->topic, "group_id", d->cfg->group_id, "topic_known",
        d->kafka_ok, "partitions", n, "partitions", parts, "assigned", mine,
        "assigned_partitions", n_mine, "lag", (json_int_t)total_lag, "lag_unknown", n_unknown,
        "figures", figs);
    if (!j)
        return NULL;
    json_t *reasons = json_array();
    if (reasons) {
        json_object_set_new(j, "ready", json_boolean(cmd_http_ready(d, reasons)));
        json_decref(reasons);
    }
    return j;
oom:
    if (parts)
        json_decref(parts);
    if (mine)
        json_decref(mine);
    return NULL;
}

static json_t *scheme_settings(const struct cm_scheme_conf *sc)
{
    char lim[32];
    if (sc->stay_n > 0)
        snprintf(lim, sizeof(lim), "%d/%d", sc->stay_n, sc->stay_w);
    return json_pack("{s:i, s:s?}", "grace_days", sc->grace_days, "stay_limit",
                     sc->stay_n > 0 ? lim : NULL);
}

/* The headline figures of one scheme of the document. */
static json_t *headline(json_t *s)
{
    static const char *const keys[] = {"expected_departures", "in_time_departures",
                                       "late_departures",     "in_country_overstays",
                                       "status_changes",      "no_shows",
                                       "present",             "overstay_rate",
                                       "in_country_overstay_rate", "return_compliance_rate",
                                       "reentry_rate"};
    json_t *o = json_object();
    for (size_t i = 0; o && i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *v = s ? json_object_get(s, keys[i]) : NULL;
        int is_rate = strstr(keys[i], "rate") != NULL;
        if (json_object_set_new(o, keys[i], v ? json_incref(v)
                                               : is_rate ? json_null() : json_integer(0)) < 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

json_t *cmd_http_schemes_json(struct daemon *d)
{
    const struct cm_config *cfg = d->cfg;
    const struct cmd_figures *f = cmd_readside_figures(d->http->rs);
    /* the settings of the prefix the figures come from (alias.h): the ones they mean */
    const struct cm_config *set = f ? &f->al.fold : cfg;
    json_t *docs = f ? json_object_get(f->doc, "schemes") : NULL;
    json_t *list = json_array(), *seen = json_object();
    if (!list || !seen)
        goto oom;
    /* the configured schemes first, in file order, then those only seen in the figures */
    for (size_t i = 0; i <= cfg->n_schemes; i++) {
        const char *id = NULL;
        const char *k;
        json_t *v;
        if (i < cfg->n_schemes) {
            id = cfg->schemes[i].id;
        } else {
            json_object_foreach(docs, k, v) {
                if (json_object_get(seen, k))
                    continue;
                json_t *o = json_pack("{s:s, s:b, s:o, s:o}", "id", k, "configured", 0,
                                      "settings", scheme_settings(cm_config_scheme(set, k)),
                                      "figures", headline(v));
                if (!o || json_array_append_new(list, o) < 0)
                    goto oom;
            }
            break;
        }
        json_t *o = json_pack("{s:s, s:b, s:o, s:o}", "id", id, "configured", 1, "settings",
                              scheme_settings(cm_config_scheme(set, id)), "figures",
                              headline(docs ? json_object_get(docs, id) : NULL));
        if (!o || json_array_append_new(list, o) < 0 ||
            json_object_set_new(seen, id, json_true()) < 0)
            goto oom;
    }
    json_decref(seen);
    return json_pack("{s:o, s:o, s:b, s:o}", "as_of", f ? json_integer(f->as_of) : json_null(),
                     "defaults", scheme_settings(cm_config_scheme(set, "")),
                     "nationality_cohorts", set->nationality_cohorts, "schemes", list);
oom:
    if (list)
        json_decref(list);
    if (seen)
        json_decref(seen);
    return NULL;
}

/* ------------------------------------------------------------ /metrics */

#define TRY(x)                                                                                 \
    do {                                                                                       \
        if ((x) < 0)                                                                           \
            return -ENOMEM;                                                                    \
    } while (0)

static int counter(struct cm_strbuf *b, const char *name, const char *help, uint64_t v)
{
    TRY(cm_prom_family(b, name, "counter", help));
    TRY(cm_prom_sample(b, name, NULL, (double)v));
    return 0;
}

static int gauge(struct cm_strbuf *b, const char *name, const char *help, double v)
{
    TRY(cm_prom_family(b, name, "gauge", help));
    TRY(cm_prom_sample(b, name, NULL, v));
    return 0;
}

/* One labelled sample: name{lname="lvalue"} v. */
static int sample1(struct cm_strbuf *b, const char *name, const char *lname, const char *lvalue,
                   double v)
{
    struct cm_strbuf l = {0};
    int r = cm_prom_label(&l, lname, lvalue);
    if (!r)
        r = cm_prom_sample(b, name, l.s, v);
    cm_strbuf_free(&l);
    return r;
}

/* A histogram of counts (not durations): le bounds are bucket edges of
 * cm_hist, so every cumulative count is exact. */
static int count_hist(struct cm_strbuf *b, const char *name, const char *help,
                      const struct cm_hist *h)
{
    static const uint64_t want[] = {1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000, 50000,
                                    100000};
    TRY(cm_prom_family(b, name, "histogram", help));
    uint64_t cum = 0;
    size_t bi = 0;
    for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
        uint64_t le = cm_hist_bucket_upper(cm_hist_bucket(want[k]));
        while (bi < CM_HIST_BUCKETS && cm_hist_bucket_upper(bi) <= le)
            cum += h->b[bi++];
        TRY(cm_strbuf_printf(b, "%s_bucket{le=\"%" PRIu64 "\"} %" PRIu64 "\n", name, le, cum));
    }
    TRY(cm_strbuf_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %" PRIu64
                            "\n%s_count %" PRIu64 "\n",
                         name, h->count, name, h->sum, name, h->count));
    return 0;
}

struct reg_walk {
    struct cm_strbuf *b;
};

/* The daemon's registry, except what is exported under a contract name. */
static int reg_one(const struct cm_counter *c, const struct cm_hist *h, void *ud)
{
    struct cm_strbuf *b = ((struct reg_walk *)ud)->b;
    if (c) {
        if (!strcmp(c->name, "circmon_dead_letters_total"))
            return 0; /* exported by reason */
        return counter(b, c->name, c->help, c->v);
    }
    if (!strcmp(h->name, "circmon_indicators_refresh_us"))
        return cm_prom_hist_seconds(b, "circmon_indicators_refresh_seconds",
                                    "how long a read of every partition's aggregate from Redis "
                                    "and its evaluation took",
                                    h);
    if (!strcmp(h->name, "circmon_event_apply_latency_us"))
        return cm_prom_hist_seconds(b, "circmon_event_apply_latency_seconds",
                                    "time from an event's Kafka CreateTime to the reply of "
                                    "the apply that folded it (wall clocks of producer and "
                                    "circmond)",
                                    h);
    if (!strcmp(h->name, "circmon_loop_latency_us"))
        return cm_prom_hist_seconds(b, "circmon_loop_latency_seconds",
                                    "how late the loop's 10 ms probe timer fired", h);
    return 0;
}

static int process_metrics(struct cm_strbuf *b, const struct cmd_http *h)
{
    long page = sysconf(_SC_PAGESIZE);
    unsigned long size = 0, rss = 0;
    FILE *fp = fopen("/proc/self/statm", "r");
    if (fp) {
        if (fscanf(fp, "%lu %lu", &size, &rss) != 2)
            rss = 0;
        fclose(fp);
    }
    struct rusage ru;
    double cpu = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
              (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    int fds = 0;
    DIR *dir = opendir("/proc/self/fd");
    if (dir) {
        for (struct dirent *e; (e = readdir(dir));)
            if (e->d_name[0] != '.')
                fds++;
        closedir(dir);
        fds--; /* the directory's own */
    }
    TRY(gauge(b, "process_resident_memory_bytes", "resident memory size in bytes",
              (double)rss * (double)(page > 0 ? page : 4096)));
    TRY(cm_prom_family(b, "process_cpu_seconds_total", "counter",
                       "user and system CPU time spent in seconds"));
    TRY(cm_prom_sample(b, "process_cpu_seconds_total", NULL, cpu));
    TRY(gauge(b, "process_start_time_seconds", "start time of the process since unix epoch in seconds",
              (double)h->started_at));
    TRY(gauge(b, "process_open_fds", "number of open file descriptors", fds));
    return 0;
}

int cmd_http_pipeline_metrics(struct daemon *d, struct cm_strbuf *b)
{
    const struct cmd_http *h = d->http;
    static const char *const results[HR__COUNT] = {"folded", "duplicate", "invalid", "too_late",
                                                   "refused"};
    TRY(cm_prom_family(b, "circmon_events_total", "counter",
                       "events this process took from Kafka and applied, by result (refused: a "
                       "stored state that does not unpack or a limit of one migrant)"));
    for (int i = 0; i < HR__COUNT; i++)
        TRY(sample1(b, "circmon_events_total", "result", results[i], (double)h->results[i]));
    TRY(cm_prom_family(b, "circmon_dead_letters_total", "counter",
                       "dead letters of the batches this process applied, by reason"));
    for (int i = 0; i <= HTTP_REASONS_MAX; i++) {
        if (i < HTTP_REASONS_MAX && !h->reasons[i])
            continue;
        if (i == HTTP_REASONS_MAX && !h->reason_n[i])
            continue;
        TRY(sample1(b, "circmon_dead_letters_total", "reason",
                    i < HTTP_REASONS_MAX ? h->reasons[i] : "other", (double)h->reason_n[i]));
    }
    int n_mine = d->want && d->phase == PH_RUNNING ? d->want->cnt : 0;
    TRY(cm_prom_family(b, "circmon_partition_lag", "gauge",
                       "high watermark minus stored position, partitions assigned here"));
    for (int i = 0; i < n_mine; i++) {
        int32_t id = d->want->elems[i].partition;
        int64_t hi;
        char num[16];
        snprintf(num, sizeof(num), "%" PRId32, id);
        if ((size_t)id < d->n_parts && hwm(d, id, &hi) == 0)
            TRY(sample1(b, "circmon_partition_lag", "partition", num,
                        (double)(hi > d->parts[id].pos ? hi - d->parts[id].pos : 0)));
    }
    TRY(cm_prom_family(b, "circmon_partition_position", "gauge",
                       "stored position (next offset to fold), partitions assigned here"));
    for (int i = 0; i < n_mine; i++) {
        int32_t id = d->want->elems[i].partition;
        char num[16];
        snprintf(num, sizeof(num), "%" PRId32, id);
        if ((size_t)id < d->n_parts)
            TRY(sample1(b, "circmon_partition_position", "partition", num,
                        (double)d->parts[id].pos));
    }
    TRY(gauge(b, "circmon_assigned_partitions", "partitions the group assigned to this instance",
              n_mine));
    TRY(cm_prom_hist_seconds(b, "circmon_batch_apply_seconds",
                             "time from sending a batch's apply to Redis to its reply", &h->h_apply));
    TRY(count_hist(b, "circmon_batch_events", "messages per applied batch", &h->h_events));
    TRY(counter(b, "circmon_redis_errors_total",
                "Redis connections lost or refused and applies that failed", h->redis_errors));
    TRY(counter(b, "circmon_redis_reconnects_total", "Redis connections made again after a loss",
                h->redis_reconnects));
    TRY(counter(b, "circmon_rebalances_total", "consumer-group rebalances seen (assign, revoke, error)",
                h->rebalances));
    TRY(counter(b, "circmon_http_connections_refused_total",
                "HTTP connections closed at once: max_connections were open", h->conns_refused));
    struct cm_rcluster_stats cs;
    if (d->st && cm_store_cluster_stats(d->st, &cs) == 0) {
        TRY(cm_prom_family(b, "circmon_redis_cluster_redirects_total", "counter",
                           "Redis Cluster replies the store followed: MOVED, ASK, TRYAGAIN "
                           "(with CLUSTERDOWN: waited out and sent again)"));
        TRY(sample1(b, "circmon_redis_cluster_redirects_total", "kind", "moved",
                    (double)cs.moved));
        TRY(sample1(b, "circmon_redis_cluster_redirects_total", "kind", "ask", (double)cs.ask));
        TRY(sample1(b, "circmon_redis_cluster_redirects_total", "kind", "tryagain",
                    (double)cs.tryagain));
        TRY(counter(b, "circmon_redis_cluster_map_reads_total",
                    "Redis Cluster slot maps the store read (CLUSTER SLOTS)", cs.map_reads));
    }
    struct reg_walk w = {b};
    TRY(cm_metrics_each(d->m, reg_one, &w));
    TRY(cm_prom_family(b, "circmon_build_info", "gauge", "the version of this circmond, as a label"));
    TRY(sample1(b, "circmon_build_info", "version", CIRCMON_VERSION, 1));
    const struct cmd_figures *fg = cmd_readside_figures(h->rs);
    if (fg) {
        TRY(cm_prom_family(b, "circmon_indicators_prefix", "gauge",
                           "1, with the key prefix the indicator gauges were read from as a label"));
        TRY(sample1(b, "circmon_indicators_prefix", "prefix", fg->al.prefix, 1));
    }
    json_t *reasons = json_array();
    int ready = reasons ? cmd_http_ready(d, reasons) : 0;
    if (reasons)
        json_decref(reasons);
    TRY(gauge(b, "circmon_ready", "1 when this instance is ready (GET /readyz answers 200)", ready));
    return process_metrics(b, h);
}
