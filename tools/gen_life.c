/* gen_life.c - circmon-gen's world and the lives of its migrants: who comes
 * under which scheme, their permits, stays and returns, the delivery delay of
 * each event, and the duplicates and invalid variants a real feed carries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/grow.h"
#include "circmon/timeutil.h"
#include "circmon/v1/events.pb-c.h"
#include "gen.h"

/* --- the world: schemes ------------------------------------------------------ */

const struct scheme gen_schemes[] = {
    {
        .id = "SAWP-ES", .prefix = "ES-SAWP", .kind = CIRCMON__V1__PERMIT_KIND__SEASONAL_WORK,
        .ms = "ES", .border_src = "ES-POLICIA-FRONTERAS", .registry_src = "ES-EXTRANJERIA",
        .border = {"ES-ALG", "ES-MAD", "ES-TFN", "ES-BCN"},
        .sector = {"A01.13", "A01.24", "A01.25"},
        .nat = {1, 2, 3, 4, 5, 6}, .natw = {40, 20, 15, 12, 8, 5},
        .share = 420, .multiple_entry = 0, .flow = FLOW_PERMIT,
        .noshow = 0.04, .withdraw = 0.25, .ext = 0.07, .transfer = 0.025, .status = 0.012,
        .revoke = 0.02, .late = 0.07, .overstay = 0.04, .in_grace = 0.12, .trip = 0,
        .again = 0.8, .in_country = 0,
        .len_min = 90, .len_max = 240, .ext_min = 20, .ext_max = 60, .grace = 7,
    },
    {
        .id = "STUDY-DE", .prefix = "DE-STU", .kind = CIRCMON__V1__PERMIT_KIND__STUDY,
        .ms = "DE", .border_src = "DE-BPOL", .registry_src = "DE-AUSLAENDERBEHOERDE",
        .border = {"DE-FRA", "DE-MUC", "DE-BER", "DE-HAM"},
        .sector = {"P85.42", "P85.42", "P85.41"},
        .nat = {7, 8, 9, 10, 11, 14}, .natw = {30, 25, 15, 12, 10, 8},
        .share = 160, .multiple_entry = 1, .flow = FLOW_PERMIT,
        .noshow = 0.03, .withdraw = 0.2, .ext = 0.25, .transfer = 0.04, .status = 0.05,
        .revoke = 0.01, .late = 0.05, .overstay = 0.05, .in_grace = 0.2, .trip = 0.8,
        .again = 0.15, .in_country = 0.03,
        .len_min = 365, .len_max = 1095, .ext_min = 180, .ext_max = 365, .grace = 30,
    },
    {
        .id = "RESEARCH-FR", .prefix = "FR-RCH", .kind = CIRCMON__V1__PERMIT_KIND__RESEARCH,
        .ms = "FR", .border_src = "FR-PAF", .registry_src = "FR-ANEF",
        .border = {"FR-CDG", "FR-ORY", "FR-LYS", "FR-MRS"},
        .sector = {"M72.11", "M72.19", "P85.42"},
        .nat = {7, 8, 11, 12, 13, 14}, .natw = {25, 25, 15, 15, 10, 10},
        .share = 80, .multiple_entry = 1, .flow = FLOW_PERMIT,
        .noshow = 0.02, .withdraw = 0.3, .ext = 0.2, .transfer = 0.03, .status = 0.04,
        .revoke = 0.01, .late = 0.04, .overstay = 0.03, .in_grace = 0, .trip = 0.8,
        .again = 0.25, .in_country = 0.03,
        .len_min = 365, .len_max = 730, .ext_min = 90, .ext_max = 365, .grace = 0,
    },
    {
        .id = "TRAIN-IT", .prefix = "IT-TRN", .kind = CIRCMON__V1__PERMIT_KIND__TRAINEESHIP,
        .ms = "IT", .border_src = "IT-POLIZIA-FRONTIERA", .registry_src = "IT-QUESTURA",
        .border = {"IT-FCO", "IT-MXP", "IT-BRI", "IT-PMO"},
        .sector = {"I55.10", "I56.10", "C10.71"},
        .nat = {15, 12, 16, 17, 1, 2}, .natw = {30, 20, 20, 15, 10, 5},
        .share = 120, .multiple_entry = 0, .flow = FLOW_PERMIT,
        .noshow = 0.04, .withdraw = 0.2, .ext = 0.1, .transfer = 0.02, .status = 0.01,
        .revoke = 0.03, .late = 0.08, .overstay = 0.06, .in_grace = 0, .trip = 0.1,
        .again = 0.2, .in_country = 0,
        .len_min = 180, .len_max = 365, .ext_min = 30, .ext_max = 90, .grace = 0,
    },
    {
        .id = "SHORTSTAY", .prefix = "NL-SSV", .kind = CIRCMON__V1__PERMIT_KIND__SHORT_STAY,
        .ms = "NL", .border_src = "NL-KMAR", .registry_src = "NL-VISA",
        .border = {"NL-AMS", "NL-RTM", "NL-EIN", "NL-AMS"},
        .sector = {"", "", ""},
        .nat = {8, 7, 18, 19, 20, 21}, .natw = {30, 25, 20, 10, 8, 7},
        .share = 220, .multiple_entry = 1, .flow = FLOW_SHORTSTAY,
        .overstay = 0.004, .late = 0.04,
    },
};
#define SCHEME_COUNT (sizeof gen_schemes / sizeof gen_schemes[0])

/* --- compact events --------------------------------------------------------- */

static struct gev *vec_push(struct vec *a)
{
    if (cm_grow(&a->v, &a->cap, a->n + 1, sizeof *a->v, 1024) != 0) {
        fprintf(stderr, "circmon-gen: out of memory\n");
        exit(1);
    }
    return &a->v[a->n++];
}

/* --- one migrant --------------------------------------------------------------- */

#define MAX_STAYS 64
#define NEVER INT64_MAX

struct mig {
    struct rng r;
    uint32_t m;
    uint8_t scheme, nat;
    uint16_t seq;
    uint8_t npermit;
    struct vec ev; /* this migrant's events, reused */
    int64_t stay_in[MAX_STAYS], stay_out[MAX_STAYS];
    int nstays;
};

static int64_t g_d0, g_d1; /* first day of the horizon, first day after it */

static struct gev *emit(struct mig *c, int kind, int64_t occ)
{
    struct gev *e = vec_push(&c->ev);
    memset(e, 0, sizeof *e);
    e->occ = occ;
    e->m = c->m;
    e->seq = c->seq < UINT16_MAX ? ++c->seq : UINT16_MAX;
    e->kind = (uint8_t)kind;
    e->scheme = c->scheme;
    e->nat = c->nat;
    return e;
}

/* Border systems record at any hour; registries on working days, office hours. */
static int64_t border_time(struct mig *c, int64_t day)
{
    return day * CM_DAY + 5 * 3600 + rng_below(&c->r, 18 * 3600);
}

static int64_t workday(int64_t day)
{
    int64_t dow = ((day + 4) % 7 + 7) % 7; /* 0 = Sunday; 1970-01-01 was a Thursday */
    return dow == 6 ? day + 2 : dow == 0 ? day + 1 : day;
}

static int64_t office_time(struct mig *c, int64_t day)
{
    return day * CM_DAY + 8 * 3600 + rng_below(&c->r, 9 * 3600);
}

static void entry(struct mig *c, int64_t day)
{
    struct gev *e = emit(c, K_ENTRY, border_time(c, day));
    e->aux = (uint8_t)rng_below(&c->r, 4);
    if (c->nstays < MAX_STAYS) {
        c->stay_in[c->nstays] = day;
        c->stay_out[c->nstays++] = NEVER;
    }
}

static void exit_(struct mig *c, int64_t day)
{
    struct gev *e = emit(c, K_EXIT, border_time(c, day));
    e->aux = (uint8_t)rng_below(&c->r, 4);
    if (c->nstays && c->stay_out[c->nstays - 1] == NEVER)
        c->stay_out[c->nstays - 1] = day;
}

static int grant(struct mig *c, int64_t day, int64_t vf, int64_t E)
{
    struct gev *e = emit(c, K_GRANT, office_time(c, day));
    if (c->npermit < 250)
        c->npermit++;
    e->permit = c->npermit;
    e->t1 = vf * CM_DAY;
    e->t2 = E * CM_DAY + CM_DAY - 1;
    e->aux = (uint8_t)rng_below(&c->r, 3);
    if (rng_chance(&c->r, 0.003))
        e->nat = 0; /* registry left the nationality out */
    return e->permit;
}

static void extend(struct mig *c, int permit, int64_t day, int64_t newE)
{
    struct gev *e = emit(c, K_EXTEND, office_time(c, day));
    e->permit = (uint8_t)permit;
    e->t1 = newE * CM_DAY + CM_DAY - 1;
}

static void revoke(struct mig *c, int permit, int64_t day, int64_t eff_day, int reason)
{
    struct gev *e = emit(c, K_REVOKE, office_time(c, day));
    e->permit = (uint8_t)permit;
    e->t1 = eff_day ? eff_day * CM_DAY : 0;
    e->aux = (uint8_t)reason;
}

static void status(struct mig *c, int64_t day, int st)
{
    struct gev *e = emit(c, K_STATUS, office_time(c, day));
    e->aux = (uint8_t)st;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* One permit from its grant to the departure. Returns 1 when the migrant stays
 * for good (overstay, status change), else 0 with *last_exit set. */
static int permit_cycle(struct mig *c, const struct scheme *s, int64_t vf, int in_country,
                        int64_t *last_exit)
{
    struct rng *r = &c->r;
    int64_t E = vf + rng_range(r, s->len_min, s->len_max) - 1;
    int64_t gday, cur;
    int P;

    if (in_country) {
        /* Came in visa-free and applied from inside: the grant finds the
         * migrant present without a permit. */
        entry(c, vf - rng_range(r, 10, 40));
        gday = workday(vf + rng_range(r, 0, 10));
        P = grant(c, gday, vf, E);
        cur = gday;
    } else {
        /* Some registries record the permit weeks ahead, some only days
         * before the entry: those grants often arrive after the entry. */
        gday = workday(vf - (rng_chance(r, 0.4) ? rng_range(r, 0, 10) : rng_range(r, 11, 75)));
        P = grant(c, gday, vf, E);
        if (rng_chance(r, s->noshow)) {
            if (rng_chance(r, s->withdraw))
                revoke(c, P, workday(vf - rng_range(r, 3, 15)), 0, 0);
            *last_exit = vf;
            return 0;
        }
        cur = max64(gday + 1, vf + rng_range(r, 0, min64(14, E - vf)));
        entry(c, cur);
    }

    /* Trips home during the permit (multiple-entry permits). */
    for (int64_t y = cur + 150; y + 90 < E; y += 365) {
        if (!rng_chance(r, s->trip))
            continue;
        int64_t out = y + rng_range(r, 0, 60);
        int64_t back = out + rng_range(r, 10, 45);
        if (back + 30 >= E)
            break;
        exit_(c, out);
        entry(c, back);
        cur = back;
    }

    if (rng_chance(r, s->ext)) {
        int64_t d = workday(max64(cur + 1, E - rng_range(r, 3, 40)));
        E += rng_range(r, s->ext_min, s->ext_max);
        extend(c, P, d, E);
    }

    double u = rng_unit(r);
    if (u < s->transfer) {
        /* A follow-on permit granted while present: P ends, Q goes on. */
        int64_t d = workday(max64(cur + 1, E - rng_range(r, 5, 40)));
        int64_t vfq = min64(E + 1, d + rng_range(r, -10, 20));
        int64_t Eq = vfq + rng_range(r, s->len_min, s->len_max) - 1;
        P = grant(c, d, vfq, Eq);
        E = Eq;
        cur = d;
    } else if ((u -= s->transfer) < s->status) {
        int64_t d = workday(rng_range(r, cur + 1, max64(cur + 1, E - 1)));
        int st = s->kind == CIRCMON__V1__PERMIT_KIND__SEASONAL_WORK || rng_chance(r, 0.3)
                     ? CIRCMON__V1__STATUS__PROTECTION_APPLICANT
                     : rng_chance(r, 0.1) ? CIRCMON__V1__STATUS__DECEASED
                     : rng_chance(r, 0.5) ? CIRCMON__V1__STATUS__LONG_TERM_RESIDENT
                                          : CIRCMON__V1__STATUS__OTHER;
        status(c, d, st);
        return 1;
    } else if ((u -= s->status) < s->revoke) {
        int64_t d = workday(rng_range(r, cur + 1, max64(cur + 1, E - 10)));
        int64_t eff = rng_chance(r, 0.3) ? 0 : d + rng_range(r, 0, 14);
        revoke(c, P, d, eff, 1 + (int)rng_below(r, 4));
        if (rng_chance(r, 0.3))
            return 1; /* never left */
        int64_t out = (eff ? min64(E, eff) : d) + rng_range(r, 0, 10);
        exit_(c, out);
        *last_exit = out;
        return 0;
    }

    /* The departure. */
    int64_t out;
    u = rng_unit(r);
    if (u < s->overstay) {
        return 1;
    } else if ((u -= s->overstay) < s->late) {
        out = E + s->grace + 1 + rng_expo(r, 25) + rng_range(r, 0, 5);
    } else if (s->grace > 0 && rng_chance(r, s->in_grace)) {
        out = E + rng_range(r, 1, s->grace);
    } else {
        out = max64(cur + 1, E - rng_range(r, 0, 20));
    }
    exit_(c, out);
    *last_exit = out;

    /* An extension filed long after the permit ended: a late admin event. */
    if (rng_chance(r, 0.04))
        extend(c, P, workday(E + 45 + rng_range(r, 0, 45)), E + rng_range(r, 30, 120));
    return 0;
}

static int64_t year_day(int y)
{
    return cm_month_first_day((int32_t)((y - 1970) * 12));
}

static void life_permit(struct mig *c, const struct scheme *s, int start_year, int years)
{
    struct rng *r = &c->r;
    int seasonal = s->kind == CIRCMON__V1__PERMIT_KIND__SEASONAL_WORK;
    int64_t t = g_d0 + 80 + (int64_t)(pow(rng_unit(r), 1.5) * (years * 365 - 80));
    int first = 1;

    for (;;) {
        int64_t vf, last_exit;
        if (seasonal) {
            /* Seasons start between March and June. */
            int y = start_year + (int)((t - g_d0) / 365);
            vf = year_day(y) + 59 + rng_range(r, 0, 110);
            while (vf < t)
                vf += 365;
        } else {
            vf = t;
        }
        if (vf >= g_d1)
            break;
        int in_country = first && rng_chance(r, s->in_country);
        if (permit_cycle(c, s, vf, in_country, &last_exit))
            break;
        if (!rng_chance(r, s->again))
            break;
        t = last_exit + (seasonal ? 60 + rng_range(r, 0, 200) : rng_range(r, 20, 330));
        first = 0;
    }
}

static void life_shortstay(struct mig *c, int years)
{
    struct rng *r = &c->r;
    int breacher = rng_chance(r, 0.06);
    int64_t t = g_d0 + 20 + (int64_t)(pow(rng_unit(r), 1.5) * (years * 365 - 20));

    while (t < g_d1) {
        int64_t vf = t + rng_range(r, 3, 20);
        double u = rng_unit(r);
        int64_t E = vf + (u < 0.6 ? 365 : u < 0.85 ? 730 : 1826) - 1;
        int P = grant(c, workday(t), vf, E);
        int64_t cur = vf - 1;
        int visits = 0;

        (void)P;
        for (;;) {
            int64_t in = cur + (breacher ? rng_range(r, 10, 60) : rng_range(r, 15, 150));
            if (in > E - 5 || in >= g_d1)
                break;
            int64_t len = breacher ? rng_range(r, 30, 80) : rng_range(r, 3, 30);
            int64_t out = in + len;
            entry(c, in);
            visits++;
            if (rng_chance(r, gen_schemes[c->scheme].overstay))
                return;
            if (out > E && !rng_chance(r, gen_schemes[c->scheme].late))
                out = E - rng_range(r, 0, 2);
            if (out <= in)
                out = in + 1;
            exit_(c, out);
            cur = out;
            if (visits >= 12)
                break;
        }
        if (!rng_chance(r, 0.6))
            break;
        t = max64(cur, E - 30) + rng_range(r, 5, 90);
    }
}

static int64_t arrival(struct mig *c, const struct gev *e)
{
    struct rng *r = &c->r;
    if (!is_registry(e->kind))
        return e->occ + 30 + min64(rng_expo(r, 2400), 12 * 3600);
    /* Registries publish in nightly batches: days, sometimes weeks, rarely months. */
    double u = rng_unit(r);
    int64_t days = u < 0.025 ? rng_range(r, 31, 120)
                   : u < 0.5 ? rng_range(r, 0, 1)
                   : u < 0.85 ? rng_range(r, 2, 7)
                              : rng_range(r, 8, 21);
    int64_t a = (cm_day(e->occ) + 1 + days) * CM_DAY + 2 * 3600 + e->scheme * 600 +
                rng_below(r, 900);
    return a;
}

static void add(struct gen *g, const struct gev *e)
{
    if (e->arr >= g->horizon)
        return; /* not delivered yet */
    *vec_push(&g->all) = *e;
}

static void add_dup(struct gen *g, const struct gev *e, size_t orig, int later)
{
    if (cm_grow(&g->dup_orig, &g->capdup, g->ndup + 1, sizeof *g->dup_orig, 1024) != 0) {
        fprintf(stderr, "circmon-gen: out of memory\n");
        exit(1);
    }
    struct gev *d = vec_push(&g->all);
    *d = *e;
    d->fault = (uint8_t)(later ? F_DUP_LATER : F_DUP_NEXT);
    g->dup_orig[g->ndup++] = (uint32_t)orig;
}

/* Invalid variants that apply to an event of this kind. */
static int pick_invalid(struct mig *c, const struct gev *e)
{
    static const uint8_t common[] = {F_GARBAGE,   F_GARBAGE,     F_TRUNC,    F_TRUNC,
                                     F_PREFIX,    F_NO_EVID,     F_NO_MIGRANT, F_NO_BODY,
                                     F_ZERO_TIME, F_LONG_STRING, F_BAD_UTF8, F_OUT_OF_RANGE};
    if (e->kind == K_GRANT && rng_chance(&c->r, 0.35))
        return rng_chance(&c->r, 0.4) ? F_NO_SCHEME
               : rng_chance(&c->r, 0.6) ? F_BAD_RANGE : F_NO_PERMIT_ID;
    if (e->kind == K_EXTEND && rng_chance(&c->r, 0.5))
        return rng_chance(&c->r, 0.5) ? F_NO_VALID_UNTIL : F_NO_PERMIT_ID;
    if (e->kind == K_REVOKE && rng_chance(&c->r, 0.5))
        return F_NO_PERMIT_ID;
    return common[rng_below(&c->r, sizeof common)];
}

static void gen_migrant(struct gen *g, struct mig *c, uint32_t m, int start_year, int years)
{
    struct rng *r = &c->r;
    c->r.s = mix64(g->seed * 0x9e3779b97f4a7c15ULL + m + 1);
    c->m = m;
    c->seq = 0;
    c->npermit = 0;
    c->ev.n = 0;
    c->nstays = 0;

    uint32_t pick = rng_below(r, 1000), acc = 0;
    c->scheme = SCHEME_COUNT - 1;
    for (unsigned i = 0; i < SCHEME_COUNT; i++) {
        acc += (uint32_t)gen_schemes[i].share;
        if (pick < acc) {
            c->scheme = (uint8_t)i;
            break;
        }
    }
    const struct scheme *s = &gen_schemes[c->scheme];
    unsigned wsum = 0;
    for (int i = 0; i < 6; i++)
        wsum += s->natw[i];
    uint32_t w = rng_below(r, wsum);
    c->nat = s->nat[5];
    for (int i = 0; i < 6; i++) {
        if (w < s->natw[i]) {
            c->nat = s->nat[i];
            break;
        }
        w -= s->natw[i];
    }

    if (s->flow == FLOW_SHORTSTAY)
        life_shortstay(c, years);
    else
        life_permit(c, s, start_year, years);
    if (c->ev.n == 0)
        return;

    /* Border and registry faults, placed where they mean what they say. */
    int64_t first = NEVER, last = 0;
    for (size_t i = 0; i < c->ev.n; i++) {
        first = min64(first, cm_day(c->ev.v[i].occ));
        last = max64(last, cm_day(c->ev.v[i].occ));
    }
    if (rng_chance(r, 0.04) && first - 200 >= g_d0) {
        /* A visit before any permit: entry without permit, then its exit. */
        int64_t in = first - rng_range(r, 30, 200);
        int64_t out = min64(first - 1, in + rng_range(r, 1, 10));
        struct gev *e = emit(c, K_ENTRY, border_time(c, in));
        e->aux = (uint8_t)rng_below(r, 4);
        e = emit(c, K_EXIT, border_time(c, out));
        e->aux = (uint8_t)rng_below(r, 4);
        first = in;
    }
    if (rng_chance(r, 0.05)) {
        struct gev *e = emit(c, K_EXIT, border_time(c, first - rng_range(r, 5, 120)));
        e->aux = (uint8_t)rng_below(r, 4);
    }
    for (int i = 0; i < c->nstays; i++) {
        int64_t in = c->stay_in[i], out = c->stay_out[i];
        if (out == NEVER)
            out = in + 60;
        if (out - in >= 3 && rng_chance(r, 0.02)) {
            struct gev *e = emit(c, K_ENTRY, border_time(c, rng_range(r, in + 1, out - 1)));
            e->aux = (uint8_t)rng_below(r, 4);
        }
    }
    if (rng_chance(r, 0.04)) {
        int64_t d = workday(rng_range(r, first, last + 30));
        if (rng_chance(r, 0.6))
            extend(c, 0, d, d + rng_range(r, 30, 200));
        else
            revoke(c, 0, d, 0, 3);
    }

    /* Deliver: arrival times, duplicates, invalid variants. */
    size_t n = c->ev.n;
    for (size_t i = 0; i < n; i++) {
        struct gev *e = &c->ev.v[i];
        e->arr = arrival(c, e);
        size_t at = g->all.n;
        add(g, e);
        if (g->all.n == at)
            continue;
        if (rng_chance(r, 0.007))
            add_dup(g, e, at, rng_chance(r, 0.5));
        if (e->kind == K_GRANT && rng_chance(r, 0.02)) {
            /* The registry publishes the same grant again under a new event id. */
            struct gev d = *e;
            d.seq = c->seq < UINT16_MAX ? ++c->seq : UINT16_MAX;
            d.arr = e->arr + rng_range(r, 1, 10) * CM_DAY;
            add(g, &d);
        }
        if (rng_chance(r, 0.012)) {
            struct gev d = *e;
            d.seq = c->seq < UINT16_MAX ? ++c->seq : UINT16_MAX;
            d.fault = (uint8_t)pick_invalid(c, e);
            d.arr = e->arr + rng_below(r, 600);
            add(g, &d);
        }
    }
}

int gen_generate(struct gen *g, int start_year, int years)
{
    g->salt = (uint16_t)mix64(g->seed ^ 0xc1c3u);
    g_d0 = year_day(start_year);
    g_d1 = year_day(start_year + years);
    g->horizon = g_d1 * CM_DAY;

    struct mig c = {0};
    size_t reserve = (size_t)g->migrants * 11;
    g->all.v = malloc(reserve * sizeof *g->all.v);
    if (!g->all.v) {
        fprintf(stderr, "circmon-gen: out of memory\n");
        return 1;
    }
    g->all.cap = reserve;
    for (uint32_t m = 0; m < g->migrants; m++)
        gen_migrant(g, &c, m, start_year, years);
    free(c.ev.v);
    if (g->all.n > UINT32_MAX - 64) {
        fprintf(stderr, "circmon-gen: too many events\n");
        return 1;
    }
    return 0;
}
