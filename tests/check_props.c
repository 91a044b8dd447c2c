/* check_props.c - property tests over random valid migrant histories.
 *
 * 1. determinism: reading the indicators changes nothing; feeding protobuf
 *    and folding decoded events give the same document;
 * 2. permutation of each migrant's events within the reorder window gives the
 *    document of the events sorted by occurrence (but out_of_order);
 * 3. a duplicate arriving at once or 20 events later gives the same document;
 * 4. the interleaving of migrants does not matter;
 * 5. an independent reference model: a literal, deliberately naive reading of
 *    INDICATORS.md, compared counter by counter (every scheme, nationality and
 *    cohort, and every scheme, nationality and cohort: the cohorts of each
 *    nationality, which the engine's documents hold since its configuration
 *    has nationality_cohorts = yes and an alert rule with a nationality), rate by rate and data-quality
 *    counter by counter with the engine, for hundreds of random histories at
 *    several as_of. */
#include "cm_test.h"

#include "circmon/fold.h" /* enum cm_fold_result */

#define WINDOW 30
#define SPEC "SW:0 ST:7 SS:3:90/180 TR:0:5/14"
#define NSCH 4
static const char *const SCH[NSCH] = {"SW", "ST", "SS", "TR"};
static const int GRACE[NSCH] = {0, 7, 3, 0};
static const int LIM_N[NSCH] = {0, 0, 90, 5};
static const int LIM_W[NSCH] = {0, 0, 180, 14};
#define NNAT 4
static const char *const NAT[NNAT] = {"UKR", "MDA", "", "GEO"};
static const char *natkey(int i) { return NAT[i][0] ? NAT[i] : "XXX"; }

#define MAXM 5
#define MAXEV 36
#define MONTH0 2010 /* month index 0 = 2010-01 */
#define NMON (12 * 40)

struct hist {
    int nm;
    int nev[MAXM];
    struct tev ev[MAXM][MAXEV];
};

/* ---------------------------------------------------------------- generator */

static void gen_migrant(uint64_t *r, int mi, struct tev *out, int *n)
{
    char mid[16];
    snprintf(mid, sizeof mid, "m%d", mi);
    int64_t t = T(DN(2022, 1, 1) + rng_range(r, 0, 365)) + rng_range(r, -40000, 40000);
    int np = 0;
    int ne = (int)rng_range(r, 3, MAXEV);
    for (int i = 0; i < ne; i++) {
        int g = (int)rng_range(r, 0, 99);
        if (i > 0) {
            if (g < 5)
                ; /* same instant */
            else if (g < 15)
                t += rng_range(r, 1, DAY - 1);
            else
                t += rng_range(r, 0, 45) * DAY + rng_range(r, 0, DAY - 1);
        }
        char eid[32], pid[16];
        snprintf(eid, sizeof eid, "%s-e%d", mid, i);
        int k = (int)rng_range(r, 0, 99);
        struct tev e;
        if (k < 22) {
            snprintf(pid, sizeof pid, "p%d", np++);
            int64_t vf = t + rng_range(r, -30, 40) * DAY + rng_range(r, -43200, 43200);
            int64_t vu = vf + rng_range(r, 0, 180) * DAY + rng_range(r, 0, DAY - 1);
            e = ev_grant(eid, mid, t, pid, SCH[rng_range(r, 0, NSCH - 1)],
                         NAT[rng_range(r, 0, NNAT - 1)], vf, vu);
        } else if (k < 47) {
            e = ev_entry(eid, mid, t);
        } else if (k < 69) {
            e = ev_exit(eid, mid, t);
        } else if (k < 92) {
            if (np > 0 && rng_range(r, 0, 9) > 0)
                snprintf(pid, sizeof pid, "p%d", (int)rng_range(r, 0, np - 1));
            else
                snprintf(pid, sizeof pid, "px");
            if (k < 82)
                e = ev_extend(eid, mid, t, pid, t + rng_range(r, -10, 150) * DAY);
            else
                e = ev_revoke(eid, mid, t, pid,
                              rng_range(r, 0, 1) ? 0 : t + rng_range(r, -20, 40) * DAY);
        } else {
            e = ev_status(eid, mid, t, (int)rng_range(r, 0, 4));
        }
        out[i] = e;
    }
    *n = ne;
}

/* A seasonal worker under a stay limit: a long permit of a limited scheme,
 * stays of days to weeks with gaps of days to months (so stays leave the
 * reorder window while later ones run), now and then an extension, a
 * second grant (of another nationality) or a stray event. */
static void gen_seasonal(uint64_t *r, int mi, struct tev *out, int *n)
{
    char mid[16], eid[32];
    snprintf(mid, sizeof mid, "m%d", mi);
    int sc = rng_range(r, 0, 1) ? 2 : 3; /* SS 90/180 or TR 5/14 */
    int64_t t = T(DN(2022, 1, 1) + rng_range(r, 0, 365)) + rng_range(r, -40000, 40000);
    int64_t e0 = t + rng_range(r, 200, 900) * DAY;
    int ne = 0, np = 1, in = 0;
    snprintf(eid, sizeof eid, "%s-e%d", mid, ne);
    out[ne++] = ev_grant(eid, mid, t, "p0", SCH[sc], NAT[rng_range(r, 0, NNAT - 1)],
                         t - rng_range(r, 0, 20) * DAY, e0);
    int want = (int)rng_range(r, 8, MAXEV);
    while (ne < want) {
        int g = (int)rng_range(r, 0, 99);
        if (sc == 2)
            t += (in ? rng_range(r, 5, 70) : rng_range(r, 2, 130)) * DAY;
        else
            t += (in ? rng_range(r, 1, 8) : rng_range(r, 1, 40)) * DAY;
        t += rng_range(r, -3600, 3600);
        snprintf(eid, sizeof eid, "%s-e%d", mid, ne);
        if (g < 8) {
            out[ne++] = ev_extend(eid, mid, t, "p0", e0 += rng_range(r, 1, 120) * DAY);
        } else if (g < 14) {
            char pid[16];
            snprintf(pid, sizeof pid, "p%d", np++);
            out[ne++] = ev_grant(eid, mid, t, pid, SCH[sc], NAT[rng_range(r, 0, NNAT - 1)],
                                 t - rng_range(r, 0, 30) * DAY, t + rng_range(r, 60, 500) * DAY);
        } else if (g < 17) {
            out[ne++] = in ? ev_entry(eid, mid, t) : ev_exit(eid, mid, t); /* stray */
        } else {
            out[ne++] = in ? ev_exit(eid, mid, t) : ev_entry(eid, mid, t);
            in = !in;
        }
    }
    *n = ne;
}

/* A long stayer under a stay limit: a permit of years, stays of months to
 * years (hundreds of breach days over dozens of months), sometimes a
 * follow-on grant of another nationality during a stay, a stay still open,
 * an exit after the permit's end. */
static void gen_long(uint64_t *r, int mi, struct tev *out, int *n)
{
    char mid[16], eid[32];
    snprintf(mid, sizeof mid, "m%d", mi);
    int sc = rng_range(r, 0, 1) ? 2 : 3;
    int64_t t = T(DN(2022, 1, 1) + rng_range(r, 0, 365)) + rng_range(r, -40000, 40000);
    int64_t e0 = t + rng_range(r, 400, 2500) * DAY;
    int ne = 0, np = 1;
    snprintf(eid, sizeof eid, "%s-e%d", mid, ne);
    out[ne++] = ev_grant(eid, mid, t, "p0", SCH[sc], NAT[rng_range(r, 0, NNAT - 1)],
                         t - rng_range(r, 0, 20) * DAY, e0);
    int stays = (int)rng_range(r, 1, 3);
    for (int k = 0; k < stays && ne < MAXEV - 4; k++) {
        t += rng_range(r, 1, 200) * DAY + rng_range(r, -3600, 3600);
        snprintf(eid, sizeof eid, "%s-e%d", mid, ne);
        out[ne++] = ev_entry(eid, mid, t);
        int64_t len = rng_range(r, 20, 1500) * DAY;
        if (rng_range(r, 0, 3) == 0) { /* a follow-on grant during the stay */
            char pid[16];
            snprintf(pid, sizeof pid, "p%d", np++);
            int64_t tg = t + rng_range(r, 1, len / DAY) * DAY;
            snprintf(eid, sizeof eid, "%s-e%d", mid, ne);
            out[ne++] = ev_grant(eid, mid, tg, pid, SCH[sc], NAT[rng_range(r, 0, NNAT - 1)],
                                 tg - rng_range(r, 0, 30) * DAY, tg + rng_range(r, 100, 2000) * DAY);
        }
        if (k == stays - 1 && rng_range(r, 0, 2) == 0)
            break; /* the last stay stays open */
        t += len;
        snprintf(eid, sizeof eid, "%s-e%d", mid, ne);
        out[ne++] = ev_exit(eid, mid, t);
    }
    *n = ne;
}

static int long_stays; /* gen_hist makes long stayers only */

static void gen_hist(uint64_t seed, struct hist *h)
{
    uint64_t r = seed * 7919 + 17;
    memset(h, 0, sizeof *h);
    h->nm = (int)rng_range(&r, 1, MAXM);
    for (int m = 0; m < h->nm; m++) {
        if (long_stays)
            gen_long(&r, m, h->ev[m], &h->nev[m]);
        else if (rng_range(&r, 0, 3) == 0)
            gen_seasonal(&r, m, h->ev[m], &h->nev[m]);
        else
            gen_migrant(&r, m, h->ev[m], &h->nev[m]);
    }
}

static int64_t hist_max_t(const struct hist *h)
{
    int64_t L = 0;
    for (int m = 0; m < h->nm; m++)
        for (int i = 0; i < h->nev[m]; i++)
            if (h->ev[m][i].t > L)
                L = h->ev[m][i].t;
    return L;
}

static const char *TYPE_NAMES[] = {"?", "entry", "exit", "grant", "extend", "revoke", "status"};

static void print_ev(FILE *fp, const struct tev *e)
{
    fprintf(fp, "  %s %s %-6s t=%lld (day %lld)", e->mid, e->eid, TYPE_NAMES[e->type],
            (long long)e->t, (long long)dayof(e->t));
    if (e->type == TE_GRANT)
        fprintf(fp, " %s %s nat=%s vf=%lld E=%lld", e->pid, e->scheme, e->nat,
                (long long)dayof(e->vf), (long long)dayof(e->vu));
    else if (e->type == TE_EXTEND)
        fprintf(fp, " %s E=%lld", e->pid, (long long)dayof(e->vu));
    else if (e->type == TE_REVOKE)
        fprintf(fp, " %s eff=%lld", e->pid, e->eff ? (long long)dayof(e->eff) : 0LL);
    fprintf(fp, "\n");
}

static void print_stream(FILE *fp, const char *title, const struct tev *const *s, int n)
{
    fprintf(fp, "%s (%d events, arrival order):\n", title, n);
    for (int i = 0; i < n; i++)
        print_ev(fp, s[i]);
}

/* Random interleaving of the migrants' events, each migrant in its order. */
static int interleave(uint64_t *r, const struct hist *h, const struct tev **out)
{
    int pos[MAXM] = {0}, n = 0, left = 0;
    for (int m = 0; m < h->nm; m++)
        left += h->nev[m];
    while (left > 0) {
        int k = (int)rng_range(r, 0, left - 1), m = 0;
        while (k >= h->nev[m] - pos[m]) {
            k -= h->nev[m] - pos[m];
            m++;
        }
        out[n++] = &h->ev[m][pos[m]++];
        left--;
    }
    return n;
}

/* An engine over SPEC whose configuration has nationality_cohorts = yes
 * (set before the engine is made, as the file does) and a rule with
 * nationality = *: its documents hold the cohorts of every nationality. */
static struct fx *props_fx(void)
{
    struct fx *f = fx_new(WINDOW, SPEC);
    f->cfg.nationality_cohorts = 1;
    cm_engine_free(f->en);
    f->en = cm_engine_new(&f->cfg);
    ck_assert_ptr_nonnull(f->en);
    f->cfg.alerts = calloc(1, sizeof *f->cfg.alerts);
    ck_assert_ptr_nonnull(f->cfg.alerts);
    cm_alert_rule_init(&f->cfg.alerts[0], "by-nat", 0);
    strcpy(f->cfg.alerts[0].scheme, "*");
    strcpy(f->cfg.alerts[0].nationality, "*");
    f->cfg.n_alerts = 1;
    return f;
}

static struct fx *feed_stream(const struct tev *const *s, int n)
{
    struct fx *f = props_fx();
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(feed(f, *s[i]), CM_OK);
    return f;
}

static int docs_equal_or_dump(json_t *a, json_t *b, const char *what, uint64_t seed,
                              const struct tev *const *sa, int na, const struct tev *const *sb,
                              int nb)
{
    if (json_equal(a, b))
        return 1;
    fprintf(stderr, "=== %s differ, seed %llu\n", what, (unsigned long long)seed);
    print_stream(stderr, "stream A", sa, na);
    if (sb)
        print_stream(stderr, "stream B", sb, nb);
    fprintf(stderr, "doc A:\n");
    dump_doc(a);
    fprintf(stderr, "doc B:\n");
    dump_doc(b);
    return 0;
}

#define NSEEDS 300
#define MAXS (MAXM * MAXEV)

/* ------------------------------------------------------------ 1 determinism */

START_TEST(test_prop_determinism_and_fold_path)
{
    static struct hist h;
    const struct tev *s[MAXS];
    for (uint64_t seed = 1; seed <= NSEEDS / 3; seed++) {
        gen_hist(seed, &h);
        uint64_t r = seed;
        int n = interleave(&r, &h, s);
        int64_t S = hist_max_t(&h) + 50 * DAY;
        struct fx *a = feed_stream(s, n);
        /* b: the same, reading the indicators after every event */
        struct fx *b = props_fx();
        int64_t L = 0;
        for (int i = 0; i < n; i++) {
            ck_assert_int_eq(feed(b, *s[i]), CM_OK);
            if (s[i]->t > L)
                L = s[i]->t;
            json_decref(doc_at(b, L + (int64_t)(i % 3) * 40 * DAY));
        }
        /* c: decoded events through cm_engine_fold */
        struct fx *c = props_fx();
        for (int i = 0; i < n; i++) {
            struct cm_event ce;
            tev_to_cm(s[i], &ce);
            ck_assert_int_eq(cm_engine_fold(c->en, &ce), CM_FOLD_ACCEPTED);
        }
        json_t *da = doc_at(a, S), *da2 = doc_at(a, S), *db = doc_at(b, S), *dc = doc_at(c, S);
        ck_assert(docs_equal_or_dump(da, da2, "two reads", seed, s, n, NULL, 0));
        ck_assert(docs_equal_or_dump(da, db, "interim reads", seed, s, n, NULL, 0));
        ck_assert(docs_equal_or_dump(da, dc, "feed vs fold", seed, s, n, NULL, 0));
        json_decref(da);
        json_decref(da2);
        json_decref(db);
        json_decref(dc);
        fx_free(a);
        fx_free(b);
        fx_free(c);
    }
}
END_TEST

/* ------------------------------------------------------------ 2 permutation */

START_TEST(test_prop_permutation_within_window)
{
    static struct hist h;
    const struct tev *s1[MAXS], *s2[MAXS];
    int64_t key[MAXS];
    long ooo_total = 0, ooo_seeds = 0; /* the case this test is about must occur */
    for (uint64_t seed = 1; seed <= NSEEDS; seed++) {
        gen_hist(seed, &h);
        uint64_t r = seed * 31 + 5;
        int n = interleave(&r, &h, s1);
        /* arrival key = occurred_at + delay in [0, window]: an event can only
         * be preceded by events at most window later, so none is too late */
        int n2 = 0;
        for (int m = 0; m < h.nm; m++)
            for (int i = 0; i < h.nev[m]; i++) {
                int64_t d = rng_range(&r, 0, 3) == 0 ? 0 : rng_range(&r, 0, WINDOW * DAY);
                s2[n2] = &h.ev[m][i];
                key[n2++] = h.ev[m][i].t + d;
            }
        ck_assert_int_eq(n, n2);
        /* stable insertion sort by key */
        for (int i = 1; i < n2; i++) {
            const struct tev *e = s2[i];
            int64_t k = key[i];
            int j = i - 1;
            while (j >= 0 && key[j] > k) {
                s2[j + 1] = s2[j];
                key[j + 1] = key[j];
                j--;
            }
            s2[j + 1] = e;
            key[j + 1] = k;
        }
        /* equal occurred_at of one migrant keep their original relative
         * order: reassign each such group to its arrival positions in order
         * (the events of h.ev[m] are in original order by address) */
        for (int i = 0; i < n2; i++)
            for (int j = i + 1; j < n2; j++)
                if (!strcmp(s2[i]->mid, s2[j]->mid) && s2[i]->t == s2[j]->t && s2[j] < s2[i]) {
                    const struct tev *x = s2[i];
                    s2[i] = s2[j];
                    s2[j] = x;
                }
        /* expected out-of-order count; and none too late */
        long ooo = 0;
        for (int i = 0; i < n2; i++) {
            int64_t L = 0;
            for (int j = 0; j < i; j++)
                if (!strcmp(s2[j]->mid, s2[i]->mid) && s2[j]->t > L)
                    L = s2[j]->t;
            if (i > 0 && s2[i]->t < L)
                ooo++;
            ck_assert(L == 0 || s2[i]->t >= L - WINDOW * DAY);
        }
        ooo_total += ooo;
        ooo_seeds += ooo > 0;
        struct fx *a = feed_stream(s1, n), *b = feed_stream(s2, n2);
        int64_t S0 = hist_max_t(&h);
        int64_t asofs[] = {S0, S0 + 10 * DAY, S0 + 200 * DAY};
        for (int k = 0; k < 3; k++) {
            json_t *da = doc_at(a, asofs[k]), *db = doc_at(b, asofs[k]);
            ck_assert_int_eq(dq(da, "out_of_order"), 0);
            ck_assert_int_eq(dq(da, "too_late"), 0);
            if (dq(db, "out_of_order") != ooo) {
                print_stream(stderr, "permuted", s2, n2);
                ck_abort_msg("seed %llu: out_of_order %ld, expected %ld",
                             (unsigned long long)seed, dq(db, "out_of_order"), ooo);
            }
            json_object_del(json_object_get(da, "data_quality"), "out_of_order");
            json_object_del(json_object_get(db, "data_quality"), "out_of_order");
            ck_assert(docs_equal_or_dump(da, db, "sorted vs permuted", seed, s1, n, s2, n2));
            json_decref(da);
            json_decref(db);
        }
        fx_free(a);
        fx_free(b);
    }
    /* permutations that put nothing out of order would prove nothing */
    ck_assert_msg(ooo_seeds >= NSEEDS / 4, "only %ld of %d seeds put an event out of order",
                  ooo_seeds, NSEEDS);
    ck_assert_int_gt(ooo_total, 0);
}
END_TEST

/* ------------------------------------------------------------- 3 duplicates */

START_TEST(test_prop_duplicate_now_or_20_later)
{
    static struct hist h;
    static struct tev extra[MAXS];
    const struct tev *s[MAXS], *sa[2 * MAXS], *sb[2 * MAXS];
    const struct tev *copy_of[MAXS];
    /* the cases this test is about must occur, summed over the seeds: copies
     * at all, a grant's permit id under a new event id, a copy that arrives
     * 20 events after its original (histories longer than 20 events) */
    long dup_total = 0, dup_new_eid = 0, dup_late = 0, long_hists = 0;
    for (uint64_t seed = 1; seed <= NSEEDS; seed++) {
        gen_hist(seed, &h);
        uint64_t r = seed * 101 + 3;
        int n = interleave(&r, &h, s);
        long ndup = 0;
        /* choose the copies: the same message, or for a grant sometimes the
         * same permit id under a fresh event id (and other validity) */
        for (int i = 0; i < n; i++) {
            copy_of[i] = NULL;
            if (rng_range(&r, 0, 99) < 20) {
                extra[i] = *s[i];
                if (s[i]->type == TE_GRANT && rng_range(&r, 0, 1)) {
                    snprintf(extra[i].eid, TS, "%.200s-again", s[i]->eid);
                    extra[i].vu += 30 * DAY;
                    extra[i].t += rng_range(&r, 0, 3) * DAY;
                    snprintf(extra[i].scheme, TS, "%s", SCH[rng_range(&r, 0, NSCH - 1)]);
                    dup_new_eid++;
                }
                if (i + 20 < n)
                    dup_late++;
                copy_of[i] = &extra[i];
                ndup++;
            }
        }
        dup_total += ndup;
        long_hists += n > 20;
        int na = 0, nb = 0;
        for (int i = 0; i < n; i++) {
            sa[na++] = s[i];
            if (copy_of[i])
                sa[na++] = copy_of[i];
        }
        for (int i = 0; i < n; i++) {
            sb[nb++] = s[i];
            if (i >= 20 && copy_of[i - 20])
                sb[nb++] = copy_of[i - 20];
        }
        for (int i = n - 20 < 0 ? 0 : n - 20; i < n; i++)
            if (copy_of[i])
                sb[nb++] = copy_of[i];
        ck_assert_int_eq(na, nb);
        struct fx *f0 = feed_stream(s, n), *fa = feed_stream(sa, na), *fb = feed_stream(sb, nb);
        int64_t S = hist_max_t(&h) + 3 * DAY + 100 * DAY;
        json_t *d0 = doc_at(f0, S), *da = doc_at(fa, S), *db = doc_at(fb, S);
        ck_assert_int_eq(dq(da, "duplicates"), ndup);
        ck_assert(docs_equal_or_dump(da, db, "dup now vs 20 later", seed, sa, na, sb, nb));
        json_object_set_new(json_object_get(d0, "data_quality"), "duplicates",
                            json_integer(ndup));
        ck_assert(docs_equal_or_dump(d0, da, "no dup vs dup", seed, s, n, sa, na));
        json_decref(d0);
        json_decref(da);
        json_decref(db);
        fx_free(f0);
        fx_free(fa);
        fx_free(fb);
    }
    ck_assert_msg(dup_total >= NSEEDS, "%ld copies over %d seeds", dup_total, NSEEDS);
    ck_assert_msg(dup_new_eid > 0, "no grant copied under a new event id");
    ck_assert_msg(long_hists > 0 && dup_late > 0,
                  "%ld histories longer than 20 events, %ld copies 20 events late", long_hists,
                  dup_late);
}
END_TEST

/* ----------------------------------------------------------- 4 interleaving */

START_TEST(test_prop_interleaving_of_migrants)
{
    static struct hist h;
    const struct tev *s1[MAXS], *s2[MAXS], *s3[MAXS];
    /* the case this test is about must occur: histories of 2 or more
     * migrants, whose two random interleavings differ */
    long multi = 0, differ = 0;
    for (uint64_t seed = 1; seed <= NSEEDS; seed++) {
        gen_hist(seed, &h);
        uint64_t r = seed * 13 + 7;
        int n1 = interleave(&r, &h, s1);
        int n2 = interleave(&r, &h, s2);
        int n3 = 0; /* migrant after migrant, last one first */
        for (int m = h.nm - 1; m >= 0; m--)
            for (int i = 0; i < h.nev[m]; i++)
                s3[n3++] = &h.ev[m][i];
        multi += h.nm >= 2;
        differ += h.nm >= 2 && memcmp(s1, s2, (size_t)n1 * sizeof s1[0]) != 0;
        struct fx *a = feed_stream(s1, n1), *b = feed_stream(s2, n2), *c = feed_stream(s3, n3);
        int64_t S = hist_max_t(&h) + 30 * DAY;
        json_t *da = doc_at(a, S), *db = doc_at(b, S), *dc = doc_at(c, S);
        ck_assert(docs_equal_or_dump(da, db, "interleavings", seed, s1, n1, s2, n2));
        ck_assert(docs_equal_or_dump(da, dc, "interleavings", seed, s1, n1, s3, n3));
        json_decref(da);
        json_decref(db);
        json_decref(dc);
        fx_free(a);
        fx_free(b);
        fx_free(c);
    }
    ck_assert_msg(multi >= NSEEDS / 2 && differ >= NSEEDS / 2,
                  "%ld of %d histories with 2+ migrants, %ld interleaved differently", multi,
                  NSEEDS, differ);
}
END_TEST

/* ------------------------------------------------------- 5 reference model */

#define MAXP MAXEV
#define OPEN INT64_MAX
enum { ABSENT, ON_PERMIT, NO_PERMIT, EXEMPT };

struct rperm {
    char id[TS];
    int sch, nat;
    int64_t vf, E;
    int used, adjusted, revoked;
    int ns;
    int64_t st_from[MAXEV], st_to[MAXEV]; /* st_to OPEN while the stay lasts */
    int st_entry[MAXEV];                  /* the stay began with an Entry event */
};

struct rmig {
    struct rperm p[MAXP]; /* in folding order of their grants */
    int np;
    int mode, cur;
};

struct rres {
    long nat[NSCH][NNAT][N_CTR];
    long mon[NSCH][NMON][N_CTR];
    long natmon[NSCH][NNAT][NMON][N_CTR];
    long present[NSCH];
    long dq[N_DQ];
};

enum { C_EXP, C_INTIME, C_LATE, C_ICO, C_STATUS, C_NOSHOW, C_REENTRY, C_ODAYS, C_BR, C_BRD };
enum { Q_EWE = 4, Q_EWP, Q_EWOP, Q_UNKNOWN, Q_LATEADMIN };

static int sch_index(const char *s)
{
    for (int i = 0; i < NSCH; i++)
        if (!strcmp(s, SCH[i]))
            return i;
    ck_abort_msg("unknown scheme %s", s);
    return -1;
}

static int nat_index(const char *s)
{
    for (int i = 0; i < NNAT; i++)
        if (!strcmp(s, NAT[i]))
            return i;
    ck_abort_msg("unknown nationality %s", s);
    return -1;
}

static int month_index(int64_t day)
{
    int64_t y;
    unsigned m, d;
    civil(day, &y, &m, &d);
    int i = (int)((y - MONTH0) * 12 + (m - 1));
    ck_assert(i >= 0 && i < NMON);
    return i;
}

static struct rperm *find_permit(struct rmig *m, const char *id)
{
    for (int i = 0; i < m->np; i++)
        if (!strcmp(m->p[i].id, id))
            return &m->p[i];
    return NULL;
}

static void start_stay(struct rmig *m, int pi, int64_t d, int by_entry)
{
    struct rperm *p = &m->p[pi];
    p->used = 1;
    p->st_from[p->ns] = d;
    p->st_to[p->ns] = OPEN;
    p->st_entry[p->ns] = by_entry;
    p->ns++;
    m->mode = ON_PERMIT;
    m->cur = pi;
}

static void end_stay(struct rmig *m, int64_t d)
{
    struct rperm *p = &m->p[m->cur];
    p->st_to[p->ns - 1] = d;
}

/* The fold table of INDICATORS.md section 2, one event. */
static void ref_fold(struct rmig *m, const struct tev *e, long *dqc)
{
    int64_t d = dayof(e->t);
    switch (e->type) {
    case TE_GRANT: {
        struct rperm *q = &m->p[m->np];
        memset(q, 0, sizeof *q);
        snprintf(q->id, sizeof q->id, "%s", e->pid);
        q->sch = sch_index(e->scheme);
        q->nat = nat_index(e->nat);
        q->vf = dayof(e->vf);
        q->E = dayof(e->vu);
        int qi = m->np++;
        if (m->mode == ON_PERMIT) {
            struct rperm *p = &m->p[m->cur];
            if (!p->adjusted && q->vf <= p->E + GRACE[p->sch] + 1) {
                /* transfer */
                p->adjusted = 1;
                end_stay(m, d);
                start_stay(m, qi, d, 0);
            }
        } else if (m->mode == NO_PERMIT) {
            if (q->vf <= d && d <= q->E) /* in-country grant */
                start_stay(m, qi, d, 0);
        }
        break;
    }
    case TE_ENTRY:
        if (m->mode != ABSENT) {
            dqc[Q_EWP]++;
        } else {
            int found = -1;
            for (int i = m->np - 1; i >= 0 && found < 0; i--)
                if (m->p[i].vf <= d && d <= m->p[i].E)
                    found = i;
            if (found >= 0) {
                start_stay(m, found, d, 1);
            } else {
                dqc[Q_EWOP]++;
                m->mode = NO_PERMIT;
            }
        }
        break;
    case TE_EXIT:
        if (m->mode == ABSENT) {
            dqc[Q_EWE]++;
        } else {
            if (m->mode == ON_PERMIT)
                end_stay(m, d);
            m->mode = ABSENT;
        }
        break;
    case TE_EXTEND:
    case TE_REVOKE: {
        struct rperm *p = find_permit(m, e->pid);
        if (!p)
            dqc[Q_UNKNOWN]++;
        else if (d > p->E + GRACE[p->sch])
            dqc[Q_LATEADMIN]++;
        else if (e->type == TE_EXTEND)
            p->E = dayof(e->vu);
        else {
            int64_t r = dayof(e->eff ? e->eff : e->t);
            if (r < p->E)
                p->E = r;
            p->revoked = 1;
        }
        break;
    }
    case TE_STATUS:
        if (m->mode == ON_PERMIT) {
            m->p[m->cur].adjusted = 1;
            end_stay(m, d);
            m->mode = EXEMPT;
        } else if (m->mode == NO_PERMIT) {
            m->mode = EXEMPT;
        }
        break;
    }
}

static void add(struct rres *res, int s, int nat, int64_t day, int c, long v)
{
    res->nat[s][nat][c] += v;
    res->mon[s][month_index(day)][c] += v;
    res->natmon[s][nat][month_index(day)][c] += v;
}

/* Outcomes as of dS (section 3) of one folded migrant. */
static void ref_outcomes(struct rmig *m, int64_t dS, struct rres *res)
{
    for (int i = 0; i < m->np; i++) {
        struct rperm *p = &m->p[i];
        int g = GRACE[p->sch];
        if (!(p->E + g < dS))
            continue; /* not due */
        if (!p->used) {
            if (!p->revoked)
                add(res, p->sch, p->nat, p->E, C_NOSHOW, 1);
            continue;
        }
        add(res, p->sch, p->nat, p->E, C_EXP, 1);
        int64_t last_exit = p->st_to[p->ns - 1];
        if (p->adjusted) {
            add(res, p->sch, p->nat, p->E, C_STATUS, 1);
        } else if (last_exit == OPEN) {
            add(res, p->sch, p->nat, p->E, C_ICO, 1);
            add(res, p->sch, p->nat, p->E, C_ODAYS, dS - p->E);
        } else if (last_exit > p->E + g) {
            add(res, p->sch, p->nat, p->E, C_LATE, 1);
            add(res, p->sch, p->nat, p->E, C_ODAYS, last_exit - p->E);
        } else {
            add(res, p->sch, p->nat, p->E, C_INTIME, 1);
            int re = 0;
            for (int j = 0; j < m->np; j++) {
                if (j == i || m->p[j].sch != p->sch)
                    continue;
                for (int k = 0; k < m->p[j].ns; k++)
                    if (m->p[j].st_entry[k] && m->p[j].st_from[k] > last_exit &&
                        m->p[j].st_from[k] <= last_exit + 365)
                        re = 1;
            }
            if (re)
                add(res, p->sch, p->nat, p->E, C_REENTRY, 1);
        }
    }
    /* present */
    if (m->mode == ON_PERMIT)
        res->present[m->p[m->cur].sch]++;
    /* stay limit: literally, day by day */
    for (int s = 0; s < NSCH; s++) {
        if (!LIM_N[s])
            continue;
        int64_t d0 = INT64_MAX;
        int latest = -1;
        for (int i = 0; i < m->np; i++) {
            if (m->p[i].sch != s)
                continue;
            latest = i;
            for (int k = 0; k < m->p[i].ns; k++)
                if (m->p[i].st_from[k] < d0)
                    d0 = m->p[i].st_from[k];
        }
        if (d0 == INT64_MAX)
            continue;
        int64_t len = dS - d0 + 1;
        ck_assert(len > 0);
        char *pres = calloc((size_t)len, 1);
        for (int i = 0; i < m->np; i++) {
            if (m->p[i].sch != s)
                continue;
            for (int k = 0; k < m->p[i].ns; k++) {
                int64_t to = m->p[i].st_to[k] == OPEN ? dS : m->p[i].st_to[k];
                for (int64_t dd = m->p[i].st_from[k]; dd <= to; dd++)
                    pres[dd - d0] = 1;
            }
        }
        /* pre[x] = present days among the first x days (d0 .. d0+x-1), so the
         * window [D - W + 1, D] of day D = d0 + x holds
         * pre[x + 1] - pre[max(0, x - W + 1)] present days */
        long *pre = calloc((size_t)len + 1, sizeof *pre);
        for (int64_t x = 0; x < len; x++)
            pre[x + 1] = pre[x] + pres[x];
        int nat = m->p[latest].nat; /* the latest permit of the scheme */
        int run_has_breach = 0;
        for (int64_t x = 0; x <= len; x++) {
            int here = x < len && pres[x];
            if (here) {
                int64_t lo = x - LIM_W[s] + 1 < 0 ? 0 : x - LIM_W[s] + 1;
                long cnt = pre[x + 1] - pre[lo];
                int breach = cnt > LIM_N[s];
                if (breach) {
                    add(res, s, nat, d0 + x, C_BRD, 1);
                    if (!run_has_breach)
                        add(res, s, nat, d0 + x, C_BR, 1);
                    run_has_breach = 1;
                }
            } else {
                run_has_breach = 0; /* a run of consecutive present days ends */
            }
        }
        free(pre);
        free(pres);
    }
}

/* The reference figures of an in-order stream without duplicates. */
static void ref_run(const struct hist *h, int64_t S, struct rres *res)
{
    static struct rmig m;
    memset(res, 0, sizeof *res);
    int64_t dS = dayof(S);
    for (int mi = 0; mi < h->nm; mi++) {
        memset(&m, 0, sizeof m);
        /* sort by occurred_at, ties in arrival (= generation) order */
        const struct tev *ord[MAXEV];
        int n = h->nev[mi];
        for (int i = 0; i < n; i++)
            ord[i] = &h->ev[mi][i];
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0 && ord[j - 1]->t > ord[j]->t; j--) {
                const struct tev *x = ord[j];
                ord[j] = ord[j - 1];
                ord[j - 1] = x;
            }
        for (int i = 0; i < n; i++)
            ref_fold(&m, ord[i], res->dq);
        ref_outcomes(&m, dS, res);
    }
}

static double ratio(long a, long b) { return b ? (double)a / (double)b : NAN; }

/* Compares one group object (NULL: nothing counted); returns the number of
 * mismatches (printed). */
static int cmp_obj(json_t *obj, const char *s, const char *g, const long *want)
{
    int bad = 0;
    for (int c = 0; c < N_CTR; c++) {
        long got = jlong(json_object_get(obj, CTR_NAMES[c]));
        if (got != want[c]) {
            fprintf(stderr, "  %s %s %s: engine %ld, reference %ld\n", s, g ? g : "(totals)",
                    CTR_NAMES[c], got, want[c]);
            bad++;
        }
    }
    double wr[N_RATE] = {
        ratio(want[C_LATE] + want[C_ICO], want[C_EXP]), ratio(want[C_ICO], want[C_EXP]),
        ratio(want[C_INTIME], want[C_EXP]), ratio(want[C_REENTRY], want[C_INTIME]),
        ratio(want[C_ODAYS], want[C_LATE] + want[C_ICO])};
    for (int k = 0; k < N_RATE; k++) {
        json_t *v = json_object_get(obj, RATE_NAMES[k]);
        double got = json_is_number(v) ? json_number_value(v) : NAN;
        int ok = isnan(wr[k]) ? (!v || json_is_null(v)) : (fabs(got - wr[k]) < 1e-9);
        if (!ok) {
            fprintf(stderr, "  %s %s %s: engine %g, reference %g\n", s, g ? g : "(totals)",
                    RATE_NAMES[k], got, wr[k]);
            bad++;
        }
    }
    return bad;
}

static int cmp_group(json_t *doc, const char *s, const char *g, const long *want)
{
    return cmp_obj(group_of(doc, s, g), s, g, want);
}

static int cmp_ref(json_t *doc, const struct rres *res)
{
    int bad = 0;
    char g[64], mb[16];
    for (int s = 0; s < NSCH; s++) {
        long tot[N_CTR] = {0};
        for (int n = 0; n < NNAT; n++) {
            snprintf(g, sizeof g, "nat:%s", natkey(n));
            bad += cmp_group(doc, SCH[s], g, res->nat[s][n]);
            /* the nationality's cohorts: only months the reference has */
            json_t *coh = json_object_get(group_of(doc, SCH[s], g), "by_cohort");
            for (int mo = 0; mo < NMON; mo++) {
                char ng[96];
                snprintf(mb, sizeof mb, "%04d-%02d", MONTH0 + mo / 12, mo % 12 + 1);
                snprintf(ng, sizeof ng, "nat:%s cohort:%s", natkey(n), mb);
                bad += cmp_obj(json_object_get(coh, mb), SCH[s], ng, res->natmon[s][n][mo]);
            }
            const char *ck;
            json_t *cv;
            json_object_foreach(coh, ck, cv)
            {
                int y, mo, known = 0;
                if (sscanf(ck, "%d-%d", &y, &mo) == 2)
                    known = y >= MONTH0 && y < MONTH0 + NMON / 12 && mo >= 1 && mo <= 12;
                for (int c = 0; c < N_CTR && !known; c++)
                    if (jlong(json_object_get(cv, CTR_NAMES[c]))) {
                        fprintf(stderr, "  %s %s: unexpected cohort %s\n", SCH[s], g, ck);
                        bad++;
                        break;
                    }
            }
            for (int c = 0; c < N_CTR; c++)
                tot[c] += res->nat[s][n][c];
        }
        long tot2[N_CTR] = {0};
        for (int mo = 0; mo < NMON; mo++) {
            snprintf(mb, sizeof mb, "%04d-%02d", MONTH0 + mo / 12, mo % 12 + 1);
            snprintf(g, sizeof g, "cohort:%s", mb);
            bad += cmp_group(doc, SCH[s], g, res->mon[s][mo]);
            for (int c = 0; c < N_CTR; c++)
                tot2[c] += res->mon[s][mo][c];
        }
        ck_assert(!memcmp(tot, tot2, sizeof tot)); /* the reference's own sanity */
        bad += cmp_group(doc, SCH[s], NULL, tot);
        long pr = get(doc, SCH[s], NULL, "present");
        if (pr != res->present[s]) {
            fprintf(stderr, "  %s present: engine %ld, reference %ld\n", SCH[s], pr,
                    res->present[s]);
            bad++;
        }
        /* no other group may hold anything */
        json_t *sj = group_of(doc, SCH[s], NULL);
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(sj, "by_nationality"), k, v)
        {
            int known = 0;
            for (int n = 0; n < NNAT; n++)
                known |= !strcmp(k, natkey(n));
            for (int c = 0; c < N_CTR && !known; c++)
                if (jlong(json_object_get(v, CTR_NAMES[c]))) {
                    fprintf(stderr, "  %s: unexpected nationality %s\n", SCH[s], k);
                    bad++;
                    break;
                }
        }
        json_object_foreach(json_object_get(sj, "by_cohort"), k, v)
        {
            int y, mo, known = 0;
            if (sscanf(k, "%d-%d", &y, &mo) == 2)
                known = y >= MONTH0 && y < MONTH0 + NMON / 12 && mo >= 1 && mo <= 12;
            for (int c = 0; c < N_CTR && !known; c++)
                if (jlong(json_object_get(v, CTR_NAMES[c]))) {
                    fprintf(stderr, "  %s: unexpected cohort %s\n", SCH[s], k);
                    bad++;
                    break;
                }
        }
    }
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(doc, "schemes"), k, v)
    {
        int known = 0;
        for (int s = 0; s < NSCH; s++)
            known |= !strcmp(k, SCH[s]);
        if (!known) {
            fprintf(stderr, "  unexpected scheme %s\n", k);
            bad++;
        }
    }
    for (int q = 0; q < N_DQ; q++) {
        long got = dq(doc, DQ_NAMES[q]);
        if (got != res->dq[q]) {
            fprintf(stderr, "  data_quality %s: engine %ld, reference %ld\n", DQ_NAMES[q], got,
                    res->dq[q]);
            bad++;
        }
    }
    return bad;
}

static void reference_check(uint64_t seed0, int nseeds, int nm_max)
{
    static struct hist h;
    static struct rres res;
    const struct tev *s[MAXS];
    int failures = 0;
    long seen[N_CTR] = {0}, seen_dq[N_DQ] = {0};
    for (uint64_t seed = seed0; seed < seed0 + (uint64_t)nseeds && failures < 3; seed++) {
        gen_hist(seed, &h);
        if (h.nm > nm_max)
            h.nm = nm_max;
        uint64_t r = seed * 977 + 1;
        int n = interleave(&r, &h, s);
        struct fx *f = feed_stream(s, n);
        int64_t S0 = hist_max_t(&h);
        int64_t asofs[] = {S0, S0 + 1 * DAY, S0 + 40 * DAY, S0 + 150 * DAY, S0 + 500 * DAY};
        for (int k = 0; k < 5; k++) {
            json_t *d = doc_at(f, asofs[k]);
            ref_run(&h, asofs[k], &res);
            int bad = cmp_ref(d, &res);
            for (int sc = 0; sc < NSCH; sc++)
                for (int n = 0; n < NNAT; n++)
                    for (int c = 0; c < N_CTR; c++)
                        seen[c] += res.nat[sc][n][c];
            for (int q = 0; q < N_DQ; q++)
                seen_dq[q] += res.dq[q];
            if (bad) {
                fprintf(stderr,
                        "=== reference mismatch: seed %llu, as_of %lld (day %lld), %d "
                        "differences above\n",
                        (unsigned long long)seed, (long long)asofs[k],
                        (long long)dayof(asofs[k]), bad);
                print_stream(stderr, "stream", s, n);
                failures++;
                json_decref(d);
                break;
            }
            json_decref(d);
        }
        fx_free(f);
    }
    ck_assert_msg(failures == 0, "%d random histories differ from the reference model (see stderr)",
                  failures);
    /* the generator must reach every counter, or the comparison proves little
     * (long stayers: the stay limit's and the overstays') */
    for (int c = 0; c < N_CTR; c++)
        ck_assert_msg(seen[c] > 0 || (long_stays && c != C_BR && c != C_BRD && c != C_ICO &&
                                      c != C_LATE && c != C_EXP),
                      "no history produced %s", CTR_NAMES[c]);
    for (int q = 4; q < N_DQ && !long_stays; q++) /* the fold's own data-quality counters */
        ck_assert_msg(seen_dq[q] > 0, "no history produced %s", DQ_NAMES[q]);
    fprintf(stderr, "reference coverage (seeds %llu+%d):", (unsigned long long)seed0, nseeds);
    for (int c = 0; c < N_CTR; c++)
        fprintf(stderr, " %s=%ld", CTR_NAMES[c], seen[c]);
    fprintf(stderr, "\n");
}

START_TEST(test_prop_reference_single_migrant)
{
    /* one migrant per history: the smallest counter-examples */
    reference_check(1000, 600, 1);
}
END_TEST

START_TEST(test_prop_reference_many_migrants)
{
    reference_check(5000, 400, MAXM);
}
END_TEST

START_TEST(test_prop_reference_long_stays)
{
    /* stays of months to years: breach days over many months, the read
     * side's sweep against the reference's day-by-day count */
    long_stays = 1;
    reference_check(9000, 300, MAXM);
    long_stays = 0;
}
END_TEST

/* a sanity check of the reference model itself on the worked example */
START_TEST(test_reference_model_worked_example)
{
    static struct hist h;
    static struct rres res;
    memset(&h, 0, sizeof h);
    h.nm = 1;
    int n = 0;
    h.ev[0][n++] = ev_grant("g", "m0", D(2013, 8, 1), "p0", "SS", "UKR", D(2013, 8, 1),
                            D(2014, 12, 31));
    int64_t st[3][2] = {{DN(2013, 9, 1), DN(2013, 9, 30)},
                        {DN(2014, 2, 21), DN(2014, 4, 20)},
                        {DN(2014, 5, 1), DN(2014, 6, 9)}};
    for (int i = 0; i < 3; i++) {
        h.ev[0][n++] = ev_entry(NULL, "m0", T(st[i][0]));
        h.ev[0][n++] = ev_exit(NULL, "m0", T(st[i][1]));
    }
    h.nev[0] = n;
    ref_run(&h, D(2014, 7, 1), &res);
    int ss = sch_index("SS");
    ck_assert_int_eq(res.nat[ss][0][C_BRD], 9);
    ck_assert_int_eq(res.nat[ss][0][C_BR], 1);
    ck_assert_int_eq(res.mon[ss][month_index(DN(2014, 6, 1))][C_BRD], 9);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("props");
    TCase *tc = tcase_create("props");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_reference_model_worked_example);
    tcase_add_test(tc, test_prop_determinism_and_fold_path);
    tcase_add_test(tc, test_prop_permutation_within_window);
    tcase_add_test(tc, test_prop_duplicate_now_or_20_later);
    tcase_add_test(tc, test_prop_interleaving_of_migrants);
    tcase_add_test(tc, test_prop_reference_single_migrant);
    tcase_add_test(tc, test_prop_reference_many_migrants);
    tcase_add_test(tc, test_prop_reference_long_stays);
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
