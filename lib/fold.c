/* fold.c - the pure fold: one arriving event into one migrant's state.
 *
 * A migrant's state is a snapshot (the fold of its accepted events older than
 * the reorder window) plus the accepted events of the window, in order of
 * occurrence. Every arrival emits the difference of the migrant's
 * contributions (agg.h) before and after it: the fold after an event in
 * order is the fold before plus that event; after one that lands inside the
 * window, the window is folded again from the snapshot. So a late event
 * changes the figures exactly as if it had arrived in order, and nothing is
 * counted twice. The fold before is kept in the state (its head) once the
 * window holds HEAD_MIN events, else folded again (fold_state.c). Events that leave the
 * window are folded into the snapshot for good; what can no longer change a
 * figure is then dropped from it (its contribution stays in the aggregate). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fold_int.h"

/* fold-made data-quality counters, as aggregate counters */
static const uint8_t fq_dq[FQ__N] = {CM_DQ_EXITS_WITHOUT_ENTRY, CM_DQ_ENTRIES_WHILE_PRESENT,
                                     CM_DQ_ENTRIES_WITHOUT_PERMIT, CM_DQ_UNKNOWN_PERMIT,
                                     CM_DQ_LATE_ADMIN};

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

const struct sinfo *cm_fold_scheme_info(struct cm_fold_ctx *fc, int32_t scheme)
{
    if ((size_t)scheme >= fc->nsi) {
        size_t n0 = fc->nsi;
        if (cm_grow(&fc->si, &fc->nsi, (size_t)scheme + 1, sizeof(*fc->si), 16) < 0)
            return NULL;
        memset(fc->si + n0, 0, (fc->nsi - n0) * sizeof(*fc->si));
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

/* ---- the fold of one event (INDICATORS.md section 2, the table) ---- */

static int stay_begin(struct cm_fold_ctx *fc, struct fstate *fs, int32_t pi, int32_t d)
{
    struct permit *p = &fs->p[pi];
    p->flags = (uint8_t)((p->flags | PF_USED | PF_OPEN) & ~(PF_EXITED | PF_REENTRY));
    fs->mode = M_ON_PERMIT;
    fs->cur = pi;
    if (!limited(si_of(fc, p->scheme)))
        return 0;
    int32_t sc = cm_fstate_find_sch(fs, p->scheme);
    if (sc < 0)
        return 0; /* cannot happen: the grant made it */
    int32_t ri = cm_fstate_last_run(fs, sc);
    if (ri >= 0 && (fs->r[ri].end == OPEN_END || d <= fs->r[ri].end + 1)) {
        fs->r[ri].end = OPEN_END;
        return 0;
    }
    if (fs->nr >= RUNS_MAX) {
        fc->limit = CM_FOLD_LIMIT_RUNS;
        return -E2BIG;
    }
    if (cm_fold_grow(fc->pool, (void **)&fs->r, &fs->capr, fs->nr + 1, sizeof(*fs->r)) < 0)
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
    int32_t sc = cm_fstate_find_sch(fs, p->scheme);
    int32_t ri = sc >= 0 ? cm_fstate_last_run(fs, sc) : -1;
    if (ri >= 0 && fs->r[ri].end == OPEN_END)
        fs->r[ri].end = d;
}

/* Applies one event to fs. With own, the permit of a grant takes ownership
 * of the event's permit id. Returns 0, -ENOMEM, or -E2BIG past a limit of the
 * state (fc->limit says which); fs is then unusable. */
int cm_fold_apply(struct cm_fold_ctx *fc, struct fstate *fs, struct wev *e, int own)
{
    int32_t d = clamp_day(e->t);
    switch (e->type) {
    case CM_EV_GRANTED: {
        if (fs->np + fs->ntombs >= PERMITS_MAX) {
            fc->limit = CM_FOLD_LIMIT_PERMITS;
            return -E2BIG;
        }
        if (cm_fold_grow(fc->pool, (void **)&fs->p, &fs->capp, fs->np + 1, sizeof(*fs->p)) < 0)
            return -ENOMEM;
        const struct sinfo *qs = si_of(fc, e->scheme);
        if (limited(qs)) {
            int32_t sc = cm_fstate_find_sch(fs, e->scheme);
            if (sc < 0) {
                if (cm_fold_grow(fc->pool, (void **)&fs->sc, &fs->capsc, fs->nsc + 1, sizeof(*fs->sc)) < 0)
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
        int32_t pi = cm_fstate_find_permit(fs, pid_str(&e->pid));
        if (pi < 0) {
            /* a pruned permit ended its grace before any event we may still fold */
            fs->dq[cm_fstate_is_tomb(fs, pid_str(&e->pid)) ? FQ_LATE_ADMIN : FQ_UNKNOWN]++;
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
void cm_fold_scan_run(const struct fstate *fs, struct run *r, const struct sinfo *s, int64_t upto)
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
    if (cm_grow(v, cap, *n + 1, sizeof(**v), 64) < 0)
        return -ENOMEM;
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

/* Breach days [a, b] of a closed run: one item, whatever its length (the
 * read side spreads it over the months). */
static int breach_days(struct cm_item **v, size_t *n, size_t *cap, int32_t scheme, int32_t nat,
                       int32_t a, int32_t b)
{
    PUSH(.kind = CM_IT_BDAYS, .scheme = scheme, .nat = nat, .day = a, .day2 = b, .v = 1);
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
        /* What a scan finds in a closed run stays true while later events
         * are folded onto fs (they change no day before theirs); in an open
         * run it assumes the stay goes on: scanned on a copy. */
        struct run open, *r = &fs->r[i];
        if (r->end == OPEN_END) {
            open = *r;
            r = &open;
        }
        const struct sch *sc = &fs->sc[r->sc];
        const struct sinfo *s = si_of(fc, sc->scheme);
        cm_fold_scan_run(fs, r, s, INT64_MAX);
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
           a->day == b->day && a->day2 == b->day2;
}

static int item_key_cmp(const void *x, const void *y)
{
    const struct cm_item *a = x, *b = y;
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    if (a->ctr != b->ctr)
        return a->ctr < b->ctr ? -1 : 1;
    if (a->scheme != b->scheme)
        return a->scheme < b->scheme ? -1 : 1;
    if (a->nat != b->nat)
        return a->nat < b->nat ? -1 : 1;
    if (a->day != b->day)
        return a->day < b->day ? -1 : 1;
    if (a->day2 != b->day2)
        return a->day2 < b->day2 ? -1 : 1;
    return 0;
}

#define DIFF_SMALL 32 /* below this many items, merging by search beats sorting */

/* Appends after - before to the output array, one item per key: both lists
 * sorted, then merged, O(n log n). */
static int diff_sorted(struct cm_item *before, size_t nb, struct cm_item *after, size_t na,
                       struct cm_item **items, size_t *n, size_t *cap)
{
    if (nb)
        qsort(before, nb, sizeof(*before), item_key_cmp);
    if (na)
        qsort(after, na, sizeof(*after), item_key_cmp);
    size_t i = 0, j = 0;
    while (i < na || j < nb) {
        const struct cm_item *k = i < na && (j >= nb || item_key_cmp(&after[i], &before[j]) <= 0)
                                      ? &after[i] : &before[j];
        struct cm_item it = *k;
        it.v = 0;
        while (i < na && item_key_eq(&after[i], &it))
            it.v += after[i++].v;
        while (j < nb && item_key_eq(&before[j], &it))
            it.v -= before[j++].v;
        if (it.v && push(items, n, cap, it) < 0)
            return -ENOMEM;
    }
    return 0;
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
    if (na + nb > DIFF_SMALL)
        return diff_sorted((struct cm_item *)before, nb, after, na, items, n, cap);
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
/* The fold of snapshot + window, in out. Returns 0, -ENOMEM or -E2BIG. */
int cm_fold_refold(struct cm_fold_ctx *fc, struct cm_mstate *st, struct fstate *out)
{
    if (cm_fstate_copy(fc->pool, out, &st->snap) < 0)
        return -ENOMEM;
    for (uint32_t i = 0; i < st->nw; i++) {
        int r = cm_fold_apply(fc, out, &st->w[i], 0);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- the entry point ---- */

static int dq_item(struct cm_item **items, size_t *n, size_t *cap, int q)
{
    return push(items, n, cap, (struct cm_item){.kind = CM_IT_DQ, .ctr = (uint8_t)q, .v = 1});
}

static const char *const result_names[CM_FOLD__COUNT] = {
    [CM_FOLD_TOO_LATE] = "too_late",
    [CM_FOLD_LIMIT_NAMES] = "limit_names",
    [CM_FOLD_LIMIT_PERMITS] = "limit_permits",
    [CM_FOLD_LIMIT_RUNS] = "limit_runs",
};

const char *cm_fold_result_name(int r)
{
    return r >= 0 && r < CM_FOLD__COUNT ? result_names[r] : NULL;
}

/* The number of name s, interning it while the table holds fewer than
 * CM_FOLD_NAMES_MAX names; -ENOSPC past that, -ENOMEM. */
static int32_t name_num(struct cm_fold_ctx *fc, const char *s)
{
    size_t len = strlen(s);
    int32_t id = cm_names_find(fc->nm, s, len);
    if (id >= 0)
        return id;
    if (cm_names_count(fc->nm) >= CM_FOLD_NAMES_MAX)
        return -ENOSPC;
    return cm_names_intern(fc->nm, s, len);
}

/* The index of the first window event later than t: where an event at t goes
 * (after equal times: ties in arrival order). */
static uint32_t insert_pos(const struct cm_mstate *st, int64_t t)
{
    uint32_t lo = 0, hi = st->nw;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (st->w[mid].t > t)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static int refused(struct cm_item **items, size_t *n, size_t *cap, int result)
{
    int q = result == CM_FOLD_TOO_LATE ? CM_DQ_TOO_LATE : CM_DQ_OVER_LIMIT;
    return dq_item(items, n, cap, q) < 0 ? -ENOMEM : result;
}

int cm_fold_event(struct cm_fold_ctx *fc, struct cm_mstate *st, const struct cm_event *ev,
                  struct cm_item **items, size_t *n, size_t *cap)
{
    size_t n0 = *n;
    uint64_t h = cm_hash_str(ev->event_id);
    if (cm_mstate_known_id(st, h) || (ev->type == CM_EV_GRANTED && cm_mstate_holds_permit(st, ev->permit_id)))
        return dq_item(items, n, cap, CM_DQ_DUPLICATES) < 0 ? -ENOMEM : CM_FOLD_DUPLICATE;
    /* too late: before L - window, or behind max_window_events later events.
     * Every event of the snapshot is at or before snap_t, every one of the
     * window after it: behind the snapshot's last is behind enough of them
     * (it left the window by one of these two rules) */
    int64_t window = (int64_t)fc->cfg->reorder_window_days * CM_DAY;
    uint32_t pos = insert_pos(st, ev->occurred_at);
    if ((st->latest && ev->occurred_at < st->latest - window) || ev->occurred_at < st->snap_t ||
        st->nw - pos >= (uint32_t)cm_mstate_max_window(fc))
        return refused(items, n, cap, CM_FOLD_TOO_LATE);

    struct wev e = {.idh = h, .t = ev->occurred_at, .type = (uint8_t)ev->type};
    switch (ev->type) {
    case CM_EV_GRANTED: {
        e.scheme = name_num(fc, ev->scheme_id);
        e.nat = ev->nationality[0] ? name_num(fc, ev->nationality) : fc->nat_xxx;
        if (e.scheme == -ENOSPC || e.nat == -ENOSPC)
            return refused(items, n, cap, CM_FOLD_LIMIT_NAMES);
        if (e.scheme < 0 || e.nat < 0 || !cm_fold_scheme_info(fc, e.scheme))
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
        if (cm_pid_set(fc->pool, &e.pid, ev->permit_id) < 0)
            return -ENOMEM;
    }
    /* the window grows one event at a time: most hold one or two */
    if (cm_fold_grow(fc->pool, (void **)&st->w, &st->capw, st->nw + 1, sizeof(*st->w)) < 0)
        goto nomem;

    /* and the ring, until it holds RING ids */
    if (st->nring == st->capring && st->capring < RING) {
        uint32_t nc = st->capring;
        if (cm_fold_grow(fc->pool, (void **)&st->ring, &nc, st->capring ? st->capring * 2u : 4u,
                         sizeof(*st->ring)) < 0)
            goto nomem;
        st->capring = (uint8_t)nc;
    }

    /* before: the fold so far (of these very events: no limit is reached) */
    struct fstate *before = st->head;
    if (!before) {
        before = &fc->ta;
        if (cm_fold_refold(fc, st, before) < 0)
            goto nomem;
    }

    /* insert in order of occurrence */
    memmove(st->w + pos + 1, st->w + pos, (st->nw - pos) * sizeof(*st->w));
    st->w[pos] = e;
    st->nw++;
    int64_t old_latest = st->latest;
    if (e.t > st->latest)
        st->latest = e.t;

    /* after: in order (the common case), the fold so far plus this event;
     * inside the window, the window again from the snapshot */
    int after;
    if (pos == st->nw - 1) {
        after = cm_fstate_copy(fc->pool, &fc->tb, before);
        if (!after)
            after = cm_fold_apply(fc, &fc->tb, &st->w[pos], 0);
    } else {
        after = cm_fold_refold(fc, st, &fc->tb);
    }
    if (after == -E2BIG) {
        memmove(st->w + pos, st->w + pos + 1, (st->nw - pos - 1) * sizeof(*st->w));
        st->nw--;
        st->latest = old_latest;
        cm_pid_free(fc->pool, &e.pid);
        return refused(items, n, cap, fc->limit);
    }
    if (after < 0 || contrib_pair(fc, before, old_latest, &fc->tb, st->latest) < 0 ||
        (old_latest && e.t < old_latest && dq_item(items, n, cap, CM_DQ_OUT_OF_ORDER) < 0) ||
        diff(fc->ca, fc->na, fc->cb, fc->nb, items, n, cap) < 0) {
        /* undo the insertion: the state is as before */
        memmove(st->w + pos, st->w + pos + 1, (st->nw - pos - 1) * sizeof(*st->w));
        st->nw--;
        st->latest = old_latest;
        *n = n0;
        cm_pid_free(fc->pool, &e.pid);
        return -ENOMEM;
    }
    /* the fold after is the new head; the old one becomes scratch */
    if (!st->head && st->nw >= HEAD_MIN && (st->head = cm_pool_alloc(fc->pool, sizeof(*st->head))))
        memset(st->head, 0, sizeof(*st->head)); /* without room, the window is folded again */
    if (st->head) {
        struct fstate t = *st->head;
        *st->head = fc->tb;
        fc->tb = t;
    }
    st->ring[st->ringpos] = h;
    st->ringpos = (uint8_t)((st->ringpos + 1) % RING);
    if (st->nring < RING)
        st->nring++;
    /* events behind max_window_events later ones join the snapshot */
    if (cm_mstate_shed(fc, st) < 0)
        return -ENOMEM; /* cannot happen: head holds these events already */
    /* nothing leaves the window and nothing new is final while day(L) stays */
    int64_t w = (int64_t)fc->cfg->reorder_window_days * CM_DAY;
    if ((st->nw && st->w[0].t < st->latest - w) || cm_day(st->latest - w) != cm_day(old_latest - w)) {
        if (cm_mstate_advance(fc, st) < 0)
            return -ENOMEM; /* cannot happen: the snapshot only shrinks or reuses room */
    }
    return CM_FOLD_ACCEPTED;
nomem:
    *n = n0;
    cm_pid_free(fc->pool, &e.pid);
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
    fc->alloc = (ProtobufCAllocator){.alloc = cm_fold_codec_alloc, .free = cm_fold_codec_free, .allocator_data = fc};
    fc->pool = cm_pool_new();
    fc->nat_xxx = cm_names_intern(nm, "XXX", 3);
    if (!fc->arena || !fc->pool || fc->nat_xxx < 0)
        return cm_fold_ctx_free(fc);
    return fc;
}

int cm_fold_ctx_nat_cohorts(const struct cm_fold_ctx *fc)
{
    return fc->cfg && fc->cfg->nationality_cohorts;
}

struct cm_fold_ctx *cm_fold_ctx_free(struct cm_fold_ctx *fc)
{
    if (!fc)
        return NULL;
    cm_fstate_free(fc->pool, &fc->ta, 0);
    cm_fstate_free(fc->pool, &fc->tb, 0);
    cm_pool_free(fc->pool);
    free(fc->si);
    free(fc->ca);
    free(fc->cb);
    cm_fold_codec_reset(fc);
    free(fc->bigs);
    free(fc->arena);
    free(fc->pk);
    free(fc);
    return NULL;
}
