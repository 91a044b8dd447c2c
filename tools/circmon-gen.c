/* circmon-gen.c - writes a synthetic, deterministic stream of circmon.v1.Event messages.
 *
 * Every migrant's life is generated as events with their occurrence times, each
 * event gets an arrival time (occurrence + a delivery delay that depends on the
 * system that reports it), and the stream is written in arrival order. Events
 * are kept compact in memory and turned into protobuf only when written. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "circmon/decimal.h"
#include "circmon/event.h"
#include "circmon/framing.h"
#include "circmon/timeutil.h"
#include "circmon/v1/events.pb-c.h"

/* --- random numbers: splitmix64, one stream per migrant --------------------- */

struct rng {
    uint64_t s;
};

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rng_next(struct rng *r)
{
    r->s += 0x9e3779b97f4a7c15ULL;
    return mix64(r->s);
}

/* Uniform in [0, n), n > 0. */
static uint32_t rng_below(struct rng *r, uint32_t n)
{
    return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

/* Uniform in [lo, hi]. */
static int64_t rng_range(struct rng *r, int64_t lo, int64_t hi)
{
    if (hi <= lo)
        return lo;
    return lo + rng_below(r, (uint32_t)(hi - lo + 1));
}

static double rng_unit(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static int rng_chance(struct rng *r, double p)
{
    return rng_unit(r) < p;
}

/* Exponential with the given mean, in whole units. */
static int64_t rng_expo(struct rng *r, double mean)
{
    return (int64_t)(-log(1 - rng_unit(r)) * mean);
}

/* --- the world: nationalities and schemes ------------------------------------ */

static const char *const NATS[] = {
    "",    "MAR", "UKR", "SEN", "COL", "GTM", "HND", "IND", "CHN", "NGA", "VNM",
    "BRA", "TUN", "USA", "IRN", "ALB", "PHL", "EGY", "TUR", "ZAF", "KAZ", "GEO",
};
#define NAT_COUNT (sizeof NATS / sizeof NATS[0])

enum flow { FLOW_PERMIT, FLOW_SHORTSTAY };

struct scheme {
    const char *id;
    const char *prefix; /* of permit ids */
    int kind;           /* Circmon__V1__PermitKind */
    const char *ms;     /* member state */
    const char *border_src, *registry_src;
    const char *border[4];
    const char *sector[3];
    uint8_t nat[6], natw[6]; /* nationalities (NATS index) and weights */
    int share;               /* per mille of migrants */
    int multiple_entry;
    enum flow flow;
    /* FLOW_PERMIT profile: probabilities per permit */
    double noshow, withdraw, ext, transfer, status, revoke, late, overstay, in_grace, trip,
        again, in_country;
    int len_min, len_max, ext_min, ext_max, grace;
};

static const struct scheme SCHEMES[] = {
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
#define SCHEME_COUNT (sizeof SCHEMES / sizeof SCHEMES[0])

static const char *const REVOKE_REASONS[] = {
    "withdrawn before entry", "employer withdrew the offer", "studies abandoned",
    "conditions no longer met", "public order",
};

static const char *const STATUS_DETAILS[] = {
    "", "application for international protection", "EU long-term resident status",
    "death registered", "change to an employment permit",
};

/* --- compact events --------------------------------------------------------- */

enum kind { K_ENTRY = 1, K_EXIT, K_GRANT, K_EXTEND, K_REVOKE, K_STATUS };

enum fault {
    F_NONE,
    F_DUP_NEXT,  /* exact duplicate, right after the original */
    F_DUP_LATER, /* exact duplicate, 20 records after the original */
    F_GARBAGE,   /* random bytes */
    F_TRUNC,     /* a valid message cut inside a field */
    F_PREFIX,    /* random bytes before a valid message */
    F_NO_EVID,
    F_NO_MIGRANT,
    F_NO_BODY,
    F_ZERO_TIME,
    F_LONG_STRING,
    F_NO_SCHEME,      /* PermitGranted */
    F_BAD_RANGE,      /* PermitGranted: valid_until < valid_from */
    F_NO_PERMIT_ID,   /* PermitGranted/Extended/Revoked */
    F_NO_VALID_UNTIL, /* PermitExtended */
    F_BAD_UTF8,       /* a string that is not UTF-8 (a grant: its scheme id or nationality) */
    F_OUT_OF_RANGE,   /* an instant before 1970 or after 9999 */
    F__COUNT
};

struct gev {
    int64_t occ, arr;
    int64_t t1; /* granted: valid_from; extended: valid_until; revoked: effective_at */
    int64_t t2; /* granted: valid_until */
    uint32_t m;
    uint16_t seq; /* event id number within the migrant */
    uint8_t kind, fault, scheme;
    uint8_t permit; /* permit number within the migrant; 0 = never granted */
    uint8_t aux;    /* border point, sector, revocation reason or status */
    uint8_t nat;    /* granted: nationality (0 = missing) */
};

struct vec {
    struct gev *v;
    size_t n, cap;
};

static struct gev *vec_push(struct vec *a)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap + a->cap / 2 : 1024;
        struct gev *nv = realloc(a->v, cap * sizeof *nv);
        if (!nv) {
            fprintf(stderr, "circmon-gen: out of memory\n");
            exit(1);
        }
        a->v = nv;
        a->cap = cap;
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
            if (rng_chance(r, SCHEMES[c->scheme].overstay))
                return;
            if (out > E && !rng_chance(r, SCHEMES[c->scheme].late))
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

/* --- delivery delays and data-quality faults ------------------------------- */

static int is_registry(int kind)
{
    return kind == K_GRANT || kind == K_EXTEND || kind == K_REVOKE || kind == K_STATUS;
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

struct gen {
    uint64_t seed;
    uint32_t migrants;
    uint16_t salt;
    struct vec all;
    uint32_t *dup_orig; /* per duplicate record in all: its original */
    size_t ndup, capdup;
    int64_t horizon;
};

static void add(struct gen *g, const struct gev *e)
{
    if (e->arr >= g->horizon)
        return; /* not delivered yet */
    *vec_push(&g->all) = *e;
}

static void add_dup(struct gen *g, const struct gev *e, size_t orig, int later)
{
    if (g->ndup == g->capdup) {
        g->capdup = g->capdup ? g->capdup * 2 : 1024;
        g->dup_orig = realloc(g->dup_orig, g->capdup * sizeof *g->dup_orig);
        if (!g->dup_orig) {
            fprintf(stderr, "circmon-gen: out of memory\n");
            exit(1);
        }
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
        acc += (uint32_t)SCHEMES[i].share;
        if (pick < acc) {
            c->scheme = (uint8_t)i;
            break;
        }
    }
    const struct scheme *s = &SCHEMES[c->scheme];
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

/* --- writing ----------------------------------------------------------------- */

struct key {
    int64_t arr;
    uint32_t idx;
};

static int key_cmp(const void *a, const void *b)
{
    const struct key *x = a, *y = b;
    if (x->arr != y->arr)
        return x->arr < y->arr ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

struct dupref {
    uint32_t target; /* sorted position it follows */
    uint32_t idx;
};

static int dupref_cmp(const void *a, const void *b)
{
    const struct dupref *x = a, *y = b;
    if (x->target != y->target)
        return x->target < y->target ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int decodes(const uint8_t *buf, size_t len)
{
    Circmon__V1__Event *ev = circmon__v1__event__unpack(NULL, len, buf);
    if (!ev)
        return 0;
    circmon__v1__event__free_unpacked(ev, NULL);
    return 1;
}

struct writer {
    FILE *fp;
    uint8_t *buf;
    size_t cap;
    uint64_t bytes, records, undecodable, invalid;
    uint64_t per_kind[7];
    struct cm_decoder *dec; /* checks every record */
};

static void need(struct writer *w, size_t n)
{
    if (w->cap >= n)
        return;
    while (w->cap < n)
        w->cap = w->cap ? w->cap * 2 : 4096;
    w->buf = realloc(w->buf, w->cap);
    if (!w->buf) {
        fprintf(stderr, "circmon-gen: out of memory\n");
        exit(1);
    }
}

static void put(struct writer *w, const uint8_t *b, size_t len)
{
    if (cm_frame_write(w->fp, b, len) < 0) {
        fprintf(stderr, "circmon-gen: write error: %s\n", strerror(errno ? errno : EIO));
        exit(1);
    }
    size_t hdr = 1;
    for (size_t v = len; v >= 0x80; v >>= 7)
        hdr++;
    w->bytes += hdr + len;
    w->records++;
}

static void write_rec(struct gen *g, struct writer *w, const struct gev *e, uint32_t idx)
{
    const struct scheme *s = &SCHEMES[e->scheme];
    char mid[32], evid[48], pid[48], longs[640];
    Circmon__V1__Event ev = CIRCMON__V1__EVENT__INIT;
    Circmon__V1__Entry en = CIRCMON__V1__ENTRY__INIT;
    Circmon__V1__Exit ex = CIRCMON__V1__EXIT__INIT;
    Circmon__V1__PermitGranted pg = CIRCMON__V1__PERMIT_GRANTED__INIT;
    Circmon__V1__PermitExtended pe = CIRCMON__V1__PERMIT_EXTENDED__INIT;
    Circmon__V1__PermitRevoked pr = CIRCMON__V1__PERMIT_REVOKED__INIT;
    Circmon__V1__StatusChanged sc = CIRCMON__V1__STATUS_CHANGED__INIT;
    struct rng r = {mix64(g->seed ^ ((uint64_t)idx << 20) ^ 0x5eed)};

    snprintf(mid, sizeof mid, "M%04X%07" PRIu32, (unsigned)g->salt, e->m);
    snprintf(evid, sizeof evid, "%s-%u", mid, (unsigned)e->seq);
    snprintf(pid, sizeof pid, "%s-%07" PRIu32 "-%02u", s->prefix, e->m, (unsigned)e->permit);
    ev.event_id = evid;
    ev.migrant_id = mid;
    ev.occurred_at = e->occ;
    ev.recorded_at = e->arr;
    ev.source = (char *)(is_registry(e->kind) ? s->registry_src : s->border_src);

    switch (e->kind) {
    case K_ENTRY:
        en.member_state = (char *)s->ms;
        en.border_point = (char *)s->border[e->aux & 3];
        ev.body_case = CIRCMON__V1__EVENT__BODY_ENTRY;
        ev.entry = &en;
        break;
    case K_EXIT:
        ex.member_state = (char *)s->ms;
        ex.border_point = (char *)s->border[e->aux & 3];
        ev.body_case = CIRCMON__V1__EVENT__BODY_EXIT;
        ev.exit = &ex;
        break;
    case K_GRANT:
        pg.permit_id = pid;
        pg.scheme_id = (char *)s->id;
        pg.kind = (Circmon__V1__PermitKind)s->kind;
        pg.valid_from = e->t1;
        pg.valid_until = e->t2;
        pg.member_state = (char *)s->ms;
        pg.nationality = (char *)NATS[e->nat < NAT_COUNT ? e->nat : 0];
        pg.sector = (char *)s->sector[e->aux % 3];
        pg.multiple_entry = s->multiple_entry;
        ev.body_case = CIRCMON__V1__EVENT__BODY_PERMIT_GRANTED;
        ev.permit_granted = &pg;
        break;
    case K_EXTEND:
        pe.permit_id = pid;
        pe.valid_until = e->t1;
        ev.body_case = CIRCMON__V1__EVENT__BODY_PERMIT_EXTENDED;
        ev.permit_extended = &pe;
        break;
    case K_REVOKE:
        pr.permit_id = pid;
        pr.effective_at = e->t1;
        pr.reason = (char *)REVOKE_REASONS[e->aux % 5];
        ev.body_case = CIRCMON__V1__EVENT__BODY_PERMIT_REVOKED;
        ev.permit_revoked = &pr;
        break;
    case K_STATUS:
        sc.status = (Circmon__V1__Status)e->aux;
        sc.detail = (char *)STATUS_DETAILS[e->aux % 5];
        ev.body_case = CIRCMON__V1__EVENT__BODY_STATUS_CHANGED;
        ev.status_changed = &sc;
        break;
    }

    switch (e->fault) {
    case F_NO_EVID:
        ev.event_id = "";
        break;
    case F_NO_MIGRANT:
        ev.migrant_id = "";
        break;
    case F_NO_BODY:
        ev.body_case = CIRCMON__V1__EVENT__BODY__NOT_SET;
        break;
    case F_ZERO_TIME:
        ev.occurred_at = 0;
        break;
    case F_LONG_STRING: {
        size_t n = 257 + rng_below(&r, 300);
        for (size_t i = 0; i < n; i++)
            longs[i] = (char)('A' + rng_below(&r, 26));
        longs[n] = '\0';
        ev.source = longs;
        break;
    }
    case F_NO_SCHEME:
        pg.scheme_id = "";
        break;
    case F_BAD_RANGE:
        pg.valid_until = pg.valid_from - (int64_t)(1 + rng_below(&r, 90)) * CM_DAY;
        break;
    case F_NO_PERMIT_ID:
        pg.permit_id = pe.permit_id = pr.permit_id = "";
        break;
    case F_NO_VALID_UNTIL:
        pe.valid_until = 0;
        break;
    case F_BAD_UTF8: {
        /* what other encodings or careless cutting leave behind */
        static const char *const bad[] = {"R\xe9gistre", "\xed\xa0\x80", "\xc0\xaf",
                                          "caf\xe2\x82", "\xf4\x90\x80\x80"};
        const char *b = bad[rng_below(&r, 5)];
        snprintf(longs, sizeof longs, "%s%s", e->kind == K_GRANT ? s->id : "", b);
        if (e->kind == K_GRANT && rng_below(&r, 2))
            pg.scheme_id = longs;
        else if (e->kind == K_GRANT)
            pg.nationality = longs;
        else
            ev.source = longs;
        break;
    }
    case F_OUT_OF_RANGE: {
        /* a permit valid into the year 10000, a date in milliseconds, a sign lost */
        int64_t far = CM_TIME_MAX + 1 + (int64_t)rng_below(&r, 400) * CM_DAY;
        if (e->kind == K_GRANT)
            pg.valid_until = rng_below(&r, 2) ? far : pg.valid_until * 1000;
        else if (e->kind == K_EXTEND)
            pe.valid_until = far;
        else if (e->kind == K_REVOKE)
            pr.effective_at = pr.effective_at ? -pr.effective_at : -e->occ;
        else
            ev.occurred_at = -ev.occurred_at;
        break;
    }
    default:
        break;
    }

    size_t len = circmon__v1__event__get_packed_size(&ev);
    need(w, len + 64);
    circmon__v1__event__pack(&ev, w->buf + 32); /* room for a prefix */
    uint8_t *p = w->buf + 32;

    if (e->fault == F_GARBAGE || e->fault == F_TRUNC || e->fault == F_PREFIX) {
        /* Only what protobuf-c really refuses: a cut at a field boundary, or
         * bytes that happen to read as unknown fields, would decode. */
        int ok = 0;
        for (int tries = 0; tries < 16 && !ok; tries++) {
            if (e->fault == F_TRUNC && len > 2) {
                size_t cut = 1 + rng_below(&r, (uint32_t)(len - 1));
                ok = !decodes(p, cut);
                if (ok)
                    len = cut;
            } else if (e->fault == F_PREFIX) {
                size_t k = 1 + rng_below(&r, 24);
                for (size_t i = 0; i < k; i++)
                    w->buf[32 - k + i] = (uint8_t)rng_next(&r);
                ok = !decodes(w->buf + 32 - k, len + k);
                if (ok) {
                    p = w->buf + 32 - k;
                    len += k;
                }
            } else {
                break;
            }
        }
        if (!ok) {
            /* Random bytes opening with an invalid wire type (6 or 7). */
            size_t k = 8 + rng_below(&r, 120);
            need(w, k + 64);
            p = w->buf;
            for (size_t i = 0; i < k; i++)
                p[i] = (uint8_t)rng_next(&r);
            p[0] = (uint8_t)((p[0] & 0xf8) | 6 | (p[0] & 1));
            if (decodes(p, k))
                p[0] = 0x07;
            len = k;
        }
        w->undecodable++;
    } else if (e->fault >= F_NO_EVID) {
        w->invalid++;
    }
    if (e->fault < F_GARBAGE || e->fault > F_PREFIX)
        w->per_kind[e->kind]++;
    /* Each record is what it is meant to be: valid unless it carries a
     * fault, invalid with one. An instant out of the contract's range by
     * accident (a far --start-year, a long stay) would show here. */
    struct cm_event dev;
    enum cm_reject rej = cm_decode(w->dec, p, len, &dev);
    int meant_valid = e->fault == F_NONE || e->fault == F_DUP_NEXT || e->fault == F_DUP_LATER;
    if ((rej == CM_OK) != meant_valid) {
        fprintf(stderr, "circmon-gen: internal error: record %" PRIu64 " (fault %u) decodes as %s\n",
                w->records, (unsigned)e->fault, cm_reject_name(rej));
        exit(1);
    }
    put(w, p, len);
}

/* --- command line ------------------------------------------------------------- */

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: circmon-gen --migrants N --out FILE [--seed N] [--start-year Y] [--years N]\n"
            "\n"
            "Writes a synthetic stream of circmon.v1.Event messages (varint-length-delimited,\n"
            "in arrival order) for N migrants over the years Y .. Y+N-1 (default 2019, 6),\n"
            "deterministic for a seed (default 1). FILE may be - for standard output.\n");
}

static int parse_u64(const char *s, uint64_t max, uint64_t *v)
{
    return cm_decimal_u64(s, strlen(s), max, v);
}

static int bad(const char *fmt, const char *arg)
{
    fprintf(stderr, "circmon-gen: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    usage(stderr);
    return 2;
}

int main(int argc, char **argv)
{
    struct gen g = {.seed = 1};
    uint64_t migrants = 0, v;
    int start_year = 2019, years = 6, have_migrants = 0;
    const char *out = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        const char *eq = strchr(a, '=');
        char name[32];
        if (strncmp(a, "--", 2) != 0)
            return bad("unexpected argument '%s'", a);
        if (eq) {
            size_t n = (size_t)(eq - a);
            if (n >= sizeof name)
                return bad("unknown option '%s'", a);
            memcpy(name, a, n);
            name[n] = '\0';
            val = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", a);
            if (i + 1 >= argc)
                return bad("option '%s' needs a value", a);
            val = argv[++i];
        }
        if (!strcmp(name, "--seed")) {
            if (parse_u64(val, UINT64_MAX, &g.seed))
                return bad("--seed: '%s' is not a non-negative integer", val);
        } else if (!strcmp(name, "--migrants")) {
            if (parse_u64(val, 50000000, &migrants) || migrants == 0)
                return bad("--migrants: '%s' is not an integer in 1..50000000", val);
            have_migrants = 1;
        } else if (!strcmp(name, "--out")) {
            if (!*val)
                return bad("--out: empty file name%s", "");
            out = val;
        } else if (!strcmp(name, "--start-year")) {
            if (parse_u64(val, 2200, &v) || v < 1972)
                return bad("--start-year: '%s' is not a year in 1972..2200", val);
            start_year = (int)v;
        } else if (!strcmp(name, "--years")) {
            if (parse_u64(val, 50, &v) || v < 1)
                return bad("--years: '%s' is not an integer in 1..50", val);
            years = (int)v;
        } else {
            return bad("unknown option '%s'", name);
        }
    }
    if (!have_migrants)
        return bad("--migrants is required%s", "");
    if (!out)
        return bad("--out is required%s", "");

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    g.migrants = (uint32_t)migrants;
    g.salt = (uint16_t)mix64(g.seed ^ 0xc1c3u);
    g_d0 = year_day(start_year);
    g_d1 = year_day(start_year + years);
    g.horizon = g_d1 * CM_DAY;

    /* Generate. */
    struct mig c = {0};
    size_t reserve = (size_t)migrants * 11;
    g.all.v = malloc(reserve * sizeof *g.all.v);
    if (!g.all.v) {
        fprintf(stderr, "circmon-gen: out of memory\n");
        return 1;
    }
    g.all.cap = reserve;
    for (uint32_t m = 0; m < g.migrants; m++)
        gen_migrant(&g, &c, m, start_year, years);
    free(c.ev.v);
    if (g.all.n > UINT32_MAX - 64) {
        fprintf(stderr, "circmon-gen: too many events\n");
        return 1;
    }

    /* Order: arrival, then generation order; duplicates follow their original. */
    size_t n = g.all.n, nmain = n - g.ndup;
    struct key *keys = malloc(nmain * sizeof *keys + 1);
    uint32_t *pos = malloc(n * sizeof *pos + 1);
    struct dupref *dups = malloc(g.ndup * sizeof *dups + 1);
    if (!keys || !pos || !dups) {
        fprintf(stderr, "circmon-gen: out of memory\n");
        return 1;
    }
    size_t k = 0, kd = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t f = g.all.v[i].fault;
        if (f == F_DUP_NEXT || f == F_DUP_LATER)
            continue;
        keys[k].arr = g.all.v[i].arr;
        keys[k++].idx = (uint32_t)i;
    }
    qsort(keys, nmain, sizeof *keys, key_cmp);
    for (size_t i = 0; i < nmain; i++)
        pos[keys[i].idx] = (uint32_t)i;
    for (size_t i = 0; i < n; i++) {
        const struct gev *e = &g.all.v[i];
        if (e->fault != F_DUP_NEXT && e->fault != F_DUP_LATER)
            continue;
        uint64_t t = pos[g.dup_orig[kd++]] + (e->fault == F_DUP_LATER ? 20u : 0u);
        dups[kd - 1].target = (uint32_t)(t < nmain ? t : nmain - 1);
        dups[kd - 1].idx = (uint32_t)i;
    }
    qsort(dups, g.ndup, sizeof *dups, dupref_cmp);
    free(pos);
    free(g.dup_orig);

    /* Write. */
    struct writer w = {0};
    FILE *fp = strcmp(out, "-") ? fopen(out, "wb") : stdout;
    if (!fp) {
        fprintf(stderr, "circmon-gen: %s: %s\n", out, strerror(errno));
        return 1;
    }
    w.fp = fp;
    if (!(w.dec = cm_decoder_new())) {
        fprintf(stderr, "circmon-gen: out of memory\n");
        return 1;
    }
    setvbuf(fp, NULL, _IOFBF, 1 << 20);
    size_t d = 0;
    for (size_t i = 0; i < nmain; i++) {
        write_rec(&g, &w, &g.all.v[keys[i].idx], keys[i].idx);
        while (d < g.ndup && dups[d].target == i) {
            write_rec(&g, &w, &g.all.v[dups[d].idx], dups[d].idx);
            d++;
        }
    }
    if (fflush(fp) != 0 || ferror(fp) || (fp != stdout && fclose(fp) != 0)) {
        fprintf(stderr, "circmon-gen: %s: write error: %s\n", out, strerror(errno));
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);

    char asof[16];
    cm_month_str(cm_month_of_day(g_d1), asof);
    fprintf(stderr,
            "circmon-gen: seed %" PRIu64 ": %" PRIu64 " events (%" PRIu64 " entries, %" PRIu64
            " exits, %" PRIu64 " granted, %" PRIu64 " extended, %" PRIu64 " revoked, %" PRIu64
            " status changes; %" PRIu64 " undecodable, %" PRIu64 " invalid, %zu duplicates)"
            " for %" PRIu32 " migrants, %" PRIu64 " bytes, %.2f s; as of %s-01 all delivered\n",
            g.seed, w.records, w.per_kind[K_ENTRY], w.per_kind[K_EXIT], w.per_kind[K_GRANT],
            w.per_kind[K_EXTEND], w.per_kind[K_REVOKE], w.per_kind[K_STATUS], w.undecodable,
            w.invalid, g.ndup, g.migrants, w.bytes,
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, asof);
    free(w.buf);
    cm_decoder_free(w.dec);
    free(keys);
    free(dups);
    free(g.all.v);
    return 0;
}
