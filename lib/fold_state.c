/* fold_state.c - one migrant's state: permit ids, the window, the ring of
 * recent ids, and the pruning of the snapshot as events leave the window. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fold_int.h"


int cm_pid_set(struct cm_pool *pl, struct pid *p, const char *s)
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
void cm_pid_free(struct cm_pool *pl, struct pid *p)
{
    if (p->b[23]) {
        const char *s = pid_str(p);
        cm_pool_release(pl, (char *)s, strlen(s) + 1);
    }
    memset(p->b, 0, sizeof(p->b));
}

/* Grows array *v of *cap elements (pool blocks) to room for need. */
int cm_fold_grow(struct cm_pool *pl, void **v, uint32_t *cap, uint32_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t nc = cm_grow_cap(*cap, need, 1, size); /* most snapshots hold one permit */
    if (!nc || nc > UINT32_MAX)
        return -ENOMEM;
    void *nv = cm_pool_realloc(pl, *v, (size_t)*cap * size, (size_t)nc * size);
    if (!nv)
        return -ENOMEM;
    *v = nv;
    *cap = (uint32_t)nc;
    return 0;
}

void cm_fstate_free(struct cm_pool *pl, struct fstate *fs, int own)
{
    if (own) {
        for (uint32_t i = 0; i < fs->np; i++)
            cm_pid_free(pl, &fs->p[i].id);
        cm_pool_release(pl, fs->tombs, fs->ltombs);
    }
    cm_pool_release(pl, fs->p, (size_t)fs->capp * sizeof(*fs->p));
    cm_pool_release(pl, fs->sc, (size_t)fs->capsc * sizeof(*fs->sc));
    cm_pool_release(pl, fs->r, (size_t)fs->capr * sizeof(*fs->r));
    memset(fs, 0, sizeof(*fs));
}

/* Copies src into dst (dst's arrays reused; ids borrowed). */
int cm_fstate_copy(struct cm_pool *pl, struct fstate *dst, const struct fstate *src)
{
    if (cm_fold_grow(pl, (void **)&dst->p, &dst->capp, src->np, sizeof(*src->p)) < 0 ||
        cm_fold_grow(pl, (void **)&dst->sc, &dst->capsc, src->nsc, sizeof(*src->sc)) < 0 ||
        cm_fold_grow(pl, (void **)&dst->r, &dst->capr, src->nr, sizeof(*src->r)) < 0)
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
    dst->ntombs = src->ntombs;
    memcpy(dst->dq, src->dq, sizeof(dst->dq));
    return 0;
}

int32_t cm_fstate_find_sch(const struct fstate *fs, int32_t scheme)
{
    for (uint32_t i = 0; i < fs->nsc; i++)
        if (fs->sc[i].scheme == scheme)
            return (int32_t)i;
    return -1;
}

int32_t cm_fstate_last_run(const struct fstate *fs, int32_t sc)
{
    for (uint32_t i = fs->nr; i-- > 0;)
        if (fs->r[i].sc == sc)
            return (int32_t)i;
    return -1;
}

int32_t cm_fstate_find_permit(const struct fstate *fs, const char *id)
{
    for (uint32_t i = 0; i < fs->np; i++)
        if (!strcmp(pid_str(&fs->p[i].id), id))
            return (int32_t)i;
    return -1;
}

/* True when id is the id of a pruned permit. */
int cm_fstate_is_tomb(const struct fstate *fs, const char *id)
{
    for (uint32_t o = 0; o < fs->ltombs; o += (uint32_t)strlen(fs->tombs + o) + 1)
        if (!strcmp(fs->tombs + o, id))
            return 1;
    return 0;
}

/* Records id as the id of a pruned permit. Returns 0 or -ENOMEM. */
int cm_fstate_add_tomb(struct cm_pool *pl, struct fstate *fs, const char *id)
{
    size_t l = strlen(id) + 1;
    char *nt = cm_pool_realloc(pl, fs->tombs, fs->ltombs, fs->ltombs + l);
    if (!nt)
        return -ENOMEM;
    memcpy(nt + fs->ltombs, id, l);
    fs->tombs = nt;
    fs->ltombs += (uint32_t)l;
    fs->ntombs++;
    return 0;
}

/* ---- the snapshot: events leave the window, what is final is dropped ---- */

struct fstate *cm_mstate_drop_head(struct cm_fold_ctx *fc, struct cm_mstate *st)
{
    if (st->head) {
        cm_fstate_free(fc->pool, st->head, 0);
        cm_pool_release(fc->pool, st->head, sizeof(*st->head));
        st->head = NULL;
    }
    return NULL;
}

int cm_mstate_max_window(const struct cm_fold_ctx *fc)
{
    int n = fc->cfg->max_window_events;
    return n > 0 ? n : 256; /* a configuration made without cm_config_defaults */
}

/* Folds the first k events of the window into the snapshot for good. head
 * stays valid: it is the fold of the same events in the same order. */
static int to_snapshot(struct cm_fold_ctx *fc, struct cm_mstate *st, uint32_t k)
{
    if (!k)
        return 0;
    for (uint32_t i = 0; i < k; i++) {
        if (cm_fold_apply(fc, &st->snap, &st->w[i], 1) < 0)
            return -ENOMEM;
        cm_pid_free(fc->pool, &st->w[i].pid);
    }
    st->snap_t = st->w[k - 1].t;
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
    return 0;
}

/* The end of the group of window events at the time of event i. */
static uint32_t tie_end(const struct cm_mstate *st, uint32_t i)
{
    uint32_t lo = i + 1, hi = st->nw;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (st->w[mid].t > st->w[i].t)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

int cm_mstate_shed(struct cm_fold_ctx *fc, struct cm_mstate *st)
{
    uint32_t m = (uint32_t)cm_mstate_max_window(fc), i = 0;
    /* An event with m later ones can have no event folded in before it
     * (INDICATORS.md step 3); a tie with it neither, so the group of its
     * time goes with it. When ties alone fill 2m events, the oldest group
     * goes too: an event at its time is still accepted and folded after it,
     * as ties are, so the window stays below 2m events. */
    while (st->nw - i > m) {
        uint32_t j = tie_end(st, i);
        if (st->nw - j < m && st->nw - i < 2 * m)
            break;
        i = j;
    }
    return to_snapshot(fc, st, i);
}

int cm_mstate_advance(struct cm_fold_ctx *fc, struct cm_mstate *st)
{
    int64_t horizon = st->latest - (int64_t)fc->cfg->reorder_window_days * CM_DAY;
    uint32_t k = 0;
    while (k < st->nw && st->w[k].t < horizon)
        k++;
    if (to_snapshot(fc, st, k) < 0)
        return -ENOMEM;
    /* Every event still to fold has a day >= T: days before T are final. */
    int64_t T = cm_day(horizon);
    struct fstate *fs = &st->snap;
    /* head = snap + window: it keeps what the window adds */
    for (int i = 0; i < FQ__N; i++)
        if (st->head)
            st->head->dq[i] -= fs->dq[i];
    memset(fs->dq, 0, sizeof(fs->dq));
    uint32_t keep = 0, np0 = fs->np, nr0 = fs->nr;
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
        if (cm_fstate_add_tomb(fc->pool, fs, pid_str(&p->id)) < 0) {
            fs->p[keep++] = *p; /* keeping it is always right, only bigger */
            continue;
        }
        cm_pid_free(fc->pool, &p->id);
    }
    fs->np = keep;
    /* Every run is scanned over all the runs before any is dropped: a scan
     * counts the present days of the others. */
    for (uint32_t i = 0; i < fs->nr; i++)
        cm_fold_scan_run(fs, &fs->r[i], si_of(fc, fs->sc[fs->r[i].sc].scheme), T - 1);
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
    /* head's permits and runs are those of the snapshot before: fold again
     * when next needed; a short window keeps none */
    if (st->head && (fs->np != np0 || fs->nr != nr0 || st->nw < HEAD_MIN))
        st->head = cm_mstate_drop_head(fc, st);
    return 0;
}

int cm_mstate_known_id(const struct cm_mstate *st, uint64_t h)
{
    for (uint8_t i = 0; i < st->nring; i++)
        if (st->ring[i] == h)
            return 1;
    for (uint32_t i = 0; i < st->nw; i++)
        if (st->w[i].idh == h)
            return 1;
    return 0;
}

int cm_mstate_holds_permit(const struct cm_mstate *st, const char *id)
{
    if (cm_fstate_find_permit(&st->snap, id) >= 0 || cm_fstate_is_tomb(&st->snap, id))
        return 1;
    for (uint32_t i = 0; i < st->nw; i++)
        if (st->w[i].type == CM_EV_GRANTED && !strcmp(pid_str(&st->w[i].pid), id))
            return 1;
    return 0;
}

/* ---- life cycle ---- */

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
    cm_fstate_free(fc->pool, &st->snap, 1);
    cm_mstate_drop_head(fc, st);
    for (uint32_t i = 0; i < st->nw; i++)
        cm_pid_free(fc->pool, &st->w[i].pid);
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
    if (st->head)
        s += sizeof(*st->head) + st->head->capp * sizeof(struct permit) +
             st->head->capsc * sizeof(struct sch) + st->head->capr * sizeof(struct run);
    for (uint32_t i = 0; i < st->snap.np; i++)
        s += st->snap.p[i].id.b[23] ? strlen(pid_str(&st->snap.p[i].id)) + 1 : 0;
    for (uint32_t i = 0; i < st->nw; i++)
        if (st->w[i].pid.b[23])
            s += strlen(pid_str(&st->w[i].pid)) + 1;
    return s;
}
