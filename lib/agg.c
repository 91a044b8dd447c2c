/* agg.c - aggregated indicator state: a map from aggregate keys to sums. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/agg.h"
#include "circmon/decimal.h"
#include "circmon/pool.h"
#include "circmon/timeutil.h"

static const char *const ctr_names[CM_C__COUNT] = {
    [CM_C_EXPECTED] = "expected_departures",
    [CM_C_INTIME] = "in_time_departures",
    [CM_C_LATE] = "late_departures",
    [CM_C_ICO] = "in_country_overstays",
    [CM_C_STATUS] = "status_changes",
    [CM_C_NOSHOW] = "no_shows",
    [CM_C_REENTRY] = "reentries",
    [CM_C_OVERSTAY_DAYS] = "overstay_days",
    [CM_C_BREACHES] = "stay_limit_breaches",
    [CM_C_BREACH_DAYS] = "stay_limit_breach_days",
    [CM_C_ICO_ESUM] = "in_country_overstay_end_day_sum",
};

static const char *const dq_names[CM_DQ__COUNT] = {
    [CM_DQ_INVALID] = "invalid",
    [CM_DQ_DUPLICATES] = "duplicates",
    [CM_DQ_TOO_LATE] = "too_late",
    [CM_DQ_OUT_OF_ORDER] = "out_of_order",
    [CM_DQ_EXITS_WITHOUT_ENTRY] = "exits_without_entry",
    [CM_DQ_ENTRIES_WHILE_PRESENT] = "entries_while_present",
    [CM_DQ_ENTRIES_WITHOUT_PERMIT] = "entries_without_permit",
    [CM_DQ_UNKNOWN_PERMIT] = "unknown_permit",
    [CM_DQ_LATE_ADMIN] = "late_admin_events",
    [CM_DQ_OVER_LIMIT] = "over_limit",
};

const char *cm_ctr_name(enum cm_ctr c)
{
    return (unsigned)c < CM_C__COUNT ? ctr_names[c] : "unknown";
}

const char *cm_dq_name(enum cm_dq q)
{
    return (unsigned)q < CM_DQ__COUNT ? dq_names[q] : "unknown";
}

/* A slot: the key packed in two words (w2 == 0: empty) and its value. */
struct slot {
    uint64_t w1; /* a (32 bits), b (32 bits) */
    uint64_t w2; /* 1 (used), kind, ctr, scheme */
    int64_t v;
};

/* An open-addressing table of slots, linear probing. */
struct table {
    struct slot *s;
    size_t cap; /* power of two */
    size_t n;
};

/* Two tables: the few keys most events touch (counters, presence, data
 * quality) stay in cache apart from the many keyed by a day or a month and a
 * nationality (pending permits, open breaches, the cohorts of each
 * nationality), which each event touches one or two of. */
struct cm_agg {
    struct table t[2];
    int nat_cohorts; /* items also go to (scheme, nat, month): cm_agg_set_nat_cohorts */
};

static struct table *table_of(struct cm_agg *ag, uint64_t w2)
{
    unsigned kind = (unsigned)(w2 >> 48) & 0xff;
    return &ag->t[kind == CM_AK_PEND || kind == CM_AK_BREACH || kind == CM_AK_BDAYS ||
                   kind == CM_AK_NATMONTH];
}

/* Keys are packed: a and b fit 32 bits (numbers of names, months, days
 * clamped by the fold), scheme 32 bits. */
static void pack_key(const struct cm_agg_key *k, uint64_t *w1, uint64_t *w2)
{
    *w1 = (uint64_t)(uint32_t)(int32_t)k->a << 32 | (uint32_t)(int32_t)k->b;
    *w2 = UINT64_C(1) << 63 | (uint64_t)k->kind << 48 | (uint64_t)k->ctr << 40 | (uint32_t)k->scheme;
}

static void unpack_key(const struct slot *sl, struct cm_agg_key *k)
{
    k->a = (int32_t)(uint32_t)(sl->w1 >> 32);
    k->b = (int32_t)(uint32_t)sl->w1;
    k->kind = (uint8_t)(sl->w2 >> 48);
    k->ctr = (uint8_t)(sl->w2 >> 40);
    k->scheme = (int32_t)(uint32_t)sl->w2;
}

static uint64_t hash2(uint64_t w1, uint64_t w2)
{
    uint64_t h = w1 * 0x9E3779B97F4A7C15ULL ^ w2 * 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ULL;
    return h ^ (h >> 29);
}

struct cm_agg *cm_agg_new(void)
{
    struct cm_agg *ag = calloc(1, sizeof(*ag));
    if (!ag)
        return NULL;
    for (int i = 0; i < 2; i++) {
        ag->t[i].cap = 256;
        if (!(ag->t[i].s = calloc(ag->t[i].cap, sizeof(struct slot))))
            return cm_agg_free(ag);
    }
    return ag;
}

struct cm_agg *cm_agg_free(struct cm_agg *ag)
{
    if (!ag)
        return NULL;
    free(ag->t[0].s);
    free(ag->t[1].s);
    free(ag);
    return NULL;
}

size_t cm_agg_count(const struct cm_agg *ag)
{
    return ag->t[0].n + ag->t[1].n;
}

/* The slot of key (w1, w2) whose hash2 is h, or the empty slot it would take. */
static size_t find_h(const struct table *t, uint64_t w1, uint64_t w2, uint64_t h)
{
    size_t mask = t->cap - 1, j = h & mask;
    while (t->s[j].w2 && (t->s[j].w1 != w1 || t->s[j].w2 != w2))
        j = (j + 1) & mask;
    return j;
}

static size_t find(const struct table *t, uint64_t w1, uint64_t w2)
{
    return find_h(t, w1, w2, hash2(w1, w2));
}

static int grow(struct table *t)
{
    size_t oc = t->cap;
    struct slot *os = t->s;
    struct slot *ns = calloc(oc * 2, sizeof(*ns));
    if (!ns)
        return -ENOMEM;
    cm_mem_hint_huge(ns, oc * 2 * sizeof(*ns));
    t->s = ns;
    t->cap = oc * 2;
    for (size_t i = 0; i < oc; i++)
        if (os[i].w2)
            t->s[find(t, os[i].w1, os[i].w2)] = os[i];
    free(os);
    return 0;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void remove_at(struct table *t, size_t j)
{
    size_t mask = t->cap - 1, i = j;
    t->s[j].w2 = 0;
    for (;;) {
        i = (i + 1) & mask;
        if (!t->s[i].w2)
            break;
        size_t home = hash2(t->s[i].w1, t->s[i].w2) & mask;
        /* move s[i] into the hole j when its home is not in (j, i] */
        if ((i > j && (home <= j || home > i)) || (i < j && (home <= j && home > i))) {
            t->s[j] = t->s[i];
            t->s[i].w2 = 0;
            j = i;
        }
    }
    t->n--;
}

/* Adds v to key (w1, w2), whose hash2 is h, in its table t. */
static int add_h(struct table *t, uint64_t w1, uint64_t w2, uint64_t h, int64_t v)
{
    if (!v)
        return 0;
    size_t j = find_h(t, w1, w2, h);
    if (t->s[j].w2) {
        t->s[j].v += v;
        if (!t->s[j].v)
            remove_at(t, j);
        return 0;
    }
    if ((t->n + 1) * 4 > t->cap * 3) {
        if (grow(t) < 0)
            return -ENOMEM;
        j = find_h(t, w1, w2, h);
    }
    t->s[j] = (struct slot){.w1 = w1, .w2 = w2, .v = v};
    t->n++;
    return 0;
}

int cm_agg_add(struct cm_agg *ag, const struct cm_agg_key *k, int64_t v)
{
    uint64_t w1, w2;
    pack_key(k, &w1, &w2);
    return add_h(table_of(ag, w2), w1, w2, hash2(w1, w2), v);
}

int64_t cm_agg_get(const struct cm_agg *ag, const struct cm_agg_key *k)
{
    uint64_t w1, w2;
    pack_key(k, &w1, &w2);
    const struct table *t = table_of((struct cm_agg *)ag, w2);
    size_t j = find(t, w1, w2);
    return t->s[j].w2 ? t->s[j].v : 0;
}

int cm_agg_foreach(const struct cm_agg *ag,
                   int (*fn)(const struct cm_agg_key *k, int64_t v, void *ud), void *ud)
{
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < ag->t[t].cap; i++)
            if (ag->t[t].s[i].w2) {
                struct cm_agg_key k;
                unpack_key(&ag->t[t].s[i], &k);
                int r = fn(&k, ag->t[t].s[i].v, ud);
                if (r)
                    return r;
            }
    return 0;
}

#define ITEM_KEYS 3 /* aggregate keys of one item, at most */

/* The aggregate keys of item it (one to three; the third, the cohort of a
 * nationality, only with natc) and their values; returns how many. */
static int item_keys(const struct cm_item *it, int natc, struct cm_agg_key *k, int64_t *v)
{
    v[0] = v[1] = it->v;
    k[0] = (struct cm_agg_key){.ctr = it->ctr, .scheme = it->scheme};
    switch (it->kind) {
    case CM_IT_CTR:
        k[0].kind = CM_AK_NAT;
        k[0].a = it->nat;
        k[1] = k[0];
        k[1].kind = CM_AK_MONTH;
        k[1].a = it->day;
        if (!natc)
            return 2;
        k[2] = k[0];
        k[2].kind = CM_AK_NATMONTH;
        k[2].b = it->day;
        v[2] = it->v;
        return 3;
    case CM_IT_PEND:
        k[0].kind = CM_AK_PEND;
        k[0].a = it->nat;
        k[0].b = it->day;
        return 1;
    case CM_IT_BREACH:
        k[0].kind = CM_AK_BREACH;
        k[0].ctr = 0;
        k[0].a = it->nat;
        k[0].b = it->day;
        return 1;
    case CM_IT_PRESENT:
        k[0].kind = CM_AK_PRESENT;
        k[0].ctr = 0;
        return 1;
    case CM_IT_DQ:
        k[0].kind = CM_AK_DQ;
        k[0].scheme = 0;
        return 1;
    case CM_IT_BDAYS:
        k[0].kind = CM_AK_BDAYS;
        k[0].ctr = 0;
        k[0].a = it->nat;
        k[0].b = it->day;
        k[1] = k[0];
        k[1].b = (int64_t)it->day2 + 1;
        v[1] = -it->v;
        return 2;
    default:
        return 0;
    }
}

#define ITEM_RUN 64 /* items whose slots are fetched at once */

void cm_agg_set_nat_cohorts(struct cm_agg *ag, int on)
{
    ag->nat_cohorts = on != 0;
}

int cm_agg_add_items(struct cm_agg *ag, const struct cm_item *it, size_t n)
{
    /* The keys of a run of items first, asking for their slots, then the
     * sums: the slots of a large aggregate arrive while others are added. */
    uint64_t w1[ITEM_KEYS * ITEM_RUN], w2[ITEM_KEYS * ITEM_RUN], h[ITEM_KEYS * ITEM_RUN];
    int64_t v[ITEM_KEYS * ITEM_RUN];
    struct table *t[ITEM_KEYS * ITEM_RUN];
    for (size_t base = 0; base < n; base += ITEM_RUN) {
        size_t m = n - base < ITEM_RUN ? n - base : ITEM_RUN, nk = 0;
        for (size_t i = 0; i < m; i++) {
            struct cm_agg_key k[ITEM_KEYS];
            int64_t kv[ITEM_KEYS];
            int c = item_keys(&it[base + i], ag->nat_cohorts, k, kv);
            for (int j = 0; j < c; j++, nk++) {
                pack_key(&k[j], &w1[nk], &w2[nk]);
                v[nk] = kv[j];
                h[nk] = hash2(w1[nk], w2[nk]);
                t[nk] = table_of(ag, w2[nk]);
                __builtin_prefetch(&t[nk]->s[h[nk] & (t[nk]->cap - 1)]);
            }
        }
        for (size_t j = 0; j < nk; j++)
            if (add_h(t[j], w1[j], w2[j], h[j], v[j]) < 0)
                return -ENOMEM;
    }
    return 0;
}

/* Field syntax (strings with their length, so any byte may occur in them):
 *   n:<counter>:<len>:<scheme><nat>        per nationality
 *   m:<counter>:<YYYY-MM>:<scheme>         per cohort month
 *   c:<counter>:<YYYY-MM>:<len>:<scheme><nat>  per nationality and cohort month
 *   p:<class>:<E>:<len>:<scheme><nat>      permit not yet due, E its end day
 *   b:<day>:<len>:<scheme><nat>            open stay-limit breach from day
 *   d:<day>:<len>:<scheme><nat>            change of closed breaches from day (BDAYS)
 *   r:<scheme>                             present
 *   q:<counter>                            data quality */
int cm_agg_key_format(const struct cm_agg_key *k, const struct cm_names *nm, char *buf, size_t cap)
{
    size_t sl = 0, nl = 0;
    const char *s = "", *nat = "";
    char mon[16];
    if (k->kind != CM_AK_DQ) {
        s = cm_names_get(nm, k->scheme, &sl);
        if (!s)
            return -ENOENT;
    }
    if (k->kind == CM_AK_NAT || k->kind == CM_AK_PEND || k->kind == CM_AK_BREACH ||
        k->kind == CM_AK_BDAYS || k->kind == CM_AK_NATMONTH) {
        nat = cm_names_get(nm, (int32_t)k->a, &nl);
        if (!nat)
            return -ENOENT;
    }
    int h;
    switch (k->kind) {
    case CM_AK_NAT:
        h = snprintf(buf, cap, "n:%s:%zu:", cm_ctr_name(k->ctr), sl);
        break;
    case CM_AK_MONTH:
        cm_month_str((int32_t)k->a, mon);
        h = snprintf(buf, cap, "m:%s:%s:", cm_ctr_name(k->ctr), mon);
        break;
    case CM_AK_NATMONTH:
        if (k->b < INT32_MIN || k->b > INT32_MAX)
            return -EINVAL;
        cm_month_str((int32_t)k->b, mon);
        h = snprintf(buf, cap, "c:%s:%s:%zu:", cm_ctr_name(k->ctr), mon, sl);
        break;
    case CM_AK_PEND:
        h = snprintf(buf, cap, "p:%u:%" PRId64 ":%zu:", (unsigned)k->ctr, k->b, sl);
        break;
    case CM_AK_BREACH:
        h = snprintf(buf, cap, "b:%" PRId64 ":%zu:", k->b, sl);
        break;
    case CM_AK_BDAYS:
        h = snprintf(buf, cap, "d:%" PRId64 ":%zu:", k->b, sl);
        break;
    case CM_AK_PRESENT:
        h = snprintf(buf, cap, "r:");
        break;
    case CM_AK_DQ:
        h = snprintf(buf, cap, "q:%s", cm_dq_name(k->ctr));
        return h;
    default:
        return -EINVAL;
    }
    if (h < 0)
        return -EINVAL;
    size_t need = (size_t)h + sl + nl;
    if (need < cap) {
        memcpy(buf + h, s, sl);
        memcpy(buf + h + sl, nat, nl);
        buf[need] = '\0';
    }
    return (int)need;
}

static int lookup_name(const char *const *names, int n, const char *s, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) == len && !memcmp(names[i], s, len))
            return i;
    return -1;
}

/* Reads a decimal integer up to the next ':'; advances *p past the ':'. */
static int read_int(const char **p, const char *end, int64_t *out)
{
    const char *q = memchr(*p, ':', (size_t)(end - *p));
    if (!q || cm_decimal_i64(*p, (size_t)(q - *p), out))
        return -EINVAL;
    *p = q + 1;
    return 0;
}

/* Reads a word up to the next ':'; advances *p past the ':'. */
static int read_word(const char **p, const char *end, const char **w, size_t *wl)
{
    const char *c = memchr(*p, ':', (size_t)(end - *p));
    if (!c)
        return -EINVAL;
    *w = *p;
    *wl = (size_t)(c - *p);
    *p = c + 1;
    return 0;
}

static int intern2(struct cm_names *nm, const char *p, const char *end, int64_t sl,
                   struct cm_agg_key *k, int with_nat)
{
    if (sl < 0 || sl > end - p)
        return -EINVAL;
    int32_t s = cm_names_intern(nm, p, (size_t)sl);
    if (s < 0)
        return s;
    k->scheme = s;
    if (with_nat) {
        int32_t n = cm_names_intern(nm, p + sl, (size_t)(end - p - sl));
        if (n < 0)
            return n;
        k->a = n;
    } else if (p + sl != end) {
        return -EINVAL;
    }
    return 0;
}

int cm_agg_key_parse(const char *s, size_t len, struct cm_names *nm, struct cm_agg_key *k)
{
    const char *p = s + 2, *end = s + len, *w;
    size_t wl;
    int64_t x, sl;
    int c;
    memset(k, 0, sizeof(*k));
    if (len < 2 || s[1] != ':')
        return -EINVAL;
    switch (s[0]) {
    case 'n':
        k->kind = CM_AK_NAT;
        if (read_word(&p, end, &w, &wl) < 0 || (c = lookup_name(ctr_names, CM_C__COUNT, w, wl)) < 0 ||
            read_int(&p, end, &sl) < 0)
            return -EINVAL;
        k->ctr = (uint8_t)c;
        return intern2(nm, p, end, sl, k, 1);
    case 'm': {
        char mon[16];
        int32_t mi;
        k->kind = CM_AK_MONTH;
        if (read_word(&p, end, &w, &wl) < 0 || (c = lookup_name(ctr_names, CM_C__COUNT, w, wl)) < 0)
            return -EINVAL;
        k->ctr = (uint8_t)c;
        if (read_word(&p, end, &w, &wl) < 0 || wl >= sizeof(mon))
            return -EINVAL;
        memcpy(mon, w, wl);
        mon[wl] = '\0';
        if (cm_month_parse(mon, &mi) < 0)
            return -EINVAL;
        k->a = mi;
        int32_t sc = cm_names_intern(nm, p, (size_t)(end - p));
        if (sc < 0)
            return sc;
        k->scheme = sc;
        return 0;
    }
    case 'c': {
        char mon[16];
        int32_t mi;
        k->kind = CM_AK_NATMONTH;
        if (read_word(&p, end, &w, &wl) < 0 || (c = lookup_name(ctr_names, CM_C__COUNT, w, wl)) < 0)
            return -EINVAL;
        k->ctr = (uint8_t)c;
        if (read_word(&p, end, &w, &wl) < 0 || wl >= sizeof(mon))
            return -EINVAL;
        memcpy(mon, w, wl);
        mon[wl] = '\0';
        if (cm_month_parse(mon, &mi) < 0 || read_int(&p, end, &sl) < 0)
            return -EINVAL;
        k->b = mi;
        return intern2(nm, p, end, sl, k, 1);
    }
    case 'p':
        k->kind = CM_AK_PEND;
        if (read_int(&p, end, &x) < 0 || x < 0 || x >= CM_P__COUNT || read_int(&p, end, &k->b) < 0 ||
            k->b < INT32_MIN || k->b > INT32_MAX || read_int(&p, end, &sl) < 0)
            return -EINVAL;
        k->ctr = (uint8_t)x;
        return intern2(nm, p, end, sl, k, 1);
    case 'b':
    case 'd':
        k->kind = s[0] == 'b' ? CM_AK_BREACH : CM_AK_BDAYS;
        if (read_int(&p, end, &k->b) < 0 || k->b < INT32_MIN || k->b > INT32_MAX ||
            read_int(&p, end, &sl) < 0)
            return -EINVAL;
        return intern2(nm, p, end, sl, k, 1);
    case 'r': {
        k->kind = CM_AK_PRESENT;
        int32_t sc = cm_names_intern(nm, p, (size_t)(end - p));
        if (sc < 0)
            return sc;
        k->scheme = sc;
        return 0;
    }
    case 'q':
        k->kind = CM_AK_DQ;
        if ((c = lookup_name(dq_names, CM_DQ__COUNT, p, (size_t)(end - p))) < 0)
            return -EINVAL;
        k->ctr = (uint8_t)c;
        return 0;
    default:
        return -EINVAL;
    }
}
