/* check_roundtrip.c - every value the fold can produce is written and read back
 * unchanged: aggregate fields, packed migrant states, the indicators document
 * (issue 8 section 1: the extremes of the contract's instants, the longest
 * ids, multi-byte UTF-8 in every string). */
#include "cm_test.h"

#include <errno.h>
#include <inttypes.h>

#include "circmon/agg.h"
#include "circmon/fold.h"
#include "circmon/indicators.h"
#include "circmon/names.h"
#include "circmon/timeutil.h"

#define TMAX INT64_C(253402300799) /* 9999-12-31T23:59:59Z: INDICATORS.md section 2 */
#define DMAX (TMAX / DAY)          /* its day */

/* A string of exactly len bytes (len <= 256) made of the 4-, 3- and 2-byte
 * characters of pat, topped up with ASCII, ending in tag. */
static void mb_string(char *out, size_t len, const char *tag)
{
    static const char *const chars[] = {"\xf0\x9f\x8c\xbe", "\xe2\x82\xac", "\xc3\xa9",
                                        "\xf4\x8f\xbf\xbf", "\xe4\xb8\xad"};
    size_t n = 0, tl = strlen(tag), k = 0;
    while (n + 4 + tl <= len) {
        const char *c = chars[k++ % 5];
        memcpy(out + n, c, strlen(c));
        n += strlen(c);
    }
    while (n + tl < len)
        out[n++] = '_';
    memcpy(out + n, tag, tl);
    out[n + tl] = 0;
    ck_assert_uint_eq(strlen(out), len);
    ck_assert(cm_utf8_valid(out, len));
}

/* ---- the scenario: schemes and events at the ends of the contract ---- */

static char S_LOW[257], S_HIGH[257], S_LIMIT[257], NAT1[257], NAT2[16];

static void names_init(void)
{
    mb_string(S_LOW, 256, "low");
    mb_string(S_HIGH, 256, "high");
    mb_string(S_LIMIT, 255, "lim"); /* 255: a 4-byte character does not fit at the end */
    mb_string(NAT1, 256, "N1");
    snprintf(NAT2, sizeof NAT2, "\xc3\x84\xc3\x96\xc3\x9c"); /* ÄÖÜ */
}

static void config_init(struct cm_config *cfg)
{
    ck_assert_int_eq(cm_config_defaults(cfg), 0);
    free(cfg->schemes);
    cfg->schemes = calloc(3, sizeof *cfg->schemes);
    ck_assert_ptr_nonnull(cfg->schemes);
    cfg->n_schemes = 3;
    snprintf(cfg->schemes[0].id, sizeof cfg->schemes[0].id, "%s", S_LOW);
    snprintf(cfg->schemes[1].id, sizeof cfg->schemes[1].id, "%s", S_HIGH);
    cfg->schemes[1].grace_days = 3650; /* E + grace beyond the year 9999 */
    snprintf(cfg->schemes[2].id, sizeof cfg->schemes[2].id, "%s", S_LIMIT);
    cfg->schemes[2].stay_n = 90;
    cfg->schemes[2].stay_w = 180;
}

/* An id of 256 bytes for migrant m, permit or event k. */
static void long_id(char *out, char kind, int m, int k)
{
    char tag[32];
    snprintf(tag, sizeof tag, "%c%d.%d", kind, m, k);
    mb_string(out, 256, tag);
}

struct scen {
    struct tev ev[64];
    size_t n;
    int nseq[8];
};

static struct tev *add(struct scen *s, struct tev e, int m)
{
    long_id(e.eid, 'e', m, ++s->nseq[m]);
    long_id(e.mid, 'm', m, 0);
    mb_string(e.source, 256, "src");
    if (e.type == TE_ENTRY || e.type == TE_EXIT) {
        mb_string(e.ms, 10, "");
        mb_string(e.bp, 256, "bp");
    }
    if (e.type == TE_GRANT)
        mb_string(e.sector, 256, "sec");
    if (e.type == TE_REVOKE)
        mb_string(e.reason, 256, "why");
    if (e.type == TE_STATUS)
        mb_string(e.detail, 256, "det");
    e.recorded_at = m % 2 ? TMAX : 1;
    ck_assert_uint_lt(s->n, 64);
    s->ev[s->n++] = e;
    return &s->ev[s->n - 1];
}

static struct tev grant(int m, int p, int64_t t, const char *scheme, const char *nat, int64_t vf,
                        int64_t vu)
{
    char pid[TS];
    long_id(pid, 'p', m, p);
    return ev_grant("", "", t, pid, scheme, nat, vf, vu);
}

static struct tev permit_ev(struct tev e, int m, int p)
{
    long_id(e.pid, 'p', m, p);
    return e;
}

/* Events at 1970-01-01 and at 9999-12-31, of every kind, in arrival order
 * (some out of order). Instants stay within [1, TMAX]: 0 is "absent". */
static void scenario(struct scen *s)
{
    memset(s, 0, sizeof *s);
    /* m0: 1970. Granted from the first second, an entry, a late exit, an
     * extension, a revocation at the epoch's first day, an exit without entry */
    add(s, grant(0, 1, 1, S_LOW, NAT1, 1, 10 * DAY), 0);
    add(s, ev_entry("", "", 1), 0);
    add(s, permit_ev(ev_extend("", "", 5 * DAY, "", 12 * DAY), 0, 1), 0);
    add(s, ev_exit("", "", 20 * DAY), 0);
    add(s, grant(0, 2, 30 * DAY, S_LOW, NAT2, 30 * DAY, 60 * DAY), 0);
    add(s, permit_ev(ev_revoke("", "", 31 * DAY, "", 1), 0, 2), 0);
    add(s, ev_entry("", "", 32 * DAY), 0);
    add(s, ev_exit("", "", 33 * DAY), 0);
    add(s, ev_exit("", "", 34 * DAY), 0);
    /* m1: 9999. A permit to the last second, an in-country stay, one due
     * before the end: an in-country overstay as of TMAX */
    add(s, grant(1, 1, TMAX - 200 * DAY, S_LOW, NAT1, TMAX - 200 * DAY, TMAX - 100 * DAY), 1);
    add(s, ev_entry("", "", TMAX - 199 * DAY), 1);
    add(s, grant(1, 2, TMAX - 150 * DAY, S_LOW, NAT2, TMAX - 150 * DAY, TMAX), 1); /* transfer */
    add(s, grant(1, 3, TMAX - 20 * DAY, S_HIGH, NAT1, TMAX - 20 * DAY, TMAX), 1);
    add(s, permit_ev(ev_extend("", "", TMAX - 10, "", TMAX), 1, 2), 1);
    add(s, permit_ev(ev_revoke("", "", TMAX, "", TMAX), 1, 3), 1);
    add(s, ev_status("", "", TMAX, 2), 1);
    add(s, ev_exit("", "", TMAX), 1);
    add(s, ev_entry("", "", TMAX - 5 * DAY), 1); /* out of order */
    /* m2: over the whole range: granted in 1970 to 9999, entered in 1970,
     * still present; another permit left in time, then a re-entry */
    add(s, grant(2, 1, 2 * DAY, S_HIGH, NAT2, 2 * DAY, TMAX), 2);
    add(s, ev_entry("", "", 3 * DAY), 2);
    add(s, grant(3, 1, TMAX - 400 * DAY, S_HIGH, NAT1, TMAX - 400 * DAY, TMAX - 300 * DAY), 3);
    add(s, ev_entry("", "", TMAX - 399 * DAY), 3);
    add(s, ev_exit("", "", TMAX - 310 * DAY), 3);
    add(s, grant(3, 2, TMAX - 100 * DAY, S_HIGH, NAT1, TMAX - 100 * DAY, TMAX), 3);
    add(s, ev_entry("", "", TMAX - 90 * DAY), 3);
    /* m4: the stay limit at both ends: 200 days present in 1970 and the last
     * 200 days of 9999, open at TMAX */
    add(s, grant(4, 1, 1, S_LIMIT, NAT1, 1, 300 * DAY), 4);
    add(s, ev_entry("", "", 1), 4);
    add(s, ev_exit("", "", 200 * DAY), 4);
    add(s, grant(4, 2, TMAX - 250 * DAY, S_LIMIT, NAT2, TMAX - 250 * DAY, TMAX), 4);
    add(s, ev_entry("", "", TMAX - 200 * DAY), 4);
    /* m5: a permit-less presence and a duplicate grant at the end */
    add(s, ev_entry("", "", TMAX - 3), 5);
    add(s, grant(5, 1, TMAX - 2, S_HIGH, NAT2, TMAX - 2, TMAX), 5);
    add(s, grant(5, 1, TMAX - 1, S_HIGH, NAT2, TMAX - 1, TMAX), 5);
}

/* ---- one state per migrant, packed and unpacked around every event, as
 * the daemon stores it ---- */

struct stored {
    char id[TS];
    uint8_t *buf;
    long len;
};

struct store_sim {
    struct cm_names *nm;
    struct cm_fold_ctx *fc;
    struct cm_agg *ag;
    struct stored m[8];
    size_t n;
    long states_checked;
};

static void store_fold(struct store_sim *ss, const struct cm_event *ev)
{
    struct stored *s = NULL;
    for (size_t i = 0; i < ss->n && !s; i++)
        if (!strcmp(ss->m[i].id, ev->migrant_id))
            s = &ss->m[i];
    if (!s) {
        ck_assert_uint_lt(ss->n, 8);
        s = &ss->m[ss->n++];
        snprintf(s->id, sizeof s->id, "%s", ev->migrant_id);
    }
    struct cm_mstate *st = NULL;
    if (s->buf)
        ck_assert_int_eq(cm_mstate_unpack(ss->fc, s->buf, (size_t)s->len, &st), 0);
    else
        ck_assert_ptr_nonnull(st = cm_mstate_new(ss->fc));
    struct cm_item *items = NULL;
    size_t n = 0, cap = 0;
    ck_assert_int_ge(cm_fold_event(ss->fc, st, ev, &items, &n, &cap), 0);
    ck_assert_int_eq(cm_agg_add_items(ss->ag, items, n), 0);
    free(items);
    /* pack -> unpack -> pack gives the same bytes */
    uint8_t *b1 = NULL, *b2 = NULL;
    long l1 = cm_mstate_pack(ss->fc, st, &b1);
    ck_assert_int_gt(l1, 0);
    struct cm_mstate *back = NULL;
    ck_assert_int_eq(cm_mstate_unpack(ss->fc, b1, (size_t)l1, &back), 0);
    long l2 = cm_mstate_pack(ss->fc, back, &b2);
    ck_assert_msg(l2 == l1 && !memcmp(b1, b2, (size_t)l1),
                  "state of %.20s... packs to %ld bytes, again to %ld", ev->migrant_id, l1, l2);
    free(b2);
    cm_mstate_free(ss->fc, back);
    cm_mstate_free(ss->fc, st);
    free(s->buf);
    s->buf = b1;
    s->len = l1;
    ss->states_checked++;
}

/* "field=value" lines of every aggregate entry, sorted. */
struct lines {
    char **v;
    size_t n, cap;
    const struct cm_names *nm;
    struct cm_names *parse_nm; /* non-NULL: also parse every field back */
    struct cm_agg *rebuilt;
};

static int line_of(const struct cm_agg_key *k, int64_t v, void *ud)
{
    struct lines *ls = ud;
    char f[1200];
    int fl = cm_agg_key_format(k, ls->nm, f, sizeof f);
    ck_assert_msg(fl > 0 && (size_t)fl < sizeof f, "key kind %d: format gives %d", k->kind, fl);
    if (ls->parse_nm) {
        /* what the store writes parses back to the same key */
        struct cm_agg_key k2;
        int r = cm_agg_key_parse(f, (size_t)fl, ls->parse_nm, &k2);
        ck_assert_msg(r == 0, "field '%.*s' does not parse back: %d", fl > 80 ? 80 : fl, f, r);
        char f2[1200];
        int fl2 = cm_agg_key_format(&k2, ls->parse_nm, f2, sizeof f2);
        ck_assert_msg(fl2 == fl && !memcmp(f, f2, (size_t)fl), "field '%.*s' reads back as '%.*s'",
                      fl > 80 ? 80 : fl, f, fl2 > 80 ? 80 : fl2, f2);
        ck_assert_int_eq(cm_agg_add(ls->rebuilt, &k2, v), 0);
    }
    if (ls->n == ls->cap) {
        ls->cap = ls->cap ? 2 * ls->cap : 64;
        ls->v = realloc(ls->v, ls->cap * sizeof *ls->v);
        ck_assert_ptr_nonnull(ls->v);
    }
    char *l = malloc((size_t)fl + 32);
    ck_assert_ptr_nonnull(l);
    memcpy(l, f, (size_t)fl);
    snprintf(l + fl, 32, "=%" PRId64, v);
    ls->v[ls->n++] = l;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void lines_free(struct lines *ls)
{
    for (size_t i = 0; i < ls->n; i++)
        free(ls->v[i]);
    free(ls->v);
}

/* The document at as_of is made and dumps; returns it. */
static json_t *doc_ok(const struct cm_agg *ag, const struct cm_names *nm,
                      const struct cm_config *cfg, int64_t as_of)
{
    json_t *d = cm_indicators_json(ag, nm, cfg, as_of);
    ck_assert_msg(d != NULL, "no indicators document as of %" PRId64, as_of);
    char *txt = json_dumps(d, JSON_SORT_KEYS | JSON_INDENT(1));
    ck_assert_ptr_nonnull(txt);
    free(txt);
    return d;
}

START_TEST(test_extremes_round_trip)
{
    names_init();
    struct cm_config cfg;
    config_init(&cfg);
    struct scen sc;
    scenario(&sc);

    struct cm_engine *en = cm_engine_new(&cfg);
    ck_assert_ptr_nonnull(en);
    struct cm_decoder *dec = cm_decoder_new();
    ck_assert_ptr_nonnull(dec);
    struct store_sim ss = {0};
    ck_assert_ptr_nonnull(ss.nm = cm_names_new());
    ck_assert_ptr_nonnull(ss.fc = cm_fold_ctx_new(&cfg, ss.nm));
    ck_assert_ptr_nonnull(ss.ag = cm_agg_new());

    for (size_t i = 0; i < sc.n; i++) {
        struct msg m = tev_pack(&sc.ev[i]);
        struct cm_event ev;
        enum cm_reject r = cm_decode(dec, m.buf, m.len, &ev);
        ck_assert_msg(r == CM_OK, "event %zu: %s", i, cm_reject_name(r));
        store_fold(&ss, &ev);
        ck_assert_int_eq(cm_engine_feed(en, m.buf, m.len), CM_OK);
    }
    ck_assert_int_eq(ss.states_checked, (long)sc.n);
    ck_assert_uint_eq(ss.n, 6);

    /* the stored path (state unpacked and packed around every event) gives
     * the engine's aggregate, and every field parses back */
    struct lines le = {.nm = cm_engine_names(en)}, ls = {.nm = ss.nm};
    ck_assert_ptr_nonnull(le.parse_nm = cm_names_new());
    ck_assert_ptr_nonnull(le.rebuilt = cm_agg_new());
    ck_assert_ptr_nonnull(cm_engine_agg(en));
    ck_assert_int_eq(cm_agg_foreach(cm_engine_agg(en), line_of, &le), 0);
    ck_assert_int_eq(cm_agg_foreach(ss.ag, line_of, &ls), 0);
    qsort(le.v, le.n, sizeof *le.v, cmp_str);
    qsort(ls.v, ls.n, sizeof *ls.v, cmp_str);
    ck_assert_uint_gt(le.n, 30);
    ck_assert_uint_eq(le.n, ls.n);
    for (size_t i = 0; i < le.n; i++)
        ck_assert_msg(!strcmp(le.v[i], ls.v[i]), "entry %zu: engine %.60s, stored %.60s", i,
                      le.v[i], ls.v[i]);
    /* the extremes occurred: a cohort of 1970-01 and of 9999-12 */
    int m70 = 0, m9999 = 0;
    for (size_t i = 0; i < le.n; i++) {
        m70 |= strstr(le.v[i], ":1970-01:") != NULL;
        m9999 |= strstr(le.v[i], ":9999-12:") != NULL;
    }
    ck_assert_msg(m70 && m9999, "cohorts 1970-01: %d, 9999-12: %d", m70, m9999);

    /* the read side: the documents made from the engine and from the fields
     * read back are equal, as of the latest event and as of the last second */
    int64_t asofs[] = {cm_engine_latest(en), TMAX, TMAX - 1000 * DAY};
    ck_assert(cm_engine_latest(en) == TMAX);
    for (size_t k = 0; k < 3; k++) {
        json_t *a = cm_engine_indicators(en, asofs[k]);
        ck_assert_ptr_nonnull(a);
        json_t *b = doc_ok(le.rebuilt, le.parse_nm, &cfg, asofs[k]);
        ck_assert_msg(json_equal(a, b), "as of %" PRId64 ": documents differ", asofs[k]);
        json_t *c = doc_ok(ss.ag, ss.nm, &cfg, asofs[k]);
        ck_assert(json_equal(a, c));
        json_decref(a);
        json_decref(b);
        json_decref(c);
    }
    json_t *d = cm_engine_indicators(en, TMAX);
    ck_assert_ptr_nonnull(d);
    json_t *low = json_object_get(json_object_get(d, "schemes"), S_LOW);
    ck_assert_ptr_nonnull(low);
    ck_assert_ptr_nonnull(json_object_get(json_object_get(low, "by_cohort"), "1970-01"));
    ck_assert_ptr_nonnull(json_object_get(json_object_get(low, "by_nationality"), NAT1));
    ck_assert_ptr_nonnull(json_object_get(json_object_get(d, "schemes"), S_LIMIT));
    json_decref(d);

    lines_free(&le);
    lines_free(&ls);
    cm_agg_free(le.rebuilt);
    cm_names_free(le.parse_nm);
    for (size_t i = 0; i < ss.n; i++)
        free(ss.m[i].buf);
    cm_agg_free(ss.ag);
    cm_fold_ctx_free(ss.fc);
    cm_names_free(ss.nm);
    cm_decoder_free(dec);
    cm_engine_free(en);
    cm_config_free(&cfg);
}
END_TEST

/* Counts names of nm that are not UTF-8 (jansson would refuse them as keys). */
static size_t bad_names(const struct cm_names *nm)
{
    size_t bad = 0;
    for (size_t i = 0; i < cm_names_count(nm); i++) {
        size_t len;
        const char *s = cm_names_get(nm, (int32_t)i, &len);
        ck_assert_ptr_nonnull(s);
        bad += !cm_utf8_valid(s, len) || memchr(s, 0, len) != NULL;
    }
    return bad;
}

START_TEST(test_hostile_values_never_reach_the_fold)
{
    /* the two cases: a grant valid until the year 10000 (cohort
     * "10000-02", which did not parse back) and a scheme id that is not
     * UTF-8 (jansson refused the key: "out of memory") */
    struct fx *f = fx_new(30, "A:0");
    int64_t y10000 = TMAX + 40 * DAY; /* 10000-02-09 */
    struct tev e = ev_grant("g1", "m1", D(2024, 1, 1), "p1", "A", "UKR", D(2024, 1, 1), y10000);
    ck_assert_int_eq(feed(f, e), CM_REJ_OUT_OF_RANGE);
    e = ev_grant("g2", "m2", D(2024, 1, 1), "p1", "S\xe9JOUR", "UKR", D(2024, 1, 1), D(2024, 3, 1));
    ck_assert_int_eq(feed(f, e), CM_REJ_INVALID_UTF8);
    e = ev_grant("g3", "m3", D(2024, 1, 1), "p1", "A", "\xff\xfe", D(2024, 1, 1), D(2024, 3, 1));
    ck_assert_int_eq(feed(f, e), CM_REJ_INVALID_UTF8);
    e = ev_extend("x1", "m4", D(2024, 1, 1), "p1", y10000);
    ck_assert_int_eq(feed(f, e), CM_REJ_OUT_OF_RANGE);
    e = ev_entry("n1", "m5", -DAY);
    ck_assert_int_eq(feed(f, e), CM_REJ_OUT_OF_RANGE);
    /* the same grants within the contract pass */
    FEED(f, ev_grant("g4", "m1", D(2024, 1, 1), "p1", "A", "UKR", D(2024, 1, 1), TMAX));
    FEED(f, ev_grant("g5", "m2", D(2024, 1, 1), "p1", "S\xc3\xa9JOUR", "UKR", D(2024, 1, 1),
                     D(2024, 3, 1)));
    FEED(f, ev_entry("n2", "m2", D(2024, 1, 2)));

    ck_assert_uint_eq(bad_names(cm_engine_names(f->en)), 0);
    struct lines ls = {.nm = cm_engine_names(f->en)};
    ck_assert_ptr_nonnull(ls.parse_nm = cm_names_new());
    ck_assert_ptr_nonnull(ls.rebuilt = cm_agg_new());
    ck_assert_int_eq(cm_agg_foreach(cm_engine_agg(f->en), line_of, &ls), 0);
    json_t *d = doc_ok(cm_engine_agg(f->en), cm_engine_names(f->en), &f->cfg, TMAX);
    CHECK_DQ(d, "invalid=5");
    ck_assert_int_eq(get(d, "S\xc3\xa9JOUR", NULL, "in_country_overstays"), 1);
    json_decref(d);
    d = doc_ok(ls.rebuilt, ls.parse_nm, &f->cfg, TMAX);
    CHECK_DQ(d, "invalid=5");
    json_decref(d);
    lines_free(&ls);
    cm_agg_free(ls.rebuilt);
    cm_names_free(ls.parse_nm);
    fx_free(f);
}
END_TEST


START_TEST(test_month_text_round_trip)
{
    /* cohort months are written as text (agg keys "m:...:YYYY-MM:..."): every
     * month index reads back as itself, also past the contract's years (a
     * state or an aggregate written before step 1 held "10000-02") */
    const int32_t dec9999 = (9999 - 1970) * 12 + 11;
    const int32_t months[] = {INT32_MIN, INT32_MIN + 1, -1970 * 12 - 1, -1970 * 12, -1, 0, 1,
                              dec9999, dec9999 + 1, dec9999 + 2, INT32_MAX - 1, INT32_MAX};
    const char *const spelled[] = {NULL, NULL, "-001-12", "0000-01", "1969-12", "1970-01",
                                   "1970-02", "9999-12", "10000-01", "10000-02", NULL, NULL};
    for (size_t i = 0; i < sizeof months / sizeof months[0]; i++) {
        char buf[16];
        int32_t back = 12345;
        cm_month_str(months[i], buf);
        if (spelled[i])
            ck_assert_str_eq(buf, spelled[i]);
        ck_assert_msg(cm_month_parse(buf, &back) == 0 && back == months[i],
                      "month %" PRId32 " is written '%s', read back as %" PRId32, months[i], buf,
                      back);
    }
    /* the month of the contract's last day is 9999-12 */
    ck_assert_int_eq(cm_month_of_day(DMAX), dec9999);
    ck_assert_int_eq(cm_month_of_day(0), 0);
    /* one spelling per month */
    const char *const bad[] = {"2024-1",  "2024-13", "2024-00", "02024-01", "+2024-01", "999-01",
                               "2024-01 ", "",       "-",       "2024",     "-0001-12", "2024--1",
                               "99999999999-01"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t m;
        ck_assert_msg(cm_month_parse(bad[i], &m) == -EINVAL, "'%s' parsed", bad[i]);
    }
    /* and an aggregate field of such a month parses back */
    struct cm_names *nm = cm_names_new();
    ck_assert_ptr_nonnull(nm);
    int32_t sch = cm_names_intern(nm, "A", 1);
    ck_assert_int_ge(sch, 0);
    struct cm_agg_key k = {.kind = CM_AK_MONTH, .ctr = CM_C_EXPECTED, .scheme = sch,
                           .a = dec9999 + 2}, k2;
    char f[128];
    int fl = cm_agg_key_format(&k, nm, f, sizeof f);
    ck_assert_int_gt(fl, 0);
    ck_assert_msg(cm_agg_key_parse(f, (size_t)fl, nm, &k2) == 0, "'%s' does not parse", f);
    ck_assert(k2.kind == k.kind && k2.ctr == k.ctr && k2.scheme == k.scheme && k2.a == k.a);
    /* a cohort of a nationality: scheme and nationality with ':' in them */
    int32_t s2 = cm_names_intern(nm, "S:1", 3), n2 = cm_names_intern(nm, "M:X", 3);
    ck_assert(s2 >= 0 && n2 >= 0);
    k = (struct cm_agg_key){.kind = CM_AK_NATMONTH, .ctr = CM_C_ICO, .scheme = s2, .a = n2,
                            .b = dec9999};
    fl = cm_agg_key_format(&k, nm, f, sizeof f);
    ck_assert_int_gt(fl, 0);
    ck_assert_str_eq(f, "c:in_country_overstays:9999-12:3:S:1M:X");
    ck_assert_int_eq(cm_agg_key_parse(f, (size_t)fl, nm, &k2), 0);
    ck_assert(k2.kind == k.kind && k2.ctr == k.ctr && k2.scheme == s2 && k2.a == n2 &&
              k2.b == dec9999);
    static const char *const badc[] = {"c:", "c:in_country_overstays", "c:nope:2024-01:1:AB",
                                       "c:no_shows:2024-13:1:AB", "c:no_shows:2024-01:3:AB",
                                       "c:no_shows:2024-01:x:AB", "c:no_shows:2024-01:-1:AB"};
    for (size_t i = 0; i < sizeof badc / sizeof badc[0]; i++)
        ck_assert_msg(cm_agg_key_parse(badc[i], strlen(badc[i]), nm, &k2) == -EINVAL, "'%s' parsed",
                      badc[i]);
    cm_names_free(nm);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("roundtrip");
    TCase *tc = tcase_create("roundtrip");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_extremes_round_trip);
    tcase_add_test(tc, test_hostile_values_never_reach_the_fold);
    tcase_add_test(tc, test_month_text_round_trip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
