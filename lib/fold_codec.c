/* fold_codec.c - the state codec: a migrant's state to and from its packed
 * form (circmon.v1.MigrantState), as stored in Redis. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fold_int.h"


void *cm_fold_codec_alloc(void *ud, size_t size)
{
    struct cm_fold_ctx *fc = ud;
    size_t a = (size + 15) & ~(size_t)15;
    if (a >= size && a <= fc->arena_cap - fc->arena_used) {
        void *p = fc->arena + fc->arena_used;
        fc->arena_used += a;
        return p;
    }
    if (cm_grow(&fc->bigs, &fc->capbigs, fc->nbigs + 1, sizeof(*fc->bigs), 16) < 0)
        return NULL;
    void *p = malloc(size);
    if (p)
        fc->bigs[fc->nbigs++] = p;
    return p;
}

void cm_fold_codec_free(void *ud, void *p)
{
    (void)ud;
    (void)p; /* everything goes at the next reset */
}

void cm_fold_codec_reset(struct cm_fold_ctx *fc)
{
    for (size_t i = 0; i < fc->nbigs; i++)
        free(fc->bigs[i]);
    fc->nbigs = 0;
    fc->arena_used = 0;
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
    m.current = fs->mode == M_ON_PERMIT ? fs->cur : 0; /* what unpack keeps: one encoding */
    m.latest = st->latest;
    m.snapshot_latest = st->snap_t;
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

/* ---- unpacking: every value checked as wire input is ---- */

#define DAY_MAX 2932896 /* day(253402300799): the last day of 9999, as step 1 allows */
#define INSTANT_MAX INT64_C(253402300799)

static int day_ok(int64_t d)
{
    return d >= 0 && d <= DAY_MAX;
}

/* A string of a state: NULL or empty only where allowed, at most CM_STR_MAX
 * bytes, valid UTF-8 (protobuf-c checks neither). */
static int str_ok(const char *s, int may_be_empty)
{
    if (!s || !*s)
        return may_be_empty;
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p, k = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2
                                         : (c & 0xF8) == 0xF0 ? 3 : 4;
        if (k == 4 || (k == 1 && c < 0xC2) || (c == 0xF4 && p[1] > 0x8F) || c > 0xF4)
            return 0;
        if (k == 2 && ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F)))
            return 0;
        if (k == 3 && c == 0xF0 && p[1] < 0x90)
            return 0;
        for (unsigned i = 1; i <= k; i++)
            if ((p[i] & 0xC0) != 0x80)
                return 0;
        p += k + 1;
        n += k + 1;
        if (n > CM_STR_MAX)
            return 0;
    }
    return 1;
}

/* The number of a name of a state, interned: -EINVAL for a string a state
 * cannot hold, or when the table is full; -ENOMEM. */
static int32_t state_name(struct cm_fold_ctx *fc, const char *s)
{
    if (!str_ok(s, 0))
        return -EINVAL;
    size_t len = strlen(s);
    int32_t id = cm_names_find(fc->nm, s, len);
    if (id >= 0)
        return id;
    if (cm_names_count(fc->nm) >= CM_FOLD_NAMES_MAX)
        return -EINVAL;
    return cm_names_intern(fc->nm, s, len);
}

/* Checks the runs of one scheme (start, end, checked, first breach), in
 * order: what stay_begin, stay_end and cm_fold_scan_run make. A run starts
 * and ends on the day of an event folded into the snapshot (an entry, an
 * exit, a grant, a status change), so never after last_day, the day of the
 * snapshot's latest event. Found by fuzz_state: a bound on the latest event
 * of the window let through a snapshot run that began after an event the
 * window may still fold; folding such an event closed the run before its
 * start, and the state the fold left did not unpack. Found by
 * fuzz_state: a closed run with a scan position past start + 3650 (which
 * only a run's end bounded) was open again after the next entry, and the
 * state the fold left did not unpack. */
static int runs_ok(const int32_t *v, size_t n, int64_t last_day)
{
    if (n % 4)
        return 0;
    for (size_t j = 0; j < n; j += 4) {
        int64_t start = v[j], end = v[j + 1], chk = v[j + 2], brk = v[j + 3];
        int open = end == OPEN_END;
        if (!day_ok(start) || start > last_day ||
            (!open && (end < start || !day_ok(end) || end > last_day)))
            return 0;
        if (open && j + 4 < n)
            return 0; /* only the last run is open */
        if (j && start <= (int64_t)v[j - 3] + 1)
            return 0; /* runs are apart: a stay beginning the day after an end continues it */
        /* scans stop at the run's end or start + N (N <= 3650), open or
         * closed: a closed run is open again after an entry the next day */
        if (chk < start - 1 || chk > start + 3650 || (!open && chk > end))
            return 0;
        if (brk != NO_BREACH && (brk != chk + 1 || brk > start + 3651 || (!open && brk > end)))
            return 0;
    }
    return 1;
}

static int ids_differ(const Circmon__V1__MigrantState *m)
{
    /* at most PERMITS_MAX permits and as many grants in the window */
    for (size_t i = 0; i < m->n_permits; i++)
        for (size_t j = i + 1; j < m->n_permits; j++)
            if (!strcmp(m->permits[i]->id, m->permits[j]->id))
                return 0;
    for (size_t i = 0; i < m->n_window; i++) {
        const Circmon__V1__StateEvent *e = m->window[i];
        if (e->type != CM_EV_GRANTED)
            continue;
        for (size_t j = 0; j < m->n_permits; j++)
            if (!strcmp(m->permits[j]->id, e->permit_id))
                return 0;
        for (size_t j = i + 1; j < m->n_window; j++)
            if (m->window[j]->type == CM_EV_GRANTED && !strcmp(m->window[j]->permit_id, e->permit_id))
                return 0;
    }
    return 1;
}

/* What can be checked on the message before anything is built. */
static int message_ok(const Circmon__V1__MigrantState *m)
{
    if (m->mode > M_EXEMPT || m->n_recent_ids > RING || m->n_permits > PERMITS_MAX ||
        m->n_schemes > PERMITS_MAX || m->n_window > 2 * (size_t)CM_MAX_WINDOW_EVENTS_MAX)
        return 0;
    if (m->latest < 0 || m->latest > INSTANT_MAX || m->snapshot_latest < 0 ||
        m->snapshot_latest > m->latest)
        return 0;
    /* The latest event never leaves the window (cm_mstate_advance and
     * cm_mstate_shed keep it), so a state with events has a window. Found by
     * fuzz_state: an empty window under a latest L took an earlier event
     * into the window as out of order, and the state the fold left, whose
     * last window event was not L, did not unpack. */
    if (!m->n_window && m->latest)
        return 0;
    /* The day no run of the snapshot is after. A state written before
     * snapshot_latest was kept has 0 there; its snapshot holds events before
     * the window's first, as every snapshot does. */
    int64_t snap_t = m->snapshot_latest;
    if (!snap_t && m->n_window && m->window[0]->occurred_at > 0)
        snap_t = m->window[0]->occurred_at - 1;
    size_t nruns = 0, ngrants = 0;
    for (size_t i = 0; i < m->n_permits; i++) {
        const Circmon__V1__StatePermit *p = m->permits[i];
        if (!str_ok(p->id, 0))
            return 0;
        if (p->flags & PF_PRUNED)
            continue;
        if (p->flags > (PF_OPEN | PF_EXITED | PF_USED | PF_ADJUSTED | PF_REVOKED | PF_REENTRY) ||
            p->kind > 255 || !day_ok(p->valid_from_day) || !day_ok(p->end_day) ||
            !day_ok(p->last_exit_day))
            return 0;
        /* the migrant is in a stay on exactly the current permit */
        int on = m->mode == M_ON_PERMIT && (int64_t)m->current == (int64_t)i;
        if (!!(p->flags & PF_OPEN) != on || (on && !(p->flags & PF_USED)))
            return 0;
    }
    for (size_t i = 0; i < m->n_schemes; i++) {
        const Circmon__V1__StateScheme *ss = m->schemes[i];
        if (!runs_ok(ss->runs, ss->n_runs, snap_t / 86400))
            return 0;
        nruns += ss->n_runs / 4;
        for (size_t j = 0; j < i; j++)
            if (ss->scheme && m->schemes[j]->scheme && !strcmp(ss->scheme, m->schemes[j]->scheme))
                return 0;
    }
    if (nruns > RUNS_MAX)
        return 0;
    for (size_t i = 0; i < m->n_window; i++) {
        const Circmon__V1__StateEvent *e = m->window[i];
        /* in order of occurrence, after the snapshot, the last one is L */
        if (e->occurred_at <= m->snapshot_latest || e->occurred_at > m->latest ||
            (i && e->occurred_at < m->window[i - 1]->occurred_at) ||
            (i + 1 == m->n_window && e->occurred_at != m->latest))
            return 0;
        if (e->type < CM_EV_ENTRY || e->type > CM_EV_STATUS || e->kind > 255 || e->status > 255)
            return 0;
        int with_pid = e->type == CM_EV_GRANTED || e->type == CM_EV_EXTENDED || e->type == CM_EV_REVOKED;
        if (with_pid ? !str_ok(e->permit_id, 0) : !str_ok(e->permit_id, 1))
            return 0;
        if (e->type == CM_EV_GRANTED &&
            (++ngrants, !day_ok(e->valid_from_day) || !day_ok(e->end_day)))
            return 0;
        if ((e->type == CM_EV_EXTENDED && !day_ok(e->end_day)) ||
            (e->type == CM_EV_REVOKED && !day_ok(e->effective_day)))
            return 0;
    }
    if (m->n_permits + ngrants > PERMITS_MAX)
        return 0;
    return ids_differ(m);
}

int cm_mstate_unpack(struct cm_fold_ctx *fc, const uint8_t *buf, size_t len, struct cm_mstate **out)
{
    cm_fold_codec_reset(fc);
    Circmon__V1__MigrantState *m = circmon__v1__migrant_state__unpack(&fc->alloc, len, buf);
    if (!m)
        return -EINVAL;
    if (!message_ok(m)) {
        cm_fold_codec_reset(fc);
        return -EINVAL;
    }
    int rc = -ENOMEM;
    struct cm_mstate *st = cm_mstate_new(fc);
    if (!st)
        goto out;
    struct fstate *fs = &st->snap;
    if (cm_fold_grow(fc->pool, (void **)&fs->p, &fs->capp, (uint32_t)m->n_permits, sizeof(*fs->p)) < 0)
        goto fail;
    int32_t cur = -1;
    for (size_t i = 0; i < m->n_permits; i++) {
        Circmon__V1__StatePermit *sp = m->permits[i];
        if (sp->flags & PF_PRUNED) {
            if (cm_fstate_add_tomb(fc->pool, fs, sp->id) < 0)
                goto fail;
            continue;
        }
        if (m->mode == M_ON_PERMIT && (int64_t)m->current == (int64_t)i)
            cur = (int32_t)fs->np; /* tombs are packed after the permits, but who knows */
        struct permit *p = &fs->p[fs->np];
        memset(p, 0, sizeof(*p));
        if (cm_pid_set(fc->pool, &p->id, sp->id) < 0)
            goto fail;
        fs->np++;
        p->flags = (uint8_t)sp->flags;
        p->scheme = state_name(fc, sp->scheme);
        p->nat = state_name(fc, sp->nationality);
        if (p->scheme == -EINVAL || p->nat == -EINVAL)
            goto invalid;
        if (p->scheme < 0 || p->nat < 0 || !cm_fold_scheme_info(fc, p->scheme))
            goto fail;
        p->vf = sp->valid_from_day;
        p->end = sp->end_day;
        p->last_exit = sp->last_exit_day;
        p->kind = (uint8_t)sp->kind;
    }
    fs->mode = (uint8_t)m->mode;
    fs->cur = fs->mode == M_ON_PERMIT ? cur : 0;
    if (fs->mode == M_ON_PERMIT && cur < 0)
        goto invalid;
    for (size_t i = 0; i < m->n_schemes; i++) {
        Circmon__V1__StateScheme *ss = m->schemes[i];
        if (cm_fold_grow(fc->pool, (void **)&fs->sc, &fs->capsc, fs->nsc + 1, sizeof(*fs->sc)) < 0 ||
            cm_fold_grow(fc->pool, (void **)&fs->r, &fs->capr, (uint32_t)(fs->nr + ss->n_runs / 4), sizeof(*fs->r)) < 0)
            goto fail;
        struct sch *sc = &fs->sc[fs->nsc];
        sc->scheme = state_name(fc, ss->scheme);
        sc->nat = state_name(fc, ss->nationality);
        if (sc->scheme == -EINVAL || sc->nat == -EINVAL)
            goto invalid;
        if (sc->scheme < 0 || sc->nat < 0 || !cm_fold_scheme_info(fc, sc->scheme))
            goto fail;
        for (size_t j = 0; j < ss->n_runs; j += 4)
            fs->r[fs->nr++] = (struct run){.sc = (int32_t)fs->nsc, .start = ss->runs[j],
                                           .end = ss->runs[j + 1], .chk = ss->runs[j + 2],
                                           .brk = ss->runs[j + 3]};
        fs->nsc++;
    }
    /* runs of all schemes back in chronological order per scheme: kept as packed */
    st->latest = m->latest;
    st->snap_t = m->snapshot_latest;
    if (cm_fold_grow(fc->pool, (void **)&st->w, &st->capw, (uint32_t)m->n_window, sizeof(*st->w)) < 0)
        goto fail;
    for (size_t i = 0; i < m->n_window; i++) {
        Circmon__V1__StateEvent *se = m->window[i];
        struct wev *e = &st->w[st->nw];
        memset(e, 0, sizeof(*e));
        e->idh = se->id_hash;
        e->t = se->occurred_at;
        e->type = (uint8_t)se->type;
        if (e->type == CM_EV_GRANTED || e->type == CM_EV_EXTENDED || e->type == CM_EV_REVOKED) {
            if (cm_pid_set(fc->pool, &e->pid, se->permit_id) < 0)
                goto fail;
        }
        st->nw++;
        if (e->type == CM_EV_GRANTED) {
            e->scheme = state_name(fc, se->scheme);
            e->nat = state_name(fc, se->nationality);
            if (e->scheme == -EINVAL || e->nat == -EINVAL)
                goto invalid;
            if (e->scheme < 0 || e->nat < 0 || !cm_fold_scheme_info(fc, e->scheme))
                goto fail;
        }
        e->vf = se->valid_from_day;
        e->end = se->end_day;
        e->eff = se->effective_day;
        e->kind = (uint8_t)se->kind;
        e->status = (uint8_t)se->status;
    }
    if (m->n_recent_ids) {
        uint32_t nc = 0;
        if (cm_fold_grow(fc->pool, (void **)&st->ring, &nc, m->n_recent_ids < 4 ? 4 : (uint32_t)m->n_recent_ids,
                         sizeof(*st->ring)) < 0)
            goto fail;
        st->capring = (uint8_t)nc;
        memcpy(st->ring, m->recent_ids, m->n_recent_ids * sizeof(*st->ring));
    }
    st->nring = (uint8_t)m->n_recent_ids;
    st->ringpos = (uint8_t)(m->n_recent_ids % RING);
    /* what only the fold can tell: every scheme with runs is one of the
     * migrant's stay-limit schemes, and the window folds onto the snapshot
     * within the limits (a state past them would refuse every event) */
    for (uint32_t i = 0; i < fs->nsc; i++) {
        int held = 0;
        for (uint32_t j = 0; j < fs->np && !held; j++)
            held = fs->p[j].scheme == fs->sc[i].scheme;
        for (uint32_t j = 0; j < st->nw && !held; j++)
            held = st->w[j].type == CM_EV_GRANTED && st->w[j].scheme == fs->sc[i].scheme;
        if (!held && fs->ntombs == 0)
            goto invalid;
    }
    int r = cm_fold_refold(fc, st, &fc->ta);
    if (r == -E2BIG)
        goto invalid;
    if (r < 0)
        goto fail;
    *out = st;
    cm_fold_codec_reset(fc);
    return 0;
invalid:
    rc = -EINVAL;
fail:
    cm_mstate_free(fc, st);
out:
    cm_fold_codec_reset(fc);
    return rc;
}
