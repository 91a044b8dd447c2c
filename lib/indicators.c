/* indicators.c - the read side: an aggregate evaluated as of a time. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/grow.h"
#include "circmon/indicators.h"
#include "circmon/timeutil.h"

/* One group: a scheme, and a nationality, a cohort month, or both. */
struct group {
    uint8_t kind; /* CM_AK_NAT, CM_AK_MONTH or CM_AK_NATMONTH */
    int32_t scheme;
    int64_t a; /* nat (NAT, NATMONTH) or month (MONTH) */
    int64_t b; /* month (NATMONTH) */
    int64_t c[CM_C__COUNT];
};

/* A change, from day on, of the number of breaches a day is a breach day of. */
struct step {
    int32_t scheme;
    int64_t nat;
    int64_t day;
    int64_t v;
};

struct eval {
    const struct cm_config *cfg;
    const struct cm_names *nm;
    int64_t ds;
    int natc; /* cohorts per nationality wanted (an alert rule has a nationality) */
    struct cm_agg *res;  /* (kind, ctr, scheme, a, b) -> value, as of ds */
    struct cm_agg *gidx; /* (kind, 0, scheme, a, b) -> group number + 1 */
    struct group *g;
    size_t ng, capg;
    struct step *st; /* breach-day steps of every scheme, swept by month */
    size_t nst, capst;
    int err;
};

static int add(struct eval *e, uint8_t kind, int ctr, int32_t scheme, int64_t a, int64_t v)
{
    struct cm_agg_key k = {.kind = kind, .ctr = (uint8_t)ctr, .scheme = scheme, .a = a};
    return cm_agg_add(e->res, &k, v);
}

/* Adds v to counter ctr of (scheme, nat, month), when cohorts per nationality are wanted. */
static int add_nm(struct eval *e, int ctr, int32_t scheme, int64_t nat, int64_t month, int64_t v)
{
    if (!e->natc)
        return 0;
    struct cm_agg_key k = {.kind = CM_AK_NATMONTH, .ctr = (uint8_t)ctr, .scheme = scheme, .a = nat,
                           .b = month};
    return cm_agg_add(e->res, &k, v);
}

/* Adds v to counter ctr of (scheme, nat), of (scheme, month of day) and of
 * (scheme, nat, month of day). */
static int add2(struct eval *e, int ctr, int32_t scheme, int64_t nat, int64_t day, int64_t v)
{
    int32_t m = cm_month_of_day(day);
    if (add(e, CM_AK_NAT, ctr, scheme, nat, v) < 0 || add(e, CM_AK_MONTH, ctr, scheme, m, v) < 0 ||
        add_nm(e, ctr, scheme, nat, m, v) < 0)
        return -ENOMEM;
    return 0;
}

/* A step of v at day for (scheme, nat): its share of the nationality's
 * total now (the steps of a breach sum to 0, so the total of its days is
 * the sum of -v * day over its steps), its months when swept. */
static int step(struct eval *e, int32_t scheme, int64_t nat, int64_t day, int64_t v)
{
    if (cm_grow(&e->st, &e->capst, e->nst + 1, sizeof(*e->st), 64) < 0)
        return -ENOMEM;
    e->st[e->nst++] = (struct step){.scheme = scheme, .nat = nat, .day = day, .v = v};
    struct cm_agg_key k = {.kind = CM_AK_NAT, .ctr = CM_C_BREACH_DAYS, .scheme = scheme, .a = nat};
    return cm_agg_add(e->res, &k, -v * day);
}

static int step_cmp(const void *x, const void *y)
{
    const struct step *a = x, *b = y;
    if (a->scheme != b->scheme)
        return a->scheme < b->scheme ? -1 : 1;
    if (a->nat != b->nat)
        return a->nat < b->nat ? -1 : 1;
    return a->day < b->day ? -1 : a->day > b->day;
}

static int same_run(const struct step *x, const struct step *y)
{
    return x->scheme == y->scheme && x->nat == y->nat;
}

/* Breach days: the steps of each (scheme, nationality) in order of day, a
 * running count, and each month that count covers gets its days (in the
 * scheme's cohort and, when wanted, the nationality's). Costs the steps and
 * the months with breach days, not the days. */
static int sweep(struct eval *e)
{
    if (e->nst)
        qsort(e->st, e->nst, sizeof(*e->st), step_cmp);
    int64_t r = 0;
    for (size_t i = 0; i < e->nst; i++) {
        if (i && !same_run(&e->st[i], &e->st[i - 1]))
            r = 0; /* steps that do not sum to 0: only an altered aggregate has them */
        r += e->st[i].v;
        if (!r || i + 1 == e->nst || !same_run(&e->st[i + 1], &e->st[i]))
            continue;
        int64_t a = e->st[i].day, b = e->st[i + 1].day - 1;
        for (int32_t m = cm_month_of_day(a); a <= b; m++) {
            int64_t to = cm_month_first_day(m + 1) - 1;
            if (to > b)
                to = b;
            if (add(e, CM_AK_MONTH, CM_C_BREACH_DAYS, e->st[i].scheme, m, r * (to - a + 1)) < 0 ||
                add_nm(e, CM_C_BREACH_DAYS, e->st[i].scheme, e->st[i].nat, m, r * (to - a + 1)) < 0)
                return -ENOMEM;
            a = to + 1;
        }
    }
    return 0;
}

static int grace_of(const struct eval *e, int32_t scheme)
{
    return cm_config_scheme(e->cfg, cm_names_get(e->nm, scheme, NULL))->grace_days;
}

static int resolve(const struct cm_agg_key *k, int64_t v, void *ud)
{
    struct eval *e = ud;
    switch (k->kind) {
    case CM_AK_NAT:
    case CM_AK_MONTH:
    case CM_AK_PRESENT:
    case CM_AK_DQ:
        return cm_agg_add(e->res, k, v) < 0 ? -ENOMEM : 0;
    case CM_AK_NATMONTH:
        return e->natc && cm_agg_add(e->res, k, v) < 0 ? -ENOMEM : 0;
    case CM_AK_PEND: {
        /* counted as if due: take back when not due as of ds */
        int64_t end = k->b;
        if (end + grace_of(e, k->scheme) < e->ds)
            return 0;
        int r = 0;
        switch (k->ctr) {
        case CM_P_NOSHOW:
            r = add2(e, CM_C_NOSHOW, k->scheme, k->a, end, -v);
            break;
        case CM_P_INTIME_REENTRY:
            r = add2(e, CM_C_REENTRY, k->scheme, k->a, end, -v);
            /* fall through */
        case CM_P_INTIME:
            if (!r)
                r = add2(e, CM_C_INTIME, k->scheme, k->a, end, -v);
            if (!r)
                r = add2(e, CM_C_EXPECTED, k->scheme, k->a, end, -v);
            break;
        case CM_P_ICO:
            if (add2(e, CM_C_ICO, k->scheme, k->a, end, -v) < 0 ||
                add2(e, CM_C_ICO_ESUM, k->scheme, k->a, end, -v * end) < 0 ||
                add2(e, CM_C_EXPECTED, k->scheme, k->a, end, -v) < 0)
                r = -ENOMEM;
            break;
        case CM_P_STATUS:
            if (add2(e, CM_C_STATUS, k->scheme, k->a, end, -v) < 0 ||
                add2(e, CM_C_EXPECTED, k->scheme, k->a, end, -v) < 0)
                r = -ENOMEM;
            break;
        default:
            break;
        }
        return r;
    }
    case CM_AK_BREACH: {
        /* an open stay: breach days run from its first breach day to ds */
        int64_t a = k->b;
        if (a > e->ds)
            return 0;
        if (add2(e, CM_C_BREACHES, k->scheme, k->a, a, v) < 0 || step(e, k->scheme, k->a, a, v) < 0 ||
            step(e, k->scheme, k->a, e->ds + 1, -v) < 0)
            return -ENOMEM;
        return 0;
    }
    case CM_AK_BDAYS:
        /* closed breaches: their days are final, whatever ds */
        return step(e, k->scheme, k->a, k->b, v);
    default:
        return 0;
    }
}

static int collect(const struct cm_agg_key *k, int64_t v, void *ud)
{
    struct eval *e = ud;
    if (k->kind != CM_AK_NAT && k->kind != CM_AK_MONTH && k->kind != CM_AK_NATMONTH)
        return 0;
    struct cm_agg_key gk = {.kind = k->kind, .scheme = k->scheme, .a = k->a, .b = k->b};
    int64_t gi = cm_agg_get(e->gidx, &gk);
    if (!gi) {
        if (cm_grow(&e->g, &e->capg, e->ng + 1, sizeof(*e->g), 64) < 0)
            return -ENOMEM;
        memset(&e->g[e->ng], 0, sizeof(e->g[e->ng]));
        e->g[e->ng].kind = k->kind;
        e->g[e->ng].scheme = k->scheme;
        e->g[e->ng].a = k->a;
        e->g[e->ng].b = k->b;
        gi = (int64_t)++e->ng;
        if (cm_agg_add(e->gidx, &gk, gi) < 0)
            return -ENOMEM;
    }
    if (k->ctr < CM_C__COUNT)
        e->g[gi - 1].c[k->ctr] += v;
    return 0;
}

static json_t *ratio(int64_t num, int64_t den)
{
    return den ? json_real((double)num / (double)den) : json_null();
}

/* counters and rates of one group into obj; 0 on success */
static int fill(json_t *obj, const int64_t *c)
{
    for (int i = 0; i < CM_C__PUBLIC; i++)
        if (json_object_set_new(obj, cm_ctr_name(i), json_integer(c[i])) < 0)
            return -ENOMEM;
    int64_t over = c[CM_C_LATE] + c[CM_C_ICO];
    if (json_object_set_new(obj, "overstay_rate", ratio(over, c[CM_C_EXPECTED])) < 0 ||
        json_object_set_new(obj, "in_country_overstay_rate", ratio(c[CM_C_ICO], c[CM_C_EXPECTED])) < 0 ||
        json_object_set_new(obj, "return_compliance_rate", ratio(c[CM_C_INTIME], c[CM_C_EXPECTED])) < 0 ||
        json_object_set_new(obj, "reentry_rate", ratio(c[CM_C_REENTRY], c[CM_C_INTIME])) < 0 ||
        json_object_set_new(obj, "mean_overstay_days", ratio(c[CM_C_OVERSTAY_DAYS], over)) < 0)
        return -ENOMEM;
    return 0;
}

static int any(const int64_t *c)
{
    for (int i = 0; i < CM_C__PUBLIC; i++)
        if (c[i])
            return 1;
    return 0;
}

/* The scheme's object in doc, created on first use. */
static json_t *scheme_obj(json_t *schemes, const char *id)
{
    json_t *s = json_object_get(schemes, id);
    if (s)
        return s;
    s = json_object();
    if (!s || json_object_set_new(schemes, id, s) < 0 ||
        json_object_set_new(s, "by_nationality", json_object()) < 0 ||
        json_object_set_new(s, "by_cohort", json_object()) < 0 ||
        json_object_set_new(s, "present", json_integer(0)) < 0)
        return NULL;
    return s;
}

/* The cohorts of each nationality: by_cohort in its by_nationality group.
 * A group whose cohorts do not sum to its own counters (an aggregate folded,
 * in part, before the aggregate had cohorts per nationality) gets none:
 * cm_alert_instances then refuses its nationality rules. Costs the groups. */
static int nat_cohorts(struct eval *e, json_t *schemes)
{
    int64_t (*sum)[CM_C__COUNT] = calloc(e->ng + 1, sizeof(*sum));
    if (!sum)
        return -ENOMEM;
    int r = 0;
    for (size_t i = 0; i < e->ng; i++) {
        const struct group *g = &e->g[i];
        if (g->kind != CM_AK_NATMONTH)
            continue;
        struct cm_agg_key nk = {.kind = CM_AK_NAT, .scheme = g->scheme, .a = g->a};
        int64_t ni = cm_agg_get(e->gidx, &nk);
        for (int c = 0; ni > 0 && c < CM_C__COUNT; c++)
            sum[ni - 1][c] += g->c[c];
    }
    for (size_t i = 0; i < e->ng && !r; i++) {
        const struct group *g = &e->g[i];
        if (g->kind != CM_AK_NATMONTH || !any(g->c))
            continue;
        struct cm_agg_key nk = {.kind = CM_AK_NAT, .scheme = g->scheme, .a = g->a};
        int64_t ni = cm_agg_get(e->gidx, &nk);
        if (ni <= 0 || memcmp(sum[ni - 1], e->g[ni - 1].c, sizeof(sum[0])))
            continue; /* no such nationality, or incomplete cohorts */
        json_t *s = json_object_get(schemes, cm_names_get(e->nm, g->scheme, NULL));
        json_t *n = json_object_get(json_object_get(s, "by_nationality"),
                                    cm_names_get(e->nm, (int32_t)g->a, NULL));
        if (!n)
            continue;
        json_t *coh = json_object_get(n, "by_cohort");
        if (!coh && (json_object_set_new(n, "by_cohort", json_object()) < 0 ||
                     !(coh = json_object_get(n, "by_cohort")))) {
            r = -ENOMEM;
            break;
        }
        char name[32];
        json_t *o = json_object();
        cm_month_str((int32_t)g->b, name);
        if (!o || fill(o, g->c) < 0) {
            json_decref(o);
            r = -ENOMEM;
        } else if (json_object_set_new(coh, name, o) < 0) { /* o is freed */
            r = -ENOMEM;
        }
    }
    free(sum);
    return r;
}

int cm_indicators_nat_cohorts_wanted(const struct cm_config *cfg)
{
    for (size_t i = 0; cfg && i < cfg->n_alerts; i++)
        if (cfg->alerts[i].nationality[0])
            return 1;
    return 0;
}

struct totals {
    int32_t scheme;
    int64_t c[CM_C__COUNT];
};

static int present_dq(const struct cm_agg_key *k, int64_t v, void *ud)
{
    json_t **o = ud; /* [schemes, dq] */
    struct eval *e = (struct eval *)o[2];
    if (k->kind == CM_AK_PRESENT && v) {
        json_t *s = scheme_obj(o[0], cm_names_get(e->nm, k->scheme, NULL));
        if (!s || json_object_set_new(s, "present", json_integer(v)) < 0)
            return -ENOMEM;
    } else if (k->kind == CM_AK_DQ) {
        if (json_object_set_new(o[1], cm_dq_name(k->ctr), json_integer(v)) < 0)
            return -ENOMEM;
    }
    return 0;
}

int cm_indicators_as_of_check(int64_t as_of, char *err, size_t errlen)
{
    if (as_of >= 0 && as_of <= CM_AS_OF_MAX)
        return 0;
    if (err && errlen)
        snprintf(err, errlen,
                 "as-of %" PRId64 " is outside the instants the indicators are defined for "
                 "(0 .. %" PRId64 ", 1970-01-01 .. 9999-12-31T23:59:59Z)",
                 as_of, (int64_t)CM_AS_OF_MAX);
    return -ERANGE;
}

json_t *cm_indicators_json(const struct cm_agg *ag, const struct cm_names *nm,
                           const struct cm_config *cfg, int64_t as_of)
{
    return cm_indicators_json_ex(ag, nm, cfg, as_of,
                                 cm_indicators_nat_cohorts_wanted(cfg) ? CM_IND_NAT_COHORTS : 0);
}

json_t *cm_indicators_json_ex(const struct cm_agg *ag, const struct cm_names *nm,
                              const struct cm_config *cfg, int64_t as_of, unsigned flags)
{
    if (cm_indicators_as_of_check(as_of, NULL, 0) < 0)
        return NULL;
    struct eval e = {.cfg = cfg, .nm = nm, .ds = cm_day(as_of),
                     .natc = (flags & CM_IND_NAT_COHORTS) != 0};
    json_t *doc = NULL, *schemes = NULL, *dq = NULL, *ret = NULL;
    struct totals *tot = NULL;
    size_t ntot = 0;
    e.res = cm_agg_new();
    e.gidx = cm_agg_new();
    if (!e.res || !e.gidx)
        goto fail;
    if (cm_agg_foreach(ag, resolve, &e) || sweep(&e) || cm_agg_foreach(e.res, collect, &e))
        goto fail;

    doc = json_object();
    schemes = json_object();
    dq = json_object();
    if (!doc || !schemes || !dq)
        goto fail;
    for (int i = 0; i < CM_DQ__COUNT; i++) /* over_limit only when not 0: not in the contract */
        if (i != CM_DQ_OVER_LIMIT && json_object_set_new(dq, cm_dq_name(i), json_integer(0)) < 0)
            goto fail;
    json_t *ud[3] = {schemes, dq, (json_t *)&e};
    if (cm_agg_foreach(e.res, present_dq, ud))
        goto fail;

    tot = calloc(e.ng + 1, sizeof(*tot));
    if (!tot)
        goto fail;
    for (size_t i = 0; i < e.ng; i++) {
        struct group *g = &e.g[i];
        g->c[CM_C_OVERSTAY_DAYS] += g->c[CM_C_ICO] * e.ds - g->c[CM_C_ICO_ESUM];
        if (!any(g->c) || g->kind == CM_AK_NATMONTH)
            continue;
        const char *sid = cm_names_get(nm, g->scheme, NULL);
        json_t *s = scheme_obj(schemes, sid), *o = json_object();
        if (!s || !o)
            goto fail_o;
        char name[32];
        const char *key;
        json_t *parent;
        if (g->kind == CM_AK_NAT) {
            key = cm_names_get(nm, (int32_t)g->a, NULL);
            parent = json_object_get(s, "by_nationality");
            size_t t;
            for (t = 0; t < ntot && tot[t].scheme != g->scheme; t++)
                ;
            if (t == ntot)
                tot[ntot++].scheme = g->scheme;
            for (int c = 0; c < CM_C__COUNT; c++)
                tot[t].c[c] += g->c[c];
        } else {
            cm_month_str((int32_t)g->a, name);
            key = name;
            parent = json_object_get(s, "by_cohort");
        }
        if (!key || fill(o, g->c) < 0 || json_object_set_new(parent, key, o) < 0)
            goto fail;
        continue;
    fail_o:
        json_decref(o);
        goto fail;
    }
    if (e.natc && nat_cohorts(&e, schemes) < 0)
        goto fail;
    /* every scheme object gets its totals (zero when only present) */
    const char *sid;
    json_t *s;
    json_object_foreach(schemes, sid, s) {
        int64_t zero[CM_C__COUNT] = {0};
        const int64_t *c = zero;
        for (size_t t = 0; t < ntot; t++)
            if (!strcmp(cm_names_get(nm, tot[t].scheme, NULL), sid))
                c = tot[t].c;
        if (fill(s, c) < 0)
            goto fail;
    }
    if (json_object_set_new(doc, "as_of", json_integer(as_of)) < 0 ||
        json_object_set(doc, "schemes", schemes) < 0 || json_object_set(doc, "data_quality", dq) < 0)
        goto fail;
    ret = doc;
    doc = NULL;
fail:
    json_decref(doc);
    json_decref(schemes);
    json_decref(dq);
    free(tot);
    free(e.g);
    free(e.st);
    cm_agg_free(e.res);
    cm_agg_free(e.gidx);
    return ret;
}

static void cell_rate(FILE *fp, const json_t *v)
{
    if (json_is_number(v))
        fprintf(fp, " %8.2f%%", 100.0 * json_number_value(v));
    else
        fprintf(fp, " %9s", "-");
}

static long num(const json_t *o, const char *k)
{
    return (long)json_integer_value(json_object_get(o, k));
}

/* Columns a UTF-8 string takes on a terminal, one per code point (a wide
 * CJK character takes two: such ids still misalign). */
static size_t u8_cols(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* s cut to w columns (never inside a character), padded to w. */
static void put_cell(FILE *fp, const char *s, size_t w)
{
    size_t i = 0, cols = 0;
    while (s[i] && cols < w) {
        i++;
        while (((unsigned char)s[i] & 0xC0) == 0x80)
            i++;
        cols++;
    }
    fwrite(s, 1, i, fp);
    for (; cols < w; cols++)
        fputc(' ', fp);
}

int cm_indicators_print_table(const json_t *doc, FILE *fp)
{
    static const char *const cols[] = {"expected_departures", "in_time_departures", "late_departures",
                                       "in_country_overstays", "status_changes", "no_shows",
                                       "reentries", "stay_limit_breaches", "present"};
    static const char *const heads[] = {"expected", "in_time", "late", "in_country", "status",
                                        "no_show", "reentry", "breaches", "present"};
    const json_t *schemes = json_object_get(doc, "schemes");
    const char *sid;
    json_t *s;
    size_t w = 6;
    json_object_foreach((json_t *)schemes, sid, s) {
        if (u8_cols(sid) > w)
            w = u8_cols(sid);
    }
    if (w > 40)
        w = 40;
    fprintf(fp, "%-*s", (int)w, "scheme");
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++)
        fprintf(fp, " %10s", heads[i]);
    fprintf(fp, " %9s %9s %9s %9s\n", "overstay", "ico_rate", "returned", "reentry");
    const char **keys = calloc(json_object_size(schemes) + 1, sizeof(*keys));
    size_t nk = 0;
    if (!keys)
        return -ENOMEM;
    json_object_foreach((json_t *)schemes, sid, s) keys[nk++] = sid;
    for (size_t i = 1; i < nk; i++) /* sorted, for stable output */
        for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
            const char *t = keys[j];
            keys[j] = keys[j - 1];
            keys[j - 1] = t;
        }
    for (size_t i = 0; i < nk; i++) {
        s = json_object_get(schemes, keys[i]);
        put_cell(fp, keys[i], w);
        for (size_t c = 0; c < sizeof(cols) / sizeof(cols[0]); c++)
            fprintf(fp, " %10ld", num(s, cols[c]));
        cell_rate(fp, json_object_get(s, "overstay_rate"));
        cell_rate(fp, json_object_get(s, "in_country_overstay_rate"));
        cell_rate(fp, json_object_get(s, "return_compliance_rate"));
        cell_rate(fp, json_object_get(s, "reentry_rate"));
        fputc('\n', fp);
    }
    free(keys);
    const json_t *dq = json_object_get(doc, "data_quality");
    fprintf(fp, "\ndata quality:");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)dq, k, v) fprintf(fp, " %s=%ld", k, (long)json_integer_value(v));
    fputc('\n', fp);
    return ferror(fp) ? -EIO : 0;
}

int cm_indicators_print(const json_t *doc, const char *format, FILE *fp)
{
    if (!strcmp(format, "json")) {
        if (json_dumpf(doc, fp, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17)) < 0 ||
            fputc('\n', fp) == EOF)
            return -EIO;
    } else if (!strcmp(format, "table")) {
        if (cm_indicators_print_table(doc, fp) < 0)
            return -EIO;
    } else {
        return -EINVAL;
    }
    return fflush(fp) == EOF ? -EIO : 0;
}
