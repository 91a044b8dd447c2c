/* check_alert.c - alert rules and their evaluation (lib/alert.c, [alert] in lib/config.c), rule by rule from INDICATORS.md section 5. */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "circmon/alert.h"
#include "circmon/config.h"

static char tmpdir[4096];
static char conf_path[4200];
static char err[1024];
static struct cm_config cfg;

static void setup(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/check_alert-XXXXXX", t && *t ? t : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    cm_config_free(&cfg);
    unlink(conf_path);
    rmdir(tmpdir);
}

static int load(const char *text)
{
    snprintf(conf_path, sizeof conf_path, "%s/circmond.conf", tmpdir);
    FILE *f = fopen(conf_path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
    cm_config_free(&cfg);
    return cm_config_load(&cfg, conf_path, err, sizeof err);
}

/* The error with the file's path replaced by "F". */
static const char *msg(void)
{
    static char out[1100];
    size_t pl = strlen(conf_path);
    if (strncmp(err, conf_path, pl) == 0)
        snprintf(out, sizeof out, "F%s", err + pl);
    else
        snprintf(out, sizeof out, "%s", err);
    return out;
}

#define BAD(text, prefix)                                                                   \
    do {                                                                                    \
        ck_assert_int_lt(load(text), 0);                                                    \
        ck_assert_msg(strncmp(msg(), prefix, strlen(prefix)) == 0, "got \"%s\", want \"%s...\"", \
                      msg(), prefix);                                                       \
    } while (0)

START_TEST(test_config_defaults)
{
    ck_assert_int_eq(load("[alert over5]\nscheme = SAWP\nindicator = overstay_rate\n"
                          "above = 0.05\n"), 0);
    ck_assert_int_eq(cfg.alerts_interval_s, 60);
    ck_assert_uint_eq(cfg.n_alerts, 1);
    const struct cm_alert_rule *r = &cfg.alerts[0];
    ck_assert_str_eq(r->name, "over5");
    ck_assert_str_eq(r->scheme, "SAWP");
    ck_assert_int_eq(r->indicator, CM_R_OVERSTAY);
    ck_assert_int_eq(r->below, 0);
    ck_assert_int_eq(r->threshold, 50000000);
    ck_assert_int_eq(r->min_expected, 30);
    ck_assert_int_eq(r->window_months, 3);
    ck_assert_int_eq(r->hysteresis, 10000000); /* 0.01 */
    ck_assert_int_eq(r->line, 1);
}
END_TEST

START_TEST(test_config_all_keys)
{
    ck_assert_int_eq(load("[alerts]\ninterval_s = 15\n"
                          "[alert a.b-c_9]\nscheme = *\nindicator = return_compliance_rate\n"
                          "below = 0.9\nmin_expected = 1\nwindow_months = 120\nhysteresis = 0\n"
                          "[alert b]\nscheme = X\nindicator = in_country_overstay_rate\n"
                          "above = 1\nhysteresis = 1\nwindow_months = 1\n"), 0);
    ck_assert_int_eq(cfg.alerts_interval_s, 15);
    ck_assert_uint_eq(cfg.n_alerts, 2);
    ck_assert_str_eq(cfg.alerts[0].scheme, "*");
    ck_assert_int_eq(cfg.alerts[0].indicator, CM_R_RETURN);
    ck_assert_int_eq(cfg.alerts[0].below, 1);
    ck_assert_int_eq(cfg.alerts[0].threshold, 900000000);
    ck_assert_int_eq(cfg.alerts[0].min_expected, 1);
    ck_assert_int_eq(cfg.alerts[0].window_months, 120);
    ck_assert_int_eq(cfg.alerts[0].hysteresis, 0);
    ck_assert_int_eq(cfg.alerts[0].line, 3);
    ck_assert_int_eq(cfg.alerts[1].indicator, CM_R_IN_COUNTRY);
    ck_assert_int_eq(cfg.alerts[1].threshold, CM_ALERT_SCALE);
    ck_assert_int_eq(cfg.alerts[1].hysteresis, CM_ALERT_SCALE);
    ck_assert_int_eq(cfg.alerts[1].window_months, 1);
}
END_TEST

START_TEST(test_config_nationality)
{
    /* section 5: absent (all together), a code, or * */
    ck_assert_int_eq(load("[alert all]\nscheme = S\nindicator = overstay_rate\nabove = 0.1\n"
                          "[alert mex]\nscheme = S\nnationality = MEX\nindicator = overstay_rate\n"
                          "above = 0.1\n"
                          "[alert each]\nscheme = *\nnationality = *\nindicator = overstay_rate\n"
                          "above = 0.1\n"
                          "[alert utf]\nscheme = S\nnationality = \xc3\x85LA\nindicator = overstay_rate\n"
                          "above = 0.1\n[circmon]\nnationality_cohorts = yes\n"), 0);
    ck_assert_uint_eq(cfg.n_alerts, 4);
    ck_assert_str_eq(cfg.alerts[0].nationality, "");
    ck_assert_str_eq(cfg.alerts[1].nationality, "MEX");
    ck_assert_str_eq(cfg.alerts[2].nationality, "*");
    ck_assert_str_eq(cfg.alerts[3].nationality, "\xc3\x85LA");
}
END_TEST

START_TEST(test_config_errors)
{
    const char *H = "[alert r]\nscheme = S\nindicator = overstay_rate\n";
    char t[2048];

    BAD("[alert r]\nindicator = overstay_rate\nabove = 0.1\n", "F:1: [alert r]: missing key scheme");
    BAD("[alert r]\nscheme = S\nabove = 0.1\n[http]\n", "F:1: [alert r]: missing key indicator");
    BAD("[http]\n[alert r]\nscheme = S\nindicator = overstay_rate\n",
        "F:2: [alert r]: missing key above or below");
    snprintf(t, sizeof t, "%sabove = 0.1\nbelow = 0.2\n", H);
    BAD(t, "F:5: [alert r] below: a rule has exactly one of above and below");
    snprintf(t, sizeof t, "%sabove = 1.01\n", H);
    BAD(t, "F:4: [alert r] above: not a number in [0, 1]");
    snprintf(t, sizeof t, "%sabove = -0.1\n", H);
    BAD(t, "F:4: [alert r] above: not a number in [0, 1]");
    snprintf(t, sizeof t, "%sabove = 0.1234567891\n", H); /* 10 decimals */
    BAD(t, "F:4: [alert r] above: not a number in [0, 1]");
    snprintf(t, sizeof t, "%sabove = 5e-2\n", H);
    BAD(t, "F:4: [alert r] above: not a number in [0, 1]");
    snprintf(t, sizeof t, "%sabove = 0.1\nmin_expected = 0\n", H);
    BAD(t, "F:5: [alert r] min_expected: not an integer >= 1");
    snprintf(t, sizeof t, "%sabove = 0.1\nwindow_months = 0\n", H);
    BAD(t, "F:5: [alert r] window_months: not an integer in 1..120");
    snprintf(t, sizeof t, "%sabove = 0.1\nwindow_months = 121\n", H);
    BAD(t, "F:5: [alert r] window_months: not an integer in 1..120");
    snprintf(t, sizeof t, "%sabove = 0.1\nhysteresis = 2\n", H);
    BAD(t, "F:5: [alert r] hysteresis: not a number in [0, 1]");
    snprintf(t, sizeof t, "%sabove = 0.1\nnationality =\n", H);
    BAD(t, "F:5: [alert r] nationality: not a nationality code of 1..256 bytes of UTF-8 nor *");
    snprintf(t, sizeof t, "%sabove = 0.1\nnationality = M\xc3X\n", H); /* not UTF-8 */
    BAD(t, "F:5: [alert r] nationality: not a nationality code of 1..256 bytes of UTF-8 nor *");
    {
        char longn[300];
        memset(longn, 'N', 257);
        longn[257] = '\0';
        snprintf(t, sizeof t, "%sabove = 0.1\nnationality = %s\n", H, longn);
        BAD(t, "F:5: [alert r] nationality: not a nationality code");
        longn[256] = '\0'; /* 256 bytes: a nationality */
        snprintf(t, sizeof t, "%sabove = 0.1\nnationality = %s\n[circmon]\nnationality_cohorts = yes\n",
                 H, longn);
        ck_assert_int_eq(load(t), 0);
        ck_assert_uint_eq(strlen(cfg.alerts[0].nationality), 256);
    }
    snprintf(t, sizeof t, "%sabove = 0.1\ncolour = red\n", H);
    BAD(t, "F:5: [alert r] colour: unknown key");
    BAD("[alert r]\nscheme = S\nindicator = reentry_rate\n", "F:3: [alert r] indicator: not");
    BAD("[alert bad/name]\n", "F:1: [alert bad/name]: not a rule name");
    BAD("[alert "
        "a12345678901234567890123456789012345678901234567890123456789012345]\n",
        "F:1: [alert a1234"); /* 65 bytes */
    BAD("[alert r]\nscheme=S\nindicator=overstay_rate\nabove=0.1\n[alert r]\n",
        "F:5: [alert r]: duplicate section (first at line 1)");
    BAD("[alerts]\ninterval_s = 0\n", "F:2: [alerts] interval_s: out of range");
    BAD("[alerts]\nevery = 1\n", "F:2: [alerts] every: unknown key");
    /* 64 bytes is a name */
    ck_assert_int_eq(load("[alert a123456789012345678901234567890123456789012345678901234567890123]\n"
                          "scheme=S\nindicator=overstay_rate\nabove=0.1\n"), 0);
}
END_TEST

/* A rule built here, independently of the configuration. */
static struct cm_alert_rule rule(int below, int64_t thr, int64_t hyst, int64_t min)
{
    struct cm_alert_rule r;
    cm_alert_rule_init(&r, "r", 0);
    strcpy(r.scheme, "S");
    r.below = below;
    r.threshold = thr;
    r.hysteresis = hyst;
    r.min_expected = min;
    return r;
}

static struct cm_alert_figures F(int64_t num, int64_t n) { return (struct cm_alert_figures){.n = n, .num = num}; }

#define P(x) ((int64_t)((x) * 1e9 + 0.5)) /* a decimal, scaled */

START_TEST(test_min_sample)
{
    /* fire condition: n >= min_expected and v >= above */
    struct cm_alert_rule r = rule(0, P(0.05), P(0.01), 30);
    struct cm_alert_figures f29 = F(29, 29), f30 = F(2, 30), f30lo = F(1, 30);

    ck_assert_int_eq(cm_alert_fire(&r, &f29), 0);   /* v = 1 but n = min - 1 */
    ck_assert_int_eq(cm_alert_fire(&r, &f30), 1);   /* n = min, v = 0.0667 */
    ck_assert_int_eq(cm_alert_fire(&r, &f30lo), 0); /* v = 0.0333 */
    /* clear condition: n < min_expected clears a firing instance whatever v */
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_FIRING, &f29), CM_ALERT_OK);
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_FIRING, &f30), CM_ALERT_FIRING);
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_OK, &f29), CM_ALERT_OK);
}
END_TEST

START_TEST(test_hysteresis_above)
{
    struct cm_alert_rule r = rule(0, P(0.05), P(0.01), 30);
    struct cm_alert_figures at = F(5, 100), edge = F(4, 100), below = F(3999, 100000),
                            mid = F(45, 1000);

    /* v = above: fires from ok */
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_OK, &at), CM_ALERT_FIRING);
    /* v = above - hysteresis = 0.04: not clear (v < 0.04 is false): stays firing */
    ck_assert_int_eq(cm_alert_clear(&r, &edge), 0);
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_FIRING, &edge), CM_ALERT_FIRING);
    /* just below 0.04: clears */
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_FIRING, &below), CM_ALERT_OK);
    /* between: the state stays, whichever it is */
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_FIRING, &mid), CM_ALERT_FIRING);
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_OK, &mid), CM_ALERT_OK);
    /* just below above: no fire */
    struct cm_alert_figures jb = F(4999999, 100000000);
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_OK, &jb), CM_ALERT_OK);
    /* hysteresis 0: v < above clears */
    struct cm_alert_rule r0 = rule(0, P(0.05), 0, 30);
    ck_assert_int_eq(cm_alert_next(&r0, CM_ALERT_FIRING, &at), CM_ALERT_FIRING);
    ck_assert_int_eq(cm_alert_next(&r0, CM_ALERT_FIRING, &jb), CM_ALERT_OK);
    /* above - hysteresis < 0: never clears on the value, only on the sample */
    struct cm_alert_rule rn = rule(0, P(0.005), P(0.01), 30);
    struct cm_alert_figures zero = F(0, 100);
    ck_assert_int_eq(cm_alert_next(&rn, CM_ALERT_FIRING, &zero), CM_ALERT_FIRING);
    ck_assert_int_eq(cm_alert_next(&rn, CM_ALERT_OK, &zero), CM_ALERT_OK);
}
END_TEST

START_TEST(test_null_value)
{
    struct cm_alert_rule r = rule(0, 0, P(0.01), 1); /* above 0: any v fires */
    struct cm_alert_figures none = F(0, 0), one = F(0, 1);
    double v = -1;

    ck_assert_int_eq(cm_alert_value(&none, &v), 0); /* null: denominator 0 */
    ck_assert_int_eq(cm_alert_fire(&r, &none), 0);
    ck_assert_int_eq(cm_alert_clear(&r, &none), 1);
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_FIRING, &none), CM_ALERT_OK);
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_OK, &one), CM_ALERT_FIRING); /* 0 >= 0 */
    ck_assert_int_eq(cm_alert_value(&one, &v), 1);
    ck_assert(v == 0.0);
}
END_TEST

START_TEST(test_first_evaluation)
{
    /* never evaluated = ok: firing exactly when the fire condition holds */
    struct cm_alert_rule r = rule(0, P(0.2), P(0.1), 10);
    struct cm_alert_figures hold = F(2, 10), between = F(15, 100), lowish = F(1, 10);
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_OK, &hold), CM_ALERT_FIRING);
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_OK, &between), CM_ALERT_OK); /* not clear, not fire */
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_OK, &lowish), CM_ALERT_OK);
}
END_TEST

START_TEST(test_below)
{
    struct cm_alert_rule r = rule(1, P(0.9), P(0.01), 30);
    struct cm_alert_figures at = F(90, 100), edge = F(91, 100), over = F(9101, 10000),
                            just = F(900000001, 1000000000);
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_OK, &at), CM_ALERT_FIRING);  /* v <= below */
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_OK, &just), CM_ALERT_OK);    /* just above */
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_FIRING, &edge), CM_ALERT_FIRING); /* = below + h */
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_FIRING, &over), CM_ALERT_OK);
    struct cm_alert_figures small = F(0, 29);
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_OK, &small), CM_ALERT_OK);
    ck_assert_int_eq(cm_alert_next(&r, CM_ALERT_FIRING, &small), CM_ALERT_OK);
    /* below + hysteresis > 1: never clears on the value */
    struct cm_alert_rule r1 = rule(1, P(0.995), P(0.01), 1);
    struct cm_alert_figures all = F(1, 1);
    ck_assert_int_eq(cm_alert_next(&r1, CM_ALERT_FIRING, &all), CM_ALERT_FIRING);
}
END_TEST

/* Instances and their figures over a document written here: cohorts by
 * month, K = 3 and S in December 2026 take 2026-10..2026-12 (section 5). */
START_TEST(test_instances)
{
    json_error_t je;
    json_t *doc = json_loads(
        "{\"as_of\":0,\"schemes\":{"
        "\"A\":{\"by_cohort\":{"
        "\"2026-09\":{\"expected_departures\":100,\"late_departures\":100},"
        "\"2026-10\":{\"expected_departures\":10,\"late_departures\":1,\"in_country_overstays\":2,"
        "\"in_time_departures\":7},"
        "\"2026-12\":{\"expected_departures\":20,\"in_country_overstays\":1,\"in_time_departures\":19}}},"
        "\"B\":{\"by_cohort\":{\"2026-09\":{\"expected_departures\":5}}},"
        "\"C\":{\"by_cohort\":{\"2026-11\":{\"expected_departures\":3,\"in_time_departures\":3}}}}}",
        0, &je);
    ck_assert_ptr_nonnull(doc);
    int64_t s = (int64_t)20798 * 86400 + 3600; /* 2026-12-10T01:00Z */
    struct cm_alert_rule r = rule(0, P(0.05), P(0.01), 30);
    struct cm_alert_inst *in = NULL;
    size_t n = 0;

    strcpy(r.scheme, "*");
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), 0);
    ck_assert_uint_eq(n, 2); /* B has no expected departure in the window */
    ck_assert_str_eq(in[0].scheme, "A");
    ck_assert_int_eq(in[0].f.n, 30);
    ck_assert_int_eq(in[0].f.num, 4); /* late 1 + in-country 3 */
    ck_assert_str_eq(in[1].scheme, "C");
    ck_assert_int_eq(in[1].f.n, 3);
    ck_assert_int_eq(in[1].f.num, 0);
    free(in);

    r.indicator = CM_R_IN_COUNTRY;
    strcpy(r.scheme, "A");
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(in[0].f.num, 3);
    free(in);
    r.indicator = CM_R_RETURN;
    r.window_months = 4; /* 2026-09 joins */
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), 0);
    ck_assert_int_eq(in[0].f.n, 130);
    ck_assert_int_eq(in[0].f.num, 26);
    free(in);
    r.window_months = 1;
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), 0);
    ck_assert_int_eq(in[0].f.n, 20);
    free(in);

    /* a named scheme absent from the figures: one instance, n = 0, v null */
    strcpy(r.scheme, "Z");
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(in[0].f.n, 0);
    free(in);
    json_decref(doc);

    /* malformed documents are refused, not read as zero */
    doc = json_loads("{\"schemes\":{\"A\":{\"by_cohort\":{\"2026-12\":{\"expected_departures\":\"x\"}}}}}", 0, &je);
    ck_assert_ptr_nonnull(doc);
    strcpy(r.scheme, "A");
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), -EINVAL);
    ck_assert_ptr_null(in);
    json_decref(doc);
    doc = json_loads("{\"nothing\":1}", 0, &je);
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), -EINVAL);
    json_decref(doc);
}
END_TEST

/* Nationality rules over a document written here: the window of a
 * nationality is the sum of its cohorts (by_nationality.N.by_cohort) over
 * the K months; instance per (rule, scheme, nationality); K = 3 and S in
 * December 2026 take 2026-10..2026-12 (section 5). */
static const char NAT_DOC[] =
    "{\"as_of\":0,\"schemes\":{"
    "\"A\":{\"by_cohort\":{\"2026-12\":{\"expected_departures\":99}},"
    " \"by_nationality\":{"
    "  \"MEX\":{\"expected_departures\":111,\"by_cohort\":{"
    "    \"2026-09\":{\"expected_departures\":100,\"late_departures\":100},"
    "    \"2026-10\":{\"expected_departures\":10,\"late_departures\":1,\"in_country_overstays\":2,"
    "                 \"in_time_departures\":7},"
    "    \"2026-12\":{\"expected_departures\":1,\"in_country_overstays\":1}}},"
    "  \"GTM\":{\"expected_departures\":5,\"by_cohort\":{"
    "    \"2026-09\":{\"expected_departures\":5,\"in_time_departures\":5}}},"
    "  \"XXX\":{\"expected_departures\":4,\"by_cohort\":{"
    "    \"2026-11\":{\"expected_departures\":4,\"in_time_departures\":4}}}}},"
    "\"B\":{\"by_nationality\":{"
    "  \"MEX\":{\"expected_departures\":2,\"by_cohort\":{"
    "    \"2026-11\":{\"expected_departures\":2,\"late_departures\":2}}}}},"
    "\"C\":{\"by_nationality\":{}}}}";

START_TEST(test_instances_nationality)
{
    json_error_t je;
    json_t *doc = json_loads(NAT_DOC, 0, &je);
    ck_assert_msg(doc != NULL, "%s", je.text);
    int64_t s = (int64_t)20798 * 86400 + 3600; /* 2026-12-10T01:00Z */
    struct cm_alert_rule r = rule(0, P(0.05), P(0.01), 1);
    struct cm_alert_inst *in = NULL;
    size_t n = 0;

    /* a scheme and a code: exactly one instance, its nationality's window */
    strcpy(r.nationality, "MEX");
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(in[0].scheme, "S");
    ck_assert_str_eq(in[0].nationality, "MEX");
    ck_assert_int_eq(in[0].f.n, 0); /* S is not in the figures */
    free(in);
    strcpy(r.scheme, "A");
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(in[0].f.n, 11);  /* 2026-10 + 2026-12, not 2026-09 nor the scheme's 99 */
    ck_assert_int_eq(in[0].f.num, 4); /* late 1 + in-country 3 */
    free(in);
    r.indicator = CM_R_RETURN;
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), 0);
    ck_assert_int_eq(in[0].f.num, 7);
    free(in);
    r.window_months = 4; /* 2026-09 joins */
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), 0);
    ck_assert_int_eq(in[0].f.n, 111);
    free(in);
    r.window_months = 3;
    r.indicator = CM_R_OVERSTAY;
    /* a code the scheme does not have: one instance, n = 0 */
    strcpy(r.nationality, "FRA");
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(in[0].nationality, "FRA");
    ck_assert_int_eq(in[0].f.n, 0);
    free(in);

    /* nationality *: one per nationality with an expected departure in the
     * window (GTM's are all in 2026-09) */
    strcpy(r.nationality, "*");
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(in[0].nationality, "MEX");
    ck_assert_int_eq(in[0].f.n, 11);
    ck_assert_str_eq(in[1].nationality, "XXX");
    ck_assert_int_eq(in[1].f.n, 4);
    ck_assert_int_eq(in[1].f.num, 0);
    free(in);

    /* scheme * and a code: one per scheme whose window of that nationality
     * has an expected departure */
    strcpy(r.scheme, "*");
    strcpy(r.nationality, "MEX");
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(in[0].scheme, "A");
    ck_assert_str_eq(in[1].scheme, "B");
    ck_assert_str_eq(in[1].nationality, "MEX");
    ck_assert_int_eq(in[1].f.n, 2);
    ck_assert_int_eq(in[1].f.num, 2);
    free(in);
    /* both *: every (scheme, nationality) with one */
    strcpy(r.nationality, "*");
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert(!strcmp(in[0].scheme, "A") && !strcmp(in[0].nationality, "MEX"));
    ck_assert(!strcmp(in[1].scheme, "A") && !strcmp(in[1].nationality, "XXX"));
    ck_assert(!strcmp(in[2].scheme, "B") && !strcmp(in[2].nationality, "MEX"));
    free(in);
    /* no nationality: the scheme's own window, nationality "" */
    r.nationality[0] = '\0';
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(in[0].scheme, "A");
    ck_assert_str_eq(in[0].nationality, "");
    ck_assert_int_eq(in[0].f.n, 99);
    free(in);
    json_decref(doc);

    /* a nationality group without its cohorts (data folded before them):
     * refused, not read as zero */
    doc = json_loads("{\"schemes\":{\"A\":{\"by_nationality\":{\"MEX\":{\"expected_departures\":3}}}}}",
                     0, &je);
    ck_assert_ptr_nonnull(doc);
    strcpy(r.scheme, "A");
    strcpy(r.nationality, "MEX");
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), -ENODATA);
    ck_assert_ptr_null(in);
    ck_assert_uint_eq(n, 0);
    strcpy(r.nationality, "*");
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), -ENODATA);
    json_decref(doc);
    /* malformed: by_nationality not an object, a group not an object */
    doc = json_loads("{\"schemes\":{\"A\":{\"by_nationality\":[]}}}", 0, &je);
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), -EINVAL);
    json_decref(doc);
    doc = json_loads("{\"schemes\":{\"A\":{\"by_nationality\":{\"MEX\":3}}}}", 0, &je);
    ck_assert_int_eq(cm_alert_instances(&r, doc, s, &in, &n), -EINVAL);
    json_decref(doc);

    /* identity: (rule, scheme, nationality), none running into another;
     * no nationality is the empty one */
    ck_assert(cm_alert_instance_hash("r", "S", "") != cm_alert_instance_hash("r", "S", "MEX"));
    ck_assert(cm_alert_instance_hash("r", "SM", "EX") != cm_alert_instance_hash("r", "S", "MEX"));
    ck_assert(cm_alert_instance_hash("r", "S", "MEX") != cm_alert_instance_hash("r", "S", "GTM"));
    ck_assert(cm_alert_instance_hash("r", "S", "MEX") == cm_alert_instance_hash("r", "S", "MEX"));
}
END_TEST

START_TEST(test_decimals)
{
    int64_t v;
    char b[32];
    ck_assert_int_eq(cm_alert_decimal_parse("0", &v), 0);
    ck_assert_int_eq(v, 0);
    ck_assert_int_eq(cm_alert_decimal_parse(".5", &v), 0);
    ck_assert_int_eq(v, 500000000);
    ck_assert_int_eq(cm_alert_decimal_parse("1.000000000", &v), 0);
    ck_assert_int_eq(v, CM_ALERT_SCALE);
    ck_assert_int_eq(cm_alert_decimal_parse("0.000000001", &v), 0);
    ck_assert_int_eq(v, 1);
    ck_assert_int_eq(cm_alert_decimal_parse("1.000000001", &v), -EINVAL);
    ck_assert_int_eq(cm_alert_decimal_parse("", &v), -EINVAL);
    ck_assert_int_eq(cm_alert_decimal_parse(".", &v), -EINVAL);
    ck_assert_int_eq(cm_alert_decimal_parse("0.5 ", &v), -EINVAL);
    ck_assert_int_eq(cm_alert_decimal_parse("10", &v), -EINVAL);
    cm_alert_decimal_str(50000000, b);
    ck_assert_str_eq(b, "0.05");
    cm_alert_decimal_str(CM_ALERT_SCALE, b);
    ck_assert_str_eq(b, "1");
    cm_alert_decimal_str(1, b);
    ck_assert_str_eq(b, "0.000000001");
    /* instance identity: rule and scheme, neither run into the other */
    ck_assert(cm_alert_instance_hash("ab", "c", "") != cm_alert_instance_hash("a", "bc", ""));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("alert");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_config_defaults);
    tcase_add_test(tc, test_config_all_keys);
    tcase_add_test(tc, test_config_nationality);
    tcase_add_test(tc, test_config_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("rules");
    tcase_add_test(tc, test_min_sample);
    tcase_add_test(tc, test_hysteresis_above);
    tcase_add_test(tc, test_null_value);
    tcase_add_test(tc, test_first_evaluation);
    tcase_add_test(tc, test_below);
    tcase_add_test(tc, test_instances);
    tcase_add_test(tc, test_instances_nationality);
    tcase_add_test(tc, test_decimals);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
