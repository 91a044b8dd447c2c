/* fold.c - the pure fold: one arriving event into one migrant's state.
 *
 * A migrant's state is a snapshot (the fold of its accepted events older than
 * the reorder window) plus the accepted events of the window, in order of
 * occurrence. Every arrival folds the window again on a scratch copy of the
 * snapshot, before and after the event, and emits the difference of the two
 * contributions (agg.h): so a late event changes the figures exactly as if it
 * had arrived in order, and nothing is counted twice. Events that leave the
 * window are folded into the snapshot for good; what can no longer change a
 * figure is then dropped from it (its contribution stays in the aggregate). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/fold.h"
#include "circmon/pool.h"
#include "circmon/timeutil.h"
#include "circmon/v1/state.pb-c.h"

#define RING 32                   /* accepted event ids always remembered */
#define DAY_LIM (1 << 28)         /* days are clamped to +-735,000 years */
#define OPEN_END INT32_MAX        /* end of a run still open */
#define NO_BREACH INT32_MAX       /* no breach day found (yet) */
#define REENTRY_DAYS 365

/* permit flags */
enum {
    PF_USED = 1 << 0,     /* a stay began on it */
    PF_ADJUSTED = 1 << 1, /* transfer or status change ended its stay */
    PF_REVOKED = 1 << 2,
    PF_REENTRY = 1 << 3,  /* an Entry on another permit of the scheme in (x, x+365] */
    PF_OPEN = 1 << 4,     /* the migrant is in a stay on it */
    PF_EXITED = 1 << 5,   /* its last stay ended with an Exit, on last_exit */
    PF_PRUNED = 1 << 6,   /* packed form only: a pruned permit, of which only the id is kept */
};

enum { M_ABSENT = 0, M_ON_PERMIT, M_NO_PERMIT, M_EXEMPT };

/* fold-made data-quality counters */
enum { FQ_EXIT_NO_ENTRY, FQ_ENTRY_PRESENT, FQ_ENTRY_NO_PERMIT, FQ_UNKNOWN, FQ_LATE_ADMIN, FQ__N };
static const uint8_t fq_dq[FQ__N] = {CM_DQ_EXITS_WITHOUT_ENTRY, CM_DQ_ENTRIES_WHILE_PRESENT,
                                     CM_DQ_ENTRIES_WITHOUT_PERMIT, CM_DQ_UNKNOWN_PERMIT,
                                     CM_DQ_LATE_ADMIN};

/* A permit id: up to 22 bytes inline (b[23] == 0), longer ones in a
 * malloc'd string whose pointer is in b (b[23] == 1). */
struct pid {
    char b[24];
};

static const char *pid_str(const struct pid *p)
{
    if (!p->b[23])
        return p->b;
    char *s;
    memcpy(&s, p->b, sizeof(s));
    return s;
}

static int pid_set(struct cm_pool *pl, struct pid *p, const char *s)
{
    size_t l = strlen(s);
    memset(p->b, 0, sizeof(p->b));
    if (l < sizeof(p->b) - 1) {
        memcpy(p->b, s, l);
        return 0;
    }
    char *d = cm_pool_alloc(pl, l + 1);
    if (!d)
        return -ENOMEM;
    memcpy(d, s, l + 1);
    memcpy(p->b, &d, sizeof(d));
    p->b[23] = 1;
    return 0;
}

/* Frees what p holds and leaves it empty. */
static void pid_free(struct cm_pool *pl, struct pid *p)
{
    if (p->b[23]) {
        const char *s = pid_str(p);
        cm_pool_release(pl, (char *)s, strlen(s) + 1);
    }
    memset(p->b, 0, sizeof(p->b));
}

struct permit {
    struct pid id; /* owned by the snapshot; a copy (not owned) in scratch */
    int32_t scheme, nat;
    int32_t vf, end, last_exit;
    uint8_t flags, kind;
};

/* A run: consecutive days present on permits of one stay-limited scheme.
 * Days [start, chk] are known to hold no breach day; brk is the first breach
 * day when found (breach days are a suffix of a run: the count of present
 * days in the window never falls while the migrant stays present). */
struct run {
    int32_t sc; /* index into fstate.sc */
    int32_t start, end, chk, brk;
};

struct sch {
    int32_t scheme, nat; /* nat: of the latest permit granted in the scheme */
};

struct fstate {
    uint8_t mode;
    int32_t cur;
    struct permit *p;
    uint32_t np, capp;
    struct sch *sc;
    uint32_t nsc, capsc;
    struct run *r;
    uint32_t nr, capr;
    int32_t dq[FQ__N];
    char *tombs; /* ids of pruned permits, each NUL-terminated (snapshot only) */
    uint32_t ltombs;
};

/* An accepted event in the reorder window, with what the fold needs of it. */
struct wev {
    uint64_t idh;
    int64_t t;
    struct pid pid; /* owned; emptied once moved into the snapshot */
    int32_t scheme, nat;
    int32_t vf, end, eff;
    uint8_t type, kind, status;
}; /* 64 bytes: one cache line */

struct cm_mstate {
    int64_t latest; /* L: latest occurred_at accepted, 0 = none */
    struct wev *w;
    uint64_t *ring; /* ids of the last RING accepted events; grows with them */
    uint32_t nw, capw;
    uint8_t nring, ringpos, capring;
    struct fstate snap;
};

struct sinfo {
    int8_t set;
    int32_t grace, n, w;
};

struct cm_fold_ctx {
    const struct cm_config *cfg;
    struct cm_names *nm;
    struct cm_pool *pool; /* every migrant state, and the scratch states below */
    struct sinfo *si; /* by name number */
    size_t nsi;
    int32_t nat_xxx; /* ICAO's "unspecified nationality", for grants without one */
    struct fstate ta, tb; /* scratch: snapshot + window, before and after */
    struct cm_item *ca, *cb;
    size_t na, nb, capa, capb;
    /* packing: scratch reused by every call */
    void *pk;
    size_t pkcap;
    /* unpacking: protobuf-c allocates from this arena, reset by every call */
    ProtobufCAllocator alloc;
    unsigned char *arena;
    size_t arena_used, arena_cap;
    void **bigs;
    size_t nbigs, capbigs;
};

static void *ua_alloc(void *ud, size_t size)
{
    struct cm_fold_ctx *fc = ud;
    size_t a = (size + 15) & ~(size_t)15;
    if (a >= size && a <= fc->arena_cap - fc->arena_used) {
        void *p = fc->arena + fc->arena_used;
        fc->arena_used += a;
        return p;
    }
    if (fc->nbigs == fc->capbigs) {
        size_t nc = fc->capbigs ? fc->capbigs * 2 : 16;
        void **nb = realloc(fc->bigs, nc * sizeof(*nb));
        if (!nb)
            return NULL;
        fc->bigs = nb;
        fc->capbigs = nc;
    }
    void *p = malloc(size);
    if (p)
        fc->bigs[fc->nbigs++] = p;
    return p;
}

static void ua_free(void *ud, void *p)
{
    (void)ud;
    (void)p; /* everything goes at the next reset */
}

static void ua_reset(struct cm_fold_ctx *fc)
{
    for (size_t i = 0; i < fc->nbigs; i++)
        free(fc->bigs[i]);
    fc->nbigs = 0;
    fc->arena_used = 0;
}

/* ---- small helpers ---- */

static int32_t clamp_day(int64_t t)
{
    int64_t d = cm_day(t);
    if (d > DAY_LIM)
        return DAY_LIM;
    if (d < -DAY_LIM)
        return -DAY_LIM;
    return (int32_t)d;
}

/* Grows array *v of *cap elements (pool blocks) to room for need. */
static int grow(struct cm_pool *pl, void **v, uint32_t *cap, uint32_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    uint32_t nc = *cap ? *cap : 1; /* most snapshots hold one permit */
    while (nc < need)
        nc *= 2;
    void *nv = cm_pool_realloc(pl, *v, (size_t)*cap * size, (size_t)nc * size);
    if (!nv)
        return -ENOMEM;
    *v = nv;
    *cap = nc;
    return 0;
}

static const struct sinfo *scheme_info(struct cm_fold_ctx *fc, int32_t scheme)
{
    if ((size_t)scheme >= fc->nsi) {
        size_t nn = fc->nsi ? fc->nsi : 16;
        while (nn <= (size_t)scheme)
            nn *= 2;
        struct sinfo *ns = realloc(fc->si, nn * sizeof(*ns));
        if (!ns)
            return NULL;
        memset(ns + fc->nsi, 0, (nn - fc->nsi) * sizeof(*ns));
        fc->si = ns;
        fc->nsi = nn;
    }
    struct sinfo *s = &fc->si[scheme];
    if (!s->set) {
        const struct cm_scheme_conf *c = cm_config_scheme(fc->cfg, cm_names_get(fc->nm, scheme, NULL));
        s->grace = c->grace_days;
        s->n = c->stay_n;
        s->w = c->stay_w;
        s->set = 1;
    }
    return s;
}

/* Grace and stay limit of a scheme already seen (interned and looked up). */
static const struct sinfo *si_of(const struct cm_fold_ctx *fc, int32_t scheme)
{
    return &fc->si[scheme];
}

static int limited(const struct sinfo *s)
{
    return s->n > 0 && s->w > 0;
}

static void fstate_free(struct cm_pool *pl, struct fstate *fs, int own)
{
    if (own) {
        for (uint32_t i = 0; i < fs->np; i++)
            pid_free(pl, &fs->p[i].id);
        cm_pool_release(pl, fs->tombs, fs->ltombs);
    }
    cm_pool_release(pl, fs->p, (size_t)fs->capp * sizeof(*fs->p));
    cm_pool_release(pl, fs->sc, (size_t)fs->capsc * sizeof(*fs->sc));
    cm_pool_release(pl, fs->r, (size_t)fs->capr * sizeof(*fs->r));
    memset(fs, 0, sizeof(*fs));
}

/* Copies src into dst (dst's arrays reused; ids borrowed). */
static int fstate_copy(struct cm_pool *pl, struct fstate *dst, const struct fstate *src)
{
    if (grow(pl, (void **)&dst->p, &dst->capp, src->np, sizeof(*src->p)) < 0 ||
        grow(pl, (void **)&dst->sc, &dst->capsc, src->nsc, sizeof(*src->sc)) < 0 ||
        grow(pl, (void **)&dst->r, &dst->capr, src->nr, sizeof(*src->r)) < 0)
        return -ENOMEM;
    if (src->np)
        memcpy(dst->p, src->p, src->np * sizeof(*src->p));
    if (src->nsc)
        memcpy(dst->sc, src->sc, src->nsc * sizeof(*src->sc));
    if (src->nr)
        memcpy(dst->r, src->r, src->nr * sizeof(*src->r));
    dst->np = src->np;
    dst->nsc = src->nsc;
    dst->nr = src->nr;
    dst->mode = src->mode;
    dst->cur = src->cur;
    dst->tombs = src->tombs; /* borrowed */
    dst->ltombs = src->ltombs;
    memcpy(dst->dq, src->dq, sizeof(dst->dq));
    return 0;
}

static int32_t find_sch(const struct fstate *fs, int32_t scheme)
{
    for (uint32_t i = 0; i < fs->nsc; i++)
        if (fs->sc[i].scheme == scheme)
            return (int32_t)i;
    return -1;
}

static int32_t last_run(const struct fstate *fs, int32_t sc)
{
    for (uint32_t i = fs->nr; i-- > 0;)
        if (fs->r[i].sc == sc)
            return (int32_t)i;
    return -1;
}

/* ---- the fold of one event (INDICATORS.md section 2, the table) ---- */

static int stay_begin(struct cm_fold_ctx *fc, struct fstate *fs, int32_t pi, int32_t d)
{
    struct permit *p = &fs->p[pi];
    p->flags = (uint8_t)((p->flags | PF_USED | PF_OPEN) & ~(PF_EXITED | PF_REENTRY));
    fs->mode = M_ON_PERMIT;
    fs->cur = pi;
    if (!limited(si_of(fc, p->scheme)))
        return 0;
    int32_t sc = find_sch(fs, p->scheme);
    if (sc < 0)
        return 0; /* cannot happen: the grant made it */
    int32_t ri = last_run(fs, sc);
    if (ri >= 0 && (fs->r[ri].end == OPEN_END || d <= fs->r[ri].end + 1)) {
        fs->r[ri].end = OPEN_END;
        return 0;
    }
    if (grow(fc->pool, (void **)&fs->r, &fs->capr, fs->nr + 1, sizeof(*fs->r)) < 0)
        return -ENOMEM;
    fs->r[fs->nr++] = (struct run){.sc = sc, .start = d, .end = OPEN_END, .chk = d - 1, .brk = NO_BREACH};
    return 0;
}

static void stay_end(struct cm_fold_ctx *fc, struct fstate *fs, int32_t pi, int32_t d)
{
    struct permit *p = &fs->p[pi];
    p->flags &= (uint8_t)~PF_OPEN;
    if (!limited(si_of(fc, p->scheme)))
        return;
    int32_t sc = find_sch(fs, p->scheme);
    int32_t ri = sc >= 0 ? last_run(fs, sc) : -1;
    if (ri >= 0 && fs->r[ri].end == OPEN_END)
        fs->r[ri].end = d;
}

static int32_t find_permit(const struct fstate *fs, const char *id)
{
    for (uint32_t i = 0; i < fs->np; i++)
        if (!strcmp(pid_str(&fs->p[i].id), id))
            return (int32_t)i;
    return -1;
}

/* True when id is the id of a pruned permit. */
static int is_tomb(const struct fstate *fs, const char *id)
{
    for (uint32_t o = 0; o < fs->ltombs; o += (uint32_t)strlen(fs->tombs + o) + 1)
        if (!strcmp(fs->tombs + o, id))
            return 1;
    return 0;
}

/* Records id as the id of a pruned permit. Returns 0 or -ENOMEM. */
static int add_tomb(struct cm_pool *pl, struct fstate *fs, const char *id)
{
    size_t l = strlen(id) + 1;
    char *nt = cm_pool_realloc(pl, fs->tombs, fs->ltombs, fs->ltombs + l);
    if (!nt)
        return -ENOMEM;
    memcpy(nt + fs->ltombs, id, l);
    fs->tombs = nt;
    fs->ltombs += (uint32_t)l;
    return 0;
}

/* Applies one event to fs. With own, the permit of a grant takes ownership
 * of the event's permit id. Returns 0 or -ENOMEM (fs then unusable). */
static int apply(struct cm_fold_ctx *fc, struct fstate *fs, struct wev *e, int own)
{
    int32_t d = clamp_day(e->t);
    switch (e->type) {
    case CM_EV_GRANTED: {
        if (grow(fc->pool, (void **)&fs->p, &fs->capp, fs->np + 1, sizeof(*fs->p)) < 0)
            return -ENOMEM;
        const struct sinfo *qs = si_of(fc, e->scheme);
        if (limited(qs)) {
            int32_t sc = find_sch(fs, e->scheme);
            if (sc < 0) {
                if (grow(fc->pool, (void **)&fs->sc, &fs->capsc, fs->nsc + 1, sizeof(*fs->sc)) < 0)
                    return -ENOMEM;
                sc = (int32_t)fs->nsc++;
                fs->sc[sc].scheme = e->scheme;
            }
            fs->sc[sc].nat = e->nat;
        }
        int32_t qi = (int32_t)fs->np++;
        struct permit *q = &fs->p[qi];
        *q = (struct permit){.id = e->pid, .scheme = e->scheme, .nat = e->nat,
                             .vf = e->vf, .end = e->end, .kind = e->kind};
        if (own)
            memset(&e->pid, 0, sizeof(e->pid)); /* moved */
        if (fs->mode == M_ON_PERMIT) {
            struct permit *p = &fs->p[fs->cur];
            if (!(p->flags & PF_ADJUSTED) &&
                (int64_t)q->vf <= (int64_t)p->end + si_of(fc, p->scheme)->grace + 1) {
                p->flags |= PF_ADJUSTED; /* transfer */
                stay_end(fc, fs, fs->cur, d);
                return stay_begin(fc, fs, qi, d);
            }
        } else if (fs->mode == M_NO_PERMIT && q->vf <= d && d <= q->end) {
            return stay_begin(fc, fs, qi, d); /* in-country grant */
        }
        return 0;
    }
    case CM_EV_ENTRY: {
        if (fs->mode != M_ABSENT) {
            fs->dq[FQ_ENTRY_PRESENT]++;
            return 0;
        }
        for (uint32_t i = fs->np; i-- > 0;) {
            struct permit *q = &fs->p[i];
            if (q->vf > d || d > q->end)
                continue;
            for (uint32_t j = 0; j < fs->np; j++) {
                struct permit *x = &fs->p[j];
                if (j != i && x->scheme == q->scheme &&
                    (x->flags & PF_EXITED) && x->last_exit < d && d <= x->last_exit + REENTRY_DAYS)
                    x->flags |= PF_REENTRY;
            }
            return stay_begin(fc, fs, (int32_t)i, d);
        }
        fs->dq[FQ_ENTRY_NO_PERMIT]++;
        fs->mode = M_NO_PERMIT;
        return 0;
    }
    case CM_EV_EXIT:
        if (fs->mode == M_ABSENT) {
            fs->dq[FQ_EXIT_NO_ENTRY]++;
            return 0;
        }
        if (fs->mode == M_ON_PERMIT) {
            struct permit *p = &fs->p[fs->cur];
            stay_end(fc, fs, fs->cur, d);
            p->flags |= PF_EXITED;
            p->last_exit = d;
        }
        fs->mode = M_ABSENT;
        return 0;
    case CM_EV_EXTENDED:
    case CM_EV_REVOKED: {
        int32_t pi = find_permit(fs, pid_str(&e->pid));
        if (pi < 0) {
            /* a pruned permit ended its grace before any event we may still fold */
            fs->dq[is_tomb(fs, pid_str(&e->pid)) ? FQ_LATE_ADMIN : FQ_UNKNOWN]++;
            return 0;
        }
        struct permit *p = &fs->p[pi];
        if ((int64_t)d > (int64_t)p->end + si_of(fc, p->scheme)->grace) {
            fs->dq[FQ_LATE_ADMIN]++;
            return 0;
        }
        if (e->type == CM_EV_EXTENDED) {
            p->end = e->end;
        } else {
            if (e->eff < p->end)
                p->end = e->eff;
            p->flags |= PF_REVOKED;
        }
        return 0;
    }
    case CM_EV_STATUS:
        if (fs->mode == M_ON_PERMIT) {
            fs->p[fs->cur].flags |= PF_ADJUSTED;
            stay_end(fc, fs, fs->cur, d);
            fs->mode = M_EXEMPT;
        } else if (fs->mode == M_NO_PERMIT) {
            fs->mode = M_EXEMPT;
        }
        return 0;
    default:
        return 0;
    }
}

/* ---- the stay limit ---- */

/* Present days of scheme sc in [from, to]. */
static int64_t present_days(const struct fstate *fs, int32_t sc, int64_t from, int64_t to)
{
    int64_t n = 0;
    for (uint32_t i = 0; i < fs->nr; i++) {
        if (fs->r[i].sc != sc)
            continue;
        int64_t a = fs->r[i].start > from ? fs->r[i].start : from;
        int64_t b = fs->r[i].end < to ? fs->r[i].end : to;
        if (b >= a)
            n += b - a + 1;
    }
    return n;
}

/* Scans run ri for its first breach day up to day `upto` (and never beyond
 * the day by which one must have come), updating chk and brk. */
static void scan_run(const struct fstate *fs, struct run *r, const struct sinfo *s, int64_t upto)
{
    if (r->brk != NO_BREACH || s->n >= s->w)
        return;
    int64_t last = (int64_t)r->start + s->n; /* f(D) >= min(D - start + 1, W) */
    if (r->end < last)
        last = r->end;
    if (upto < last)
        last = upto;
    int64_t lo = (int64_t)r->chk + 1, hi = last;
    if (lo > hi)
        return;
    /* f is nondecreasing over the run: binary search for its first day > N */
    if (present_days(fs, r->sc, hi - s->w + 1, hi) <= s->n) {
        r->chk = (int32_t)last;
        return;
    }
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (present_days(fs, r->sc, mid - s->w + 1, mid) > s->n)
            hi = mid;
        else
            lo = mid + 1;
    }
    r->brk = (int32_t)lo;
    r->chk = (int32_t)(lo - 1);
}

/* ---- contributions ---- */

static int push(struct cm_item **v, size_t *n, size_t *cap, struct cm_item it)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        struct cm_item *nv = realloc(*v, nc * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = it;
    return 0;
}

#define PUSH(...)                                                                                  \
    do {                                                                                           \
        if (push(v, n, cap, (struct cm_item){__VA_ARGS__}) < 0)                                    \
            return -ENOMEM;                                                                        \
    } while (0)

static int ctr(struct cm_item **v, size_t *n, size_t *cap, int32_t scheme, int32_t nat, int32_t month,
               int c, int64_t val)
{
    PUSH(.kind = CM_IT_CTR, .ctr = (uint8_t)c, .scheme = scheme, .nat = nat, .day = month, .v = val);
    return 0;
}

/* Breach days [a, b] of a closed run, month by month. */
static int breach_days(struct cm_item **v, size_t *n, size_t *cap, int32_t scheme, int32_t nat,
                       int64_t a, int64_t b)
{
    while (a <= b) {
        int32_t m = cm_month_of_day(a);
        int64_t next = cm_month_first_day(m + 1);
        int64_t to = next - 1 < b ? next - 1 : b;
        if (ctr(v, n, cap, scheme, nat, m, CM_C_BREACH_DAYS, to - a + 1) < 0)
            return -ENOMEM;
        a = to + 1;
    }
    return 0;
}

/* Whether permit p may not be due yet as of any time after L (day dl). */
static int pending(const struct cm_fold_ctx *fc, const struct permit *p, int64_t dl)
{
    return (int64_t)p->end + si_of(fc, p->scheme)->grace + 1 > dl;
}

/* The contribution of one permit, given day(L) dl. Permits are counted as if
 * due; those that may not be due yet are also listed as pending, for the
 * read side to take back when they are not due as of its time. */
static int contrib_permit(struct cm_fold_ctx *fc, const struct permit *p, int64_t dl,
                          struct cm_item **v, size_t *n, size_t *cap)
{
    int64_t grace = si_of(fc, p->scheme)->grace, end = p->end;
    int32_t mon = cm_month_of_day(end);
    int pclass;
    if (!(p->flags & PF_USED)) {
        if (p->flags & PF_REVOKED)
            return 0;
        pclass = CM_P_NOSHOW;
        if (ctr(v, n, cap, p->scheme, p->nat, mon, CM_C_NOSHOW, 1) < 0)
            return -ENOMEM;
    } else {
        if (ctr(v, n, cap, p->scheme, p->nat, mon, CM_C_EXPECTED, 1) < 0)
            return -ENOMEM;
        if (p->flags & PF_ADJUSTED) {
            pclass = CM_P_STATUS;
            if (ctr(v, n, cap, p->scheme, p->nat, mon, CM_C_STATUS, 1) < 0)
                return -ENOMEM;
        } else if (!(p->flags & PF_EXITED)) {
            pclass = CM_P_ICO;
            if (ctr(v, n, cap, p->scheme, p->nat, mon, CM_C_ICO, 1) < 0 ||
                ctr(v, n, cap, p->scheme, p->nat, mon, CM_C_ICO_ESUM, end) < 0)
                return -ENOMEM;
        } else if (p->last_exit > end + grace) {
            /* late: due for sure, the exit came after E + grace */
            if (ctr(v, n, cap, p->scheme, p->nat, mon, CM_C_LATE, 1) < 0 ||
                ctr(v, n, cap, p->scheme, p->nat, mon, CM_C_OVERSTAY_DAYS, p->last_exit - end) < 0)
                return -ENOMEM;
            return 0;
        } else {
            int re = (p->flags & PF_REENTRY) != 0;
            pclass = re ? CM_P_INTIME_REENTRY : CM_P_INTIME;
            if (ctr(v, n, cap, p->scheme, p->nat, mon, CM_C_INTIME, 1) < 0 ||
                (re && ctr(v, n, cap, p->scheme, p->nat, mon, CM_C_REENTRY, 1) < 0))
                return -ENOMEM;
        }
    }
    if (end + grace + 1 > dl)
        PUSH(.kind = CM_IT_PEND, .ctr = (uint8_t)pclass, .scheme = p->scheme, .nat = p->nat,
             .day = end, .v = 1);
    return 0;
}

/* The contribution of the stay-limit runs: closed breaches by month, open
 * ones as breach entries resolved when read. */
static int contrib_runs(struct cm_fold_ctx *fc, struct fstate *fs, struct cm_item **v, size_t *n,
                        size_t *cap)
{
    for (uint32_t i = 0; i < fs->nr; i++) {
        struct run *r = &fs->r[i];
        const struct sch *sc = &fs->sc[r->sc];
        const struct sinfo *s = si_of(fc, sc->scheme);
        scan_run(fs, r, s, INT64_MAX);
        if (r->brk == NO_BREACH)
            continue;
        if (r->end == OPEN_END) {
            PUSH(.kind = CM_IT_BREACH, .scheme = sc->scheme, .nat = sc->nat, .day = r->brk, .v = 1);
        } else if (ctr(v, n, cap, sc->scheme, sc->nat, cm_month_of_day(r->brk), CM_C_BREACHES, 1) < 0 ||
                   breach_days(v, n, cap, sc->scheme, sc->nat, r->brk, r->end) < 0) {
            return -ENOMEM;
        }
    }
    return 0;
}

static int same_permit(const struct permit *a, const struct permit *b)
{
    return a->scheme == b->scheme && a->nat == b->nat && a->vf == b->vf && a->end == b->end &&
           a->last_exit == b->last_exit && a->flags == b->flags &&
           !strcmp(pid_str(&a->id), pid_str(&b->id));
}

static int same_runs(const struct fstate *a, const struct fstate *b)
{
    if (a->nr != b->nr || a->nsc != b->nsc)
        return 0;
    for (uint32_t i = 0; i < a->nsc; i++)
        if (a->sc[i].scheme != b->sc[i].scheme || a->sc[i].nat != b->sc[i].nat)
            return 0;
    for (uint32_t i = 0; i < a->nr; i++)
        if (a->r[i].sc != b->r[i].sc || a->r[i].start != b->r[i].start || a->r[i].end != b->r[i].end ||
            a->r[i].chk != b->r[i].chk || a->r[i].brk != b->r[i].brk)
            return 0;
    return 1;
}

/* The migrant's contributions before (fold a, latest occurred_at la) and
 * after (b, lb), into fc->ca and fc->cb, leaving out the parts that are the
 * same on both sides (they cancel). */
static int contrib_pair(struct cm_fold_ctx *fc, struct fstate *a, int64_t la, struct fstate *b,
                        int64_t lb)
{
    int64_t da = cm_day(la), db = cm_day(lb);
    struct cm_item **va = &fc->ca, **vb = &fc->cb;
    size_t *cpa = &fc->capa, *cpb = &fc->capb;
    fc->na = fc->nb = 0;
    for (int i = 0; i < FQ__N; i++)
        if (a->dq[i] != b->dq[i] &&
            (push(va, &fc->na, cpa, (struct cm_item){.kind = CM_IT_DQ, .ctr = fq_dq[i], .v = a->dq[i]}) < 0 ||
             push(vb, &fc->nb, cpb, (struct cm_item){.kind = CM_IT_DQ, .ctr = fq_dq[i], .v = b->dq[i]}) < 0))
            return -ENOMEM;
    uint32_t np = a->np > b->np ? a->np : b->np;
    for (uint32_t i = 0; i < np; i++) {
        const struct permit *pa = i < a->np ? &a->p[i] : NULL, *pb = i < b->np ? &b->p[i] : NULL;
        if (pa && pb && same_permit(pa, pb) && pending(fc, pa, da) == pending(fc, pb, db))
            continue;
        if ((pa && contrib_permit(fc, pa, da, va, &fc->na, cpa) < 0) ||
            (pb && contrib_permit(fc, pb, db, vb, &fc->nb, cpb) < 0))
            return -ENOMEM;
    }
    if (!same_runs(a, b) &&
        (contrib_runs(fc, a, va, &fc->na, cpa) < 0 || contrib_runs(fc, b, vb, &fc->nb, cpb) < 0))
        return -ENOMEM;
    int32_t sa = a->mode == M_ON_PERMIT ? a->p[a->cur].scheme : -1;
    int32_t sb = b->mode == M_ON_PERMIT ? b->p[b->cur].scheme : -1;
    if (sa != sb &&
        ((sa >= 0 && push(va, &fc->na, cpa, (struct cm_item){.kind = CM_IT_PRESENT, .scheme = sa, .v = 1}) < 0) ||
         (sb >= 0 && push(vb, &fc->nb, cpb, (struct cm_item){.kind = CM_IT_PRESENT, .scheme = sb, .v = 1}) < 0)))
        return -ENOMEM;
    return 0;
}

static int item_key_eq(const struct cm_item *a, const struct cm_item *b)
{
    return a->kind == b->kind && a->ctr == b->ctr && a->scheme == b->scheme && a->nat == b->nat &&
           a->day == b->day;
}

/* Appends after - before to the output array. */
static int diff(const struct cm_item *before, size_t nb, struct cm_item *after, size_t na,
                struct cm_item **items, size_t *n, size_t *cap)
{
    /* both lists come from the same walk over mostly the same state */
    while (na && nb && before->v == after->v && item_key_eq(before, after)) {
        before++, after++;
        na--, nb--;
    }
    while (na && nb && before[nb - 1].v == after[na - 1].v && item_key_eq(&before[nb - 1], &after[na - 1]))
        na--, nb--;
    size_t base = *n;
    for (size_t i = 0; i < na; i++) {
        size_t j;
        for (j = base; j < *n; j++)
            if (item_key_eq(&(*items)[j], &after[i]))
                break;
        if (j < *n)
            (*items)[j].v += after[i].v;
        else if (push(items, n, cap, after[i]) < 0)
            return -ENOMEM;
    }
    for (size_t i = 0; i < nb; i++) {
        size_t j;
        for (j = base; j < *n; j++)
            if (item_key_eq(&(*items)[j], &before[i]))
                break;
        if (j < *n) {
            (*items)[j].v -= before[i].v;
        } else {
            struct cm_item it = before[i];
            it.v = -it.v;
            if (push(items, n, cap, it) < 0)
                return -ENOMEM;
        }
    }
    size_t k = base;
    for (size_t j = base; j < *n; j++)
        if ((*items)[j].v)
            (*items)[k++] = (*items)[j];
    *n = k;
    return 0;
}

/* The fold of snapshot + window, in out. */
static int refold(struct cm_fold_ctx *fc, struct cm_mstate *st, struct fstate *out)
{
    if (fstate_copy(fc->pool, out, &st->snap) < 0)
        return -ENOMEM;
    for (uint32_t i = 0; i < st->nw; i++)
        if (apply(fc, out, &st->w[i], 0) < 0)
            return -ENOMEM;
    return 0;
}

/* ---- the snapshot: events leave the window, what is final is dropped ---- */

static int advance(struct cm_fold_ctx *fc, struct cm_mstate *st)
{
    int64_t horizon = st->latest - (int64_t)fc->cfg->reorder_window_days * CM_DAY;
    uint32_t k = 0;
    while (k < st->nw && st->w[k].t < horizon) {
        if (apply(fc, &st->snap, &st->w[k], 1) < 0)
            return -ENOMEM;
        pid_free(fc->pool, &st->w[k].pid);
        k++;
    }
    if (k) {
        memmove(st->w, st->w + k, (st->nw - k) * sizeof(*st->w));
        st->nw -= k;
        /* a window that has emptied gives back room: bursts of events are rare */
        if (st->capw >= 4 && st->nw <= st->capw / 4) {
            struct wev *nw = cm_pool_realloc(fc->pool, st->w, st->capw * sizeof(*nw),
                                             st->capw / 2 * sizeof(*nw));
            if (nw) {
                st->w = nw;
                st->capw /= 2;
            }
        }
    }
    /* Every event still to fold has a day >= T: days before T are final. */
    int64_t T = cm_day(horizon);
    struct fstate *fs = &st->snap;
    memset(fs->dq, 0, sizeof(fs->dq));
    uint32_t keep = 0;
    for (uint32_t i = 0; i < fs->np; i++) {
        struct permit *p = &fs->p[i];
        int64_t grace = si_of(fc, p->scheme)->grace;
        int in_time = (p->flags & PF_USED) && !(p->flags & PF_ADJUSTED) &&
                      (p->flags & PF_EXITED) && p->last_exit <= p->end + grace;
        if ((fs->mode == M_ON_PERMIT && fs->cur == (int32_t)i) || (int64_t)p->end + grace >= T ||
            (in_time && !(p->flags & PF_REENTRY) && (int64_t)p->last_exit + REENTRY_DAYS >= T)) {
            if (fs->mode == M_ON_PERMIT && fs->cur == (int32_t)i)
                fs->cur = (int32_t)keep;
            fs->p[keep++] = *p;
            continue;
        }
        /* final: its contribution stays in the aggregate, only its id is kept */
        if (add_tomb(fc->pool, fs, pid_str(&p->id)) < 0) {
            fs->p[keep++] = *p; /* keeping it is always right, only bigger */
            continue;
        }
        pid_free(fc->pool, &p->id);
    }
    fs->np = keep;
    /* Every run is scanned over all the runs before any is dropped: a scan
     * counts the present days of the others. */
    for (uint32_t i = 0; i < fs->nr; i++)
        scan_run(fs, &fs->r[i], si_of(fc, fs->sc[fs->r[i].sc].scheme), T - 1);
    uint32_t w = 0;
    for (uint32_t i = 0; i < fs->nr; i++) {
        struct run *r = &fs->r[i];
        const struct sinfo *s = si_of(fc, fs->sc[r->sc].scheme);
        /* A run without breach that no later window can see holds nothing
         * (one not scanned to its end has been scanned to T - 1: later
         * windows start after every run dropped here). */
        int keep = r->brk != NO_BREACH || (int64_t)r->end >= T - 1 - s->w || r->chk < r->end;
        if (keep)
            fs->r[w++] = *r;
    }
    fs->nr = w;
    return 0;
}

/* ---- the entry point ---- */

static int known_id(const struct cm_mstate *st, uint64_t h)
{
    for (uint8_t i = 0; i < st->nring; i++)
        if (st->ring[i] == h)
            return 1;
    for (uint32_t i = 0; i < st->nw; i++)
        if (st->w[i].idh == h)
            return 1;
    return 0;
}

static int holds_permit(const struct cm_mstate *st, const char *id)
{
    if (find_permit(&st->snap, id) >= 0 || is_tomb(&st->snap, id))
        return 1;
    for (uint32_t i = 0; i < st->nw; i++)
        if (st->w[i].type == CM_EV_GRANTED && !strcmp(pid_str(&st->w[i].pid), id))
            return 1;
    return 0;
}

static int dq_item(struct cm_item **items, size_t *n, size_t *cap, int q)
{
    return push(items, n, cap, (struct cm_item){.kind = CM_IT_DQ, .ctr = (uint8_t)q, .v = 1});
}

int cm_fold_event(struct cm_fold_ctx *fc, struct cm_mstate *st, const struct cm_event *ev,
                  struct cm_item **items, size_t *n, size_t *cap)
{
    size_t n0 = *n;
    uint64_t h = cm_hash_str(ev->event_id);
    if (known_id(st, h) || (ev->type == CM_EV_GRANTED && holds_permit(st, ev->permit_id)))
        return dq_item(items, n, cap, CM_DQ_DUPLICATES) < 0 ? -ENOMEM : CM_FOLD_DUPLICATE;
    int64_t window = (int64_t)fc->cfg->reorder_window_days * CM_DAY;
    if (st->latest && ev->occurred_at < st->latest - window)
        return dq_item(items, n, cap, CM_DQ_TOO_LATE) < 0 ? -ENOMEM : CM_FOLD_TOO_LATE;

    struct wev e = {.idh = h, .t = ev->occurred_at, .type = (uint8_t)ev->type};
    switch (ev->type) {
    case CM_EV_GRANTED: {
        e.scheme = cm_names_intern(fc->nm, ev->scheme_id, strlen(ev->scheme_id));
        e.nat = ev->nationality[0] ? cm_names_intern(fc->nm, ev->nationality, strlen(ev->nationality))
                                   : fc->nat_xxx;
        if (e.scheme < 0 || e.nat < 0 || !scheme_info(fc, e.scheme))
            return -ENOMEM;
        e.vf = clamp_day(ev->valid_from);
        e.end = clamp_day(ev->valid_until);
        e.kind = (uint8_t)(ev->kind >= 0 && ev->kind < 256 ? ev->kind : 0);
        break;
    }
    case CM_EV_EXTENDED:
        e.end = clamp_day(ev->valid_until);
        break;
    case CM_EV_REVOKED:
        e.eff = clamp_day(ev->effective_at ? ev->effective_at : ev->occurred_at);
        break;
    case CM_EV_STATUS:
        e.status = (uint8_t)(ev->status >= 0 && ev->status < 256 ? ev->status : 0);
        break;
    default:
        break;
    }
    if (ev->type == CM_EV_GRANTED || ev->type == CM_EV_EXTENDED || ev->type == CM_EV_REVOKED) {
        if (pid_set(fc->pool, &e.pid, ev->permit_id) < 0)
            return -ENOMEM;
    }
    /* the window grows one event at a time: most hold one or two */
    if (grow(fc->pool, (void **)&st->w, &st->capw, st->nw + 1, sizeof(*st->w)) < 0)
        goto nomem;

    /* and the ring, until it holds RING ids */
    if (st->nring == st->capring && st->capring < RING) {
        uint8_t nc = st->capring ? (uint8_t)(st->capring * 2) : 4;
        uint64_t *nr = cm_pool_realloc(fc->pool, st->ring, st->capring * sizeof(*nr), nc * sizeof(*nr));
        if (!nr)
            goto nomem;
        st->ring = nr;
        st->capring = nc;
    }

    /* before */
    if (refold(fc, st, &fc->ta) < 0)
        goto nomem;

    /* insert in order of occurrence, after equal times (ties in arrival order) */
    uint32_t pos = st->nw;
    while (pos > 0 && st->w[pos - 1].t > e.t)
        pos--;
    memmove(st->w + pos + 1, st->w + pos, (st->nw - pos) * sizeof(*st->w));
    st->w[pos] = e;
    st->nw++;
    int64_t old_latest = st->latest;
    if (e.t > st->latest)
        st->latest = e.t;

    /* after: in order (the common case), the fold before plus this event */
    int after;
    if (pos == st->nw - 1) {
        after = fstate_copy(fc->pool, &fc->tb, &fc->ta);
        if (!after)
            after = apply(fc, &fc->tb, &st->w[pos], 0);
    } else {
        after = refold(fc, st, &fc->tb);
    }
    if (after < 0 || contrib_pair(fc, &fc->ta, old_latest, &fc->tb, st->latest) < 0 ||
        (old_latest && e.t < old_latest && dq_item(items, n, cap, CM_DQ_OUT_OF_ORDER) < 0) ||
        diff(fc->ca, fc->na, fc->cb, fc->nb, items, n, cap) < 0) {
        /* undo the insertion: the state is as before */
        memmove(st->w + pos, st->w + pos + 1, (st->nw - pos - 1) * sizeof(*st->w));
        st->nw--;
        st->latest = old_latest;
        *n = n0;
        pid_free(fc->pool, &e.pid);
        return -ENOMEM;
    }
    st->ring[st->ringpos] = h;
    st->ringpos = (uint8_t)((st->ringpos + 1) % RING);
    if (st->nring < RING)
        st->nring++;
    /* nothing leaves the window and nothing new is final while day(L) stays */
    int64_t w = (int64_t)fc->cfg->reorder_window_days * CM_DAY;
    if ((st->nw && st->w[0].t < st->latest - w) || cm_day(st->latest - w) != cm_day(old_latest - w)) {
        if (advance(fc, st) < 0)
            return -ENOMEM; /* cannot happen: the snapshot only shrinks or reuses room */
    }
    return CM_FOLD_ACCEPTED;
nomem:
    *n = n0;
    pid_free(fc->pool, &e.pid);
    return -ENOMEM;
}

/* ---- life cycle ---- */

struct cm_fold_ctx *cm_fold_ctx_new(const struct cm_config *cfg, struct cm_names *nm)
{
    struct cm_fold_ctx *fc = calloc(1, sizeof(*fc));
    if (!fc)
        return NULL;
    fc->cfg = cfg;
    fc->nm = nm;
    fc->arena_cap = 16384;
    fc->arena = malloc(fc->arena_cap);
    fc->alloc = (ProtobufCAllocator){.alloc = ua_alloc, .free = ua_free, .allocator_data = fc};
    fc->pool = cm_pool_new();
    fc->nat_xxx = cm_names_intern(nm, "XXX", 3);
    if (!fc->arena || !fc->pool || fc->nat_xxx < 0)
        return cm_fold_ctx_free(fc);
    return fc;
}

struct cm_fold_ctx *cm_fold_ctx_free(struct cm_fold_ctx *fc)
{
    if (!fc)
        return NULL;
    fstate_free(fc->pool, &fc->ta, 0);
    fstate_free(fc->pool, &fc->tb, 0);
    cm_pool_free(fc->pool);
    free(fc->si);
    free(fc->ca);
    free(fc->cb);
    ua_reset(fc);
    free(fc->bigs);
    free(fc->arena);
    free(fc->pk);
    free(fc);
    return NULL;
}

struct cm_mstate *cm_mstate_new(struct cm_fold_ctx *fc)
{
    struct cm_mstate *st = cm_pool_alloc(fc->pool, sizeof(*st));
    if (st)
        memset(st, 0, sizeof(*st));
    return st;
}

struct cm_mstate *cm_mstate_free(struct cm_fold_ctx *fc, struct cm_mstate *st)
{
    if (!st)
        return NULL;
    fstate_free(fc->pool, &st->snap, 1);
    for (uint32_t i = 0; i < st->nw; i++)
        pid_free(fc->pool, &st->w[i].pid);
    cm_pool_release(fc->pool, st->w, st->capw * sizeof(*st->w));
    cm_pool_release(fc->pool, st->ring, st->capring * sizeof(*st->ring));
    cm_pool_release(fc->pool, st, sizeof(*st));
    return NULL;
}

/* Asks for the lines of [p, p + n), at most four. */
static void prefetch_span(const void *p, size_t n)
{
    const char *c = p;
    for (size_t o = 0; o < n && o < 256; o += 64)
        __builtin_prefetch(c + o);
}

void cm_mstate_prefetch(const struct cm_mstate *st, int stage)
{
    if (!stage) {
        prefetch_span(st, sizeof(*st));
        return;
    }
    if (st->ring)
        prefetch_span(st->ring, st->nring * sizeof(*st->ring));
    if (st->w)
        prefetch_span(st->w, st->nw * sizeof(*st->w));
    if (st->snap.p)
        prefetch_span(st->snap.p, st->snap.np * sizeof(*st->snap.p));
    if (st->snap.r)
        prefetch_span(st->snap.r, st->snap.nr * sizeof(*st->snap.r));
}

size_t cm_mstate_size(const struct cm_mstate *st)
{
    size_t s = sizeof(*st) + st->snap.capp * sizeof(struct permit) + st->snap.capsc * sizeof(struct sch) +
               st->snap.capr * sizeof(struct run) + st->capw * sizeof(struct wev) +
               st->capring * sizeof(*st->ring);
    for (uint32_t i = 0; i < st->snap.np; i++)
        s += st->snap.p[i].id.b[23] ? strlen(pid_str(&st->snap.p[i].id)) + 1 : 0;
    for (uint32_t i = 0; i < st->nw; i++)
        if (st->w[i].pid.b[23])
            s += strlen(pid_str(&st->w[i].pid)) + 1;
    return s;
}

/* ---- packing ---- */

static char *name_of(const struct cm_fold_ctx *fc, int32_t id)
{
    const char *s = cm_names_get(fc->nm, id, NULL);
    return (char *)(s ? s : "");
}

long cm_mstate_pack(struct cm_fold_ctx *fc, const struct cm_mstate *st, uint8_t **buf)
{
    const struct fstate *fs = &st->snap;
    Circmon__V1__MigrantState m = CIRCMON__V1__MIGRANT_STATE__INIT;
    uint32_t ntombs = 0;
    for (uint32_t o = 0; o < fs->ltombs; o++)
        ntombs += fs->tombs[o] == '\0';
    /* every array of the message in one scratch block of the context */
    size_t np = fs->np + ntombs + 1, nsc = fs->nsc + 1, nr = (size_t)fs->nr * 4 + 1, nw = st->nw + 1;
    size_t need = np * (sizeof(Circmon__V1__StatePermit) + sizeof(void *)) +
                  nsc * (sizeof(Circmon__V1__StateScheme) + sizeof(void *)) + nr * sizeof(int32_t) +
                  nw * (sizeof(Circmon__V1__StateEvent) + sizeof(void *)) + 64;
    *buf = NULL;
    if (need > fc->pkcap) {
        void *n = realloc(fc->pk, need);
        if (!n)
            return -ENOMEM;
        fc->pk = n;
        fc->pkcap = need;
    }
    char *sp_ = fc->pk;
    Circmon__V1__StatePermit *pv = (void *)sp_;
    sp_ += np * sizeof(*pv);
    Circmon__V1__StateScheme *sv = (void *)sp_;
    sp_ += nsc * sizeof(*sv);
    Circmon__V1__StateEvent *wv = (void *)sp_;
    sp_ += nw * sizeof(*wv);
    Circmon__V1__StatePermit **pp = (void *)sp_;
    sp_ += np * sizeof(*pp);
    Circmon__V1__StateScheme **sp = (void *)sp_;
    sp_ += nsc * sizeof(*sp);
    Circmon__V1__StateEvent **wp = (void *)sp_;
    sp_ += nw * sizeof(*wp);
    int32_t *runs = (void *)sp_;
    uint64_t ring[RING];
    long len = -ENOMEM;
    for (uint32_t i = 0; i < fs->np; i++) {
        const struct permit *p = &fs->p[i];
        circmon__v1__state_permit__init(&pv[i]);
        pv[i].id = (char *)pid_str(&p->id);
        pv[i].flags = p->flags;
        pv[i].scheme = name_of(fc, p->scheme);
        pv[i].nationality = name_of(fc, p->nat);
        pv[i].valid_from_day = p->vf;
        pv[i].end_day = p->end;
        pv[i].last_exit_day = p->last_exit;
        pv[i].kind = p->kind;
        pp[i] = &pv[i];
    }
    uint32_t k = fs->np;
    for (uint32_t o = 0; o < fs->ltombs; o += (uint32_t)strlen(fs->tombs + o) + 1, k++) {
        circmon__v1__state_permit__init(&pv[k]);
        pv[k].id = fs->tombs + o;
        pv[k].flags = PF_PRUNED;
        pp[k] = &pv[k];
    }
    m.n_permits = k;
    m.permits = pp;
    int32_t *rp = runs;
    for (uint32_t i = 0; i < fs->nsc; i++) {
        circmon__v1__state_scheme__init(&sv[i]);
        sv[i].scheme = name_of(fc, fs->sc[i].scheme);
        sv[i].nationality = name_of(fc, fs->sc[i].nat);
        sv[i].runs = rp;
        for (uint32_t j = 0; j < fs->nr; j++)
            if (fs->r[j].sc == (int32_t)i) {
                *rp++ = fs->r[j].start;
                *rp++ = fs->r[j].end;
                *rp++ = fs->r[j].chk;
                *rp++ = fs->r[j].brk;
            }
        sv[i].n_runs = (size_t)(rp - sv[i].runs);
        sp[i] = &sv[i];
    }
    m.n_schemes = fs->nsc;
    m.schemes = sp;
    m.mode = fs->mode;
    m.current = fs->cur;
    m.latest = st->latest;
    for (uint32_t i = 0; i < st->nw; i++) {
        const struct wev *e = &st->w[i];
        circmon__v1__state_event__init(&wv[i]);
        wv[i].id_hash = e->idh;
        wv[i].occurred_at = e->t;
        wv[i].type = e->type;
        wv[i].permit_id = (char *)pid_str(&e->pid);
        if (e->type == CM_EV_GRANTED) {
            wv[i].scheme = name_of(fc, e->scheme);
            wv[i].nationality = name_of(fc, e->nat);
        }
        wv[i].valid_from_day = e->vf;
        wv[i].end_day = e->end;
        wv[i].effective_day = e->eff;
        wv[i].kind = e->kind;
        wv[i].status = e->status;
        wp[i] = &wv[i];
    }
    m.n_window = st->nw;
    m.window = wp;
    /* the ring, oldest first */
    for (uint8_t i = 0; i < st->nring; i++)
        ring[i] = st->ring[(st->ringpos + RING - st->nring + i) % RING];
    m.n_recent_ids = st->nring;
    m.recent_ids = ring;
    size_t sz = circmon__v1__migrant_state__get_packed_size(&m);
    *buf = malloc(sz ? sz : 1);
    if (*buf)
        len = (long)circmon__v1__migrant_state__pack(&m, *buf);
    return len;
}

int cm_mstate_unpack(struct cm_fold_ctx *fc, const uint8_t *buf, size_t len, struct cm_mstate **out)
{
    ua_reset(fc);
    Circmon__V1__MigrantState *m = circmon__v1__migrant_state__unpack(&fc->alloc, len, buf);
    if (!m)
        return -EINVAL;
    int rc = -ENOMEM;
    struct cm_mstate *st = cm_mstate_new(fc);
    if (!st)
        goto out;
    struct fstate *fs = &st->snap;
    rc = -EINVAL;
    if (m->mode > M_EXEMPT || m->n_recent_ids > RING || m->n_permits > UINT32_MAX / 2)
        goto fail;
    rc = -ENOMEM;
    if (grow(fc->pool, (void **)&fs->p, &fs->capp, (uint32_t)m->n_permits, sizeof(*fs->p)) < 0)
        goto fail;
    for (size_t i = 0; i < m->n_permits; i++) {
        Circmon__V1__StatePermit *sp = m->permits[i];
        if (sp->flags & PF_PRUNED) {
            if (add_tomb(fc->pool, fs, sp->id ? sp->id : "") < 0)
                goto fail;
            continue;
        }
        struct permit *p = &fs->p[fs->np];
        memset(p, 0, sizeof(*p));
        if (pid_set(fc->pool, &p->id, sp->id ? sp->id : "") < 0)
            goto fail;
        fs->np++;
        p->flags = (uint8_t)sp->flags;
        const char *sch = sp->scheme ? sp->scheme : "", *nat = sp->nationality ? sp->nationality : "";
        p->scheme = cm_names_intern(fc->nm, sch, strlen(sch));
        p->nat = cm_names_intern(fc->nm, nat, strlen(nat));
        if (p->scheme < 0 || p->nat < 0 || !scheme_info(fc, p->scheme))
            goto fail;
        p->vf = sp->valid_from_day;
        p->end = sp->end_day;
        p->last_exit = sp->last_exit_day;
        p->kind = (uint8_t)sp->kind;
    }
    fs->mode = (uint8_t)m->mode;
    fs->cur = m->current;
    if (fs->mode == M_ON_PERMIT && (fs->cur < 0 || (uint32_t)fs->cur >= fs->np)) {
        rc = -EINVAL;
        goto fail;
    }
    for (size_t i = 0; i < m->n_schemes; i++) {
        Circmon__V1__StateScheme *ss = m->schemes[i];
        const char *sch = ss->scheme ? ss->scheme : "", *nat = ss->nationality ? ss->nationality : "";
        if (ss->n_runs % 4) {
            rc = -EINVAL;
            goto fail;
        }
        if (grow(fc->pool, (void **)&fs->sc, &fs->capsc, fs->nsc + 1, sizeof(*fs->sc)) < 0 ||
            grow(fc->pool, (void **)&fs->r, &fs->capr, (uint32_t)(fs->nr + ss->n_runs / 4), sizeof(*fs->r)) < 0)
            goto fail;
        struct sch *sc = &fs->sc[fs->nsc];
        sc->scheme = cm_names_intern(fc->nm, sch, strlen(sch));
        sc->nat = cm_names_intern(fc->nm, nat, strlen(nat));
        if (sc->scheme < 0 || sc->nat < 0 || !scheme_info(fc, sc->scheme))
            goto fail;
        for (size_t j = 0; j < ss->n_runs; j += 4)
            fs->r[fs->nr++] = (struct run){.sc = (int32_t)fs->nsc, .start = ss->runs[j],
                                           .end = ss->runs[j + 1], .chk = ss->runs[j + 2],
                                           .brk = ss->runs[j + 3]};
        fs->nsc++;
    }
    /* runs of all schemes back in chronological order per scheme: kept as packed */
    st->latest = m->latest;
    if (grow(fc->pool, (void **)&st->w, &st->capw, (uint32_t)m->n_window, sizeof(*st->w)) < 0)
        goto fail;
    for (size_t i = 0; i < m->n_window; i++) {
        Circmon__V1__StateEvent *se = m->window[i];
        struct wev *e = &st->w[st->nw];
        memset(e, 0, sizeof(*e));
        e->idh = se->id_hash;
        e->t = se->occurred_at;
        e->type = (uint8_t)se->type;
        if (e->type < CM_EV_ENTRY || e->type > CM_EV_STATUS) {
            rc = -EINVAL;
            goto fail;
        }
        if (e->type == CM_EV_GRANTED || e->type == CM_EV_EXTENDED || e->type == CM_EV_REVOKED) {
            if (pid_set(fc->pool, &e->pid, se->permit_id ? se->permit_id : "") < 0)
                goto fail;
        }
        st->nw++;
        if (e->type == CM_EV_GRANTED) {
            const char *sch = se->scheme ? se->scheme : "", *nat = se->nationality ? se->nationality : "";
            e->scheme = cm_names_intern(fc->nm, sch, strlen(sch));
            e->nat = cm_names_intern(fc->nm, nat, strlen(nat));
            if (e->scheme < 0 || e->nat < 0 || !scheme_info(fc, e->scheme))
                goto fail;
        }
        e->vf = se->valid_from_day;
        e->end = se->end_day;
        e->eff = se->effective_day;
        e->kind = (uint8_t)se->kind;
        e->status = (uint8_t)se->status;
    }
    if (m->n_recent_ids) {
        uint8_t nc = 4;
        while (nc < m->n_recent_ids)
            nc = (uint8_t)(nc * 2);
        if (!(st->ring = cm_pool_alloc(fc->pool, nc * sizeof(*st->ring))))
            goto fail;
        st->capring = nc;
        memcpy(st->ring, m->recent_ids, m->n_recent_ids * sizeof(*st->ring));
    }
    st->nring = (uint8_t)m->n_recent_ids;
    st->ringpos = (uint8_t)(m->n_recent_ids % RING);
    *out = st;
    ua_reset(fc);
    return 0;
fail:
    cm_mstate_free(fc, st);
out:
    ua_reset(fc);
    return rc;
}
