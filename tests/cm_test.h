/* cm_test.h - shared helpers of the circmon Check suites (header only: every
 * tests/check_*.c is its own program linked against libcircmon.a).
 *
 * Everything here is written from INDICATORS.md, independently of lib/: the
 * date arithmetic is our own, events are built as real circmon.v1.Event
 * protobuf messages and fed through cm_engine_feed, and figures are read back
 * from the JSON document of cm_engine_indicators. */
#ifndef CM_TEST_H
#define CM_TEST_H

#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/config.h"
#include "circmon/engine.h"
#include "circmon/event.h"
#include "circmon/v1/events.pb-c.h"

#define DAY 86400LL

#ifdef __GNUC__
#define CMT_UNUSED __attribute__((unused))
#else
#define CMT_UNUSED
#endif

/* ---- dates (Howard Hinnant's civil algorithms, proleptic Gregorian) ---- */

/* Days since 1970-01-01 of y-m-d. */
static inline int64_t DN(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static inline void civil(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

/* Noon UTC of day number dn, and of a date. */
static inline int64_t T(int64_t dn) { return dn * DAY + DAY / 2; }
static inline int64_t D(int64_t y, unsigned m, unsigned d) { return T(DN(y, m, d)); }

/* floor(t / 86400). */
static inline int64_t dayof(int64_t t) { return t >= 0 ? t / DAY : -((-t + DAY - 1) / DAY); }

/* "YYYY-MM" of day number dn into buf (>= 16 bytes). */
static inline const char *month_str(int64_t dn, char *buf)
{
    int64_t y;
    unsigned m, d;
    civil(dn, &y, &m, &d);
    snprintf(buf, 16, "%04lld-%02u", (long long)y, m);
    return buf;
}

/* ---- events ---- */

enum { TE_ENTRY = 1, TE_EXIT, TE_GRANT, TE_EXTEND, TE_REVOKE, TE_STATUS, TE_NOBODY };

#define TS 320 /* room for strings of 257+ bytes */

struct tev {
    int type;
    char eid[TS], mid[TS], pid[TS], scheme[TS], nat[TS];
    int64_t t, vf, vu, eff, recorded_at;
    int status, kind;
    char source[TS], ms[TS], bp[TS], sector[TS], reason[TS], detail[TS];
};

static int cmt_auto_id CMT_UNUSED;

/* eid NULL: a fresh automatic id. */
static inline struct tev ev_base(int type, const char *eid, const char *mid, int64_t t)
{
    struct tev e;
    memset(&e, 0, sizeof e);
    e.type = type;
    if (eid)
        snprintf(e.eid, TS, "%s", eid);
    else
        snprintf(e.eid, TS, "auto-%d", ++cmt_auto_id);
    snprintf(e.mid, TS, "%s", mid);
    e.t = t;
    return e;
}

static inline struct tev ev_entry(const char *eid, const char *mid, int64_t t)
{
    return ev_base(TE_ENTRY, eid, mid, t);
}

static inline struct tev ev_exit(const char *eid, const char *mid, int64_t t)
{
    return ev_base(TE_EXIT, eid, mid, t);
}

static inline struct tev ev_grant(const char *eid, const char *mid, int64_t t, const char *pid,
                                  const char *scheme, const char *nat, int64_t vf, int64_t vu)
{
    struct tev e = ev_base(TE_GRANT, eid, mid, t);
    snprintf(e.pid, TS, "%s", pid);
    snprintf(e.scheme, TS, "%s", scheme);
    snprintf(e.nat, TS, "%s", nat ? nat : "");
    e.vf = vf;
    e.vu = vu;
    e.kind = 1;
    return e;
}

static inline struct tev ev_extend(const char *eid, const char *mid, int64_t t, const char *pid,
                                   int64_t vu)
{
    struct tev e = ev_base(TE_EXTEND, eid, mid, t);
    snprintf(e.pid, TS, "%s", pid);
    e.vu = vu;
    return e;
}

static inline struct tev ev_revoke(const char *eid, const char *mid, int64_t t, const char *pid,
                                   int64_t eff)
{
    struct tev e = ev_base(TE_REVOKE, eid, mid, t);
    snprintf(e.pid, TS, "%s", pid);
    e.eff = eff;
    return e;
}

static inline struct tev ev_status(const char *eid, const char *mid, int64_t t, int status)
{
    struct tev e = ev_base(TE_STATUS, eid, mid, t);
    e.status = status;
    return e;
}

static inline struct tev ev_nobody(const char *eid, const char *mid, int64_t t)
{
    return ev_base(TE_NOBODY, eid, mid, t);
}

struct msg {
    size_t len;
    uint8_t buf[8192];
};

/* The circmon.v1.Event of e, packed. */
static inline struct msg tev_pack(const struct tev *e)
{
    Circmon__V1__Event ev = CIRCMON__V1__EVENT__INIT;
    Circmon__V1__Entry en = CIRCMON__V1__ENTRY__INIT;
    Circmon__V1__Exit ex = CIRCMON__V1__EXIT__INIT;
    Circmon__V1__PermitGranted pg = CIRCMON__V1__PERMIT_GRANTED__INIT;
    Circmon__V1__PermitExtended pe = CIRCMON__V1__PERMIT_EXTENDED__INIT;
    Circmon__V1__PermitRevoked pr = CIRCMON__V1__PERMIT_REVOKED__INIT;
    Circmon__V1__StatusChanged sc = CIRCMON__V1__STATUS_CHANGED__INIT;
    struct msg m;

    ev.event_id = (char *)e->eid;
    ev.migrant_id = (char *)e->mid;
    ev.occurred_at = e->t;
    ev.recorded_at = e->recorded_at;
    ev.source = (char *)e->source;
    switch (e->type) {
    case TE_ENTRY:
        en.member_state = (char *)e->ms;
        en.border_point = (char *)e->bp;
        ev.body_case = CIRCMON__V1__EVENT__BODY_ENTRY;
        ev.entry = &en;
        break;
    case TE_EXIT:
        ex.member_state = (char *)e->ms;
        ex.border_point = (char *)e->bp;
        ev.body_case = CIRCMON__V1__EVENT__BODY_EXIT;
        ev.exit = &ex;
        break;
    case TE_GRANT:
        pg.permit_id = (char *)e->pid;
        pg.scheme_id = (char *)e->scheme;
        pg.kind = (Circmon__V1__PermitKind)e->kind;
        pg.valid_from = e->vf;
        pg.valid_until = e->vu;
        pg.member_state = (char *)e->ms;
        pg.nationality = (char *)e->nat;
        pg.sector = (char *)e->sector;
        ev.body_case = CIRCMON__V1__EVENT__BODY_PERMIT_GRANTED;
        ev.permit_granted = &pg;
        break;
    case TE_EXTEND:
        pe.permit_id = (char *)e->pid;
        pe.valid_until = e->vu;
        ev.body_case = CIRCMON__V1__EVENT__BODY_PERMIT_EXTENDED;
        ev.permit_extended = &pe;
        break;
    case TE_REVOKE:
        pr.permit_id = (char *)e->pid;
        pr.effective_at = e->eff;
        pr.reason = (char *)e->reason;
        ev.body_case = CIRCMON__V1__EVENT__BODY_PERMIT_REVOKED;
        ev.permit_revoked = &pr;
        break;
    case TE_STATUS:
        sc.status = (Circmon__V1__Status)e->status;
        sc.detail = (char *)e->detail;
        ev.body_case = CIRCMON__V1__EVENT__BODY_STATUS_CHANGED;
        ev.status_changed = &sc;
        break;
    default:
        break; /* no body */
    }
    m.len = circmon__v1__event__get_packed_size(&ev);
    ck_assert_uint_le(m.len, sizeof m.buf);
    circmon__v1__event__pack(&ev, m.buf);
    return m;
}

/* The decoded form of a valid e, for cm_engine_fold (strings borrowed). */
static inline void tev_to_cm(const struct tev *e, struct cm_event *c)
{
    memset(c, 0, sizeof *c);
    static const enum cm_ev_type map[] = {0, CM_EV_ENTRY, CM_EV_EXIT, CM_EV_GRANTED,
                                          CM_EV_EXTENDED, CM_EV_REVOKED, CM_EV_STATUS};
    c->type = map[e->type];
    c->event_id = e->eid;
    c->migrant_id = e->mid;
    c->occurred_at = e->t;
    c->permit_id = e->pid;
    c->scheme_id = e->scheme;
    c->nationality = e->nat;
    c->kind = e->kind;
    c->valid_from = e->vf;
    c->valid_until = e->vu;
    c->effective_at = e->eff;
    c->status = e->status;
}

/* ---- engine fixture ---- */

struct fx {
    struct cm_config cfg;
    struct cm_engine *en;
};

/* spec: schemes separated by spaces, each "ID:grace" or "ID:grace:N/W". */
static inline struct fx *fx_new(int window, const char *spec)
{
    struct fx *f = calloc(1, sizeof *f);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(cm_config_defaults(&f->cfg), 0);
    f->cfg.reorder_window_days = window;
    size_t n = 0;
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", spec ? spec : "");
    for (char *s = strtok(tmp, " "); s; s = strtok(NULL, " "))
        n++;
    if (n) {
        free(f->cfg.schemes);
        f->cfg.schemes = calloc(n, sizeof *f->cfg.schemes);
        ck_assert_ptr_nonnull(f->cfg.schemes);
        f->cfg.n_schemes = n;
        snprintf(tmp, sizeof tmp, "%s", spec);
        size_t i = 0;
        for (char *s = strtok(tmp, " "); s; s = strtok(NULL, " "), i++) {
            struct cm_scheme_conf *sc = &f->cfg.schemes[i];
            char *c1 = strchr(s, ':');
            ck_assert_ptr_nonnull(c1);
            *c1 = 0;
            snprintf(sc->id, sizeof sc->id, "%s", s);
            sc->grace_days = atoi(c1 + 1);
            char *c2 = strchr(c1 + 1, ':');
            if (c2)
                ck_assert_int_eq(sscanf(c2 + 1, "%d/%d", &sc->stay_n, &sc->stay_w), 2);
        }
    }
    f->en = cm_engine_new(&f->cfg);
    ck_assert_ptr_nonnull(f->en);
    return f;
}

static inline void fx_free(struct fx *f)
{
    if (!f)
        return;
    cm_engine_free(f->en);
    cm_config_free(&f->cfg);
    free(f);
}

/* Packs and feeds e; returns cm_engine_feed's value. */
static inline int feed(struct fx *f, struct tev e)
{
    struct msg m = tev_pack(&e);
    return cm_engine_feed(f->en, m.buf, m.len);
}

/* Feeds e and asserts it was valid (accepted, duplicate or too late). */
#define FEED(f, e) ck_assert_int_eq(feed((f), (e)), CM_OK)

static inline json_t *doc_at(struct fx *f, int64_t as_of)
{
    json_t *d = cm_engine_indicators(f->en, as_of);
    ck_assert_ptr_nonnull(d);
    ck_assert(json_is_object(d));
    return d;
}

/* ---- reading the document ---- */

static const char *const CTR_NAMES[] = {
    "expected_departures", "in_time_departures", "late_departures", "in_country_overstays",
    "status_changes",      "no_shows",           "reentries",       "overstay_days",
    "stay_limit_breaches", "stay_limit_breach_days"};
#define N_CTR 10
static const char *const RATE_NAMES[] = {"overstay_rate", "in_country_overstay_rate",
                                         "return_compliance_rate", "reentry_rate",
                                         "mean_overstay_days"};
#define N_RATE 5
static const char *const DQ_NAMES[] = {"invalid",
                                       "duplicates",
                                       "too_late",
                                       "out_of_order",
                                       "exits_without_entry",
                                       "entries_while_present",
                                       "entries_without_permit",
                                       "unknown_permit",
                                       "late_admin_events"};
#define N_DQ 9

/* group: NULL (scheme totals), "nat:XXX" or "cohort:2024-05". NULL if absent. */
static inline json_t *group_of(json_t *doc, const char *scheme, const char *group)
{
    json_t *s = json_object_get(json_object_get(doc, "schemes"), scheme);
    if (!s || !group)
        return s;
    if (!strncmp(group, "nat:", 4))
        return json_object_get(json_object_get(s, "by_nationality"), group + 4);
    if (!strncmp(group, "cohort:", 7))
        return json_object_get(json_object_get(s, "by_cohort"), group + 7);
    ck_abort_msg("bad group name %s", group);
    return NULL;
}

static inline long jlong(json_t *v)
{
    if (json_is_integer(v))
        return (long)json_integer_value(v);
    if (json_is_real(v))
        return (long)json_real_value(v);
    return 0;
}

/* A counter; 0 when missing. */
static inline long get(json_t *doc, const char *scheme, const char *group, const char *counter)
{
    return jlong(json_object_get(group_of(doc, scheme, group), counter));
}

static inline long dq(json_t *doc, const char *name)
{
    return jlong(json_object_get(json_object_get(doc, "data_quality"), name));
}

/* A rate; NAN when null or missing. */
static inline double rate(json_t *doc, const char *scheme, const char *group, const char *name)
{
    json_t *v = json_object_get(group_of(doc, scheme, group), name);
    if (json_is_real(v))
        return json_real_value(v);
    if (json_is_integer(v))
        return (double)json_integer_value(v);
    return NAN;
}

static inline void dump_doc(json_t *doc)
{
    char *s = json_dumps(doc, JSON_INDENT(1) | JSON_SORT_KEYS);
    fprintf(stderr, "%s\n", s ? s : "(null)");
    free(s);
}

static inline int spec_value(const char *spec, const char *name, long *v)
{
    size_t nl = strlen(name);
    for (const char *p = spec; p && *p;) {
        while (*p == ' ')
            p++;
        if (!strncmp(p, name, nl) && p[nl] == '=') {
            *v = strtol(p + nl + 1, NULL, 10);
            return 1;
        }
        p = strchr(p, ' ');
    }
    return 0;
}

static inline void spec_names_known(const char *spec, const char *const *names, size_t n,
                                    const char *extra, const char *file, int line)
{
    char tmp[2048];
    snprintf(tmp, sizeof tmp, "%s", spec);
    for (char *s = strtok(tmp, " "); s; s = strtok(NULL, " ")) {
        char *eq = strchr(s, '=');
        ck_assert_msg(eq != NULL, "%s:%d: bad spec item %s", file, line, s);
        *eq = 0;
        int ok = extra && !strcmp(s, extra);
        for (size_t i = 0; i < n && !ok; i++)
            ok = !strcmp(s, names[i]);
        ck_assert_msg(ok, "%s:%d: unknown name %s in spec", file, line, s);
    }
}

/* Asserts every counter of the group: those named in spec ("name=v ...")
 * have their value, all others are 0. For scheme totals (group NULL),
 * "present" is checked too. */
static inline void check_group_(json_t *doc, const char *scheme, const char *group,
                                const char *spec, const char *file, int line)
{
    char err[4096] = "";
    size_t el = 0;
    spec_names_known(spec, CTR_NAMES, N_CTR, group ? NULL : "present", file, line);
    for (int i = 0; i < N_CTR + (group ? 0 : 1); i++) {
        const char *nm = i < N_CTR ? CTR_NAMES[i] : "present";
        long want = 0;
        spec_value(spec, nm, &want);
        long got = get(doc, scheme, group, nm);
        if (got != want && el < sizeof err - 200)
            el += (size_t)snprintf(err + el, sizeof err - el, " %s=%ld (expected %ld)", nm, got,
                                   want);
    }
    if (el) {
        dump_doc(doc);
        ck_abort_msg("%s:%d: scheme %s group %s:%s", file, line, scheme,
                     group ? group : "(totals)", err);
    }
}
#define CHECK_GROUP(doc, scheme, group, spec) \
    check_group_((doc), (scheme), (group), (spec), __FILE__, __LINE__)

/* The same for data_quality. */
static inline void check_dq_(json_t *doc, const char *spec, const char *file, int line)
{
    char err[2048] = "";
    size_t el = 0;
    spec_names_known(spec, DQ_NAMES, N_DQ, NULL, file, line);
    for (int i = 0; i < N_DQ; i++) {
        long want = 0;
        spec_value(spec, DQ_NAMES[i], &want);
        long got = dq(doc, DQ_NAMES[i]);
        if (got != want && el < sizeof err - 200)
            el += (size_t)snprintf(err + el, sizeof err - el, " %s=%ld (expected %ld)",
                                   DQ_NAMES[i], got, want);
    }
    if (el) {
        dump_doc(doc);
        ck_abort_msg("%s:%d: data_quality:%s", file, line, err);
    }
}
#define CHECK_DQ(doc, spec) check_dq_((doc), (spec), __FILE__, __LINE__)

/* want NAN: the rate must be null (or missing with its group). */
static inline void check_rate_(json_t *doc, const char *scheme, const char *group,
                               const char *name, double want, const char *file, int line)
{
    json_t *g = group_of(doc, scheme, group);
    json_t *v = json_object_get(g, name);
    double got = rate(doc, scheme, group, name);
    int ok;
    if (isnan(want))
        ok = !v || json_is_null(v);
    else
        ok = json_is_number(v) && fabs(got - want) < 1e-9;
    if (!ok) {
        dump_doc(doc);
        ck_abort_msg("%s:%d: scheme %s group %s: %s = %s%g, expected %g", file, line, scheme,
                     group ? group : "(totals)", name,
                     !v ? "(missing) " : json_is_null(v) ? "null " : "", got, want);
    }
}
#define CHECK_RATE(doc, scheme, group, name, want) \
    check_rate_((doc), (scheme), (group), (name), (want), __FILE__, __LINE__)
#define RNULL NAN

/* ---- deterministic PRNG (splitmix64) ---- */

static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static inline int64_t rng_range(uint64_t *s, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

#endif
