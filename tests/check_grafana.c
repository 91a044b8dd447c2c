/* check_grafana.c - the Grafana dashboard (config/grafana/circmon.json) and its provisioning files have
 * the structure Grafana reads (no Grafana in Debian: checked with jansson). Its queries run against a
 * real Prometheus in check_prometheus.c. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_dash.h"

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "cannot open %s", path);
    size_t cap = 4096, n = 0, r;
    char *s = malloc(cap);
    ck_assert_ptr_nonnull(s);
    while ((r = fread(s + n, 1, cap - n - 1, fp)) > 0) {
        n += r;
        if (cap - n < 2) {
            cap *= 2;
            s = realloc(s, cap);
            ck_assert_ptr_nonnull(s);
        }
    }
    fclose(fp);
    s[n] = 0;
    return s;
}

struct dash_ck {
    const char *title;
    const char *expr;
    char all[65536]; /* every expression, for the coverage checks */
    size_t len;
    int n;
};

static void metric_known(const char *name, void *ud)
{
    struct dash_ck *c = ud;
    ck_assert_msg(known(name) >= 0, "panel \"%s\": %s is no metric of circmon (README \"Metrics reference\"): %s",
                  c->title, name, c->expr);
}

static void dash_expr(const char *expr, const char *title, void *ud)
{
    struct dash_ck *c = ud;
    ck_assert_msg(expr && *expr, "panel \"%s\": a target without expr", title);
    c->title = title;
    c->expr = expr;
    ck_assert_msg(each_metric(expr, metric_known, c) > 0, "panel \"%s\": no circmon metric in %s", title, expr);
    /* global gauges: every instance exports them, one copy is taken */
    if (indicator_only(expr))
        ck_assert_msg(strstr(expr, "max by (") || strstr(expr, "max("), "panel \"%s\": indicator gauges without max: %s",
                      title, expr);
    if (strstr(expr, "circmon_rate") || strstr(expr, "circmon_window_") || strstr(expr, "circmon_present") ||
        strstr(expr, "circmon_permit_outcomes") || strstr(expr, "circmon_cohort_permit_outcomes"))
        ck_assert_msg(strstr(expr, "scheme=~\"$scheme\"") != NULL, "panel \"%s\": no scheme filter: %s", title,
                      expr);
    size_t l = strlen(expr);
    ck_assert_uint_lt(c->len + l + 2, sizeof(c->all));
    memcpy(c->all + c->len, expr, l);
    c->len += l;
    c->all[c->len++] = '\n';
    c->all[c->len] = 0;
    c->n++;
}

static int is_ds(const json_t *ds)
{
    return json_is_object(ds) && !strcmp(json_string_value(json_object_get(ds, "uid")) ?: "", "${datasource}") &&
           !strcmp(json_string_value(json_object_get(ds, "type")) ?: "", "prometheus");
}

/* Panels: unique ids, known types, within 24 columns, no two overlapping,
 * the datasource variable, targets with unique refIds. */
static void check_panels(const json_t *panels, int *ids, int *nids, json_t **boxes)
{
    static const char *const types[] = {"row", "timeseries", "stat", "barchart", "bargauge", "table"};
    size_t i;
    json_t *p;
    ck_assert(json_is_array(panels));
    json_array_foreach(panels, i, p) {
        const char *type = json_string_value(json_object_get(p, "type")),
                   *title = json_string_value(json_object_get(p, "title"));
        ck_assert_msg(type && title && *title, "panel %zu: type and title", i);
        int ok = 0;
        for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++)
            ok |= !strcmp(type, types[t]);
        ck_assert_msg(ok, "panel \"%s\": type %s", title, type);
        json_t *id = json_object_get(p, "id");
        ck_assert_msg(json_is_integer(id), "panel \"%s\": no id", title);
        for (int k = 0; k < *nids; k++)
            ck_assert_msg(ids[k] != (int)json_integer_value(id), "panel \"%s\": id %d twice", title, ids[k]);
        ck_assert_int_lt(*nids, 256);
        ids[(*nids)++] = (int)json_integer_value(id);
        json_t *g = json_object_get(p, "gridPos");
        json_int_t x = json_integer_value(json_object_get(g, "x")), y = json_integer_value(json_object_get(g, "y")),
                   w = json_integer_value(json_object_get(g, "w")), h = json_integer_value(json_object_get(g, "h"));
        ck_assert_msg(json_is_integer(json_object_get(g, "x")) && json_is_integer(json_object_get(g, "y")) &&
                          w > 0 && h > 0 && x >= 0 && y >= 0 && x + w <= 24,
                      "panel \"%s\": gridPos", title);
        size_t k;
        json_t *b;
        json_array_foreach(*boxes, k, b) {
            json_int_t bx = json_integer_value(json_array_get(b, 0)), by = json_integer_value(json_array_get(b, 1)),
                       bw = json_integer_value(json_array_get(b, 2)), bh = json_integer_value(json_array_get(b, 3));
            ck_assert_msg(x >= bx + bw || bx >= x + w || y >= by + bh || by >= y + h,
                          "panel \"%s\" overlaps another", title);
        }
        ck_assert_int_eq(json_array_append_new(*boxes, json_pack("[IIII]", x, y, w, h)), 0);
        if (!strcmp(type, "row")) {
            if (json_object_get(p, "panels"))
                check_panels(json_object_get(p, "panels"), ids, nids, boxes);
            continue;
        }
        ck_assert_msg(is_ds(json_object_get(p, "datasource")), "panel \"%s\": datasource ${datasource}", title);
        json_t *ts = json_object_get(p, "targets");
        ck_assert_msg(json_array_size(ts) > 0, "panel \"%s\": no target", title);
        size_t j;
        json_t *t;
        json_array_foreach(ts, j, t) {
            const char *ref = json_string_value(json_object_get(t, "refId"));
            ck_assert_msg(ref && *ref, "panel \"%s\": target without refId", title);
            for (size_t m = 0; m < j; m++)
                ck_assert_msg(strcmp(ref, json_string_value(json_object_get(json_array_get(ts, m), "refId"))),
                              "panel \"%s\": refId %s twice", title, ref);
            if (json_object_get(t, "datasource"))
                ck_assert_msg(is_ds(json_object_get(t, "datasource")), "panel \"%s\": target datasource", title);
        }
    }
}

START_TEST(test_dashboard)
{
    json_t *d = dashboard();
    ck_assert_str_eq(json_string_value(json_object_get(d, "uid")), "circmon");
    ck_assert_ptr_nonnull(json_string_value(json_object_get(d, "title")));
    ck_assert(json_integer_value(json_object_get(d, "schemaVersion")) >= 30);
    ck_assert(json_is_object(json_object_get(d, "time")));
    /* a Prometheus datasource variable, a scheme variable on it */
    json_t *ds = variable(d, "datasource"), *sc = variable(d, "scheme");
    ck_assert_msg(ds != NULL, "no datasource variable");
    ck_assert_str_eq(json_string_value(json_object_get(ds, "type")), "datasource");
    ck_assert_str_eq(json_string_value(json_object_get(ds, "query")), "prometheus");
    ck_assert_msg(sc != NULL, "no scheme variable");
    ck_assert_str_eq(json_string_value(json_object_get(sc, "type")), "query");
    ck_assert(is_ds(json_object_get(sc, "datasource")));
    ck_assert_msg(var_query(sc) && strstr(var_query(sc), "label_values(") && strstr(var_query(sc), ", scheme)"),
                  "the scheme variable lists the scheme label");
    ck_assert(json_is_true(json_object_get(sc, "multi")) && json_is_true(json_object_get(sc, "includeAll")));
    /* panels */
    int ids[256], nids = 0;
    json_t *boxes = json_array();
    check_panels(json_object_get(d, "panels"), ids, &nids, &boxes);
    json_decref(boxes);
    struct dash_ck *c = calloc(1, sizeof(*c));
    ck_assert_ptr_nonnull(c);
    each_expr(json_object_get(d, "panels"), dash_expr, c);
    /* the panels the issue asks for, by what they query */
    static const char *const needs[] = {
        "rate=\"overstay_rate\"", "rate=\"in_country_overstay_rate\"", "rate=\"return_compliance_rate\"",
        "rate=\"reentry_rate\"", "circmon_window_rate", "circmon_window_expected_departures",
        "circmon_cohort_permit_outcomes", "outcome=\"in_country_overstay\"", "circmon_present",
        "circmon_data_quality", "circmon_partition_lag", "rate(circmon_events_total",
        "rate(circmon_dead_letters_total", "circmon_batch_apply_seconds_bucket", "circmon_redis_errors_total"};
    for (size_t i = 0; i < sizeof(needs) / sizeof(needs[0]); i++)
        ck_assert_msg(strstr(c->all, needs[i]) != NULL, "no panel queries %s", needs[i]);
    ck_assert_int_ge(c->n, 20);
    free(c);
    json_decref(d);
    /* provisioning: a datasource and a dashboard provider, as Grafana reads them */
    char p[600];
    snprintf(p, sizeof(p), "%s/config/grafana/provisioning/datasources/circmon.yml", dash_top());
    char *y = slurp(p);
    ck_assert_msg(strstr(y, "\napiVersion: 1\n") && strstr(y, "\ndatasources:\n") &&
                      strstr(y, "type: prometheus\n") && strstr(y, "url: http") && !strchr(y, '\t'),
                  "%s: a Prometheus datasource", p);
    free(y);
    snprintf(p, sizeof(p), "%s/config/grafana/provisioning/dashboards/circmon.yml", dash_top());
    y = slurp(p);
    ck_assert_msg(strstr(y, "\napiVersion: 1\n") && strstr(y, "\nproviders:\n") && strstr(y, "type: file\n") &&
                      strstr(y, "path: /") && !strchr(y, '\t'),
                  "%s: a file provider", p);
    free(y);
}
END_TEST


int main(void)
{
    Suite *s = suite_create("grafana");
    TCase *tc = tcase_create("dashboard");
    tcase_add_test(tc, test_dashboard);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
