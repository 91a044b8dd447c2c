/* check_window.c - the window of cohorts (lib/window.c), rule by rule from INDICATORS.md section 5. */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/alert.h"
#include "circmon/indicators.h"
#include "circmon/window.h"
#include "cm_test.h"

static json_t *load(const char *text)
{
    json_error_t err;
    json_t *d = json_loads(text, 0, &err);
    ck_assert_msg(d != NULL, "test document: %s at %d", err.text, err.position);
    return d;
}

/* The scheme object id of an indicators document. */
static json_t *scheme_of(json_t *doc, const char *id)
{
    json_t *s = json_object_get(json_object_get(doc, "schemes"), id);
    ck_assert_msg(s != NULL, "scheme %s missing", id);
    return s;
}

/* Months since 1970-01 of y-m, written from section 1. */
static int32_t MON(int y, int m) { return (int32_t)((y - 1970) * 12 + (m - 1)); }

/* One scheme object: expected departures 1, 2, 4, ... 2^i in the cohort of
 * 2025-06 + i for i = 0..18 (2025-06 .. 2026-12), each an in-time
 * departure, so a window's sum names its months. */
static json_t *powers(void)
{
    json_t *s = json_object(), *c = json_object();
    ck_assert(s && c && !json_object_set_new(s, "by_cohort", c));
    for (int i = 0; i <= 18; i++) {
        char key[16];
        int m = 5 + i; /* June 2025 is month 5 of 2025 counting from 0 */
        snprintf(key, sizeof(key), "%04d-%02d", 2025 + m / 12, m % 12 + 1);
        json_t *g = json_pack("{sIsI}", "expected_departures", (json_int_t)1 << i,
                              "in_time_departures", (json_int_t)1 << i);
        ck_assert(g && !json_object_set_new(c, key, g));
    }
    return s;
}

/* Sum of 2^i over the cohorts from (y1, m1) to (y2, m2) of powers(). */
static int64_t psum(int y1, int m1, int y2, int m2)
{
    int64_t s = 0;
    for (int32_t m = MON(y1, m1); m <= MON(y2, m2); m++)
        if (m >= MON(2025, 6) && m <= MON(2026, 12))
            s += (int64_t)1 << (m - MON(2025, 6));
    return s;
}

/* K = 3 with S in December 2026: 2026-10, 2026-11, 2026-12. */
START_TEST(test_k3_december)
{
    json_t *s = powers();
    struct cm_window w;
    ck_assert_int_eq(cm_window_of_scheme(s, D(2026, 12, 15), 3, &w), 0);
    ck_assert_int_eq(w.first, MON(2026, 10));
    ck_assert_int_eq(w.last, MON(2026, 12));
    ck_assert_int_eq(w.c[CM_C_EXPECTED], psum(2026, 10, 2026, 12));
    ck_assert_int_eq(w.c[CM_C_EXPECTED], (1 << 16) + (1 << 17) + (1 << 18));
    ck_assert_int_eq(w.c[CM_C_INTIME], w.c[CM_C_EXPECTED]);
    ck_assert_int_eq(w.c[CM_C_LATE], 0); /* missing counters read 0 */
    json_decref(s);
}
END_TEST

/* The month of dS is the window's last month, to the second. */
START_TEST(test_month_edges)
{
    json_t *s = powers();
    struct cm_window w;
    int64_t dec1 = DN(2026, 12, 1) * DAY;
    ck_assert_int_eq(cm_window_of_scheme(s, dec1 - 1, 3, &w), 0); /* 2026-11-30T23:59:59Z */
    ck_assert_int_eq(w.last, MON(2026, 11));
    ck_assert_int_eq(w.c[CM_C_EXPECTED], psum(2026, 9, 2026, 11));
    ck_assert_int_eq(cm_window_of_scheme(s, dec1, 3, &w), 0);
    ck_assert_int_eq(w.last, MON(2026, 12));
    ck_assert_int_eq(w.c[CM_C_EXPECTED], psum(2026, 10, 2026, 12));
    /* K = 1: the current month alone */
    ck_assert_int_eq(cm_window_of_scheme(s, dec1, 1, &w), 0);
    ck_assert_int_eq(w.first, w.last);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], (int64_t)1 << 18);
    /* K = 12 over a year's end: S in February 2026 -> 2025-03 .. 2026-02 */
    ck_assert_int_eq(cm_window_of_scheme(s, D(2026, 2, 28), 12, &w), 0);
    ck_assert_int_eq(w.first, MON(2025, 3));
    ck_assert_int_eq(w.last, MON(2026, 2));
    ck_assert_int_eq(w.c[CM_C_EXPECTED], psum(2025, 3, 2026, 2));
    /* a window before any cohort, and after all of them: empty */
    ck_assert_int_eq(cm_window_of_scheme(s, D(2025, 5, 31), 12, &w), 0);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 0);
    ck_assert_int_eq(cm_window_of_scheme(s, D(2028, 1, 1), 12, &w), 0);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 0);
    /* the largest window holds every cohort */
    ck_assert_int_eq(cm_window_of_scheme(s, D(2026, 12, 31), CM_WINDOW_MAX_MONTHS, &w), 0);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], ((int64_t)1 << 19) - 1);
    /* as of the epoch: 1969-11 .. 1970-01 */
    ck_assert_int_eq(cm_window_of_scheme(s, 0, 3, &w), 0);
    ck_assert_int_eq(w.first, -2);
    ck_assert_int_eq(w.last, 0);
    json_decref(s);
}
END_TEST

/* Rates over a window: the formulas of section 4 on the sums, null where
 * the denominator is 0. */
START_TEST(test_rates)
{
    json_t *s = load("{\"by_cohort\": {"
                     " \"2026-10\": {\"expected_departures\": 10, \"in_time_departures\": 6,"
                     "   \"late_departures\": 1, \"in_country_overstays\": 2, \"status_changes\": 1,"
                     "   \"reentries\": 3, \"overstay_days\": 40, \"no_shows\": 7},"
                     " \"2026-12\": {\"expected_departures\": 5, \"in_time_departures\": 2,"
                     "   \"late_departures\": 2, \"status_changes\": 1, \"reentries\": 1,"
                     "   \"overstay_days\": 5, \"stay_limit_breaches\": 1, \"stay_limit_breach_days\": 4},"
                     " \"2026-09\": {\"expected_departures\": 100, \"late_departures\": 100}}}");
    struct cm_window w;
    double v = -1;
    ck_assert_int_eq(cm_window_of_scheme(s, D(2026, 12, 15), 3, &w), 0);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 15);
    ck_assert_int_eq(w.c[CM_C_NOSHOW], 7);
    ck_assert_int_eq(w.c[CM_C_STATUS], 2);
    ck_assert_int_eq(w.c[CM_C_BREACHES], 1);
    ck_assert_int_eq(w.c[CM_C_BREACH_DAYS], 4);
    ck_assert_int_eq(cm_window_rate(&w, CM_R_OVERSTAY, &v), 1);
    ck_assert_double_eq_tol(v, 5.0 / 15.0, 1e-15);
    ck_assert_int_eq(cm_window_rate(&w, CM_R_IN_COUNTRY, &v), 1);
    ck_assert_double_eq_tol(v, 2.0 / 15.0, 1e-15);
    ck_assert_int_eq(cm_window_rate(&w, CM_R_RETURN, &v), 1);
    ck_assert_double_eq_tol(v, 8.0 / 15.0, 1e-15);
    ck_assert_int_eq(cm_window_rate(&w, CM_R_REENTRY, &v), 1);
    ck_assert_double_eq_tol(v, 4.0 / 8.0, 1e-15);
    ck_assert_int_eq(cm_window_rate(&w, CM_R_MEAN_DAYS, &v), 1);
    ck_assert_double_eq_tol(v, 45.0 / 5.0, 1e-15);
    /* the rate of the sums, not the mean of the months' rates */
    ck_assert_int_eq(cm_window_of_scheme(s, D(2026, 11, 15), 3, &w), 0); /* 09 .. 11 */
    ck_assert_int_eq(cm_window_rate(&w, CM_R_OVERSTAY, &v), 1);
    ck_assert_double_eq_tol(v, 103.0 / 110.0, 1e-15);
    /* null rates: one denominator at a time */
    int64_t c[CM_C__PUBLIC] = {0};
    v = -1;
    for (int r = 0; r < CM_R__COUNT; r++)
        ck_assert_int_eq(cm_rate_of(c, r, &v), 0);
    ck_assert(v == -1); /* untouched */
    c[CM_C_EXPECTED] = 4;
    c[CM_C_STATUS] = 4; /* expected, but no in-time departure and no overstay */
    ck_assert_int_eq(cm_rate_of(c, CM_R_OVERSTAY, &v), 1);
    ck_assert(v == 0);
    ck_assert_int_eq(cm_rate_of(c, CM_R_RETURN, &v), 1);
    ck_assert(v == 0);
    ck_assert_int_eq(cm_rate_of(c, CM_R_REENTRY, &v), 0);
    ck_assert_int_eq(cm_rate_of(c, CM_R_MEAN_DAYS, &v), 0);
    c[CM_C_INTIME] = 2;
    ck_assert_int_eq(cm_rate_of(c, CM_R_REENTRY, &v), 1);
    ck_assert(v == 0);
    c[CM_C_ICO] = 1;
    c[CM_C_OVERSTAY_DAYS] = 3;
    ck_assert_int_eq(cm_rate_of(c, CM_R_MEAN_DAYS, &v), 1);
    ck_assert(v == 3);
    ck_assert_int_eq(cm_rate_of(c, CM_R__COUNT, &v), 0);
    ck_assert_str_eq(cm_rate_name(CM_R_OVERSTAY), "overstay_rate");
    ck_assert_str_eq(cm_rate_name(CM_R_IN_COUNTRY), "in_country_overstay_rate");
    ck_assert_str_eq(cm_rate_name(CM_R_RETURN), "return_compliance_rate");
    ck_assert_str_eq(cm_rate_name(CM_R_REENTRY), "reentry_rate");
    ck_assert_str_eq(cm_rate_name(CM_R_MEAN_DAYS), "mean_overstay_days");
    ck_assert_str_eq(cm_rate_name(CM_R__COUNT), "unknown");
    /* an empty window: every sum 0, every rate null */
    ck_assert_int_eq(cm_window_of_scheme(s, D(2027, 6, 1), 3, &w), 0);
    for (int i = 0; i < CM_C__PUBLIC; i++)
        ck_assert_int_eq(w.c[i], 0);
    for (int r = 0; r < CM_R__COUNT; r++)
        ck_assert_int_eq(cm_window_rate(&w, r, &v), 0);
    json_decref(s);
    /* a scheme without by_cohort */
    s = load("{\"present\": 3}");
    ck_assert_int_eq(cm_window_of_scheme(s, D(2026, 12, 15), 12, &w), 0);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 0);
    json_decref(s);
}
END_TEST

/* Bad arguments and shapes: -EINVAL (or -ERANGE), w untouched. */
START_TEST(test_bad)
{
    static const char *const bad[] = {
        "[]",
        "{\"by_cohort\": []}",
        "{\"by_cohort\": {\"2026-1\": {}}}",
        "{\"by_cohort\": {\"2026-13\": {}}}",
        "{\"by_cohort\": {\"december\": {}}}",
        "{\"by_cohort\": {\"2026-12\": 4}}",
        "{\"by_cohort\": {\"2026-12\": {\"expected_departures\": 1.0}}}",
        "{\"by_cohort\": {\"2026-12\": {\"late_departures\": \"2\"}}}",
        "{\"by_cohort\": {\"2001-01\": {\"no_shows\": null}}}", /* outside the window too */
    };
    struct cm_window w, keep;
    memset(&keep, 0x5a, sizeof(keep));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *s = load(bad[i]);
        w = keep;
        ck_assert_msg(cm_window_of_scheme(s, D(2026, 12, 15), 3, &w) == -EINVAL, "bad[%zu]", i);
        ck_assert(!memcmp(&w, &keep, sizeof(w)));
        json_decref(s);
    }
    json_t *s = load("{\"by_cohort\": {\"2026-12\": {\"expected_departures\": 1}}}");
    int ks[] = {0, -1, CM_WINDOW_MAX_MONTHS + 1};
    for (size_t i = 0; i < 3; i++)
        ck_assert_int_eq(cm_window_of_scheme(s, D(2026, 12, 15), ks[i], &w), -EINVAL);
    ck_assert_int_eq(cm_window_of_scheme(s, -1, 3, &w), -EINVAL);
    ck_assert_int_eq(cm_window_of_scheme(s, INT64_C(253402300800), 3, &w), -EINVAL);
    ck_assert_int_eq(cm_window_of_scheme(s, INT64_C(253402300799), 3, &w), 0);
    ck_assert_int_eq(cm_window_of_scheme(NULL, D(2026, 12, 15), 3, &w), -EINVAL);
    json_decref(s);
    s = load("{\"by_cohort\": {\"2026-11\": {\"overstay_days\": 9223372036854775807},"
             " \"2026-12\": {\"overstay_days\": 1}}}");
    w = keep;
    ck_assert_int_eq(cm_window_of_scheme(s, D(2026, 12, 15), 3, &w), -ERANGE);
    ck_assert(!memcmp(&w, &keep, sizeof(w)));
    ck_assert_int_eq(cm_window_of_scheme(s, D(2026, 12, 15), 1, &w), 0); /* December alone */
    ck_assert_int_eq(w.c[CM_C_OVERSTAY_DAYS], 1);
    json_decref(s);
}
END_TEST

/* The current month's cohort holds only the permits already due as of S:
 * it grows as the month goes on (the engine's documents). */
START_TEST(test_current_month_grows)
{
    struct fx *f = fx_new(30, "S:0");
    FEED(f, ev_grant(NULL, "m1", D(2026, 1, 1), "p1", "S", "AAA", D(2026, 1, 1), D(2026, 12, 10)));
    FEED(f, ev_entry(NULL, "m1", D(2026, 1, 2)));
    FEED(f, ev_exit(NULL, "m1", D(2026, 12, 9)));
    FEED(f, ev_grant(NULL, "m2", D(2026, 1, 1), "p2", "S", "AAA", D(2026, 1, 1), D(2026, 12, 20)));
    FEED(f, ev_entry(NULL, "m2", D(2026, 1, 2)));
    FEED(f, ev_exit(NULL, "m2", D(2026, 12, 9)));
    struct cm_window w;
    double v;
    json_t *doc = doc_at(f, D(2026, 12, 15)); /* p1 due (E Dec 10 < Dec 15), p2 not yet */
    ck_assert_int_eq(cm_window_of_scheme(scheme_of(doc, "S"), D(2026, 12, 15), 1, &w), 0);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 1);
    json_decref(doc);
    doc = doc_at(f, D(2026, 12, 25));
    ck_assert_int_eq(cm_window_of_scheme(scheme_of(doc, "S"), D(2026, 12, 25), 1, &w), 0);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 2);
    ck_assert_int_eq(cm_window_rate(&w, CM_R_RETURN, &v), 1);
    ck_assert(v == 1);
    json_decref(doc);
    /* in January the 3-month window still holds December */
    doc = doc_at(f, D(2027, 1, 5));
    ck_assert_int_eq(cm_window_of_scheme(scheme_of(doc, "S"), D(2027, 1, 5), 3, &w), 0);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 2);
    ck_assert_int_eq(cm_window_of_scheme(scheme_of(doc, "S"), D(2027, 1, 5), 1, &w), 0);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 0);
    json_decref(doc);
    fx_free(f);
}
END_TEST

/* Stay-limit figures are cohort counters of the month of the day concerned
 * (section 3): the worked example's 9 breach days, 1-9 June 2014, are all
 * in a window of June 2014 alone. Over every month the window's sums are
 * the scheme's totals. */
START_TEST(test_breaches_and_totals)
{
    struct fx *f = fx_new(30, "SH:0:90/180");
    FEED(f, ev_grant(NULL, "m", D(2013, 8, 1), "p", "SH", "AAA", D(2013, 8, 1), D(2015, 12, 31)));
    FEED(f, ev_entry(NULL, "m", D(2013, 9, 1)));
    FEED(f, ev_exit(NULL, "m", D(2013, 9, 30)));
    FEED(f, ev_entry(NULL, "m", D(2014, 2, 21)));
    FEED(f, ev_exit(NULL, "m", D(2014, 4, 20)));
    FEED(f, ev_entry(NULL, "m", D(2014, 5, 1)));
    FEED(f, ev_exit(NULL, "m", D(2014, 6, 9)));
    FEED(f, ev_grant(NULL, "n", D(2013, 8, 1), "q", "SH", "BBB", D(2013, 8, 1), D(2014, 3, 31)));
    FEED(f, ev_entry(NULL, "n", D(2013, 9, 1)));
    FEED(f, ev_exit(NULL, "n", D(2014, 4, 10))); /* late: overstay days 10; breaches from
                                                  * 2013-11-30 to its exit */
    int64_t s = D(2016, 3, 1);
    json_t *doc = doc_at(f, s);
    struct cm_window w;
    /* the window of June 2014 alone (the document's as-of is later: the
     * window's months are what as_of names) */
    ck_assert_int_eq(cm_window_of_scheme(scheme_of(doc, "SH"), D(2014, 6, 30), 1, &w), 0);
    ck_assert_int_eq(w.c[CM_C_BREACHES], 1);
    ck_assert_int_eq(w.c[CM_C_BREACH_DAYS], 9);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 0);
    ck_assert_int_eq(cm_window_of_scheme(scheme_of(doc, "SH"), s, CM_WINDOW_MAX_MONTHS, &w), 0);
    for (int i = 0; i < CM_C__PUBLIC; i++)
        ck_assert_msg(w.c[i] == jlong(json_object_get(scheme_of(doc, "SH"), CTR_NAMES[i])), "%s: window %ld, totals %ld",
                      CTR_NAMES[i], (long)w.c[i], jlong(json_object_get(scheme_of(doc, "SH"), CTR_NAMES[i])));
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 2);
    ck_assert_int_eq(w.c[CM_C_LATE], 1);
    ck_assert_int_eq(w.c[CM_C_OVERSTAY_DAYS], 10);
    json_decref(doc);
    fx_free(f);
}
END_TEST

/* Gives f's configuration nationality_cohorts = yes (a new, empty engine
 * over it) and one alert rule with nationality nat: the engine's documents
 * then hold the cohorts of every nationality. */
static void want_rule(struct fx *f, const char *nat);

static void want_nat_cohorts(struct fx *f, const char *nat)
{
    ck_assert_uint_eq(cm_engine_migrants(f->en), 0);
    f->cfg.nationality_cohorts = 1;
    cm_engine_free(f->en);
    f->en = cm_engine_new(&f->cfg);
    ck_assert_ptr_nonnull(f->en);
    want_rule(f, nat);
}

/* One alert rule of scheme * and nationality nat in f's configuration. */
static void want_rule(struct fx *f, const char *nat)
{
    f->cfg.alerts = calloc(1, sizeof *f->cfg.alerts);
    ck_assert_ptr_nonnull(f->cfg.alerts);
    cm_alert_rule_init(&f->cfg.alerts[0], "r", 0);
    snprintf(f->cfg.alerts[0].scheme, sizeof f->cfg.alerts[0].scheme, "*");
    snprintf(f->cfg.alerts[0].nationality, sizeof f->cfg.alerts[0].nationality, "%s", nat);
    f->cfg.n_alerts = 1;
}

/* The by_nationality group nat of scheme sid. */
static json_t *nat_of(json_t *doc, const char *sid, const char *nat)
{
    json_t *g = json_object_get(json_object_get(scheme_of(doc, sid), "by_nationality"), nat);
    ck_assert_msg(g != NULL, "nationality %s of %s missing", nat, sid);
    return g;
}

/* The window of a nationality (section 5, "of a scheme and nationality"):
 * expected outcomes worked out here from the events of section 2 and the
 * outcomes of section 3, per permit, not read from the program. */
START_TEST(test_nationality_windows)
{
    struct fx *f = fx_new(30, "S:0");
    want_nat_cohorts(f, "*");
    /* m1 MEX: exits before E = Oct 15: in time, cohort 2026-10 */
    FEED(f, ev_grant(NULL, "m1", D(2026, 1, 1), "p", "S", "MEX", D(2026, 1, 1), D(2026, 10, 15)));
    FEED(f, ev_entry(NULL, "m1", D(2026, 1, 5)));
    FEED(f, ev_exit(NULL, "m1", D(2026, 10, 10)));
    /* m2 MEX: no exit, E = Nov 20: in-country overstay, cohort 2026-11 */
    FEED(f, ev_grant(NULL, "m2", D(2026, 1, 1), "p", "S", "MEX", D(2026, 1, 1), D(2026, 11, 20)));
    FEED(f, ev_entry(NULL, "m2", D(2026, 1, 5)));
    /* m3 MEX: exit Dec 8 > E = Dec 5: late departure (3 days), cohort 2026-12 */
    FEED(f, ev_grant(NULL, "m3", D(2026, 1, 1), "p", "S", "MEX", D(2026, 1, 1), D(2026, 12, 5)));
    FEED(f, ev_entry(NULL, "m3", D(2026, 1, 5)));
    FEED(f, ev_exit(NULL, "m3", D(2026, 12, 8)));
    /* m4 GTM: in time, cohort 2026-11; m5 GTM: in time, cohort 2026-09 */
    FEED(f, ev_grant(NULL, "m4", D(2026, 1, 1), "p", "S", "GTM", D(2026, 1, 1), D(2026, 11, 10)));
    FEED(f, ev_entry(NULL, "m4", D(2026, 1, 5)));
    FEED(f, ev_exit(NULL, "m4", D(2026, 11, 1)));
    FEED(f, ev_grant(NULL, "m5", D(2026, 1, 1), "p", "S", "GTM", D(2026, 1, 1), D(2026, 9, 10)));
    FEED(f, ev_entry(NULL, "m5", D(2026, 1, 5)));
    FEED(f, ev_exit(NULL, "m5", D(2026, 9, 1)));
    /* m6 without nationality (XXX): in time, cohort 2026-12 */
    FEED(f, ev_grant(NULL, "m6", D(2026, 1, 1), "p", "S", NULL, D(2026, 1, 1), D(2026, 12, 1)));
    FEED(f, ev_entry(NULL, "m6", D(2026, 1, 5)));
    FEED(f, ev_exit(NULL, "m6", D(2026, 11, 30)));
    /* m7 MEX: E = Dec 25, not due on Dec 15, in time once due */
    FEED(f, ev_grant(NULL, "m7", D(2026, 1, 1), "p", "S", "MEX", D(2026, 1, 1), D(2026, 12, 25)));
    FEED(f, ev_entry(NULL, "m7", D(2026, 1, 5)));
    FEED(f, ev_exit(NULL, "m7", D(2026, 12, 1)));
    /* m8 MEX: never used, E = Oct 20: a no-show, cohort 2026-10 */
    FEED(f, ev_grant(NULL, "m8", D(2026, 1, 1), "p", "S", "MEX", D(2026, 1, 1), D(2026, 10, 20)));
    /* m9 MEX on another scheme: not in S's windows */
    FEED(f, ev_grant(NULL, "m9", D(2026, 1, 1), "p", "T", "MEX", D(2026, 1, 1), D(2026, 12, 1)));
    FEED(f, ev_entry(NULL, "m9", D(2026, 1, 5)));

    int64_t s = D(2026, 12, 15);
    json_t *doc = doc_at(f, s);
    struct cm_window w;
    double v;
    ck_assert_int_eq(cm_window_of_scheme(nat_of(doc, "S", "MEX"), s, 3, &w), 0);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 3); /* m1, m2, m3 */
    ck_assert_int_eq(w.c[CM_C_INTIME], 1);
    ck_assert_int_eq(w.c[CM_C_ICO], 1);
    ck_assert_int_eq(w.c[CM_C_LATE], 1);
    ck_assert_int_eq(w.c[CM_C_NOSHOW], 1);
    ck_assert_int_eq(w.c[CM_C_OVERSTAY_DAYS], (DN(2026, 12, 15) - DN(2026, 11, 20)) + 3);
    ck_assert_int_eq(cm_window_rate(&w, CM_R_OVERSTAY, &v), 1);
    ck_assert_double_eq_tol(v, 2.0 / 3.0, 1e-15);
    ck_assert_int_eq(cm_window_rate(&w, CM_R_IN_COUNTRY, &v), 1);
    ck_assert_double_eq_tol(v, 1.0 / 3.0, 1e-15);
    ck_assert_int_eq(cm_window_of_scheme(nat_of(doc, "S", "MEX"), s, 1, &w), 0);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 1); /* m3 alone; m7 not yet due */
    ck_assert_int_eq(w.c[CM_C_LATE], 1);
    ck_assert_int_eq(cm_window_of_scheme(nat_of(doc, "S", "GTM"), s, 3, &w), 0);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 1); /* m4 */
    ck_assert_int_eq(w.c[CM_C_INTIME], 1);
    ck_assert_int_eq(cm_window_of_scheme(nat_of(doc, "S", "GTM"), s, 4, &w), 0);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 2); /* m4, m5 */
    ck_assert_int_eq(cm_window_of_scheme(nat_of(doc, "S", "XXX"), s, 3, &w), 0);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 1);
    ck_assert_int_eq(cm_window_of_scheme(nat_of(doc, "T", "MEX"), s, 3, &w), 0);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 1);
    ck_assert_int_eq(w.c[CM_C_ICO], 1);
    /* over every window length, the nationalities' windows sum to the scheme's */
    for (int k = 1; k <= 14; k++) {
        struct cm_window ws, wn, sum = {0};
        const char *key;
        json_t *g;
        ck_assert_int_eq(cm_window_of_scheme(scheme_of(doc, "S"), s, k, &ws), 0);
        json_object_foreach(json_object_get(scheme_of(doc, "S"), "by_nationality"), key, g) {
            ck_assert_int_eq(cm_window_of_scheme(g, s, k, &wn), 0);
            for (int i = 0; i < CM_C__PUBLIC; i++)
                sum.c[i] += wn.c[i];
        }
        for (int i = 0; i < CM_C__PUBLIC; i++)
            ck_assert_msg(sum.c[i] == ws.c[i], "K %d %s: nationalities %ld, scheme %ld", k,
                          CTR_NAMES[i], (long)sum.c[i], (long)ws.c[i]);
    }
    json_decref(doc);
    /* the current month grows: on Dec 30, m7 is due */
    doc = doc_at(f, D(2026, 12, 30));
    ck_assert_int_eq(cm_window_of_scheme(nat_of(doc, "S", "MEX"), D(2026, 12, 30), 1, &w), 0);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 2);
    ck_assert_int_eq(w.c[CM_C_INTIME], 1);
    json_decref(doc);

    /* without a nationality rule the document is the one of section 4:
     * nationality groups without cohorts */
    f->cfg.alerts[0].nationality[0] = '\0';
    doc = doc_at(f, s);
    ck_assert_ptr_null(json_object_get(nat_of(doc, "S", "MEX"), "by_cohort"));
    ck_assert_ptr_nonnull(json_object_get(scheme_of(doc, "S"), "by_cohort"));
    json_decref(doc);
    fx_free(f);
}
END_TEST

/* Stay-limit figures per nationality and month (section 3: the month of the
 * day concerned, the nationality of the most recent permit of the scheme).
 * AAA: the worked example, 9 breach days 1-9 June 2014. BBB: one stay from
 * 2013-09-01 to its exit 2014-04-10 under 90/180: day k of the stay (k <= 180)
 * has k present days in its 180, so days 91.. are breach days: 2013-11-30 to
 * 2014-04-10, 1 + 31 + 31 + 28 + 31 + 10 = 132 days, one breach in 2013-11. */
START_TEST(test_nationality_breaches)
{
    struct fx *f = fx_new(30, "SH:0:90/180");
    want_nat_cohorts(f, "BBB");
    FEED(f, ev_grant(NULL, "m", D(2013, 8, 1), "p", "SH", "AAA", D(2013, 8, 1), D(2015, 12, 31)));
    FEED(f, ev_entry(NULL, "m", D(2013, 9, 1)));
    FEED(f, ev_exit(NULL, "m", D(2013, 9, 30)));
    FEED(f, ev_entry(NULL, "m", D(2014, 2, 21)));
    FEED(f, ev_exit(NULL, "m", D(2014, 4, 20)));
    FEED(f, ev_entry(NULL, "m", D(2014, 5, 1)));
    FEED(f, ev_exit(NULL, "m", D(2014, 6, 9)));
    FEED(f, ev_grant(NULL, "n", D(2013, 8, 1), "q", "SH", "BBB", D(2013, 8, 1), D(2014, 3, 31)));
    FEED(f, ev_entry(NULL, "n", D(2013, 9, 1)));
    FEED(f, ev_exit(NULL, "n", D(2014, 4, 10)));
    json_t *doc = doc_at(f, D(2016, 3, 1));
    struct cm_window w;
    ck_assert_int_eq(cm_window_of_scheme(nat_of(doc, "SH", "AAA"), D(2014, 6, 30), 1, &w), 0);
    ck_assert_int_eq(w.c[CM_C_BREACHES], 1);
    ck_assert_int_eq(w.c[CM_C_BREACH_DAYS], 9);
    ck_assert_int_eq(cm_window_of_scheme(nat_of(doc, "SH", "BBB"), D(2014, 6, 30), 1, &w), 0);
    ck_assert_int_eq(w.c[CM_C_BREACH_DAYS], 0);
    ck_assert_int_eq(cm_window_of_scheme(nat_of(doc, "SH", "BBB"), D(2013, 12, 31), 1, &w), 0);
    ck_assert_int_eq(w.c[CM_C_BREACH_DAYS], 31);
    ck_assert_int_eq(w.c[CM_C_BREACHES], 0);
    ck_assert_int_eq(cm_window_of_scheme(nat_of(doc, "SH", "BBB"), D(2013, 11, 30), 1, &w), 0);
    ck_assert_int_eq(w.c[CM_C_BREACH_DAYS], 1);
    ck_assert_int_eq(w.c[CM_C_BREACHES], 1);
    ck_assert_int_eq(cm_window_of_scheme(nat_of(doc, "SH", "BBB"), D(2014, 4, 30), 6, &w), 0);
    ck_assert_int_eq(w.c[CM_C_BREACH_DAYS], 132); /* 2013-11 .. 2014-04 */
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 1);     /* E 2014-03-31: cohort 2014-03 */
    ck_assert_int_eq(w.c[CM_C_LATE], 1);
    ck_assert_int_eq(w.c[CM_C_OVERSTAY_DAYS], 10);
    json_decref(doc);
    /* an open stay: its breach days run to dS, in each month */
    FEED(f, ev_grant(NULL, "o", D(2016, 1, 1), "r", "SH", "BBB", D(2016, 1, 1), D(2017, 12, 31)));
    FEED(f, ev_entry(NULL, "o", D(2016, 1, 1)));
    doc = doc_at(f, D(2016, 5, 10)); /* day 91 = 2016-03-31 (leap year): 1 + 30 + 10 */
    ck_assert_int_eq(cm_window_of_scheme(nat_of(doc, "SH", "BBB"), D(2016, 5, 10), 3, &w), 0);
    ck_assert_int_eq(w.c[CM_C_BREACH_DAYS], 41);
    ck_assert_int_eq(w.c[CM_C_BREACHES], 1);
    ck_assert_int_eq(cm_window_of_scheme(nat_of(doc, "SH", "BBB"), D(2016, 5, 10), 1, &w), 0);
    ck_assert_int_eq(w.c[CM_C_BREACH_DAYS], 10);
    json_decref(doc);
    fx_free(f);
}
END_TEST

/* An aggregate folded (in part) before the cohorts per nationality existed:
 * a nationality whose cohorts do not sum to its counters gets none, and
 * its rules are refused (-ENODATA) rather than computed from a part. */
START_TEST(test_nationality_old_aggregate)
{
    struct cm_config cfg;
    ck_assert_int_eq(cm_config_defaults(&cfg), 0);
    cfg.alerts = calloc(1, sizeof *cfg.alerts);
    ck_assert_ptr_nonnull(cfg.alerts);
    cm_alert_rule_init(&cfg.alerts[0], "r", 0);
    strcpy(cfg.alerts[0].scheme, "S");
    strcpy(cfg.alerts[0].nationality, "MEX");
    cfg.alerts[0].min_expected = 1;
    cfg.n_alerts = 1;
    struct cm_names *nm = cm_names_new();
    struct cm_agg *ag = cm_agg_new();
    ck_assert(nm && ag);
    int32_t sc = cm_names_intern(nm, "S", 1), mex = cm_names_intern(nm, "MEX", 3),
            gtm = cm_names_intern(nm, "GTM", 3);
    int32_t dec = MON(2026, 12);
    /* MEX: 3 expected departures in December, 2 of them folded before */
    struct cm_agg_key k = {.kind = CM_AK_NAT, .ctr = CM_C_EXPECTED, .scheme = sc, .a = mex};
    ck_assert_int_eq(cm_agg_add(ag, &k, 3), 0);
    k = (struct cm_agg_key){.kind = CM_AK_MONTH, .ctr = CM_C_EXPECTED, .scheme = sc, .a = dec};
    ck_assert_int_eq(cm_agg_add(ag, &k, 4), 0);
    k = (struct cm_agg_key){.kind = CM_AK_NATMONTH, .ctr = CM_C_EXPECTED, .scheme = sc, .a = mex, .b = dec};
    ck_assert_int_eq(cm_agg_add(ag, &k, 1), 0);
    /* GTM: complete */
    k = (struct cm_agg_key){.kind = CM_AK_NAT, .ctr = CM_C_EXPECTED, .scheme = sc, .a = gtm};
    ck_assert_int_eq(cm_agg_add(ag, &k, 1), 0);
    k = (struct cm_agg_key){.kind = CM_AK_NATMONTH, .ctr = CM_C_EXPECTED, .scheme = sc, .a = gtm, .b = dec};
    ck_assert_int_eq(cm_agg_add(ag, &k, 1), 0);
    int64_t s = D(2026, 12, 15);
    json_t *doc = cm_indicators_json(ag, nm, &cfg, s);
    ck_assert_ptr_nonnull(doc);
    ck_assert_ptr_null(json_object_get(nat_of(doc, "S", "MEX"), "by_cohort"));
    struct cm_window w;
    ck_assert_int_eq(cm_window_of_scheme(nat_of(doc, "S", "GTM"), s, 1, &w), 0);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 1);
    struct cm_alert_inst *in = NULL;
    size_t n = 0;
    ck_assert_int_eq(cm_alert_instances(&cfg.alerts[0], doc, s, &in, &n), -ENODATA);
    strcpy(cfg.alerts[0].nationality, "GTM");
    ck_assert_int_eq(cm_alert_instances(&cfg.alerts[0], doc, s, &in, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(in[0].f.n, 1);
    free(in);
    json_decref(doc);
    /* once the missing part is there (a rebuild), MEX has its cohorts */
    k = (struct cm_agg_key){.kind = CM_AK_NATMONTH, .ctr = CM_C_EXPECTED, .scheme = sc, .a = mex, .b = dec};
    ck_assert_int_eq(cm_agg_add(ag, &k, 2), 0);
    doc = cm_indicators_json(ag, nm, &cfg, s);
    ck_assert_int_eq(cm_window_of_scheme(nat_of(doc, "S", "MEX"), s, 1, &w), 0);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 3);
    json_decref(doc);
    cm_agg_free(ag);
    cm_names_free(nm);
    cm_config_free(&cfg);
}
END_TEST

/* The fields of an aggregate as Redis holds them (cm_agg_key_format), with
 * their values, sorted: "field=value" lines. */
struct fields {
    char **f;
    size_t n, cap;
    const struct cm_names *nm;
};

static int field_of(const struct cm_agg_key *k, int64_t v, void *ud)
{
    struct fields *fs = ud;
    char buf[1024];
    int l = cm_agg_key_format(k, fs->nm, buf, sizeof buf);
    ck_assert_int_gt(l, 0);
    ck_assert_int_lt(l, (int)sizeof buf);
    if (fs->n == fs->cap) {
        fs->cap = fs->cap ? 2 * fs->cap : 64;
        fs->f = realloc(fs->f, fs->cap * sizeof *fs->f);
        ck_assert_ptr_nonnull(fs->f);
    }
    size_t need = (size_t)l + 32;
    fs->f[fs->n] = malloc(need);
    ck_assert_ptr_nonnull(fs->f[fs->n]);
    snprintf(fs->f[fs->n], need, "%s=%lld", buf, (long long)v);
    fs->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void fields_of(struct fx *f, struct fields *fs)
{
    *fs = (struct fields){.nm = cm_engine_names(f->en)};
    ck_assert_int_eq(cm_agg_foreach(cm_engine_agg(f->en), field_of, fs), 0);
    qsort(fs->f, fs->n, sizeof *fs->f, cmp_str);
}

static void fields_free(struct fields *fs)
{
    for (size_t i = 0; i < fs->n; i++)
        free(fs->f[i]);
    free(fs->f);
}

/* The same events, in the same order, into f. */
static void feed_mix(struct fx *f)
{
    FEED(f, ev_grant(NULL, "m1", D(2026, 1, 1), "p", "S", "MEX", D(2026, 1, 1), D(2026, 10, 15)));
    FEED(f, ev_entry(NULL, "m1", D(2026, 1, 5)));
    FEED(f, ev_exit(NULL, "m1", D(2026, 10, 10)));
    FEED(f, ev_grant(NULL, "m2", D(2026, 1, 1), "p", "S", "MEX", D(2026, 1, 1), D(2026, 11, 20)));
    FEED(f, ev_entry(NULL, "m2", D(2026, 1, 5)));
    FEED(f, ev_grant(NULL, "m3", D(2026, 1, 1), "p", "S", "GTM", D(2026, 1, 1), D(2026, 9, 1)));
    FEED(f, ev_entry(NULL, "m3", D(2026, 1, 5)));
    FEED(f, ev_exit(NULL, "m3", D(2026, 9, 20)));
    FEED(f, ev_entry(NULL, "m3", D(2026, 10, 1)));
    FEED(f, ev_grant(NULL, "h", D(2013, 8, 1), "q", "SH", "BBB", D(2013, 8, 1), D(2014, 3, 31)));
    FEED(f, ev_entry(NULL, "h", D(2013, 9, 1)));
    FEED(f, ev_exit(NULL, "h", D(2014, 4, 10)));
    FEED(f, ev_exit(NULL, "x", D(2026, 2, 1))); /* an exit without entry: data quality */
}

/* nationality_cohorts = no (the default): the fold writes no cohorts per
 * nationality, so the aggregate's fields are exactly those with yes less
 * every c: field (what they were before the cohorts per nationality
 * existed); with yes, each nationality's c: fields sum to its n: fields.
 * A nationality rule over an aggregate without them (a configuration that
 * bypassed the file's check, or an old prefix) is refused, not computed. */
START_TEST(test_nationality_cohorts_off)
{
    struct fx *no = fx_new(30, "S:0 SH:0:90/180"), *yes = fx_new(30, "S:0 SH:0:90/180");
    want_nat_cohorts(yes, "MEX");
    feed_mix(no);
    feed_mix(yes);
    struct fields a, b;
    fields_of(no, &a);
    fields_of(yes, &b);
    size_t nc = 0, j = 0;
    for (size_t i = 0; i < b.n; i++) {
        if (strncmp(b.f[i], "c:", 2) == 0) {
            nc++;
            continue;
        }
        ck_assert_msg(j < a.n, "field %s of yes missing with no", b.f[i]);
        ck_assert_str_eq(a.f[j], b.f[i]);
        j++;
    }
    ck_assert_uint_eq(j, a.n); /* nothing with no that yes lacks */
    ck_assert_uint_gt(nc, 0);
    for (size_t i = 0; i < a.n; i++)
        ck_assert_msg(strncmp(a.f[i], "c:", 2) != 0, "c: field with no: %s", a.f[i]);
    /* the kinds without nationality cohorts are there in both */
    int kinds[128] = {0};
    for (size_t i = 0; i < a.n; i++)
        kinds[(unsigned char)a.f[i][0]]++;
    ck_assert(kinds['n'] && kinds['m'] && kinds['d'] && kinds['r'] && kinds['q']);

    /* with yes the window of MEX is its 2 expected departures (Oct, Nov) */
    int64_t s = D(2026, 12, 15);
    json_t *doc = doc_at(yes, s);
    struct cm_window w;
    ck_assert_int_eq(cm_window_of_scheme(nat_of(doc, "S", "MEX"), s, 3, &w), 0);
    ck_assert_int_eq(w.c[CM_C_EXPECTED], 2);
    struct cm_alert_inst *in = NULL;
    size_t n = 0;
    ck_assert_int_eq(cm_alert_instances(&yes->cfg.alerts[0], doc, s, &in, &n), 0);
    ck_assert_uint_eq(n, 1);
    free(in);
    json_decref(doc);
    /* with no, the same rule (set in the struct, past the file's check) finds
     * no cohorts for MEX and is refused */
    want_rule(no, "MEX");
    doc = doc_at(no, s);
    ck_assert_ptr_null(json_object_get(nat_of(doc, "S", "MEX"), "by_cohort"));
    in = NULL;
    n = 0;
    ck_assert_int_eq(cm_alert_instances(&no->cfg.alerts[0], doc, s, &in, &n), -ENODATA);
    free(in);
    json_decref(doc);
    fields_free(&a);
    fields_free(&b);
    fx_free(no);
    fx_free(yes);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("window");
    TCase *tc = tcase_create("window");
    tcase_add_test(tc, test_k3_december);
    tcase_add_test(tc, test_month_edges);
    tcase_add_test(tc, test_rates);
    tcase_add_test(tc, test_bad);
    tcase_add_test(tc, test_current_month_grows);
    tcase_add_test(tc, test_breaches_and_totals);
    tcase_add_test(tc, test_nationality_windows);
    tcase_add_test(tc, test_nationality_cohorts_off);
    tcase_add_test(tc, test_nationality_breaches);
    tcase_add_test(tc, test_nationality_old_aggregate);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
