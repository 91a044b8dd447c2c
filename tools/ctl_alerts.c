/* ctl_alerts.c - circmonctl alerts: the fire condition of every alert instance as of a time, from Redis, statelessly. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "circmon/agg.h"
#include "circmon/alert.h"
#include "circmon/config.h"
#include "circmon/indicators.h"
#include "circmon/names.h"
#include "circmon/store.h"
#include "ctl.h"

static const struct cm_ctl_cmd CMD = {
    .name = "alerts",
    .usage = "usage: circmonctl alerts --config FILE [--as-of TIME] [--format json|table]\n"
             "\n"
             "Reads the aggregate of every partition from Redis and evaluates every\n"
             "[alert NAME] rule of FILE as of TIME (default: now; unix seconds, YYYY-MM-DD\n"
             "or YYYY-MM-DDTHH:MM[:SS]Z, UTC): for each alert instance, its value, the\n"
             "window's expected departures n, and whether the fire condition holds\n"
             "(INDICATORS.md section 5). Stateless: it neither reads nor changes the\n"
             "instances' stored states, so hysteresis does not apply here.\n",
    .opts = CM_CTL_CONFIG | CM_CTL_AS_OF | CM_CTL_FORMAT,
    .required = CM_CTL_CONFIG,
    .format = "table",
    .min_args = 0,
    .max_args = 0,
};

/* Appends the instances of r to arr. Returns 0 or the error of cm_alert_instances. */
static int eval_rule(const struct cm_alert_rule *r, const json_t *doc, int64_t as_of, json_t *arr)
{
    struct cm_alert_inst *in = NULL;
    size_t n = 0;
    int rc = cm_alert_instances(r, doc, as_of, &in, &n);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        double v;
        char thr[32], hy[32];
        int has = cm_alert_value(&in[i].f, &v);
        cm_alert_decimal_str(r->threshold, thr);
        cm_alert_decimal_str(r->hysteresis, hy);
        json_t *o = json_pack("{sssssssosIsssssssIsisb}", "alert", r->name, "scheme",
                              in[i].scheme, "indicator", cm_rate_name(r->indicator), "value",
                              has ? json_real(v) : json_null(), "expected_departures",
                              (json_int_t)in[i].f.n, r->below ? "below" : "above", thr,
                              "hysteresis", hy, "nationality", in[i].nationality, "min_expected",
                              (json_int_t)r->min_expected, "window_months", r->window_months,
                              "fire", cm_alert_fire(r, &in[i].f));
        if (!o || json_array_append_new(arr, o) < 0)
            rc = -ENOMEM;
    }
    free(in);
    return rc;
}

static int print_table(const json_t *doc)
{
    size_t i;
    json_t *o;
    if (printf("%-24s %-16s %-11s %-26s %10s %12s %8s %s\n", "ALERT", "SCHEME", "NATIONALITY",
               "INDICATOR", "VALUE", "EXPECTED", "THRESH", "FIRE") < 0)
        return -1;
    json_array_foreach(json_object_get(doc, "instances"), i, o) {
        const json_t *v = json_object_get(o, "value");
        const json_t *t = json_object_get(o, "above");
        char val[32];
        if (json_is_real(v))
            snprintf(val, sizeof val, "%.6f", json_real_value(v));
        else
            snprintf(val, sizeof val, "null");
        const char *nat = json_string_value(json_object_get(o, "nationality"));
        if (printf("%-24s %-16s %-11s %-26s %10s %12lld %s%-7s %s\n",
                   json_string_value(json_object_get(o, "alert")),
                   json_string_value(json_object_get(o, "scheme")), nat && *nat ? nat : "-",
                   json_string_value(json_object_get(o, "indicator")), val,
                   (long long)json_integer_value(json_object_get(o, "expected_departures")),
                   t ? ">=" : "<=",
                   json_string_value(t ? t : json_object_get(o, "below")),
                   json_is_true(json_object_get(o, "fire")) ? "yes" : "no") < 0)
            return -1;
    }
    return 0;
}

int cm_ctl_alerts(int argc, char **argv)
{
    struct cm_ctl_args a;
    struct cm_config cfg = {0};
    struct cm_agg *ag = NULL;
    struct cm_names *nm = NULL;
    json_t *doc = NULL, *out = NULL, *arr = NULL;
    int rc = cm_ctl_load_agg(&CMD, argc, argv, &a, &cfg, &ag, &nm);
    if (rc >= 0)
        return rc;
    rc = 1;
    doc = cm_indicators_json(ag, nm, &cfg, a.as_of);
    if (!doc) {
        cm_ctl_err(&CMD, "cannot evaluate the figures as of %lld (out of range or out of memory)",
                   (long long)a.as_of);
        goto out;
    }
    arr = json_array();
    out = json_pack("{sIso}", "as_of", (json_int_t)a.as_of, "instances", arr);
    if (!arr || !out) {
        cm_ctl_err(&CMD, "out of memory for the instances");
        goto out;
    }
    for (size_t i = 0; i < cfg.n_alerts; i++) {
        int r = eval_rule(&cfg.alerts[i], doc, a.as_of, arr);
        if (r < 0) {
            cm_ctl_err(&CMD, "rule %s: cannot evaluate (error %d: %s)", cfg.alerts[i].name, r,
                       r == -E2BIG     ? "more instances than CM_ALERT_MAX_INSTANCES"
                       : r == -ENODATA ? "the stored aggregate has no cohorts per nationality for "
                                         "some of its data, folded by a version before them or with "
                                         "nationality_cohorts = no: "
                                         "rebuild it (README \"Operations\")"
                                       : "malformed figures or out of memory");
            goto out;
        }
    }
    if (!strcmp(a.format, "json")) {
        if (json_dumpf(out, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) < 0 ||
            putchar('\n') == EOF) {
            cm_ctl_err(&CMD, "cannot write the output");
            goto out;
        }
    } else if (print_table(out) < 0) {
        cm_ctl_err(&CMD, "cannot write the output");
        goto out;
    }
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    json_decref(out);
    json_decref(doc);
    cm_names_free(nm);
    cm_agg_free(ag);
    cm_config_free(&cfg);
    return rc;
}
