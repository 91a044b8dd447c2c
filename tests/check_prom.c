/* check_prom.c - the Prometheus exposition (lib/prom.c): format 0.0.4 rule by rule, and the
 * indicator gauges of hand-made indicators documents (issue 9, INDICATORS.md sections 4, 5). */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/metrics.h"
#include "circmon/prom.h"
#include "cm_test.h"

/* ---- a reader of the text format, written from the format's description ---- */

#define MAXL 8

struct sample {
    char name[128];
    int nl;
    char ln[MAXL][64], lv[MAXL][512]; /* label names and unescaped values */
    char value[64];
};

struct expo {
    struct sample *s;
    size_t n;
    char fam[64][128], type[64][32]; /* families in order of their TYPE line */
    int nfam;
};

/* The family a sample name belongs to: itself, or for a histogram's
 * _bucket/_sum/_count lines, the histogram's name. */
static int family_of(const struct expo *e, const char *name)
{
    for (int i = 0; i < e->nfam; i++) {
        size_t fl = strlen(e->fam[i]);
        if (!strcmp(name, e->fam[i]))
            return i;
        if (!strcmp(e->type[i], "histogram") && !strncmp(name, e->fam[i], fl) &&
            (!strcmp(name + fl, "_bucket") || !strcmp(name + fl, "_sum") || !strcmp(name + fl, "_count")))
            return i;
    }
    return -1;
}

/* Parses text, asserting the format: lines end with \n; "# HELP name text"
 * then "# TYPE name type" once per family, before its samples; the samples
 * of one family are contiguous; label values are quoted with \\ \" \n
 * escapes only. */
static struct expo parse(const char *text)
{
    struct expo e;
    memset(&e, 0, sizeof(e));
    size_t cap = 0;
    int cur = -1;
    char help_of[128] = "";
    const char *p = text;
    ck_assert_msg(*text == 0 || text[strlen(text) - 1] == '\n', "the text ends with a line end");
    while (*p) {
        const char *nl = strchr(p, '\n');
        ck_assert_ptr_nonnull(nl);
        char line[2048];
        size_t len = (size_t)(nl - p);
        ck_assert_uint_lt(len, sizeof(line));
        memcpy(line, p, len);
        line[len] = 0;
        p = nl + 1;
        if (!strncmp(line, "# HELP ", 7)) {
            char nm[128];
            ck_assert_int_eq(sscanf(line + 7, "%127s", nm), 1);
            for (int i = 0; i < e.nfam; i++)
                ck_assert_msg(strcmp(e.fam[i], nm), "HELP of %s twice", nm);
            ck_assert_msg(!strchr(line, '\\') || strstr(line, "\\\\") || strstr(line, "\\n"),
                          "HELP escapes only \\\\ and \\n: %s", line);
            snprintf(help_of, sizeof(help_of), "%s", nm);
            continue;
        }
        if (!strncmp(line, "# TYPE ", 7)) {
            char nm[128], ty[32];
            ck_assert_int_eq(sscanf(line + 7, "%127s %31s", nm, ty), 2);
            ck_assert_msg(!strcmp(nm, help_of), "TYPE %s right after its HELP", nm);
            ck_assert_msg(!strcmp(ty, "gauge") || !strcmp(ty, "counter") || !strcmp(ty, "histogram"),
                          "type %s", ty);
            for (int i = 0; i < e.nfam; i++)
                ck_assert_msg(strcmp(e.fam[i], nm), "TYPE of %s twice", nm);
            ck_assert_int_lt(e.nfam, 64);
            snprintf(e.fam[e.nfam], sizeof(e.fam[0]), "%s", nm);
            snprintf(e.type[e.nfam], sizeof(e.type[0]), "%s", ty);
            cur = e.nfam++;
            help_of[0] = 0;
            continue;
        }
        ck_assert_msg(line[0] != '#' && line[0] != 0, "unexpected line '%s'", line);
        if (e.n == cap) {
            cap = cap ? 2 * cap : 64;
            e.s = realloc(e.s, cap * sizeof(*e.s));
            ck_assert_ptr_nonnull(e.s);
        }
        struct sample *s = &e.s[e.n++];
        memset(s, 0, sizeof(*s));
        const char *q = line;
        size_t k = 0;
        while (*q && *q != '{' && *q != ' ') {
            ck_assert(k + 1 < sizeof(s->name));
            s->name[k++] = *q++;
        }
        if (*q == '{') {
            q++;
            while (*q != '}') {
                ck_assert_int_lt(s->nl, MAXL);
                k = 0;
                while (*q != '=') {
                    ck_assert_msg(*q, "label without '=' in %s", line);
                    s->ln[s->nl][k++] = *q++;
                }
                q++;
                ck_assert_msg(*q == '"', "label value quoted: %s", line);
                q++;
                k = 0;
                while (*q != '"') {
                    ck_assert_msg(*q && *q != '\n', "unterminated label value: %s", line);
                    char c = *q++;
                    if (c == '\\') {
                        c = *q++;
                        ck_assert_msg(c == '\\' || c == '"' || c == 'n', "bad escape in %s", line);
                        if (c == 'n')
                            c = '\n';
                    }
                    ck_assert(k + 1 < sizeof(s->lv[0]));
                    s->lv[s->nl][k++] = c;
                }
                q++;
                s->nl++;
                if (*q == ',')
                    q++;
                else
                    ck_assert_msg(*q == '}', "labels separated by commas: %s", line);
            }
            q++;
        }
        ck_assert_msg(*q == ' ', "a blank before the value: %s", line);
        q++;
        ck_assert(strlen(q) < sizeof(s->value));
        snprintf(s->value, sizeof(s->value), "%s", q);
        ck_assert_msg(!strchr(s->value, ' '), "no time stamp: %s", line);
        int f = family_of(&e, s->name);
        ck_assert_msg(f >= 0, "sample %s before its TYPE", s->name);
        ck_assert_msg(f == cur, "samples of %s not contiguous", s->name);
    }
    return e;
}

static void expo_free(struct expo *e)
{
    free(e->s);
    e->s = NULL;
}

/* The sample name{labels}: labels "a=x,b=y" in any order, all of them. */
static const struct sample *find(const struct expo *e, const char *name, const char *labels)
{
    for (size_t i = 0; i < e->n; i++) {
        const struct sample *s = &e->s[i];
        if (strcmp(s->name, name))
            continue;
        char tmp[1024];
        snprintf(tmp, sizeof(tmp), "%s", labels);
        int want = 0, ok = 1;
        for (char *it = strtok(tmp, ","); it && ok; it = strtok(NULL, ",")) {
            char *eq = strchr(it, '=');
            ck_assert_ptr_nonnull(eq);
            *eq = 0;
            want++;
            int hit = 0;
            for (int l = 0; l < s->nl; l++)
                hit |= !strcmp(s->ln[l], it) && !strcmp(s->lv[l], eq + 1);
            ok = hit;
        }
        if (ok && want == s->nl)
            return s;
    }
    return NULL;
}

/* Asserts name{labels} has exactly the text value. */
#define HAS(e, name, labels, val)                                                                   \
    do {                                                                                            \
        const struct sample *s_ = find(&(e), (name), (labels));                                    \
        ck_assert_msg(s_ != NULL, "%s{%s} missing", (name), (labels));                             \
        ck_assert_msg(!strcmp(s_->value, (val)), "%s{%s} = %s, expected %s", (name), (labels),     \
                      s_->value, (val));                                                            \
    } while (0)

/* Asserts name{labels} is a number within 1e-12 of v. */
#define HASV(e, name, labels, v)                                                                    \
    do {                                                                                            \
        const struct sample *s_ = find(&(e), (name), (labels));                                    \
        ck_assert_msg(s_ != NULL, "%s{%s} missing", (name), (labels));                             \
        ck_assert_msg(fabs(strtod(s_->value, NULL) - (v)) < 1e-12, "%s{%s} = %s, expected %.17g",  \
                      (name), (labels), s_->value, (double)(v));                                    \
    } while (0)

#define HASNOT(e, name, labels) \
    ck_assert_msg(find(&(e), (name), (labels)) == NULL, "%s{%s} present", (name), (labels))

/* The value of label name of s; "" when it has none. */
static const char *lab(const struct sample *s, const char *name)
{
    for (int l = 0; l < s->nl; l++)
        if (!strcmp(s->ln[l], name))
            return s->lv[l];
    return "";
}

static size_t count_of(const struct expo *e, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < e->n; i++)
        n += !strcmp(e->s[i].name, name);
    return n;
}

/* ---- the helpers ---- */

START_TEST(test_strbuf)
{
    struct cm_strbuf b = {0};
    ck_assert_int_eq(cm_strbuf_append(&b, "ab", 2), 0);
    ck_assert_int_eq(cm_strbuf_printf(&b, "%d-%s", 42, "x"), 0);
    ck_assert_str_eq(b.s, "ab42-x");
    ck_assert_uint_eq(b.len, 6);
    char big[5000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    ck_assert_int_eq(cm_strbuf_printf(&b, "<%s>", big), 0); /* longer than any first buffer */
    ck_assert_uint_eq(b.len, 6 + 2 + 4999);
    ck_assert_uint_eq(strlen(b.s), b.len);
    ck_assert(b.s[b.len - 1] == '>' && b.s[7] == 'z');
    cm_strbuf_free(&b);
    ck_assert_ptr_null(b.s);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, 0);
    cm_strbuf_free(&b); /* a zeroed buffer */
}
END_TEST

START_TEST(test_labels_escaped)
{
    struct cm_strbuf l = {0};
    ck_assert_int_eq(cm_prom_label(&l, "scheme", "a\\b\"c\nd"), 0);
    ck_assert_str_eq(l.s, "scheme=\"a\\\\b\\\"c\\nd\"");
    ck_assert_int_eq(cm_prom_label(&l, "rate", "r"), 0); /* a comma once not empty */
    ck_assert_str_eq(l.s, "scheme=\"a\\\\b\\\"c\\nd\",rate=\"r\"");
    cm_strbuf_free(&l);
    ck_assert_int_eq(cm_prom_label(&l, "x", ""), 0);
    ck_assert_str_eq(l.s, "x=\"\"");
    cm_strbuf_free(&l);
}
END_TEST

START_TEST(test_values)
{
    struct cm_strbuf b = {0};
    ck_assert_int_eq(cm_prom_sample(&b, "a", NULL, 1234567), 0);
    ck_assert_int_eq(cm_prom_sample(&b, "a", "", 9007199254740992.0), 0); /* 2^53 */
    ck_assert_int_eq(cm_prom_sample(&b, "a", "k=\"v\"", 0.25), 0);
    ck_assert_int_eq(cm_prom_sample(&b, "a", NULL, 0.1), 0);
    ck_assert_int_eq(cm_prom_sample(&b, "a", NULL, -0.0), 0);
    ck_assert_int_eq(cm_prom_sample(&b, "a", NULL, NAN), 0);
    ck_assert_int_eq(cm_prom_sample(&b, "a", NULL, -INFINITY), 0);
    ck_assert_str_eq(b.s, "a 1234567\na 9007199254740992\na{k=\"v\"} 0.25\na 0.1\na 0\na NaN\na -Inf\n");
    /* a fraction reads back exactly */
    b.len = 0;
    ck_assert_int_eq(cm_prom_sample(&b, "a", NULL, 1.0 / 3.0), 0);
    ck_assert(strtod(b.s + 2, NULL) == 1.0 / 3.0);
    ck_assert_ptr_null(strchr(b.s, 'e'));
    cm_strbuf_free(&b);
}
END_TEST

START_TEST(test_family)
{
    struct cm_strbuf b = {0};
    ck_assert_int_eq(cm_prom_family(&b, "circmon_x", "gauge", "one \\ two\nthree \"q\""), 0);
    ck_assert_str_eq(b.s, "# HELP circmon_x one \\\\ two\\nthree \"q\"\n# TYPE circmon_x gauge\n");
    cm_strbuf_free(&b);
}
END_TEST

START_TEST(test_hist_seconds)
{
    struct cm_hist h;
    cm_hist_init(&h, NULL, NULL);
    /* microseconds, clear of the bounds by more than 1/8 */
    uint64_t us[] = {50, 60, 200, 3000, 3000, 70000, 2000000, 20000000};
    uint64_t sum = 0;
    for (size_t i = 0; i < sizeof(us) / sizeof(us[0]); i++) {
        cm_hist_observe(&h, us[i]);
        sum += us[i];
    }
    struct cm_strbuf b = {0};
    ck_assert_int_eq(cm_prom_hist_seconds(&b, "circmon_t_seconds", "t", &h), 0);
    struct expo e = parse(b.s);
    ck_assert_int_eq(e.nfam, 1);
    ck_assert_str_eq(e.type[0], "histogram");
    HAS(e, "circmon_t_seconds_bucket", "le=0.0001", "2");
    HAS(e, "circmon_t_seconds_bucket", "le=0.00025", "3");
    HAS(e, "circmon_t_seconds_bucket", "le=0.001", "3");
    HAS(e, "circmon_t_seconds_bucket", "le=0.0025", "3");
    HAS(e, "circmon_t_seconds_bucket", "le=0.005", "5");
    HAS(e, "circmon_t_seconds_bucket", "le=0.05", "5");
    HAS(e, "circmon_t_seconds_bucket", "le=0.1", "6");
    HAS(e, "circmon_t_seconds_bucket", "le=2.5", "7");
    HAS(e, "circmon_t_seconds_bucket", "le=10", "7");
    HAS(e, "circmon_t_seconds_bucket", "le=+Inf", "8");
    HAS(e, "circmon_t_seconds_count", "", "8");
    HASV(e, "circmon_t_seconds_sum", "", (double)sum / 1e6);
    /* cumulative: never decreasing, the last bucket is +Inf */
    long prev = -1;
    const char *last = NULL;
    for (size_t i = 0; i < e.n; i++)
        if (!strcmp(e.s[i].name, "circmon_t_seconds_bucket")) {
            long v = strtol(e.s[i].value, NULL, 10);
            ck_assert_int_ge(v, prev);
            prev = v;
            last = e.s[i].lv[0];
        }
    ck_assert_str_eq(last, "+Inf");
    expo_free(&e);
    /* empty, and NULL as empty */
    b.len = 0;
    cm_hist_reset(&h);
    ck_assert_int_eq(cm_prom_hist_seconds(&b, "circmon_e_seconds", "e", NULL), 0);
    e = parse(b.s);
    HAS(e, "circmon_e_seconds_bucket", "le=+Inf", "0");
    HAS(e, "circmon_e_seconds_sum", "", "0");
    HAS(e, "circmon_e_seconds_count", "", "0");
    expo_free(&e);
    /* counts: events per batch */
    b.len = 0;
    cm_hist_observe(&h, 1);
    cm_hist_observe(&h, 700);
    cm_hist_observe(&h, 9000);
    ck_assert_int_eq(cm_prom_hist_count(&b, "circmon_n", "n", &h), 0);
    e = parse(b.s);
    HAS(e, "circmon_n_bucket", "le=1", "1");
    HAS(e, "circmon_n_bucket", "le=500", "1");
    HAS(e, "circmon_n_bucket", "le=1000", "2");
    HAS(e, "circmon_n_bucket", "le=10000", "3");
    HAS(e, "circmon_n_sum", "", "9701");
    expo_free(&e);
    cm_strbuf_free(&b);
}
END_TEST

/* ---- the indicator gauges ---- */

/* as of 2026-12-15T12:00:00Z */
#define AS_OF_DEC D(2026, 12, 15)

/* A document as cm_indicators_json makes them, by hand: scheme S with two
 * nationalities and cohorts around the windows; scheme Z with only no-shows
 * (every rate null); scheme P only present; a scheme id needing escapes. */
static const char *DOC =
    "{\"as_of\": 1797336000,"
    " \"data_quality\": {\"invalid\": 1, \"duplicates\": 2, \"too_late\": 3, \"out_of_order\": 4,"
    "   \"exits_without_entry\": 5, \"entries_while_present\": 6, \"entries_without_permit\": 7,"
    "   \"unknown_permit\": 8, \"late_admin_events\": 9},"
    " \"schemes\": {"
    "  \"S\": {\"present\": 11, \"expected_departures\": 20, \"in_time_departures\": 12,"
    "    \"late_departures\": 3, \"in_country_overstays\": 4, \"status_changes\": 1, \"no_shows\": 2,"
    "    \"reentries\": 6, \"overstay_days\": 1234567, \"stay_limit_breaches\": 2,"
    "    \"stay_limit_breach_days\": 9,"
    "    \"overstay_rate\": 0.35, \"in_country_overstay_rate\": 0.2, \"return_compliance_rate\": 0.6,"
    "    \"reentry_rate\": 0.5, \"mean_overstay_days\": 176366.71428571429,"
    "    \"by_nationality\": {"
    "      \"AAA\": {\"expected_departures\": 15, \"in_time_departures\": 10, \"late_departures\": 2,"
    "        \"in_country_overstays\": 2, \"status_changes\": 1, \"no_shows\": 2, \"reentries\": 5,"
    "        \"overstay_days\": 1234500, \"stay_limit_breaches\": 2, \"stay_limit_breach_days\": 9},"
    "      \"XXX\": {\"expected_departures\": 5, \"in_time_departures\": 2, \"late_departures\": 1,"
    "        \"in_country_overstays\": 2, \"reentries\": 1, \"overstay_days\": 67}},"
    "    \"by_cohort\": {"
    "      \"2025-12\": {\"expected_departures\": 1, \"in_time_departures\": 1},"
    "      \"2026-01\": {\"expected_departures\": 2, \"late_departures\": 1, \"in_time_departures\": 1,"
    "        \"overstay_days\": 10},"
    "      \"2026-09\": {\"expected_departures\": 4, \"in_time_departures\": 4, \"reentries\": 2},"
    "      \"2026-10\": {\"expected_departures\": 5, \"in_time_departures\": 3, \"in_country_overstays\": 2,"
    "        \"overstay_days\": 100, \"reentries\": 1},"
    "      \"2026-11\": {\"expected_departures\": 4, \"late_departures\": 2, \"in_time_departures\": 1,"
    "        \"status_changes\": 1, \"overstay_days\": 57, \"no_shows\": 2},"
    "      \"2026-12\": {\"expected_departures\": 4, \"in_time_departures\": 2, \"in_country_overstays\": 2,"
    "        \"overstay_days\": 1234400, \"reentries\": 2}}},"
    "  \"Z\": {\"present\": 0, \"expected_departures\": 0, \"no_shows\": 3, \"overstay_rate\": null,"
    "    \"in_country_overstay_rate\": null, \"return_compliance_rate\": null, \"reentry_rate\": null,"
    "    \"mean_overstay_days\": null,"
    "    \"by_nationality\": {\"BBB\": {\"no_shows\": 3}},"
    "    \"by_cohort\": {\"2026-12\": {\"no_shows\": 3}}},"
    "  \"P\": {\"present\": 4, \"by_nationality\": {}, \"by_cohort\": {}},"
    "  \"we\\\"ird\\\\id\\n\": {\"present\": 1, \"expected_departures\": 1, \"in_time_departures\": 1,"
    "    \"return_compliance_rate\": 1.0,"
    "    \"by_nationality\": {\"CCC\": {\"expected_departures\": 1, \"in_time_departures\": 1}},"
    "    \"by_cohort\": {\"2024-06\": {\"expected_departures\": 1, \"in_time_departures\": 1}}}"
    "}}";

static json_t *load(const char *text)
{
    json_error_t err;
    json_t *d = json_loads(text, 0, &err);
    ck_assert_msg(d != NULL, "test document: %s at %d", err.text, err.position);
    return d;
}

static struct expo render(const json_t *doc, int64_t as_of, int months, struct cm_strbuf *b)
{
    b->len = 0;
    ck_assert_int_eq(cm_prom_indicators(b, doc, as_of, months), 0);
    ck_assert_ptr_nonnull(b->s);
    ck_assert_msg(!strstr(b->s, "NaN") && !strstr(b->s, "Inf"), "no NaN or Inf:\n%s", b->s);
    return parse(b->s);
}

/* Every family of prom.h once, as a gauge. */
START_TEST(test_families)
{
    static const char *const fams[] = {
        "circmon_indicators_as_of_seconds", "circmon_permit_outcomes", "circmon_reentries",
        "circmon_overstay_days", "circmon_stay_limit_breaches", "circmon_stay_limit_breach_days",
        "circmon_present", "circmon_rate", "circmon_cohort_permit_outcomes", "circmon_window_rate",
        "circmon_window_expected_departures", "circmon_data_quality"};
    json_t *doc = load(DOC);
    struct cm_strbuf b = {0};
    struct expo e = render(doc, AS_OF_DEC, 24, &b);
    ck_assert_int_eq(e.nfam, (int)(sizeof(fams) / sizeof(fams[0])));
    for (size_t i = 0; i < sizeof(fams) / sizeof(fams[0]); i++) {
        int f = family_of(&e, fams[i]);
        ck_assert_msg(f >= 0, "family %s missing", fams[i]);
        ck_assert_str_eq(e.type[f], "gauge");
    }
    HAS(e, "circmon_indicators_as_of_seconds", "", "1797336000");
    /* appends: what b held stays */
    struct cm_strbuf b2 = {0};
    ck_assert_int_eq(cm_strbuf_printf(&b2, "# before\n"), 0);
    ck_assert_int_eq(cm_prom_indicators(&b2, doc, AS_OF_DEC, 24), 0);
    ck_assert_str_eq(b2.s + 9, b.s);
    ck_assert(!strncmp(b2.s, "# before\n", 9));
    cm_strbuf_free(&b2);
    expo_free(&e);
    cm_strbuf_free(&b);
    json_decref(doc);
}
END_TEST

/* circmon_permit_outcomes: the five outcomes per scheme and nationality,
 * integers; a scheme's expected departures are the sum of all but no_show. */
START_TEST(test_outcomes)
{
    json_t *doc = load(DOC);
    struct cm_strbuf b = {0};
    struct expo e = render(doc, AS_OF_DEC, 24, &b);
    const char *N = "circmon_permit_outcomes";
    HAS(e, N, "scheme=S,nationality=AAA,outcome=in_time_departure", "10");
    HAS(e, N, "scheme=S,nationality=AAA,outcome=late_departure", "2");
    HAS(e, N, "scheme=S,nationality=AAA,outcome=in_country_overstay", "2");
    HAS(e, N, "scheme=S,nationality=AAA,outcome=status_change", "1");
    HAS(e, N, "scheme=S,nationality=AAA,outcome=no_show", "2");
    HAS(e, N, "scheme=S,nationality=XXX,outcome=status_change", "0"); /* missing reads 0 */
    HAS(e, N, "scheme=S,nationality=XXX,outcome=no_show", "0");
    HAS(e, N, "scheme=Z,nationality=BBB,outcome=no_show", "3");
    HAS(e, N, "scheme=we\"ird\\id\n,nationality=CCC,outcome=in_time_departure", "1");
    ck_assert_uint_eq(count_of(&e, N), 4 * 5); /* four groups, five outcomes each; P has none */
    /* sum by (scheme) over outcome != no_show is expected_departures */
    long sum = 0;
    for (size_t i = 0; i < e.n; i++)
        if (!strcmp(e.s[i].name, N) && !strcmp(lab(&e.s[i], "scheme"), "S") &&
            strcmp(lab(&e.s[i], "outcome"), "no_show"))
            sum += strtol(e.s[i].value, NULL, 10);
    ck_assert_int_eq(sum, 20);
    HAS(e, "circmon_reentries", "scheme=S,nationality=AAA", "5");
    HAS(e, "circmon_reentries", "scheme=S,nationality=XXX", "1");
    HAS(e, "circmon_overstay_days", "scheme=S,nationality=AAA", "1234500");
    HAS(e, "circmon_stay_limit_breaches", "scheme=S,nationality=AAA", "2");
    HAS(e, "circmon_stay_limit_breaches", "scheme=S,nationality=XXX", "0");
    HAS(e, "circmon_stay_limit_breach_days", "scheme=S,nationality=AAA", "9");
    HAS(e, "circmon_present", "scheme=S", "11");
    HAS(e, "circmon_present", "scheme=P", "4");
    HAS(e, "circmon_present", "scheme=Z", "0");
    HAS(e, "circmon_present", "scheme=we\"ird\\id\n", "1");
    ck_assert_uint_eq(count_of(&e, "circmon_present"), 4);
    expo_free(&e);
    cm_strbuf_free(&b);
    json_decref(doc);
}
END_TEST

/* circmon_rate: the scheme's rates as the document has them; null rates
 * have no sample. */
START_TEST(test_rates)
{
    json_t *doc = load(DOC);
    struct cm_strbuf b = {0};
    struct expo e = render(doc, AS_OF_DEC, 24, &b);
    HAS(e, "circmon_rate", "scheme=S,rate=overstay_rate", "0.35");
    HAS(e, "circmon_rate", "scheme=S,rate=in_country_overstay_rate", "0.2");
    HAS(e, "circmon_rate", "scheme=S,rate=return_compliance_rate", "0.6");
    HAS(e, "circmon_rate", "scheme=S,rate=reentry_rate", "0.5");
    HASV(e, "circmon_rate", "scheme=S,rate=mean_overstay_days", 1234567.0 / 7.0);
    HAS(e, "circmon_rate", "scheme=we\"ird\\id\n,rate=return_compliance_rate", "1");
    ck_assert_uint_eq(count_of(&e, "circmon_rate"), 5 + 1); /* Z and P: every rate null */
    expo_free(&e);
    cm_strbuf_free(&b);
    json_decref(doc);
}
END_TEST

/* circmon_cohort_permit_outcomes: the cohort_months calendar months ending
 * with month(as_of), every outcome of each cohort the document holds. */
START_TEST(test_cohorts)
{
    json_t *doc = load(DOC);
    struct cm_strbuf b = {0};
    const char *N = "circmon_cohort_permit_outcomes";
    struct expo e = render(doc, AS_OF_DEC, 12, &b); /* 2026-01 .. 2026-12 */
    HAS(e, N, "scheme=S,cohort=2026-01,outcome=late_departure", "1");
    HAS(e, N, "scheme=S,cohort=2026-11,outcome=no_show", "2");
    HAS(e, N, "scheme=S,cohort=2026-11,outcome=status_change", "1");
    HAS(e, N, "scheme=S,cohort=2026-12,outcome=in_country_overstay", "2");
    HAS(e, N, "scheme=S,cohort=2026-12,outcome=late_departure", "0");
    HAS(e, N, "scheme=Z,cohort=2026-12,outcome=no_show", "3");
    HASNOT(e, N, "scheme=S,cohort=2025-12,outcome=in_time_departure");
    HASNOT(e, N, "scheme=we\"ird\\id\n,cohort=2024-06,outcome=in_time_departure");
    ck_assert_uint_eq(count_of(&e, N), (5 + 1) * 5); /* S: 01, 09, 10, 11, 12; Z: 12 */
    expo_free(&e);
    e = render(doc, AS_OF_DEC, 2, &b); /* 2026-11, 2026-12 */
    ck_assert_uint_eq(count_of(&e, N), 3 * 5);
    HASNOT(e, N, "scheme=S,cohort=2026-10,outcome=in_time_departure");
    HAS(e, N, "scheme=S,cohort=2026-11,outcome=in_time_departure", "1");
    expo_free(&e);
    e = render(doc, AS_OF_DEC, 0, &b);
    ck_assert_uint_eq(count_of(&e, N), 0);
    ck_assert_int_ge(family_of(&e, N), 0); /* the family stays, without samples */
    expo_free(&e);
    e = render(doc, AS_OF_DEC, 36, &b); /* from 2024-01: the 2024-06 cohort too */
    HAS(e, N, "scheme=we\"ird\\id\n,cohort=2024-06,outcome=in_time_departure", "1");
    ck_assert_uint_eq(count_of(&e, N), (6 + 1 + 1) * 5);
    expo_free(&e);
    cm_strbuf_free(&b);
    json_decref(doc);
}
END_TEST

/* circmon_window_*: section 5 on the document's cohorts. K = 3 with S in
 * December sums October..December; K = 12 January..December; the current
 * month included; rates from the sums, null (no sample) on an empty
 * denominator. */
START_TEST(test_windows)
{
    json_t *doc = load(DOC);
    struct cm_strbuf b = {0};
    struct expo e = render(doc, AS_OF_DEC, 24, &b);
    const char *W = "circmon_window_rate", *X = "circmon_window_expected_departures";
    /* 3m: 2026-10 .. 2026-12: expected 5+4+4, in time 3+1+2, late 2, in country 2+2,
     * overstay days 100+57+1234400, re-entries 1+2 */
    HAS(e, X, "scheme=S,window=3m", "13");
    HASV(e, W, "scheme=S,window=3m,rate=overstay_rate", 6.0 / 13.0);
    HASV(e, W, "scheme=S,window=3m,rate=in_country_overstay_rate", 4.0 / 13.0);
    HASV(e, W, "scheme=S,window=3m,rate=return_compliance_rate", 6.0 / 13.0);
    HASV(e, W, "scheme=S,window=3m,rate=reentry_rate", 3.0 / 6.0);
    HASV(e, W, "scheme=S,window=3m,rate=mean_overstay_days", 1234557.0 / 6.0);
    /* 12m: 2026-01 .. 2026-12 adds 2026-01 and 2026-09, not 2025-12 */
    HAS(e, X, "scheme=S,window=12m", "19");
    HASV(e, W, "scheme=S,window=12m,rate=overstay_rate", 7.0 / 19.0);
    HASV(e, W, "scheme=S,window=12m,rate=return_compliance_rate", 11.0 / 19.0);
    HASV(e, W, "scheme=S,window=12m,rate=reentry_rate", 5.0 / 11.0);
    HASV(e, W, "scheme=S,window=12m,rate=mean_overstay_days", 1234567.0 / 7.0);
    /* Z: only no-shows: expected 0, every rate null */
    HAS(e, X, "scheme=Z,window=3m", "0");
    HAS(e, X, "scheme=Z,window=12m", "0");
    HASNOT(e, W, "scheme=Z,window=3m,rate=overstay_rate");
    /* P and the 2024 scheme: empty windows */
    HAS(e, X, "scheme=P,window=12m", "0");
    HAS(e, X, "scheme=we\"ird\\id\n,window=12m", "0");
    ck_assert_uint_eq(count_of(&e, X), 4 * 2);
    ck_assert_uint_eq(count_of(&e, W), 2 * 5); /* S only */
    expo_free(&e);
    /* one second before December: the windows end with November */
    e = render(doc, DN(2026, 12, 1) * DAY - 1, 24, &b); /* 2026-11-30T23:59:59Z */
    HAS(e, X, "scheme=S,window=3m", "13"); /* 09 + 10 + 11 */
    HASV(e, W, "scheme=S,window=3m,rate=overstay_rate", 4.0 / 13.0);
    HASNOT(e, W, "scheme=S,window=3m,rate=in_country_overstay_rate_x");
    expo_free(&e);
    /* the first second of December */
    e = render(doc, DN(2026, 12, 1) * DAY, 24, &b);
    HAS(e, X, "scheme=S,window=3m", "13");
    HASV(e, W, "scheme=S,window=3m,rate=overstay_rate", 6.0 / 13.0);
    expo_free(&e);
    /* a year later: every window empty, no rate sample at all */
    e = render(doc, AS_OF_DEC + 366 * 86400, 24, &b);
    HAS(e, X, "scheme=S,window=3m", "0");
    HAS(e, X, "scheme=S,window=12m", "0");
    ck_assert_uint_eq(count_of(&e, W), 0);
    expo_free(&e);
    cm_strbuf_free(&b);
    json_decref(doc);
}
END_TEST

START_TEST(test_data_quality)
{
    json_t *doc = load(DOC);
    struct cm_strbuf b = {0};
    struct expo e = render(doc, AS_OF_DEC, 24, &b);
    for (int i = 0; i < N_DQ; i++) {
        char l[64], v[8];
        snprintf(l, sizeof(l), "check=%s", DQ_NAMES[i]);
        snprintf(v, sizeof(v), "%d", i + 1);
        HAS(e, "circmon_data_quality", l, v);
    }
    ck_assert_uint_eq(count_of(&e, "circmon_data_quality"), N_DQ);
    expo_free(&e);
    cm_strbuf_free(&b);
    json_decref(doc);
}
END_TEST

/* Bad documents and arguments: -EINVAL, and b holds what it held. */
START_TEST(test_bad)
{
    static const char *const bad[] = {
        "[]",
        "{\"data_quality\": {}}",
        "{\"schemes\": {}}",
        "{\"schemes\": [], \"data_quality\": {}}",
        "{\"schemes\": {\"S\": 1}, \"data_quality\": {}}",
        "{\"schemes\": {}, \"data_quality\": {\"invalid\": \"1\"}}",
        "{\"schemes\": {\"S\": {\"present\": 1.5}}, \"data_quality\": {}}",
        "{\"schemes\": {\"S\": {\"overstay_rate\": \"x\"}}, \"data_quality\": {}}",
        "{\"schemes\": {\"S\": {\"by_nationality\": []}}, \"data_quality\": {}}",
        "{\"schemes\": {\"S\": {\"by_nationality\": {\"A\": 3}}}, \"data_quality\": {}}",
        "{\"schemes\": {\"S\": {\"by_nationality\": {\"A\": {\"no_shows\": 1.0}}}}, \"data_quality\": {}}",
        "{\"schemes\": {\"S\": {\"by_cohort\": {\"2026-13\": {}}}}, \"data_quality\": {}}",
        "{\"schemes\": {\"S\": {\"by_cohort\": {\"2026-12\": {\"no_shows\": null}}}}, \"data_quality\": {}}",
        "{\"schemes\": {\"S\": {\"by_cohort\": {\"2020-01\": {\"reentries\": true}}}}, \"data_quality\": {}}",
    };
    struct cm_strbuf b = {0};
    ck_assert_int_eq(cm_strbuf_printf(&b, "# kept\n"), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *d = load(bad[i]);
        ck_assert_msg(cm_prom_indicators(&b, d, AS_OF_DEC, 24) == -EINVAL, "bad[%zu] accepted", i);
        ck_assert_str_eq(b.s, "# kept\n");
        ck_assert_uint_eq(b.len, 7);
        json_decref(d);
    }
    json_t *doc = load(DOC);
    ck_assert_int_eq(cm_prom_indicators(&b, doc, -1, 24), -EINVAL);
    ck_assert_int_eq(cm_prom_indicators(&b, doc, INT64_C(253402300800), 24), -EINVAL);
    ck_assert_int_eq(cm_prom_indicators(&b, doc, AS_OF_DEC, -1), -EINVAL);
    ck_assert_int_eq(cm_prom_indicators(&b, doc, AS_OF_DEC, 1201), -EINVAL);
    ck_assert_int_eq(cm_prom_indicators(&b, NULL, AS_OF_DEC, 24), -EINVAL);
    ck_assert_str_eq(b.s, "# kept\n");
    /* the smallest document: no scheme */
    json_t *min = load("{\"schemes\": {}, \"data_quality\": {}}");
    ck_assert_int_eq(cm_prom_indicators(&b, min, 0, 24), 0);
    struct expo e = parse(b.s + 7);
    HAS(e, "circmon_indicators_as_of_seconds", "", "0");
    ck_assert_uint_eq(e.n, 1);
    expo_free(&e);
    json_decref(min);
    json_decref(doc);
    cm_strbuf_free(&b);
}
END_TEST

/* A document of the engine (cm_test.h's fixture): the exposition's sums
 * match the document's scheme totals. */
START_TEST(test_engine_doc)
{
    struct fx *f = fx_new(30, "S:0");
    FEED(f, ev_grant(NULL, "m1", D(2026, 1, 1), "p1", "S", "AAA", D(2026, 1, 1), D(2026, 6, 30)));
    FEED(f, ev_entry(NULL, "m1", D(2026, 1, 5)));
    FEED(f, ev_exit(NULL, "m1", D(2026, 6, 20)));                    /* in time, June cohort */
    FEED(f, ev_grant(NULL, "m2", D(2026, 1, 1), "p2", "S", NULL, D(2026, 1, 1), D(2026, 10, 31)));
    FEED(f, ev_entry(NULL, "m2", D(2026, 2, 5)));                    /* in country, October */
    FEED(f, ev_grant(NULL, "m3", D(2026, 1, 1), "p3", "S", "AAA", D(2026, 1, 1), D(2026, 11, 30)));
    FEED(f, ev_entry(NULL, "m3", D(2026, 2, 5)));
    FEED(f, ev_exit(NULL, "m3", D(2026, 12, 3)));                    /* late, November */
    FEED(f, ev_grant(NULL, "m4", D(2026, 1, 1), "p4", "S", "BBB", D(2026, 1, 1), D(2026, 12, 1)));
    json_t *doc = doc_at(f, AS_OF_DEC);
    struct cm_strbuf b = {0};
    struct expo e = render(doc, AS_OF_DEC, 24, &b);
    const char *N = "circmon_permit_outcomes";
    HAS(e, N, "scheme=S,nationality=AAA,outcome=in_time_departure", "1");
    HAS(e, N, "scheme=S,nationality=AAA,outcome=late_departure", "1");
    HAS(e, N, "scheme=S,nationality=XXX,outcome=in_country_overstay", "1");
    HAS(e, N, "scheme=S,nationality=BBB,outcome=no_show", "1");
    HAS(e, "circmon_present", "scheme=S", "1");
    /* 3m: Oct (in country) and Nov (late); Dec's no-show is no expected departure */
    HAS(e, "circmon_window_expected_departures", "scheme=S,window=3m", "2");
    HAS(e, "circmon_window_rate", "scheme=S,window=3m,rate=overstay_rate", "1");
    HAS(e, "circmon_window_rate", "scheme=S,window=3m,rate=in_country_overstay_rate", "0.5");
    HASNOT(e, "circmon_window_rate", "scheme=S,window=3m,rate=reentry_rate");
    HAS(e, "circmon_window_expected_departures", "scheme=S,window=12m", "3");
    HASV(e, "circmon_window_rate", "scheme=S,window=12m,rate=return_compliance_rate", 1.0 / 3.0);
    /* overstay days: late 3 (Dec 3 - Nov 30), in country dS - E = 45 (Dec 15 - Oct 31) */
    HAS(e, "circmon_window_rate", "scheme=S,window=3m,rate=mean_overstay_days", "24");
    HASV(e, "circmon_rate", "scheme=S,rate=overstay_rate", 2.0 / 3.0);
    expo_free(&e);
    cm_strbuf_free(&b);
    json_decref(doc);
    fx_free(f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("prom");
    TCase *tc = tcase_create("format");
    tcase_add_test(tc, test_strbuf);
    tcase_add_test(tc, test_labels_escaped);
    tcase_add_test(tc, test_values);
    tcase_add_test(tc, test_family);
    tcase_add_test(tc, test_hist_seconds);
    suite_add_tcase(s, tc);
    tc = tcase_create("indicators");
    tcase_add_test(tc, test_families);
    tcase_add_test(tc, test_outcomes);
    tcase_add_test(tc, test_rates);
    tcase_add_test(tc, test_cohorts);
    tcase_add_test(tc, test_windows);
    tcase_add_test(tc, test_data_quality);
    tcase_add_test(tc, test_bad);
    tcase_add_test(tc, test_engine_doc);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
